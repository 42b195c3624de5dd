#!/usr/bin/env bash
# Container tests (part of scripts/test.sh): builds the image from the project's Dockerfile
# (target `prebuilt`, on a Debian base made locally by scripts/image-test/base.sh), runs it
# read-only as uid 10001 with its data volume (health check, the quick start with the CLI from
# the same image, a new container on the same volume, file modes), then starts
# docker-compose.yml with podman-compose (PostgreSQL from Debian's package, same environment
# as the compose file gives the public image): both services healthy, the README's compose
# walk-through, `down` + `up` keeping the data, a wrong database password. Podman runs as root
# with runc and cgroupfs (scripts/image-test/containers.conf). If podman cannot run containers
# here the script says so and fails. It removes the containers, volumes and networks it made;
# the images stay (tags reused by the next run: base, PostgreSQL, coffer).
#
# COFFER_IMAGE_PROFILE=debug (default) packs the debug binaries scripts/test.sh has already
# built, so the test command builds the workspace once; `release` packs `cargo build
# --release` binaries, as the Dockerfile's build stage makes them (what users get).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/coffer-target}"
export CONTAINERS_CONF="$root/scripts/image-test/containers.conf"
V="${COFFER_VENVS:-$HOME/.cache/coffer-venvs}"
profile="${COFFER_IMAGE_PROFILE:-debug}"
run="coffer-test-$$"

say() { echo "test-image: $*" >&2; }
server_logs() {
  if [ -n "${srv:-}" ]; then
    echo "test-image: coffer-server's last log lines:" >&2
    podman logs --tail 15 "$srv" >&2 2>&1 || true
  fi
}
fail() {
  echo "test-image: FAILED: $*" >&2
  server_logs
  exit 1
}

# --- podman must work here; otherwise one line and a failure, never a silent pass ---------
command -v podman >/dev/null 2>&1 || fail "podman is not installed (scripts/install-deps.sh installs it)"
if ! err=$(podman info 2>&1 >/dev/null); then
  fail "podman cannot run on this machine: $(grep . <<<"$err" | tail -1)"
fi
base=$(scripts/image-test/base.sh) || fail "could not make the Debian base image (mmdebstrap)"
if ! err=$(timeout 120 podman run --rm --network none "$base" true 2>&1); then
  fail "podman cannot run containers on this machine: $(grep . <<<"$err" | tail -1)"
fi

# podman-compose from PyPI (Debian 12's 1.0.3 lacks profiles and `down -v`).
pc_bin="$V/podman-compose/bin/podman-compose"
if ! "$pc_bin" version >/dev/null 2>&1; then
  python3 -m venv "$V/podman-compose"
  "$V/podman-compose/bin/pip" install -q "podman-compose==1.6.0"
fi

