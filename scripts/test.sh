#!/usr/bin/env bash
# Runs every check and test: rustfmt and clippy (warnings are errors), unit tests of all
# crates and the end-to-end tests, which start the real
# coffer-server and coffer binaries (built first, below), and the round trips through the
# real gocryptfs (installed by scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/coffer-target}"
./scripts/install-deps.sh
# PostgreSQL (store tests, replica tests): start the machine's cluster if it is down.
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
# Formatting and lints first: the workspace's lint policy ([workspace.lints] in Cargo.toml)
# and clippy's, warnings as errors.
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
  # nextest does not run documentation examples; they are compiled (and run) here.
  cargo test --workspace --doc
else
  cargo test --workspace --no-fail-fast
fi
./scripts/check-deploy.sh
# The container image and the compose stack, built and started with podman.
./scripts/test-image.sh
