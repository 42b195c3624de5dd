#!/usr/bin/env bash
# Runs every test: unit tests of all crates and the end-to-end tests, which start the real
# coffer-server and coffer binaries (built first, below), and the round trips through the
# real gocryptfs (installed by scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/coffer-target}"
./scripts/install-deps.sh
cargo build --workspace --bins
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
