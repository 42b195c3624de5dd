#!/usr/bin/env bash
# Prints the tag of a local Debian 12 (bookworm) base image for the image tests, made with
# mmdebstrap from Debian's mirrors when it is not there yet (image registries are not needed).
# The tag carries a hash of this script, so a changed recipe makes a new base; older bases
# are removed. Like debian:bookworm-slim: minbase, no documentation.
set -euo pipefail
hash=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-12)
tag="localhost/coffer-test-base:bookworm-$hash"
if podman image exists "$tag"; then
  echo "$tag"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! mmdebstrap --variant=minbase --mode=root \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
  bookworm "$tmp/rootfs.tar" >"$tmp/log" 2>&1; then
  echo "base.sh: mmdebstrap failed:" >&2
  tail -20 "$tmp/log" >&2
  exit 1
fi
podman import --quiet --change 'CMD ["bash"]' "$tmp/rootfs.tar" "$tag" >/dev/null
for old in $(podman images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/coffer-test-base:' | grep -vx "$tag"); do
  podman rmi "$old" >/dev/null 2>&1 || true
done
echo "$tag"