tmp=$(mktemp -d)
cleanup() {
  local ids
  ids=$(podman ps -aq --filter "label=coffer-test=$run" 2>/dev/null || true)
  [ -z "$ids" ] || podman rm -f -t 0 $ids >/dev/null 2>&1 || true
  if [ -f "$tmp/compose-used" ]; then
    pc down -v -t 0 >/dev/null 2>&1 || true
  fi
  podman volume rm -f "$run-data" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# Replaces TAG by a build of the given arguments; the image TAG named before is removed when
# nothing else uses it (its layers stay cached while another tag shares them).
build_tagged() {
  local tag=$1 old new
  shift
  old=$(podman image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
  podman build -q --format docker --network host -t "$tag" "$@" >"$tmp/build.log" 2>&1 || {
    tail -30 "$tmp/build.log" >&2
    fail "podman build of $tag failed"
  }
  new=$(podman image inspect -f '{{.Id}}' "$tag")
  if [ -n "$old" ] && [ "$old" != "$new" ]; then podman rmi "$old" >/dev/null 2>&1 || true; fi
}

# --- the coffer image: Dockerfile target `prebuilt` with this checkout's binaries ----------
if [ "$profile" = release ]; then
  cargo build -q --release --locked -p coffer-server -p coffer
else
  cargo build -q --locked -p coffer-server -p coffer
fi
mkdir -p "$tmp/ctx/bin"
cp coffer-server.example.toml "$tmp/ctx/"
for b in coffer-server coffer; do
  strip -o "$tmp/ctx/bin/$b" "$CARGO_TARGET_DIR/$profile/$b"
done
img=localhost/coffer-test:current
build_tagged "$img" --target prebuilt --build-arg "RUNTIME_IMAGE=$base" \
  --build-arg "RUST_IMAGE=$base" -f Dockerfile "$tmp/ctx"
pg_hash=$( (echo "$base"; cat scripts/image-test/postgres/*) | sha256sum | cut -c1-12)
pgimg="localhost/coffer-test-postgres:$pg_hash"
if ! podman image exists "$pgimg"; then
  for old in $(podman images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/coffer-test-postgres:' || true); do
    podman rmi "$old" >/dev/null 2>&1 || true
  done
  build_tagged "$pgimg" --build-arg "BASE_IMAGE=$base" scripts/image-test/postgres
fi
say "images built: $img ($profile binaries) on $base, $pgimg"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Runs container $1's own health check (no systemd here to schedule it) until it passes.
wait_healthy() {
  local c=$1 i status
  for i in $(seq 1 90); do
    if podman healthcheck run "$c" >/dev/null 2>&1; then
      status=$(podman inspect -f '{{.State.Health.Status}}' "$c")
      [ "$status" = healthy ] || fail "$c: health check passed but podman reports '$status'"
      return 0
    fi
    sleep 1
  done
  podman logs --tail 30 "$c" >&2 || true
  fail "$c did not become healthy within 90 s"
}

# --- the image alone: read-only, uid 10001, data volume ------------------------------------
port=$(free_port)
podman volume create "$run-data" >/dev/null
mkdir -p "$tmp/work"
printf 'model-key-0123456789' >"$tmp/work/key.bin"
chmod 0755 "$tmp" "$tmp/work"
chmod 0644 "$tmp/work/key.bin"
start_server() {
  podman run -d --name "$run-server" --label "coffer-test=$run" --read-only \
    -v "$run-data:/var/lib/coffer" \
    -v "$root/deploy/compose/coffer-server.toml:/etc/coffer/coffer-server.toml:ro" \
    -p "127.0.0.1:$port:8080" "$img" >/dev/null 2>"$tmp/run.err" || {
    cat "$tmp/run.err" >&2
    fail "podman run of the image failed"
  }
}
# The coffer CLI from the same image, read-only, with the data volume read-only for the
# admin key.
cli() {
  podman run --rm --label "coffer-test=$run" --read-only --network host --no-healthcheck \
    -v "$run-data:/var/lib/coffer:ro" -v "$tmp/work:/work:ro" \
    --entrypoint coffer "$img" --url "http://127.0.0.1:$port" "$@" 2>"$tmp/cli.err" || {
    echo "test-image: FAILED: coffer $*:" >&2
    cat "$tmp/cli.err" >&2
    podman logs --tail 15 "$run-server" >&2 2>&1 || true
    return 1
  }
}
start_server
wait_healthy "$run-server"
[ "$(podman inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$run-server")" = true ] || fail "root file system not read-only"
uids=$(podman exec "$run-server" sh -c 'grep ^Uid: /proc/1/status')
[ "$(awk '{print $2 $3 $4 $5}' <<<"$uids")" = 10001100011000110001 ] || fail "coffer-server does not run as uid 10001: $uids"
if podman exec --user 0 "$run-server" touch /etc/coffer/probe 2>"$tmp/ro.err"; then
  fail "root could write /etc/coffer in the read-only container"
fi
grep -q 'Read-only file system' "$tmp/ro.err" || fail "writing /etc/coffer failed, but not for a read-only file system: $(cat "$tmp/ro.err")"
curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || fail "/healthz not answered on the published port"

cli admin --key /var/lib/coffer/admin.key set-resource default/test/key1 --file /work/key.bin >/dev/null
if cli get-resource kbs:///default/test/key1 >/dev/null 2>&1; then
  fail "the default resource policy released to the sample TEE"
fi
cli admin --key /var/lib/coffer/admin.key set-resource-policy --allow-all >/dev/null
got=$(cli get-resource kbs:///default/test/key1)
[ "$got" = model-key-0123456789 ] || fail "quick start: get-resource printed '$got'"

# Modes the README promises: the data directory 0700, every file the server made 0600.
modes=$(podman run --rm --label "coffer-test=$run" --network none --no-healthcheck -v "$run-data:/var/lib/coffer:ro" \
  --entrypoint sh "$img" -c 'cd /var/lib/coffer && stat -c "%a %u:%g %n" . *')
[ "$(head -1 <<<"$modes")" = "700 10001:10001 ." ] || fail "data directory: $(head -1 <<<"$modes") (want 700 10001:10001)"
for f in admin.key admin.pub kek.hex token-signing.pem coffer.db; do
  grep -qx "600 10001:10001 $f" <<<"$modes" || fail "$f in the volume: want mode 600 owned by 10001; have:
$modes"
done
bad=$(tail -n +2 <<<"$modes" | grep -v '^600 10001:10001 ' || true)
[ -z "$bad" ] || fail "files in the volume not 0600 / uid 10001: $bad"

# A new container on the same volume keeps keys, resources and policies.
admin_pub=$(podman exec "$run-server" cat /var/lib/coffer/admin.pub)
podman stop -t 10 "$run-server" >/dev/null 2>&1
podman rm "$run-server" >/dev/null 2>&1
start_server
wait_healthy "$run-server"
[ "$(podman exec "$run-server" cat /var/lib/coffer/admin.pub)" = "$admin_pub" ] || fail "admin key changed across a restart"
got=$(cli get-resource kbs:///default/test/key1)
[ "$got" = model-key-0123456789 ] || fail "after a restart get-resource printed '$got'"
podman rm -f -t 0 "$run-server" >/dev/null 2>&1
podman volume rm "$run-data" >/dev/null
say "image: read-only, uid 10001, healthy, quick start, restart, volume modes: ok"

# --- the compose stack -------------------------------------------------------------------
pw="pw-$RANDOM$RANDOM"
db_pw=$pw
cport=$(free_port)
pc() {
  POSTGRES_PASSWORD="$db_pw" COFFER_PORT="$cport" COFFER_TEST_IMAGE="$img" \
    COFFER_TEST_POSTGRES_IMAGE="$pgimg" "$pc_bin" -p "$run" \
    -f "$root/docker-compose.yml" -f "$root/scripts/image-test/compose.test.yml" "$@"
}
service_container() {
  podman ps -aq --filter "label=com.docker.compose.project=$run" \
    --filter "label=com.docker.compose.service=$1" | head -1
}
stack_up() {
  pc up -d --no-build >"$tmp/up.log" 2>&1 || {
    cat "$tmp/up.log" >&2
    fail "podman-compose up failed"
  }
  pg=$(service_container postgres)
  srv=$(service_container coffer-server)
  [ -n "$pg" ] && [ -n "$srv" ] || fail "podman-compose up did not create both services"
}
# The compose file's `cli` service (its stderr only shown when it fails).
ccli() {
  pc --profile cli run --rm -T cli "$@" 2>"$tmp/cli.err" || {
    echo "test-image: FAILED: compose: coffer $*:" >&2
    grep -v 'systemd connection' "$tmp/cli.err" >&2
    server_logs
    return 1
  }
}
touch "$tmp/compose-used"
stack_up
wait_healthy "$pg"
wait_healthy "$srv"
curl -fsS "http://127.0.0.1:$cport/readyz" >/dev/null || fail "compose: /readyz not answered on 127.0.0.1:$cport"
# The README's walk-through: the CLI container reaches coffer-server by its service name.
want=$(cat deploy/compose/.env.example)
ccli admin --key /var/lib/coffer/admin.key set-resource default/test/key1 --file /work/.env.example >/dev/null
ccli admin --key /var/lib/coffer/admin.key set-resource-policy --allow-all >/dev/null
got=$(ccli get-resource default/test/key1)
[ "$got" = "$want" ] || fail "compose: get-resource printed '$got'"
# The resource is in PostgreSQL (sealed), not in a SQLite file beside the keys.
rows=$(podman exec "$pg" psql -U coffer -d coffer -tAc "SELECT path FROM resources")
[ "$rows" = default/test/key1 ] || fail "compose: resources in PostgreSQL: '$rows'"
if podman exec "$srv" test -e /var/lib/coffer/coffer.db; then fail "compose: coffer-server made a SQLite file"; fi

pc down -t 10 >/dev/null 2>&1
stack_up
wait_healthy "$pg"
wait_healthy "$srv"
got=$(ccli get-resource default/test/key1)
[ "$got" = "$want" ] || fail "compose: after down + up get-resource printed '$got'"

# The database keeps the password it was initialised with; a different one in the
# environment must stop coffer-server with a message that says so.
pc down -t 10 >/dev/null 2>&1
db_pw="wrong-$pw"
stack_up
wait_healthy "$pg"
for _ in $(seq 1 60); do
  grep -q 'password authentication failed for user "coffer"' <(podman logs "$srv" 2>&1) && break
  sleep 1
done
msg=$(podman logs "$srv" 2>&1 | grep -m1 -i -B2 -A2 'password authentication failed' || true)
[ -n "$msg" ] || {
  podman logs --tail 20 "$srv" >&2
  fail "compose: a wrong database password gave no 'password authentication failed' message"
}
if podman healthcheck run "$srv" >/dev/null 2>&1; then fail "compose: coffer-server healthy with a wrong database password"; fi
grep -q 'opening database' <<<"$msg" || fail "compose: wrong password message does not say what failed: $msg"
grep -q "$db_pw" <(podman logs "$srv" 2>&1) && fail "compose: the database password appears in coffer-server's log"
pc down -v -t 0 >/dev/null 2>&1
rm -f "$tmp/compose-used"
say "compose: postgres + coffer-server healthy, CLI handshake, down + up keeps data, wrong password refused: ok"
