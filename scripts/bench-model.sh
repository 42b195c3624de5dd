#!/usr/bin/env bash
# Model encryption/decryption benchmark. Prints, for one generated tree in tmpfs (page
# cache warm): coffer decrypt, verify and encrypt throughput, the AES-256-GCM limit of this
# machine (openssl speed, all cores), what the kernel's page-cache read and tmpfs write
# paths alone allow and the throughput their serial sum with AES predicts, the real gocryptfs (FUSE mount: read, and cp to tmpfs),
# and the ratios. Every coffer figure is the median of RUNS runs (VM timings vary from run
# to run).
# When run as root it also decrypts and encrypts into a tmpfs mounted with huge=within_size
# (the recommended destination for models: 2 MiB pages make the kernel's write path cheap).
# Usage: scripts/bench-model.sh [SIZE_MIB]   (default 2048, in 512 MiB files; RUNS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-2048}
RUNS=${RUNS:-3}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/coffer-target}"
./scripts/install-deps.sh
cargo build --release -q -p coffer
COFFER="$CARGO_TARGET_DIR/release/coffer"
W=$(mktemp -d /dev/shm/coffer-bench.XXXXXX)
H="$W/huge"
cleanup() {
  fusermount3 -u "$W/mnt" 2>/dev/null || true
  umount "$H" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/plain" "$W/mnt" "$H"
printf 'bench-password\n' > "$W/pw"
n=$(( (SIZE_MIB + 511) / 512 ))
for i in $(seq 1 "$n"); do
  head -c $((512 * 1024 * 1024)) /dev/urandom > "$W/plain/model-0000$i-of-0000$n.safetensors"
done
echo '{"architectures":["bench"]}' > "$W/plain/config.json"
bytes=$(du -sb "$W/plain" | cut -f1)
cores=$(nproc)

mbps() { python3 -c "print(f'{$1/$2/1e6:.0f}')"; }
now() { date +%s.%N; }
median() { python3 -c "import statistics,sys; print(f'{statistics.median(map(float, sys.argv[1:])):.0f}')" "$@"; }
# coffer's own timings (--json "seconds") exclude the scrypt key derivation.
jsec() { python3 -c "import json,sys; print(json.load(sys.stdin)['seconds'])"; }

# Runs `coffer model CMD ... OUT` RUNS times (after one unmeasured run, so every measured
# run finds warm tmpfs page allocation), removing OUT between runs; prints the median MB/s.
measure() {
  local cmd=$1 from=$2 out=$3 all=()
  "$COFFER" model "$cmd" -q --password-file "$W/pw" "$from" "$out" 2>/dev/null
  for _ in $(seq 1 "$RUNS"); do
    rm -rf "$out"
    all+=("$(mbps "$bytes" "$("$COFFER" model "$cmd" --json --password-file "$W/pw" "$from" "$out" | jsec)")")
  done
  median "${all[@]}"
}

enc=$(measure encrypt "$W/plain" "$W/cipher")
dec=$(measure decrypt "$W/cipher" "$W/out")
cmp -s "$W/plain/config.json" "$W/out/config.json"
cmp -s "$W/plain/model-00001-of-0000$n.safetensors" "$W/out/model-00001-of-0000$n.safetensors"
rm -rf "$W/out"
vs=()
for _ in $(seq 1 "$RUNS"); do
  vs+=("$(mbps "$bytes" "$("$COFFER" model verify --json --password-file "$W/pw" "$W/cipher" | jsec)")")
done
ver=$(median "${vs[@]}")
huge=""
hugeenc=""
if mount -t tmpfs -o "size=$((SIZE_MIB + 512))m,huge=within_size" coffer-bench "$H" 2>/dev/null; then
  huge=$(measure decrypt "$W/cipher" "$H/out")
  rm -rf "$H/out"
  hugeenc=$(measure encrypt "$W/plain" "$H/cipher")
  rm -rf "$H/cipher"
fi

# What the kernel allows for writing fresh tmpfs pages into DIR: cores parallel writers of
# zeros in 256 KiB writes, as coffer writes (one warm-up, then the median of RUNS).
write_floor() {
  local dir=$1 all=()
  for r in $(seq 0 "$RUNS"); do
    local t0 t1
    t0=$(now)
    for i in $(seq 1 "$cores"); do
      dd if=/dev/zero of="$dir/zero$i" bs=256K count=$((bytes / cores / 262144)) status=none &
    done
    wait
    t1=$(now)
    rm -f "$dir"/zero*
    [ "$r" -gt 0 ] && all+=("$(mbps "$bytes" "$(python3 -c "print($t1-$t0)")")")
  done
  median "${all[@]}"
}
wfloor=$(write_floor "$W")
# What copying the source out of the page cache costs alone: the model files read into a
# 256 KiB buffer by cores parallel readers (one warm-up, then the median of RUNS).
read_floor() {
  local all=()
  for r in $(seq 0 "$RUNS"); do
    local t0 t1
    t0=$(now)
    find "$W/plain" -name '*.safetensors' -print0 |
      xargs -0 -P "$cores" -I{} dd if={} of=/dev/null bs=256K status=none
    t1=$(now)
    [ "$r" -gt 0 ] && all+=("$(mbps "$bytes" "$(python3 -c "print($t1-$t0)")")")
  done
  median "${all[@]}"
}
rfloor=$(read_floor)
hfloor=""
[ -n "$huge" ] && hfloor=$(write_floor "$H")
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
# Decrypting to tmpfs needs, per byte and on the same cores, the copy of the ciphertext out
# of the page cache into private memory, the AES work and the kernel's fresh-page write.
# Each measured alone on all cores, their serial sum 1/(1/read + 1/aes + 1/write) estimates
# what a decryptor that copies its input before authenticating it can do here; a ratio near
# 1 means the engine adds nothing beyond those parts (above 1: the parts overlap a little).
parts() { python3 -c "print(f'{1/(1/$1+1/$2+1/$3):.0f}')"; }
dparts=$(parts "$rfloor" "$ossl" "$wfloor")
hparts=""
[ -n "$hfloor" ] && hparts=$(parts "$rfloor" "$ossl" "$hfloor")
vparts=$(python3 -c "print(f'{1/(1/$rfloor+1/$ossl):.0f}')")
echo "model benchmark: $((bytes / 1024 / 1024)) MiB in $n files, tmpfs, $cores cores, median of $RUNS"
echo "  coffer decrypt            $dec MB/s (to tmpfs)"
[ -n "$huge" ] && echo "  coffer decrypt, huge tmpfs $huge MB/s (to tmpfs mounted huge=within_size)"
echo "  coffer verify             $ver MB/s (read + authenticate, no writes)"
echo "  coffer encrypt            $enc MB/s"
[ -n "$hugeenc" ] && echo "  coffer encrypt, huge tmpfs $hugeenc MB/s"
echo "  tmpfs fresh-page writes   $wfloor MB/s ($cores dd writers of zeros: the kernel's part alone)"
[ -n "$hfloor" ] && echo "  huge tmpfs page writes    $hfloor MB/s"
echo "  page-cache reads          $rfloor MB/s ($cores dd readers of the model files: the source copy alone)"
echo "  sum of parts, decrypt     $dparts MB/s (1/(1/reads + 1/openssl + 1/writes))"
[ -n "$hparts" ] && echo "  sum of parts, huge tmpfs  $hparts MB/s"
echo "  sum of parts, verify      $vparts MB/s (1/(1/reads + 1/openssl))"
echo "  cp plaintext in tmpfs     $cpfloor MB/s"
echo "  openssl aes-256-gcm 4 KiB $ossl MB/s (all cores)"
echo "  gocryptfs read (mount)    $gread MB/s"
echo "  gocryptfs cp to tmpfs     $gcp MB/s"
echo "  decrypt / openssl         $(ratio "$dec" "$ossl")   (target >= 0.85)"
[ -n "$huge" ] && echo "  decrypt huge / openssl    $(ratio "$huge" "$ossl")"
echo "  verify / openssl          $(ratio "$ver" "$ossl")"
echo "  encrypt / openssl         $(ratio "$enc" "$ossl")   (target >= 0.80)"
[ -n "$hugeenc" ] && echo "  encrypt huge / openssl    $(ratio "$hugeenc" "$ossl")"
echo "  decrypt / gocryptfs cp    $(ratio "$dec" "$gcp")   (target >= 5)"
[ -n "$huge" ] && echo "  decrypt huge / gocryptfs cp $(ratio "$huge" "$gcp")"
echo "  decrypt / cp plaintext    $(ratio "$dec" "$cpfloor")"
echo "  decrypt / sum of parts    $(ratio "$dec" "$dparts")"
[ -n "$hparts" ] && echo "  decrypt huge / its parts  $(ratio "$huge" "$hparts")"
echo "  verify / sum of parts     $(ratio "$ver" "$vparts")"
echo "  encrypt / sum of parts    $(ratio "$enc" "$dparts")"
