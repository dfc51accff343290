# Multi-stage build: compile with the Rust toolchain, ship a slim Debian image.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
# Templates are compiled into the binary (askama).
COPY templates ./templates
COPY benches ./benches
COPY examples ./examples
RUN cargo build --release --locked --bin dmarcd

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/dmarcd --create-home --uid 10001 dmarcd
COPY --from=build /src/target/release/dmarcd /usr/local/bin/dmarcd
COPY config.example.toml /etc/dmarcd/config.example.toml
USER dmarcd
WORKDIR /var/lib/dmarcd
# State (the SQLite database when DATABASE_URL is unset) lives in a volume.
ENV DMARCD_DATA_DIR=/var/lib/dmarcd/data \
    DMARCD_SMTP_LISTEN=0.0.0.0:2525 \
    DMARCD_WEB_LISTEN=0.0.0.0:8080 \
    DMARCD_LOG_FORMAT=json
VOLUME ["/var/lib/dmarcd/data"]
# SMTP (the MX for report mailboxes; map host port 25 to it). Listening on
# all addresses requires DMARCD_SMTP_RECIPIENTS, e.g.
#   docker run -e DMARCD_SMTP_RECIPIENTS=dmarc@example.com,@reports.example.com -p 25:2525 dmarcd
# Web: dashboard, /api/v1, TLS-RPT POSTs, /healthz, /readyz, /metrics. Put an
# HTTPS reverse proxy in front. The first start prints the admin password
# to the log (docker logs).
EXPOSE 2525 8080
ENTRYPOINT ["/usr/local/bin/dmarcd"]
CMD ["serve"]
