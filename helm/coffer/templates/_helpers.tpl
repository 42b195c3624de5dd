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

{{/* The KMS instance id under either spelling (the PAI-EAS guide writes kmsIntanceId). */}}
{{- define "coffer.kmsInstanceId" -}}
{{- .Values.kbs.aliyunKms.kmsInstanceId | default .Values.kbs.aliyunKms.kmsIntanceId -}}
{{- end -}}

{{/* "", "clientKey" or "accessKey": Trustee's rule, ClientKey when its credential is given. */}}
{{- define "coffer.kmsMode" -}}
{{- $k := .Values.kbs.aliyunKms -}}
{{- if $k.enabled -}}
{{- if or $k.clientKey $k.password -}}clientKey{{- else -}}accessKey{{- end -}}
{{- end -}}
{{- end -}}

{{- define "coffer.kmsRegion" -}}
{{- .Values.kbs.aliyunKms.regionId | default .Values.regionId -}}
{{- end -}}

{{/* "true" or "false": server.insecure_http. See insecureHttp in values.yaml. */}}
{{- define "coffer.insecureHttp" -}}
{{- if .Values.tls.enabled -}}false
{{- else if kindIs "invalid" .Values.insecureHttp -}}
{{- if .Values.kbs.aliyunKms.enabled -}}true{{- else -}}
{{- fail "set tls.enabled=true (with tls.secretName) or insecureHttp=true explicitly" -}}
{{- end -}}
{{- else if .Values.insecureHttp -}}true
{{- else -}}
{{- fail "insecureHttp=false needs tls.enabled=true (with tls.secretName)" -}}
{{- end -}}
{{- end -}}

{{/* The release Secret's existing data (empty outside a cluster, e.g. helm template). */}}
{{- define "coffer.existingSecretData" -}}
{{- $s := lookup "v1" "Secret" .Release.Namespace (include "coffer.fullname" .) -}}
{{- if $s -}}{{- toJson ($s.data | default dict) -}}{{- else -}}{}{{- end -}}
{{- end -}}

{{- define "coffer.checks" -}}
{{- $_ := include "coffer.insecureHttp" . -}}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) -}}
{{- fail "tls.enabled needs tls.secretName" -}}
{{- end -}}
{{- if .Values.keys.kmsKeyId -}}
{{- if .Values.keys.kek -}}
{{- fail "set keys.kek or keys.kmsKeyId, not both" -}}
{{- end -}}
{{- if ne (include "coffer.kmsMode" .) "clientKey" -}}
{{- fail "keys.kmsKeyId needs kbs.aliyunKms.enabled with a ClientKey (the KMS instance that unwraps the KEK; the AccessKey mode cannot Encrypt/Decrypt)" -}}
{{- end -}}
{{- else if and .Values.keys.kek (not (regexMatch "^[0-9a-fA-F]{64}$" .Values.keys.kek)) -}}
{{- fail "keys.kek must be 64 hex digits (or empty: generated on first install)" -}}
{{- end -}}
{{- $k := .Values.kbs.aliyunKms -}}
{{- if $k.insecureSkipTlsVerify -}}
{{- fail "kbs.aliyunKms.insecureSkipTlsVerify (Trustee's test switch) is not supported: coffer always verifies the KMS certificate; give the CA with kbs.aliyunKms.certPem" -}}
{{- end -}}
{{- if eq (include "coffer.kmsMode" .) "clientKey" -}}
{{- if not (and (include "coffer.kmsInstanceId" .) $k.clientKey $k.password $k.certPem) -}}
{{- fail "kbs.aliyunKms ClientKey mode needs kmsInstanceId (or kmsIntanceId), clientKey, password and certPem" -}}
{{- end -}}
{{- if or $k.accessKeyId $k.accessKeySecret $k.accessKeyExistingSecret -}}
{{- fail "kbs.aliyunKms: set a ClientKey (clientKey, password) or an AccessKey (accessKeyId/accessKeySecret or accessKeyExistingSecret), not both" -}}
{{- end -}}
{{- else if eq (include "coffer.kmsMode" .) "accessKey" -}}
{{- if not (or $k.accessKeyExistingSecret (and $k.accessKeyId $k.accessKeySecret)) -}}
{{- fail "kbs.aliyunKms.enabled needs a ClientKey (kmsInstanceId, clientKey, password, certPem) or an AccessKey (accessKeyId and accessKeySecret, or accessKeyExistingSecret)" -}}
{{- end -}}
{{- if not (include "coffer.kmsRegion" .) -}}
{{- fail "kbs.aliyunKms AccessKey mode needs regionId (or kbs.aliyunKms.regionId)" -}}
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
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: coffer-server
    image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    args: ["--config", "/etc/coffer/config/coffer-server.toml"]
    {{- $k := .Values.kbs.aliyunKms }}
    {{- $accessKey := eq (include "coffer.kmsMode" .) "accessKey" }}
    {{- if or .Values.database.url .Values.log_level $accessKey }}
    env:
      {{- if .Values.database.url }}
      - name: COFFER_DATABASE_URL
        valueFrom:
          secretKeyRef:
            name: {{ include "coffer.fullname" . }}
            key: database-url
      {{- end }}
      {{- with .Values.log_level }}
      - name: RUST_LOG
        value: {{ . | quote }}
      {{- end }}
      {{- if $accessKey }}
      {{- /* Never literal values in the pod spec: always from a Secret. */}}
      - name: ALIYUN_KMS_ACCESS_KEY_ID
        valueFrom:
          secretKeyRef:
            name: {{ $k.accessKeyExistingSecret | default (printf "%s-kms" (include "coffer.fullname" .)) }}
            key: {{ if $k.accessKeyExistingSecret }}{{ $k.accessKeyIdSecretKey }}{{ else }}access_key_id{{ end }}
      - name: ALIYUN_KMS_ACCESS_KEY_SECRET
        valueFrom:
          secretKeyRef:
            name: {{ $k.accessKeyExistingSecret | default (printf "%s-kms" (include "coffer.fullname" .)) }}
            key: {{ if $k.accessKeyExistingSecret }}{{ $k.accessKeySecretSecretKey }}{{ else }}access_key_secret{{ end }}
      - name: ALIYUN_KMS_REGION_ID
        value: {{ include "coffer.kmsRegion" . | quote }}
      {{- end }}
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
      {{- if or (eq (include "coffer.kmsMode" .) "clientKey") (and $accessKey $k.certPem) }}
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
  {{- if eq (include "coffer.kmsMode" .) "clientKey" }}
  - name: kms
    secret:
      secretName: {{ include "coffer.fullname" . }}-kms
      items:
        - key: clientKey.json
          path: clientKey.json
        - key: password
          path: password
        - key: ca.pem
          path: ca.pem
  {{- else if and $accessKey $k.certPem }}
  - name: kms
    secret:
      secretName: {{ include "coffer.fullname" . }}-kms
      items:
        - key: ca.pem
          path: ca.pem
  {{- end }}
{{- end -}}
