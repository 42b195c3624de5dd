#!/usr/bin/env bash
# Installs the system tools the tests use: the real gocryptfs and fuse3 (round-trip tests),
# and the openssl tool (the offline OCSP responder of the GPU tests).
# Idempotent; needs root (CI runs as root) and Debian's package repositories.
set -euo pipefail
# rustfmt and clippy, which scripts/test.sh runs before the tests.
for component in rustfmt clippy; do
  cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1 || {
    echo "installing: rust component $component" >&2
    rustup component add "$component"
  }
done
need=()
command -v gocryptfs >/dev/null 2>&1 || need+=(gocryptfs)
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
    apt-get update >/dev/null && apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
  }
fi

# API description and web console tests (integration/tests/openapi.rs, console.rs): headless
# Chromium with its WebDriver from Debian, and a Python virtual environment beside the build
# (not the system's site-packages) with the pinned validator, API fuzzer and WebDriver client.
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${need[@]}" fonts-dejavu-core >/dev/null 2>&1 || {
    apt-get update >/dev/null && apt-get install -y --no-install-recommends "${need[@]}" fonts-dejavu-core >/dev/null
  }
fi
venv="${COFFER_PY_VENV:-${CARGO_TARGET_DIR:-$HOME/.cache/coffer-target}/py-venv}"
pins=(openapi-spec-validator==0.9.0 schemathesis==4.32.5 selenium==4.51.0)
if ! "$venv/bin/python" -c 'import openapi_spec_validator, schemathesis, selenium' >/dev/null 2>&1 \
   || [ "$(cat "$venv/.pins" 2>/dev/null)" != "${pins[*]}" ]; then
  echo "installing into $venv: ${pins[*]}" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}"
  echo "${pins[*]}" > "$venv/.pins"
fi

# Container tests (scripts/test-image.sh): root podman with runc, netavark + aardvark-dns for
# compose networks (iptables for their NAT), mmdebstrap for the local Debian base image.
need=()
for t in podman:podman runc:runc mmdebstrap:mmdebstrap iptables:iptables \
  /usr/lib/podman/netavark:netavark /usr/lib/podman/aardvark-dns:aardvark-dns; do
  [ -e "${t%%:*}" ] || command -v "${t%%:*}" >/dev/null 2>&1 || need+=("${t#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
    apt-get -o DPkg::Lock::Timeout=300 update >/dev/null &&
      apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${need[@]}" >/dev/null
  }
fi
