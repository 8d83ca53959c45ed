# unisender-local in a container: `docker build -t unisender-local .` then
# `docker run -p 8080:8080 -v unisender-data:/data -e UNISENDER_LOCAL_ADMIN_TOKEN=secret unisender-local`.
# Inside, the server listens on 0.0.0.0:8080 and keeps its database in the /data volume.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin unisender-local \
    && strip target/release/unisender-local

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin unisender \
    && mkdir -p /data \
    && chown unisender /data
COPY --from=build /src/target/release/unisender-local /usr/local/bin/unisender-local
USER 10001
VOLUME ["/data"]
EXPOSE 8080
ENV UNISENDER_LOCAL_DB=/data/unisender-local.db \
    UNISENDER_LOCAL_LISTEN=0.0.0.0:8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s \
    CMD ["unisender-local", "health", "--url", "http://127.0.0.1:8080"]
ENTRYPOINT ["unisender-local"]
CMD ["serve"]
