"""Deployment checks: helm lint + render of helm/coffer (Helm's Go SDK via helm-python-sdk)
with the default values (must refuse: secure defaults), the minimal and the full example
values, the PAI-EAS guide's exact `helm install` flags, the ACK ALB profile and the KMS
AccessKey values; every rendered object validated against the Kubernetes schemas
(kubernetes-validate; CRDs such as AlbConfig checked structurally); structural assertions on
what was rendered; a Dockerfile check. Rendered server configs are written to OUT for
check-deploy.sh to run through `coffer-server --check-config` (OUT/pending/ holds those that
need server keys landing separately), and the keys the chart generates to OUT/guide-keys/
for check-deploy.sh to start a server with."""
import base64
import os
import re
import shlex
import shutil
import sys
import tempfile
import tomllib

import helm_python
import kubernetes_validate
import yaml

CHART = "helm/coffer"
OUT = sys.argv[1] if len(sys.argv) > 1 else "."
K8S = "1.30.0"
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


def render(values, name="kbs"):
    chart = helm_python.Chart.load(CHART)
    return chart.render(values, name=name, namespace="coffer", is_install=True)


CRDS = {"ServiceMonitor", "AlbConfig"}  # not in the core schemas: checked structurally


def validate_all(label, rendered):
    kinds = {}
    for path, obj in objects(rendered):
        kinds.setdefault(obj["kind"], []).append(obj)
        if obj["kind"] in CRDS:
            continue
        try:
            kubernetes_validate.validate(obj, K8S, strict=True)
        except kubernetes_validate.ValidationError as e:
            failures.append(f"{label}: {path}: {e.message}")
    return kinds


def refused(label, values, why, name="kbs"):
    try:
        render(values, name)
        check(False, f"{label}: rendered, expected a refusal naming {why!r}")
    except helm_python.HelmError as e:
        check(why in str(e), f"{label}: unexpected refusal: {e}")


def merge(a, b):
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(a.get(k), dict):
            merge(a[k], v)
        else:
            a[k] = v
    return a


def deep(v):
    return yaml.safe_load(yaml.safe_dump(v))


def workload(kinds):
    return (kinds.get("StatefulSet") or kinds.get("Deployment"))[0]


def config_of(kinds):
    return next(c for c in kinds["ConfigMap"])["data"]["coffer-server.toml"]


def objects(rendered):
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                yield path, doc


# 1. Defaults must refuse to render (no TLS decision, no admin key, no KEK).
try:
    render(None)
    check(False, "chart rendered with default values; it must demand TLS or an explicit insecure opt-in")
except helm_python.HelmError as e:
    check("insecureHttp" in str(e) or "tls" in str(e), f"unexpected refusal: {e}")

for name in ["minimal", "full"]:
    values = yaml.safe_load(open(f"{CHART}/ci/{name}-values.yaml"))
    lint = helm_python.lint(CHART, values, strict=False)
    check(not lint["errors"], f"helm lint {name}: {lint['errors']}")
    rendered = render(values)
    kinds = validate_all(name, rendered)
    notes = rendered.get("coffer/templates/NOTES.txt", "")
    check("port-forward" in notes, f"{name}: NOTES.txt missing")
    if name == "minimal":
        check("StatefulSet" in kinds and "Deployment" not in kinds, "minimal: expected one StatefulSet (SQLite)")
        vct = kinds["StatefulSet"][0]["spec"]["volumeClaimTemplates"][0]["spec"]
        check("storageClassName" not in vct and vct["resources"]["requests"]["storage"] == "1Gi",
              "minimal: default storage class, 1Gi")
        check("PodDisruptionBudget" not in kinds, "minimal: no PDB for a single pod")
    else:
        dep = kinds.get("Deployment", [None])[0]
        check(dep is not None and dep["spec"]["replicas"] >= 2, "full: Deployment with >= 2 replicas")
        pod = dep["spec"]["template"]["spec"]
        c = pod["containers"][0]
        check(pod["securityContext"]["runAsNonRoot"] is True, "full: runAsNonRoot")
        check(c["securityContext"]["readOnlyRootFilesystem"] is True, "full: read-only root FS")
        check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "full: readiness on /readyz")
        check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "full: liveness on /healthz")
        check("Ingress" in kinds and "ServiceMonitor" in kinds and "PodDisruptionBudget" in kinds, "full: ingress, servicemonitor, pdb")
        cm = kinds["ConfigMap"][0]["data"]["coffer-server.toml"]
        check("[aliyun_kms]" in cm and "[server.tls]" in cm, "full: KMS and TLS in the server config")
        check('pccs_url = "https://sgx-dcap-server.cn-hangzhou.aliyuncs.com"' in cm,
              "full: TDX collateral from the region's Alibaba Cloud PCCS")
        check("resource-policy.rego" in kinds["ConfigMap"][0]["data"] and "policy_dir" in cm, "full: resource policy shipped in the ConfigMap")
        secrets = " ".join(str(s.get("stringData")) for s in kinds["Secret"])
        check("example-password" not in cm, "full: KMS password must not be in the ConfigMap")
        check("example-password" in secrets, "full: KMS password in a Secret")
    # The rendered server configuration must be accepted by coffer-server itself.
    toml = kinds["ConfigMap"][0]["data"]["coffer-server.toml"]
    open(f"{OUT}/{name}.toml", "w").write(toml)

