#!/usr/bin/env bash
# Deployment checks (part of scripts/test.sh): the helm chart is linted and rendered with
# Helm's Go SDK (PyPI helm-python-sdk) and every object validated with kubernetes-validate;
# the rendered server configuration is checked by coffer-server itself; docker-compose.yml
# is checked by docker-compose's own `config` (PyPI docker-compose v1); the example CoCo
# inference pod by the schemas and the real CLI; the Dockerfile by a structural check. The Python tools live in venvs under ~/.cache/coffer-venvs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/coffer-target}"
V="${COFFER_VENVS:-$HOME/.cache/coffer-venvs}"
if [ ! -x "$V/k8s/bin/python" ] || ! "$V/k8s/bin/python" -c 'import helm_python, kubernetes_validate, yaml' 2>/dev/null; then
  python3 -m venv "$V/k8s"
  "$V/k8s/bin/pip" install -q helm-python-sdk kubernetes-validate pyyaml
fi
if [ ! -x "$V/compose/bin/docker-compose" ]; then
  python3 -m venv "$V/compose"
  # docker-compose 1.x pins PyYAML < 6, whose sdist needs Cython < 3 to build.
  "$V/compose/bin/pip" install -q "cython<3.0.0" wheel
  "$V/compose/bin/pip" install -q --no-build-isolation "pyyaml==5.4.1"
  "$V/compose/bin/pip" install -q docker-compose
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$V/k8s/bin/python" scripts/deploy-checks/check_deploy.py "$out"
# The example pod's init container command must parse (exit code 2 is a usage error); it then
# fails for want of a CDH on this machine, which is expected.
mapfile -t init_args < "$out/coco-init-args"
set +e
"$CARGO_TARGET_DIR/debug/coffer" "${init_args[@]}" >/dev/null 2>&1
rc=$?
set -e
[ "$rc" -ne 2 ] || { echo "deploy/kubernetes/coco-inference-pod.yaml: coffer rejects the init container's arguments"; exit 1; }
for t in "$out"/*.toml; do
  "$CARGO_TARGET_DIR/debug/coffer-server" --check-config --config "$t" >/dev/null || { echo "rendered $t rejected by coffer-server"; exit 1; }
done
# The keys the chart generates in the cluster (helm's genPrivateKey / genSelfSignedCertWithKey)
# must load in the server, and the generated admin private key must sign admin calls it accepts.
keys="$out/guide-keys"
"$CARGO_TARGET_DIR/debug/coffer-server" --config "$keys/server.toml" --listen 127.0.0.1:0 \
  --data-dir "$out/guide-data" 2>"$out/guide-server.log" &
server_pid=$!
url=""
for _ in $(seq 1 100); do
  url=$(sed -n 's/.*coffer-server ready.*listen=\([0-9.:]*\).*/http:\/\/\1/p' "$out/guide-server.log" | head -1)
  [ -n "$url" ] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$url" ] || { echo "coffer-server refused the chart's generated keys:"; cat "$out/guide-server.log"; exit 1; }
admin_ok=0
"$CARGO_TARGET_DIR/debug/coffer" --url "$url" admin --key "$keys/admin.key" set-resource-policy --allow-all >/dev/null 2>"$out/guide-admin.err" || admin_ok=$?
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
[ "$admin_ok" -eq 0 ] || { echo "the chart's generated admin key was refused:"; cat "$out/guide-admin.err"; exit 1; }
POSTGRES_PASSWORD=ci "$V/compose/bin/docker-compose" -f docker-compose.yml --profile sqlite --profile cli config -q
if POSTGRES_PASSWORD= "$V/compose/bin/docker-compose" -f docker-compose.yml config -q 2>/dev/null; then
  echo "docker-compose.yml accepted an empty POSTGRES_PASSWORD"; exit 1
fi
"$CARGO_TARGET_DIR/debug/coffer-server" --check-config --config deploy/compose/coffer-server.toml >/dev/null
echo "deploy checks passed: chart, rendered configs, chart-generated keys, docker-compose.yml, Dockerfile"
