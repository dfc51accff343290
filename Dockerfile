# Multi-stage build: compile with the Rust toolchain, ship a slim Debian image.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
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
# SMTP (the MX for report mailboxes) and HTTP (dashboard, API, TLS-RPT POST).
EXPOSE 2525 8080
ENTRYPOINT ["/usr/local/bin/dmarcd"]
CMD ["parse", "--help"]