# 2. KEK wrapped by Aliyun KMS: the full example with keys.kmsKeyId instead of keys.kek.
full = yaml.safe_load(open(f"{CHART}/ci/full-values.yaml"))
kms = yaml.safe_load(yaml.safe_dump(full))
kms["keys"]["kek"] = ""
kms["keys"]["kmsKeyId"] = "key-hzz65f0000000000000"
objs = list(objects(render(kms)))
cm = next(o for _, o in objs if o["kind"] == "ConfigMap")["data"]["coffer-server.toml"]
check('kek_kms_key_id = "key-hzz65f0000000000000"' in cm and "kek_file" not in cm,
      "kms-kek: server config names the KMS key and no KEK file")
secret = next(o for _, o in objs if o["kind"] == "Secret" and o["metadata"]["name"] == "kbs-coffer")
check("kek" not in secret["data"], "kms-kek: no KEK in the Secret")
dep = next(o for _, o in objs if o["kind"] == "Deployment")
items = [i["path"] for v in dep["spec"]["template"]["spec"]["volumes"] if "secret" in v for i in v["secret"].get("items", [])]
check("kek.hex" not in items, "kms-kek: no kek.hex mounted")
open(f"{OUT}/kms-kek.toml", "w").write(cm)
for broken, why in [({"kek": full["keys"]["kek"]}, "both"), ({"aliyun": False}, "kbs.aliyunKms.enabled")]:
    v = yaml.safe_load(yaml.safe_dump(kms))
    if "kek" in broken:
        v["keys"]["kek"] = broken["kek"]
    else:
        v["kbs"]["aliyunKms"]["enabled"] = False
    try:
        render(v)
        check(False, f"kms-kek: rendered with a bad combination ({why})")
    except helm_python.HelmError as e:
        check(why in str(e), f"kms-kek: unexpected refusal: {e}")

# 5. The PAI-EAS guide's command, verbatim but for the chart reference, its flags parsed by
#    Helm's own --set/--set-file parsers, its files the KMS fixtures under the guide's names.
GUIDE = ("helm install trustee helm/coffer --set regionId=cn-hangzhou --set kbs.aliyunKms.enabled=true "
         "--set kbs.aliyunKms.kmsIntanceId=kst-xxx --set-file kbs.aliyunKms.clientKey=clientKey.json "
         "--set-file kbs.aliyunKms.password=password.json --set-file kbs.aliyunKms.certPem=PrivateKmsCA.pem")
FIX = "integration/tests/data/aliyun-kms"
files = tempfile.mkdtemp()
for src, dst in [("clientKey_test-id.json", "clientKey.json"), ("password_test-id.json", "password.json"),
                 ("PrivateKmsCA_kst-tst00000000000000000.pem", "PrivateKmsCA.pem")]:
    shutil.copy(f"{FIX}/{src}", f"{files}/{dst}")


