# syntax=docker/dockerfile:1
# Chatgowa, headless: the relay without any GUI library, as a non-root user on a distroless base.
#
#   docker build -t chatgowa .
#   docker compose up -d            (see docker-compose.yml)

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src-tauri src-tauri
COPY migrations migrations
COPY ui ui
# The manifest names the test target's files.
COPY tests tests
# The headless build: `--no-default-features` leaves out the desktop app (Tauri, GTK, WebKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release --no-default-features --bin chatgowa \
    && mkdir -p /out/prisma \
    && cp target/release/chatgowa /out/chatgowa

# glibc, libgcc and CA certificates, no shell, user "nonroot" (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
WORKDIR /app
COPY --from=build /out/chatgowa /app/chatgowa
# The database directory, owned by the app's user so that a new volume mounted here is writable.
COPY --from=build --chown=65532:65532 /out/prisma /app/prisma
USER 65532:65532
# The TypeScript version's layout: its named volume at /app/prisma keeps working unchanged.
ENV DATABASE_URL=file:/app/prisma/dev.db \
    PORT=3000 \
    CHATGOWA_BIND=0.0.0.0
EXPOSE 3000
# On SIGTERM the relay stops accepting webhooks, lets attempts in flight finish and be recorded (at most 5 s,
# then they are recorded as interrupted and retried after the restart) and exits: within Docker's 10 s grace.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/app/chatgowa", "healthcheck"]
ENTRYPOINT ["/app/chatgowa"]
CMD ["--server"]
