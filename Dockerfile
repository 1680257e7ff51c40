# The operator's image: a static (musl) binary in an empty image, run as a
# numeric non-root uid (the chart's runAsNonRoot needs one). image/build.sh
# builds the same files and config without an engine or registry, and
# tests/image.rs checks that this file still declares what it builds.
# Names resolve through musl's own resolver (/etc/hosts, /etc/resolv.conf, both
# mounted by Kubernetes); TLS roots for Synapse are compiled in.
FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin exo-matrix-operator

FROM scratch
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/exo-matrix-operator /exo-matrix-operator
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/exo-matrix-operator"]
CMD ["run"]
