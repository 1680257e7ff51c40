#!/usr/bin/env bash
# Builds the operator's container image without a container engine or a
# registry: a static (musl) release binary in a `FROM scratch` OCI image layout.
#   image/build.sh [OUT_DIR]   (default target/image/oci; prints the manifest digest)
# The binary resolves names with musl's own resolver, which reads /etc/hosts and
# /etc/resolv.conf (Kubernetes mounts both into every container): no NSS needed.
# TLS roots for Synapse are compiled in (reqwest's webpki roots); the API server's
# CA comes from the ServiceAccount mount. Load the result with e.g.
#   skopeo copy oci:target/image/oci:<tag> docker://<registry>/exo-matrix-operator:<tag>
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-musl
out=${1:-target/image/oci}
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target" >&2
fi
# ring's C parts need a musl C compiler (Debian: musl-tools).
command -v musl-gcc >/dev/null || { echo "image/build.sh: musl-gcc missing (apt-get install musl-tools)" >&2; exit 1; }
# Run from `cargo test` (tests/image.rs) the environment carries the test's CARGO_MANIFEST_DIR, CARGO_PKG_* ...;
# ring's build script watches CARGO_MANIFEST_DIR, so they would rebuild everything each time: build as a shell does.
for var in $(compgen -e | grep -E '^CARGO_(MANIFEST_|PKG_|CRATE_|BIN_|PRIMARY_|TARGET_TMPDIR)'); do unset "$var"; done
cargo build --release --locked --target "$target" --bin exo-matrix-operator >&2
bin=${CARGO_TARGET_DIR:-target}/$target/release/exo-matrix-operator
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
python3 image/oci.py --binary "$bin" --out "$out" --tag "$version"