def parse_helm_flags(command):
    argv, values, here = shlex.split(command), {}, os.getcwd()
    release = argv[2]
    os.chdir(files)
    try:
        for flag, arg in zip(argv, argv[1:]):
            if flag == "--set":
                merge(values, helm_python.parse_set_string(arg))
            elif flag == "--set-file":
                merge(values, helm_python.parse_set_file(arg))
    finally:
        os.chdir(here)
    return release, values


release, guide = parse_helm_flags(GUIDE)
check(release == "trustee" and guide["kbs"]["aliyunKms"]["kmsIntanceId"] == "kst-xxx", "guide: flags parsed")
rendered = render(deep(guide), release)
lint = helm_python.lint(CHART, deep(guide), strict=False)
check(not lint["errors"], f"helm lint guide: {lint['errors']}")
kinds = validate_all("guide", rendered)
cm = config_of(kinds)
cfg = tomllib.loads(cm)
check(cfg["server"]["insecure_http"] is True, "guide: the chart opts in to plain HTTP (Trustee chart values)")
check(cfg["server"].get("path_prefixes") == ["/api", "/trustee"],
      f"guide: KBS also under /api and /<release> (got {cfg['server'].get('path_prefixes')})")
kms = cfg.get("aliyun_kms", {})
check(kms.get("kms_instance_id") == "kst-xxx" and kms.get("region_id") == "cn-hangzhou",
      "guide: kmsIntanceId (the guide's spelling) and regionId reach [aliyun_kms]")
check(kms.get("client_key_file") == "/etc/coffer/kms/clientKey.json", "guide: ClientKey mode")
key_secret = next(o for o in kinds["Secret"] if o["metadata"]["name"] == "trustee-coffer")
check(key_secret["metadata"]["annotations"].get("helm.sh/resource-policy") == "keep",
      "guide: generated keys survive helm uninstall")
gen = {k: base64.b64decode(v).decode() for k, v in key_secret["data"].items()}
check(re.fullmatch(r"[0-9a-f]{64}", gen.get("kek", "")) is not None, "guide: generated KEK is 64 hex digits")
check(gen.get("token-signing-key", "").startswith("-----BEGIN EC PRIVATE KEY-----"), "guide: generated P-256 token key")
check(gen.get("admin-public-key", "").startswith("-----BEGIN CERTIFICATE-----"), "guide: admin public key (certificate)")
check(gen.get("admin-private-key", "").startswith("-----BEGIN PRIVATE KEY-----"), "guide: admin private key (PKCS#8)")
vct = workload(kinds)["spec"]["volumeClaimTemplates"][0]["spec"]
check(vct.get("storageClassName") == "alicloud-disk-alltype" and vct["resources"]["requests"]["storage"] == "20Gi",
      "guide: SQLite volume on Alibaba Cloud disk (Trustee chart's class, 20Gi minimum)")
pod = workload(kinds)["spec"]["template"]["spec"]
mounted = [i["key"] for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "trustee-coffer"
           for i in v["secret"]["items"]]
check("admin-private-key" not in mounted and "kek" in mounted, "guide: the admin private key is never mounted")
kms_secret = next(o for o in kinds["Secret"] if o["metadata"]["name"] == "trustee-coffer-kms")
check(kms_secret["stringData"]["clientKey.json"] == open(f"{files}/clientKey.json").read(),
      "guide: clientKey file content in the KMS Secret")
check("PrivateKeyData" not in cm, "guide: no KMS credential in the ConfigMap")
notes = rendered["coffer/templates/NOTES.txt"]
check("PLAIN HTTP" in notes and "server.insecure_http = true" in notes, "guide: NOTES.txt says plain HTTP is on")
check("kubectl -n coffer get secret trustee-coffer -o jsonpath='{.data.admin-private-key}' | base64 -d > admin.key" in notes,
      "guide: NOTES.txt says how to read the admin key")
