#!/usr/bin/env bash
# Model encryption/decryption benchmark. Prints, for one generated tree in tmpfs (page
# cache warm): coffer decrypt and encrypt throughput, the AES-256-GCM limit of this machine
# (openssl speed, all cores), the real gocryptfs (FUSE mount: read, and cp to tmpfs), and
# the ratios. Usage: scripts/bench-model.sh [SIZE_MIB]   (default 2048, in 512 MiB files)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-2048}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/coffer-target}"
./scripts/install-deps.sh
cargo build --release -q -p coffer
COFFER="$CARGO_TARGET_DIR/release/coffer"
W=$(mktemp -d /dev/shm/coffer-bench.XXXXXX)
trap 'fusermount3 -u "$W/mnt" 2>/dev/null || true; rm -rf "$W"' EXIT
mkdir -p "$W/plain" "$W/mnt"
printf 'bench-password\n' > "$W/pw"
n=$(( (SIZE_MIB + 511) / 512 ))
for i in $(seq 1 "$n"); do
  head -c $((512 * 1024 * 1024)) /dev/urandom > "$W/plain/model-0000$i-of-0000$n.safetensors"
done
echo '{"architectures":["bench"]}' > "$W/plain/config.json"
bytes=$(du -sb "$W/plain" | cut -f1)
cores=$(nproc)

mbps() { python3 -c "import sys; print(f'{$1/$2/1e6:.0f}')"; }
now() { date +%s.%N; }

# coffer's own timings (--json "seconds") exclude the scrypt key derivation.
jsec() { python3 -c "import json,sys; print(json.load(sys.stdin)['seconds'])"; }
# One unmeasured run of each command first, so both measure with warm tmpfs page allocation.
"$COFFER" model encrypt -q --password-file "$W/pw" "$W/plain" "$W/warm" 2>/dev/null; rm -rf "$W/warm"
s=$("$COFFER" model encrypt --json --password-file "$W/pw" "$W/plain" "$W/cipher" | jsec)
enc=$(mbps "$bytes" "$s")
"$COFFER" model decrypt -q --password-file "$W/pw" "$W/cipher" "$W/warm" 2>/dev/null; rm -rf "$W/warm"
s=$("$COFFER" model decrypt --json --password-file "$W/pw" "$W/cipher" "$W/out" | jsec)
dec=$(mbps "$bytes" "$s")
cmp -s "$W/plain/config.json" "$W/out/config.json"
rm -rf "$W/out"
s=$("$COFFER" model verify --json --password-file "$W/pw" "$W/cipher" | jsec)
ver=$(mbps "$bytes" "$s")
# The floor for any decryptor writing into tmpfs: copying the plaintext itself.
t0=$(now); cp -a "$W/plain" "$W/plaincopy"; t1=$(now)
cpfloor=$(mbps "$bytes" "$(python3 -c "print($t1-$t0)")")
rm -rf "$W/plaincopy"

ossl=$(openssl speed -seconds 3 -evp aes-256-gcm -bytes 4096 -multi "$cores" 2>/dev/null | awk '/^evp|^aes-256-gcm|^AES-256-GCM/ {v=$NF} END {sub("k","",v); print v*1000/1e6}')

gocryptfs -q -passfile "$W/pw" "$W/cipher" "$W/mnt" 2>/dev/null
t0=$(now); cat "$W"/mnt/* > /dev/null; t1=$(now)
gread=$(mbps "$bytes" "$(python3 -c "print($t1-$t0)")")
t0=$(now); cp -a "$W/mnt/." "$W/gcp"; t1=$(now)
gcp=$(mbps "$bytes" "$(python3 -c "print($t1-$t0)")")
fusermount3 -u "$W/mnt"

ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
echo "model benchmark: $((bytes / 1024 / 1024)) MiB in $n files, tmpfs, $cores cores"
echo "  coffer decrypt            $dec MB/s (to tmpfs)"
echo "  coffer verify             $ver MB/s (decrypt + authenticate, no writes)"
echo "  cp plaintext in tmpfs     $cpfloor MB/s (write floor of this machine)"
echo "  coffer encrypt            $enc MB/s"
echo "  openssl aes-256-gcm 4 KiB $ossl MB/s (all cores)"
echo "  gocryptfs read (mount)    $gread MB/s"
echo "  gocryptfs cp to tmpfs     $gcp MB/s"
echo "  decrypt / openssl         $(ratio "$dec" "$ossl")   (target >= 0.85)"
echo "  verify / openssl          $(ratio "$ver" "$ossl")"
echo "  decrypt / cp floor        $(ratio "$dec" "$cpfloor")"
echo "  encrypt / openssl         $(ratio "$enc" "$ossl")   (target >= 0.80)"
echo "  decrypt / gocryptfs cp    $(ratio "$dec" "$gcp")   (target >= 5)"
