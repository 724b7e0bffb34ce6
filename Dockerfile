# syntax=docker/dockerfile:1
# The loyalty-node image: the node (`loyalty-node`), the operator's CLI (`loyalty`), and the
# entrypoint that initialises, publishes and pins on first start (deploy/entrypoint.sh).
# docker-compose.yml runs three of them as a federation; see README "Docker".

# Build stage: Rust 1.95, the toolchain the project is built and tested with (`rustc --version`),
# on the Debian release of the runtime stage, so the binaries find the same glibc and libstdc++.
FROM rust:1.95-bookworm AS build
# RocksDB's Rust bindings are generated with bindgen, which needs libclang; the etcd client of
# the standby mode (node/src/ha) is generated from etcd's .proto files by protoc.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libclang-dev protobuf-compiler \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p loyalty-node -p sdk --bin loyalty-node --bin loyalty \
    && mkdir -p /out \
    && cp target/release/loyalty-node target/release/loyalty /out/

# Runtime stage: the binaries need glibc, libstdc++ and libgcc_s (RocksDB is C++; lz4 is
# linked in statically); ca-certificates for partners reached over https.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libstdc++6 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 loyalty \
    && useradd --system --uid 10001 --gid loyalty --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin loyalty \
    && mkdir -p /data /federation \
    && chown loyalty:loyalty /data /federation
COPY --from=build /out/loyalty-node /out/loyalty /usr/local/bin/
COPY --chmod=0755 deploy/entrypoint.sh /usr/local/bin/loyalty-entrypoint
COPY --chmod=0755 deploy/healthcheck.sh /usr/local/bin/loyalty-healthcheck
USER loyalty
ENV LOYALTY_LISTEN=0.0.0.0:7700 \
    DEPLOY_DATA=/data \
    DEPLOY_FEDERATION=/federation
VOLUME ["/data"]
EXPOSE 7700
# start-period covers the first start's wait for the partners' keys (DEPLOY_PARTNER_WAIT_S).
HEALTHCHECK --interval=10s --timeout=5s --start-period=150s --retries=3 \
    CMD ["loyalty-healthcheck", "/readyz"]
ENTRYPOINT ["loyalty-entrypoint"]