open(f"{OUT}/guide.toml", "w").write(cm)
os.makedirs(f"{OUT}/guide-keys", exist_ok=True)
for key, fname in [("kek", "kek.hex"), ("token-signing-key", "token-signing.pem"),
                   ("admin-public-key", "admin.pub"), ("admin-private-key", "admin.key")]:
    open(f"{OUT}/guide-keys/{fname}", "w").write(gen[key])
open(f"{OUT}/guide-keys/server.toml", "w").write(
    f'[keys]\nkek_file = "{OUT}/guide-keys/kek.hex"\ntoken_signing_key = "{OUT}/guide-keys/token-signing.pem"\n'
    f'[admin]\npublic_key = "{OUT}/guide-keys/admin.pub"\n')
# The other spelling works alike; values the user gives are used as they are.
alt = deep(guide)
alt["kbs"]["aliyunKms"]["kmsInstanceId"] = alt["kbs"]["aliyunKms"].pop("kmsIntanceId")
check('kms_instance_id = "kst-xxx"' in config_of(validate_all("guide-kmsInstanceId", render(alt, release))),
      "guide: kmsInstanceId spelling")
# Transport decisions: explicit false refuses without TLS; TLS turns the opt-in off.
refused("guide insecureHttp=false", merge(deep(guide), {"insecureHttp": False}), "insecureHttp=false")
tls = config_of(validate_all("guide-tls", render(merge(deep(guide), {"tls": {"enabled": True, "secretName": "t"}}), release)))
check("insecure_http = false" in tls and "[server.tls]" in tls, "guide+tls: HTTPS, no plain-HTTP opt-in")
# values.schema.json is applied (a misspelt enum is refused before templates run).
refused("schema", merge(deep(guide), {"alb": {"addressType": "Public"}}), "addressType")

# 6. Path prefixes: each entry a template; [] renders none (the KBS at the root only).
pp = merge(deep(guide), {"kbs": {"pathPrefixes": ["/gw", "/{{ .Release.Name }}-kbs"]}})
ppc = tomllib.loads(config_of(validate_all("path-prefixes", render(pp, release))))
check(ppc["server"].get("path_prefixes") == ["/gw", "/trustee-kbs"], f"path-prefixes: {ppc['server'].get('path_prefixes')}")
none = merge(deep(guide), {"kbs": {"pathPrefixes": []}})
nonec = config_of(validate_all("no-path-prefixes", render(none, release)))
check(tomllib.loads(nonec)["server"]["path_prefixes"] == [], "pathPrefixes=[]: no prefix (not the server's /api default)")
open(f"{OUT}/path-prefixes.toml", "w").write(config_of(validate_all("path-prefixes", render(pp, release))))

# 7. The ACK profile (ci/ack-alb-values.yaml) with the guide's KMS files.
ack = yaml.safe_load(open(f"{CHART}/ci/ack-alb-values.yaml"))
merge(ack, {"kbs": {"aliyunKms": {k: guide["kbs"]["aliyunKms"][k] for k in ["kmsIntanceId", "clientKey", "password", "certPem"]}}})
lint = helm_python.lint(CHART, deep(ack), strict=False)
check(not lint["errors"], f"helm lint ack: {lint['errors']}")
rendered = render(deep(ack), "trustee")
kinds = validate_all("ack", rendered)
alb = kinds.get("AlbConfig", [None])[0]
check(alb is not None and alb["apiVersion"] == "alibabacloud.com/v1" and alb["metadata"]["name"] == "alb",
      "ack: AlbConfig alb (alibabacloud.com/v1)")
if alb:
    check(set(alb) == {"apiVersion", "kind", "metadata", "spec"} and alb["spec"]["config"]["name"] == "alb"
          and alb["spec"]["config"]["addressType"] in ("Internet", "Intranet"), "ack: AlbConfig spec.config")
    check(alb["spec"]["listeners"] == [{"port": 80, "protocol": "HTTP"}], "ack: AlbConfig HTTP :80 listener")
ic = kinds.get("IngressClass", [None])[0]
check(ic is not None and ic["spec"]["controller"] == "ingress.k8s.alibabacloud/alb"
      and ic["spec"]["parameters"] == {"apiGroup": "alibabacloud.com", "kind": "AlbConfig", "name": "alb"},
      "ack: IngressClass names the AlbConfig")
