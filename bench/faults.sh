#!/usr/bin/env bash
# The fault campaign at full size (bench/README.md, "Fault campaign"): the code of
# tests/fault_campaign/ (which `cargo test` runs small) on 300 people and 30 spaces, with
# 20 SIGKILLs, a 100 s Synapse outage, a kube-apiserver restart on the same etcd data and
# every eXo fault mode. Takes 10-20 min on the test platform (tests/platform.sh); prints the
# figures and writes them to target/fault-campaign.json. Any FAULT_* variable set before
# overrides its default (FAULT_SEED=<n> replays a run's random choices).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export EXO_MATRIX_CACHE=${EXO_MATRIX_CACHE:-$HOME/.cache/exo-matrix-operator}
export FAULT_USERS=${FAULT_USERS:-300}
export FAULT_SPACES=${FAULT_SPACES:-30}
export FAULT_MEMBERS_MIN=${FAULT_MEMBERS_MIN:-10}
export FAULT_MEMBERS_MAX=${FAULT_MEMBERS_MAX:-40}
export FAULT_KILLS=${FAULT_KILLS:-20}
# Longer than a failure needs to be named as lasting (the operator's default, 60 s) plus the longest
# retry wait (30 s).
export FAULT_SYNAPSE_DOWN=${FAULT_SYNAPSE_DOWN:-100}
export FAULT_LASTING=${FAULT_LASTING:-60}
export FAULT_APISERVER_DOWN=${FAULT_APISERVER_DOWN:-10}
export FAULT_EXO_SECS=${FAULT_EXO_SECS:-25}
export FAULT_INTERVAL=${FAULT_INTERVAL:-10}
export FAULT_ALL_GARBAGE=${FAULT_ALL_GARBAGE:-true}
export FAULT_TIMEOUT=${FAULT_TIMEOUT:-900}
exec cargo test --test fault_campaign -- --nocapture
