#!/usr/bin/env bash
# Installs the system tools the tests use: the real gocryptfs and fuse3 (round-trip tests),
# and the openssl tool (the offline OCSP responder of the GPU tests).
# Idempotent; needs root (CI runs as root) and Debian's package repositories.
set -euo pipefail
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
