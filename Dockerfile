# syntax=docker/dockerfile:1
# coffer-server and the coffer CLI in a small non-root runtime image.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p coffer-server -p coffer \
 && strip target/release/coffer-server target/release/coffer

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/coffer --shell /usr/sbin/nologin coffer \
 && mkdir -p /var/lib/coffer /etc/coffer \
 && chown coffer:coffer /var/lib/coffer
COPY --from=build /src/target/release/coffer-server /src/target/release/coffer /usr/local/bin/
COPY coffer-server.example.toml /etc/coffer/coffer-server.example.toml
USER 10001:10001
ENV COFFER_DATA_DIR=/var/lib/coffer
VOLUME ["/var/lib/coffer"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["curl", "-fsS", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["coffer-server"]
CMD ["--config", "/etc/coffer/coffer-server.toml"]
