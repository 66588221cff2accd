# syntax=docker/dockerfile:1
# tachyon's container image: one binary (masters, workers and the shell) plus the bin/
# scripts and conf/ templates, running as an unprivileged user.
#   docker build -t tachyon:0.1.0 .
#   docker run --rm tachyon:0.1.0 getConf
# The Kubernetes manifests in deploy/kubernetes/ use this image (see README, "Running on
# Kubernetes").

# Build stage: the Rust toolchain, only here.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY src ./src
COPY sim ./sim
RUN cargo build --release --locked --features s3,hdfs --bin tachyon \
 && strip target/release/tachyon

# Run stage: a slim Debian with the binary; no compiler, no shell tools beyond Debian's base.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 tachyon \
 && useradd --system --uid 10001 --gid tachyon --home-dir /opt/tachyon --shell /usr/sbin/nologin tachyon \
 && mkdir -p /opt/tachyon/logs /opt/tachyon/run /opt/tachyon/journal /opt/tachyon/underFSStorage /mnt/ramdisk \
 && chown -R tachyon:tachyon /opt/tachyon /mnt/ramdisk
COPY --from=build /src/target/release/tachyon /usr/local/bin/tachyon
COPY bin /opt/tachyon/bin
COPY conf /opt/tachyon/conf
ENV TACHYON_HOME=/opt/tachyon \
    TACHYON_BIN=/usr/local/bin/tachyon \
    TACHYON_RAM_FOLDER=/mnt/ramdisk
WORKDIR /opt/tachyon
USER 10001:10001
# master RPC, master web UI, worker RPC, worker data, worker web UI
EXPOSE 19998 19999 29998 29999 30000
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/tachyon"]
CMD ["master"]
