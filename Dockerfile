# A small static image running as non-root. There is no Docker engine on the
# build machines of this project, so CI does not build it; it is kept simple.
FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin exo-matrix-operator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/release/exo-matrix-operator /exo-matrix-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/exo-matrix-operator"]
CMD ["run"]
