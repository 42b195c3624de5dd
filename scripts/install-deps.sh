#!/usr/bin/env bash
# Installs the system tools the tests use: the real gocryptfs and fuse3 (round-trip tests).
# Idempotent; needs root (CI runs as root) and Debian's package repositories.
set -euo pipefail
need=()
command -v gocryptfs >/dev/null 2>&1 || need+=(gocryptfs)
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
    apt-get update >/dev/null && apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
  }
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
