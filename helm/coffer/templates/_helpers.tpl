{{- define "coffer.fullname" -}}
{{- printf "%s-coffer" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "coffer.labels" -}}
app.kubernetes.io/name: coffer
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "coffer.selector" -}}
app.kubernetes.io/name: coffer
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "coffer.checks" -}}
{{- if and (not .Values.tls.enabled) (not .Values.insecureHttp) -}}
{{- fail "set tls.enabled=true (with tls.secretName) or insecureHttp=true explicitly" -}}
{{- end -}}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) -}}
{{- fail "tls.enabled needs tls.secretName" -}}
{{- end -}}
{{- if not .Values.admin.publicKey -}}
{{- fail "admin.publicKey is required (--set-file admin.publicKey=admin.pub): the admin API is never open" -}}
{{- end -}}
{{- if .Values.keys.kmsKeyId -}}
{{- if .Values.keys.kek -}}
{{- fail "set keys.kek or keys.kmsKeyId, not both" -}}
{{- end -}}
{{- if not .Values.kbs.aliyunKms.enabled -}}
{{- fail "keys.kmsKeyId needs kbs.aliyunKms.enabled (the KMS instance that unwraps the KEK)" -}}
{{- end -}}
{{- else if not (regexMatch "^[0-9a-fA-F]{64}$" .Values.keys.kek) -}}
{{- fail "keys.kek must be 64 hex digits (or set keys.kmsKeyId)" -}}
{{- end -}}
{{- if not .Values.keys.tokenSigningKey -}}
{{- fail "keys.tokenSigningKey is required" -}}
{{- end -}}
{{- if .Values.kbs.aliyunKms.enabled -}}
{{- if not (and .Values.kbs.aliyunKms.kmsInstanceId .Values.kbs.aliyunKms.clientKey .Values.kbs.aliyunKms.password .Values.kbs.aliyunKms.certPem) -}}
{{- fail "kbs.aliyunKms.enabled needs kmsInstanceId, clientKey, password and certPem" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "coffer.podSpec" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  fsGroup: 10001
  seccompProfile:
    type: RuntimeDefault
containers:
  - name: coffer-server
    image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    args: ["--config", "/etc/coffer/config/coffer-server.toml"]
    {{- if .Values.database.url }}
    env:
      - name: COFFER_DATABASE_URL
        valueFrom:
          secretKeyRef:
            name: {{ include "coffer.fullname" . }}
            key: database-url
    {{- end }}
    ports:
      - name: kbs
        containerPort: 8080
    readinessProbe:
      httpGet:
        path: /readyz
        port: kbs
        scheme: {{ if .Values.tls.enabled }}HTTPS{{ else }}HTTP{{ end }}
      periodSeconds: 5
    livenessProbe:
      httpGet:
        path: /healthz
        port: kbs
        scheme: {{ if .Values.tls.enabled }}HTTPS{{ else }}HTTP{{ end }}
      periodSeconds: 10
    resources:
      {{- toYaml .Values.resources | nindent 6 }}
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities:
        drop: ["ALL"]
    volumeMounts:
      - name: config
        mountPath: /etc/coffer/config
        readOnly: true
      - name: keys
        mountPath: /etc/coffer/keys
        readOnly: true
      - name: data
        mountPath: /var/lib/coffer
      {{- if .Values.tls.enabled }}
      - name: tls
        mountPath: /etc/coffer/tls
        readOnly: true
      {{- end }}
      {{- if .Values.kbs.aliyunKms.enabled }}
      - name: kms
        mountPath: /etc/coffer/kms
        readOnly: true
      {{- end }}
volumes:
  - name: config
    configMap:
      name: {{ include "coffer.fullname" . }}
      items:
        - key: coffer-server.toml
          path: coffer-server.toml
        {{- if .Values.policies.resource }}
        - key: resource-policy.rego
          path: policies/resource-policy.rego
        {{- end }}
        {{- range $id, $_ := .Values.policies.attestation }}
        - key: {{ $id }}.rego
          path: policies/{{ $id }}.rego
        {{- end }}
  - name: keys
    secret:
      secretName: {{ include "coffer.fullname" . }}
      items:
        {{- if not .Values.keys.kmsKeyId }}
        - key: kek
          path: kek.hex
        {{- end }}
        - key: token-signing-key
          path: token-signing.pem
        - key: admin-public-key
          path: admin.pub
  {{- if .Values.tls.enabled }}
  - name: tls
    secret:
      secretName: {{ .Values.tls.secretName }}
  {{- end }}
  {{- if .Values.kbs.aliyunKms.enabled }}
  - name: kms
    secret:
      secretName: {{ include "coffer.fullname" . }}-kms
  {{- end }}
{{- end -}}
