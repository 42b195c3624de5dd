"""Deployment checks: helm lint + render of helm/coffer (Helm's Go SDK via helm-python-sdk)
with the default values (must refuse: secure defaults), the minimal and the full example
values; every rendered object validated against the Kubernetes schemas
(kubernetes-validate); structural assertions on what was rendered; a Dockerfile check."""
import re
import sys

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


def render(values):
    chart = helm_python.Chart.load(CHART)
    return chart.render(values, name="kbs", namespace="coffer", is_install=True)


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
    kinds = {}
    for path, obj in objects(rendered):
        kinds.setdefault(obj["kind"], []).append(obj)
        if obj["kind"] == "ServiceMonitor":
            continue  # a CRD: not in the core schemas
        try:
            kubernetes_validate.validate(obj, K8S, strict=True)
        except kubernetes_validate.ValidationError as e:
            failures.append(f"{name}: {path}: {e.message}")
    notes = rendered.get("coffer/templates/NOTES.txt", "")
    check("port-forward" in notes, f"{name}: NOTES.txt missing")
    if name == "minimal":
        check("StatefulSet" in kinds and "Deployment" not in kinds, "minimal: expected one StatefulSet (SQLite)")
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
check("kek" not in secret["stringData"], "kms-kek: no KEK in the Secret")
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
print("deploy checks passed: helm lint/render (defaults refused, minimal, full, KMS-wrapped KEK), kubernetes schemas, CoCo pod example, Dockerfile")
