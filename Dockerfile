# syntax=docker/dockerfile:1
# coffer-server and the coffer CLI in a small non-root runtime image.
#
# `docker build .` builds both binaries in the Rust image and copies them into the runtime
# image (target `runtime`, the default). The base images are build arguments only so that a
# machine without access to an image registry can substitute local copies; their defaults are
# the public images. Target `prebuilt` is the same runtime image with binaries built outside
# (see README "Container image"): `--target prebuilt`, with `bin/coffer-server` and
# `bin/coffer` in the build context (glibc no newer than the runtime base's).
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p coffer-server -p coffer \
 && strip target/release/coffer-server target/release/coffer

FROM ${RUNTIME_IMAGE} AS runtime-base
# User and group 10001 (the USER below, and the chart's runAsUser / runAsGroup / fsGroup).
# /var/lib/coffer is mode 0700 like a data directory the server creates itself; a new volume
# mounted there takes this owner and mode.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 coffer \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/coffer --shell /usr/sbin/nologin coffer \
 && mkdir -p /var/lib/coffer /etc/coffer \
 && chown coffer:coffer /var/lib/coffer \
 && chmod 0700 /var/lib/coffer
COPY coffer-server.example.toml /etc/coffer/coffer-server.example.toml
USER 10001:10001
ENV COFFER_DATA_DIR=/var/lib/coffer
VOLUME ["/var/lib/coffer"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["curl", "-fsS", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["coffer-server"]
CMD ["--config", "/etc/coffer/coffer-server.toml"]

# Binaries built outside the image (scripts/test-image.sh puts them in the context's bin/).
FROM runtime-base AS prebuilt
COPY bin/coffer-server bin/coffer /usr/local/bin/

# The default target: binaries from the build stage.
FROM runtime-base AS runtime
COPY --from=build /src/target/release/coffer-server /src/target/release/coffer /usr/local/bin/
