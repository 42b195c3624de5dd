#!/usr/bin/env bash
# Time to serving: `coffer launch` (attest, key, decrypt to a tmpfs, digest, exec) against
# what PAI-EAS users do with the real gocryptfs today (mount the cipher directory, then the
# inference server reads every file through the mount), on the same tree and machine, with
# the page cache warm and cold. Both start from the password (scrypt included in both); the
# launch's script is `exit 0`, so its time ends when the model could be served.
# Needs root (tmpfs mounts, drop_caches, FUSE).
# Usage: scripts/bench-launch.sh [SIZE_MIB]   (default 1024, in 256 MiB files; RUNS=3;
#        the cipher directory is on the disk under ${BENCH_DIR:-/var/tmp}; PROFILE=dev uses
#        the debug build, whose AES, GHASH and SHA-2 are optimized all the same)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
RUNS=${RUNS:-3}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/coffer-target}"
./scripts/install-deps.sh
# The server's part (one local handshake) is a few ms either way: SERVER_PROFILE=dev reuses
# a debug coffer-server instead of building a release one.
PROFILE=${PROFILE:-release}
SERVER_PROFILE=${SERVER_PROFILE:-$PROFILE}
dir_of() { if [ "$1" = dev ]; then echo "$CARGO_TARGET_DIR/debug"; else echo "$CARGO_TARGET_DIR/$1"; fi; }
cargo build --profile "$PROFILE" -q -p coffer
cargo build --profile "$SERVER_PROFILE" -q -p coffer-server
BIN=$(dir_of "$PROFILE")
SERVER_BIN=$(dir_of "$SERVER_PROFILE")
W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/coffer-launch-bench.XXXXXX")
SERVER_PID=
cleanup() {
  fusermount3 -u "$W/mnt" 2>/dev/null || true
  umount -l "$W/models/m" 2>/dev/null || true
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/plain" "$W/mnt" "$W/oss"
printf 'bench-password\n' > "$W/pw"
n=$(( (SIZE_MIB + 255) / 256 ))
for i in $(seq 1 "$n"); do
  head -c $((256 * 1024 * 1024)) /dev/urandom > "$W/plain/model-0000$i-of-0000$n.safetensors"
done
echo '{"architectures":["bench"]}' > "$W/plain/config.json"
bytes=$(du -sb "$W/plain" | cut -f1)
"$BIN/coffer" model encrypt -q "$W/plain" "$W/oss/model" --password-file "$W/pw" > "$W/digest"
rm -rf "$W/plain"
sync

"$SERVER_BIN/coffer-server" --listen 127.0.0.1:0 --data-dir "$W/data" 2> "$W/server.log" &
SERVER_PID=$!
for _ in $(seq 1 200); do grep -q "coffer-server ready" "$W/server.log" 2>/dev/null && break; sleep 0.05; done
URL="http://$(grep -o 'listen=[^ ]*' "$W/server.log" | head -1 | cut -d= -f2)"
"$BIN/coffer" --url "$URL" admin --key "$W/data/admin.key" set-resource default/aliyun/model-decryption-key --file "$W/pw" >/dev/null
"$BIN/coffer" --url "$URL" admin --key "$W/data/admin.key" set-resource-policy --allow-all >/dev/null
cat > "$W/service.json" <<JSON
{"confidential": {"trustee_endpoint": "$URL/api", "decryption_key": "kbs:///default/aliyun/model-decryption-key"},
 "containers": [{"image": "vllm", "port": 8000, "script": "exit 0"}],
 "storage": [{"encryption": {"method": "gocryptfs"}, "mount_path": "$W/models/m", "oss": {"path": "oss://bench/model/"}}]}
JSON

now() { date +%s.%N; }
median() { python3 -c "import statistics,sys; print(f'{statistics.median(map(float, sys.argv[1:])):.2f}')" "$@"; }
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }

launch_once() {
  umount -l "$W/models/m" 2>/dev/null || true
  rm -rf "$W/models"
  [ "$1" = cold ] && cold
  # MOUNT_OPTS: mount the tmpfs here instead (coffer then uses the mount point as it is),
  # e.g. MOUNT_OPTS=size=2g for 4 KiB pages.
  if [ -n "${MOUNT_OPTS:-}" ]; then
    mkdir -p "$W/models/m" && mount -t tmpfs -o "$MOUNT_OPTS" coffer-bench "$W/models/m"
  fi
  local t0 t1
  t0=$(now)
  "$BIN/coffer" launch "$W/service.json" --tee sample --source "oss://bench=$W/oss" \
    --expect-digest "$(cat "$W/digest")" 2> "$W/launch.log"
  t1=$(now)
  python3 -c "print($t1 - $t0)"
}
gocryptfs_once() {
  fusermount3 -u "$W/mnt" 2>/dev/null || true
  [ "$1" = cold ] && cold
  local t0 t1
  t0=$(now)
  gocryptfs -q -passfile "$W/pw" "$W/oss/model" "$W/mnt" 2>/dev/null
  # What a server loading the model does: read every file once.
  find "$W/mnt" -type f -print0 | xargs -0 cat > /dev/null
  t1=$(now)
  fusermount3 -u "$W/mnt"
  python3 -c "print($t1 - $t0)"
}

launch_once warm >/dev/null; gocryptfs_once warm >/dev/null   # unmeasured warm-up
declare -A res
for mode in warm cold; do
  l=(); g=()
  for _ in $(seq 1 "$RUNS"); do
    l+=("$(launch_once "$mode")")
    g+=("$(gocryptfs_once "$mode")")
  done
  res[l_$mode]=$(median "${l[@]}")
  res[g_$mode]=$(median "${g[@]}")
done
echo "last launch's step lines:"; sed 's/^/  /' "$W/launch.log"
gb=$(python3 -c "print(f'{$bytes/1e9:.2f}')")
printf '\ntime to serving, %s GB in %s files + config.json, median of %s runs, %s cores\n' "$gb" "$n" "$RUNS" "$(nproc)"
printf '%-6s %-28s %-34s %s\n' cache "coffer launch (s, GB/s)" "gocryptfs mount + read all (s, GB/s)" "gocryptfs / coffer"
for mode in warm cold; do
  python3 - "$mode" "${res[l_$mode]}" "${res[g_$mode]}" "$bytes" <<'PY'
import sys
mode, l, g, b = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
print(f"{mode:<6} {l:6.2f} s ({b/l/1e9:4.2f} GB/s)          {g:6.2f} s ({b/g/1e9:4.2f} GB/s)               {g/l:.2f}x")
PY
done
