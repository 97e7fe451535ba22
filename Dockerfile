# syntax=docker/dockerfile:1
# ecr-guard container image: the release binary on distroless/cc, nothing else.
#
#   docker build -t ghcr.io/ecr-guard/ecr-guard:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 -t ... --push .
#
# Not built by `make test` (the development machines have no Docker engine).
# Pin both base images by digest in the release pipeline.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Sources only (see .dockerignore); --locked keeps the build to Cargo.lock.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin ecr-guard \
 && install -D -m 0755 target/release/ecr-guard /out/ecr-guard

# glibc, libgcc and CA certificates; no shell, no package manager. The nonroot
# variant runs as UID/GID 65532, which the chart's securityContext also sets.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="ecr-guard" \
      org.opencontainers.image.description="Kubernetes admission webhook that checks how the ECR repositories behind images are encrypted" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/ecr-guard/ecr-guard"
COPY --from=build /out/ecr-guard /ecr-guard
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/ecr-guard"]
CMD ["serve"]
