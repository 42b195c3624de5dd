#!/usr/bin/env bash
# Builds upstream Trustee's KBS from a source tree for the side-by-side handshake benchmark
# (`coffer-bench --trustee-kbs`): built-in attestation service with only the sample verifiers
# (the others link Intel DCAP, TPM and vendor libraries the benchmark does not exercise),
# release profile.
#
#   scripts/build-trustee-kbs.sh TRUSTEE_SRC [OUT_BIN]
#
# TRUSTEE_SRC is a checkout of github.com/confidential-containers/trustee (the README's
# figures: commit 78962cd4). The tree is copied, not modified. Needs `protoc`
# (Debian: protobuf-compiler) and libssl-dev.
#
# Trustee's workspace has git dependencies on GitHub. Where github.com is unreachable, set
# TRUSTEE_GIT_MIRRORS to a directory of bare clones named OWNER+NAME/repo (what the
# workplace `fetch` tool makes under /work/.mirror): git is pointed at them instead. Two
# optional dependencies of verifiers this build leaves out (Intel's DCAP quote verification
# library and veraison's ccatoken) are removed from the copy, since a mirror may not hold
# their pinned commits; the lock file is then updated for their removal only. Occlum's DCAP
# crate (an optional attester of guest-components, not compiled here) is replaced by an empty
# crate, because cargo would otherwise clone every submodule of Occlum's repository.
set -euo pipefail
src="${1:?usage: $0 TRUSTEE_SRC [OUT_BIN]}"
out="${2:-$HOME/.cache/coffer-trustee/kbs}"
[ -f "$src/kbs/Cargo.toml" ] || { echo "$src: not a Trustee source tree (no kbs/Cargo.toml)" >&2; exit 2; }
command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler" >&2; exit 2; }
work="$HOME/.cache/coffer-trustee/src"
rm -rf "$work" && mkdir -p "$work" && cp -a "$src/." "$work/"
# The x86_64 dependency line asks the attestation service for every verifier; keep none
# (the sample verifier is always compiled in).
python3 - "$work/kbs/Cargo.toml" "$work/deps/verifier/Cargo.toml" <<'PYEOF'
import re, sys
kbs, verifier = sys.argv[1], sys.argv[2]
t = open(kbs).read()
t2 = re.sub(r'(\[target\.\'cfg\(not\(any\(target_arch = "s390x", target_arch = "aarch64"\)\)\)\'\.dependencies\]\s*attestation-service = \{[^}]*features = \[)\s*"all-verifier",\s*(\])',
            r'\1\2', t)
if t2 == t:
    sys.exit("kbs/Cargo.toml: the x86_64 attestation-service line was not found; adjust this script")
open(kbs, "w").write(t2)
t = open(verifier).read()
t = re.sub(r'^(intel-tee-quote-verification-rs|ccatoken) = .*\n', '', t, flags=re.M)
t = re.sub(r'\s*"intel-tee-quote-verification-rs",', '', t)
t = t.replace(', "ccatoken"]', ']')
open(verifier, "w").write(t)
PYEOF
mkdir -p "$work/.offline-stubs/occlum_dcap/src"
printf '[package]\nname = "occlum_dcap"\nversion = "0.1.0"\nedition = "2021"\n' > "$work/.offline-stubs/occlum_dcap/Cargo.toml"
: > "$work/.offline-stubs/occlum_dcap/src/lib.rs"
printf '\n[patch."https://github.com/occlum/occlum"]\nocclum_dcap = { path = ".offline-stubs/occlum_dcap" }\n' >> "$work/Cargo.toml"
if [ -n "${TRUSTEE_GIT_MIRRORS:-}" ]; then
  export CARGO_NET_GIT_FETCH_WITH_CLI=true
  n=0
  for d in "$TRUSTEE_GIT_MIRRORS"/*+*/repo; do
    name="$(basename "$(dirname "$d")")"
    for suffix in "" ".git"; do
      export "GIT_CONFIG_KEY_$n=url.file://$d.insteadOf" "GIT_CONFIG_VALUE_$n=https://github.com/${name/+//}$suffix"
      n=$((n + 1))
    done
  done
  export GIT_CONFIG_COUNT=$n
fi
cd "$work"
export CARGO_TARGET_DIR="$HOME/.cache/coffer-trustee/target"
cargo build --release -p kbs --bin kbs --no-default-features --features coco-as-builtin
mkdir -p "$(dirname "$out")"
cp "$CARGO_TARGET_DIR/release/kbs" "$out"
echo "built $out from $(cd "$src" && git rev-parse --short HEAD 2>/dev/null || echo "$src")"
