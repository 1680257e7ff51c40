#!/usr/bin/env bash
# The benchmark (bench/README.md): builds the operator and the bench driver in release mode, then runs
# every contender on a fresh platform under target/bench/. Arguments go to the driver, e.g.
#   bench/run.sh --scale 0.1                 # a quick smoke run of B50
#   bench/run.sh --scenario b10k --contenders operator,minimal
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export EXO_MATRIX_CACHE=${EXO_MATRIX_CACHE:-$HOME/.cache/exo-matrix-operator}
cargo build --release --quiet --bin exo-matrix-operator --example bench
exec target/release/examples/bench "$@"