ing = next((i for i in kinds.get("Ingress", []) if i["spec"].get("ingressClassName") == "alb"), None)
check(ing is not None, "ack: an Ingress of class alb")
if ing:
    paths = ing["spec"]["rules"][0]["http"]["paths"]
    check([(p["path"], p["pathType"]) for p in paths] == [("/trustee/", "Prefix")], f"ack: Ingress paths {paths}")
    check(paths[0]["backend"]["service"] == {"name": "trustee-coffer", "port": {"name": "kbs"}}, "ack: Ingress → KBS Service")
svc = kinds["Service"][0]
check(svc["spec"]["type"] == "LoadBalancer" and svc["metadata"]["annotations"].get(
    "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-address-type") == "intranet", "ack: intranet SLB")
check({p["name"] for p in svc["spec"]["ports"]} == {"kbs"}, "ack: the Ingress' port name exists on the Service")
tpl = workload(kinds)["spec"]["template"]
pod = tpl["spec"]
check(tpl["metadata"]["annotations"].get("k8s.aliyun.com/eci-use-specs") == "2-4Gi", "ack: podAnnotations")
check(pod.get("imagePullSecrets") == [{"name": "acr-credentials"}], "ack: imagePullSecrets")
check(pod.get("nodeSelector") == {"type": "virtual-kubelet"} and pod.get("tolerations") and pod.get("affinity"),
      "ack: nodeSelector, tolerations, affinity")
env = {e["name"]: e for e in pod["containers"][0].get("env", [])}
check(env.get("RUST_LOG", {}).get("value") == "info", "ack: log_level → RUST_LOG")
notes = rendered["coffer/templates/NOTES.txt"]
check("kubectl get AlbConfig alb" in notes and "get ing trustee-coffer-alb" in notes, "ack: NOTES.txt ALB steps")
check("public address" in notes, "ack: NOTES.txt warns about the Internet-facing ALB")
open(f"{OUT}/ack.toml", "w").write(config_of(kinds))

# 8. KMS with an AccessKey (Alibaba Trustee's newer option): env from a Secret, never literal.
ak = {"regionId": "cn-hangzhou", "kbs": {"aliyunKms": {"enabled": True, "regionId": "cn-shanghai",
      "accessKeyId": "LTAI5tExampleKeyId", "accessKeySecret": "example-ak-secret"}}}
kinds = validate_all("accesskey", render(deep(ak)))
cfg = tomllib.loads(config_of(kinds))
check(cfg["aliyun_kms"] == {"region_id": "cn-shanghai"}, f"accesskey: [aliyun_kms] {cfg.get('aliyun_kms')}")
pod = workload(kinds)["spec"]["template"]["spec"]
env = {e["name"]: e for e in pod["containers"][0].get("env", [])}
check(env.get("ALIYUN_KMS_ACCESS_KEY_ID", {}).get("valueFrom", {}).get("secretKeyRef") == {"name": "kbs-coffer-kms", "key": "access_key_id"}
      and env.get("ALIYUN_KMS_ACCESS_KEY_SECRET", {}).get("valueFrom", {}).get("secretKeyRef") == {"name": "kbs-coffer-kms", "key": "access_key_secret"},
      "accesskey: env from the chart's Secret")
check(env.get("ALIYUN_KMS_REGION_ID", {}).get("value") == "cn-shanghai", "accesskey: ALIYUN_KMS_REGION_ID")
check("example-ak-secret" not in yaml.safe_dump(workload(kinds)) and "example-ak-secret" not in config_of(kinds),
      "accesskey: the secret is neither in the pod spec nor in the ConfigMap")
kms_secret = next(o for o in kinds["Secret"] if o["metadata"]["name"] == "kbs-coffer-kms")
check(kms_secret["stringData"] == {"access_key_id": "LTAI5tExampleKeyId", "access_key_secret": "example-ak-secret"},
      "accesskey: the AccessKey in the chart's Secret")
