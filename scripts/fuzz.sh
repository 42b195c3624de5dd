#!/usr/bin/env bash
# Runs every fuzz target (libFuzzer through cargo-fuzz, coverage-guided) for a bounded time
# and prints one line per target: executions, corpus size, crashes. Not part of the test
# command (it is a time budget, not a check); its figures go in the README ("Fuzzing").
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]        # default 60
#
# cargo-fuzz needs nightly compiler flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain take
# them. Corpora and crash artifacts are kept under $CARGO_TARGET_DIR/fuzz/ so runs add up.
# A crash stops nothing: every target runs, and the script exits 1 if any crashed, naming
# the input file to turn into a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/coffer-target}"
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
work="$CARGO_TARGET_DIR/fuzz"
mkdir -p "$work"
failed=0
printf '%-10s %-14s %12s %8s %8s\n' crate target executions corpus crashes
for dir in tdx/fuzz cryptfs/fuzz protocol/fuzz; do
  crate="$(basename "$(dirname "$dir")")"
  for target in $(cd "$dir" && cargo fuzz list); do
    corpus="$work/corpus/$crate-$target"
    artifacts="$work/artifacts/$crate-$target/"
    mkdir -p "$corpus" "$artifacts"
    log="$work/$crate-$target.log"
    set +e
    (cd "$dir" && CARGO_TARGET_DIR="$work/target" cargo fuzz run "$target" "$corpus" -- \
      -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$artifacts" \
      -rss_limit_mb=2048 -timeout=10) >"$log" 2>&1
    rc=$?
    set -e
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)"
    crashes="$(find "$artifacts" -type f | wc -l)"
    printf '%-10s %-14s %12s %8s %8s\n' "$crate" "$target" "${runs:-?}" \
      "$(find "$corpus" -type f | wc -l)" "$crashes"
    if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
      failed=1
      echo "  $crate/$target: exit $rc; log $log; inputs: $(find "$artifacts" -type f | head -3 | tr '\n' ' ')"
    fi
  done
done
exit "$failed"