check(not any(v.get("name") == "kms" for v in pod["volumes"]), "accesskey: no ClientKey volume")
open(f"{OUT}/accesskey.toml", "w").write(config_of(kinds))
existing = deep(ak)
existing["kbs"]["aliyunKms"] = {"enabled": True, "accessKeyExistingSecret": "my-ak",
                                "accessKeyIdSecretKey": "id", "accessKeySecretSecretKey": "secret"}
kinds = validate_all("accesskey-existing", render(existing))
env = {e["name"]: e for e in workload(kinds)["spec"]["template"]["spec"]["containers"][0]["env"]}
check(env["ALIYUN_KMS_ACCESS_KEY_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": "my-ak", "key": "secret"}
      and env["ALIYUN_KMS_REGION_ID"]["value"] == "cn-hangzhou", "accesskey-existing: env from the named Secret, top-level region")
check(not any(o["metadata"]["name"] == "kbs-coffer-kms" for o in kinds["Secret"]), "accesskey-existing: no KMS Secret of the chart")
open(f"{OUT}/accesskey-existing.toml", "w").write(config_of(kinds))
no_secret = deep(ak)
del no_secret["kbs"]["aliyunKms"]["accessKeySecret"]
refused("accesskey without secret", no_secret, "accessKeySecret")
no_region = deep(existing)
del no_region["regionId"]
refused("accesskey without region", no_region, "regionId")
partial = deep(guide)
del partial["kbs"]["aliyunKms"]["certPem"]
refused("clientkey without certPem", partial, "certPem", "trustee")
both = merge(deep(guide), {"kbs": {"aliyunKms": {"accessKeyId": "x", "accessKeySecret": "y"}}})
refused("clientkey and accesskey", both, "not both", "trustee")
refused("skip TLS verify", merge(deep(guide), {"kbs": {"aliyunKms": {"insecureSkipTlsVerify": True}}}),
        "insecureSkipTlsVerify", "trustee")
refused("kms-wrapped KEK with an AccessKey", merge(deep(ak), {"keys": {"kmsKeyId": "key-x"}}), "ClientKey")

# 3. Example manifests: Kubernetes schemas; the CoCo pod's init container command is written
#    out for check-deploy.sh to parse with the real CLI.
pod = yaml.safe_load(open("deploy/kubernetes/coco-inference-pod.yaml"))
try:
    kubernetes_validate.validate(pod, K8S, strict=True)
except kubernetes_validate.ValidationError as e:
    failures.append(f"coco-inference-pod.yaml: {e.message}")
init = pod["spec"]["initContainers"][0]
check(init["command"][:3] == ["coffer", "model", "decrypt"], "coco pod: init container runs coffer model decrypt")
check("--cdh" in init["command"] and "--key" in init["command"], "coco pod: key through the CDH")
model = next(v for v in pod["spec"]["volumes"] if v["name"] == "model")
check(model.get("emptyDir", {}).get("medium") == "Memory", "coco pod: plaintext in memory only")
mounts = pod["spec"]["containers"][0]["volumeMounts"]
check(all(m.get("readOnly") for m in mounts if m["name"] == "model"), "coco pod: server mounts the model read-only")
open(f"{OUT}/coco-init-args", "w").write("\n".join(init["command"][1:]) + "\n")

# 4. Dockerfile: multi-stage, non-root, health check, pinned bases.
df = open("Dockerfile").read()
check(len(re.findall(r"^FROM ", df, re.M)) >= 2, "Dockerfile: multi-stage build")
check(re.search(r"^USER 10001", df, re.M) is not None, "Dockerfile: non-root USER")
check("HEALTHCHECK" in df, "Dockerfile: HEALTHCHECK")
check(":latest" not in df, "Dockerfile: no :latest base images")

if failures:
    print("deploy checks FAILED:")
    for f in failures:
        print("  -", f)
    sys.exit(1)
print("deploy checks passed: helm lint/render (defaults refused, minimal, full, KMS-wrapped KEK, PAI-EAS guide command, path prefixes, ACK ALB profile, KMS AccessKey), kubernetes schemas, CoCo pod example, Dockerfile")
