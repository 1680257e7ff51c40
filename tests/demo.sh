#!/usr/bin/env bash
# The operator's main job, end to end, on the local platform: a real
# kube-apiserver and a real Synapse, the CRDs and the example objects applied,
# the operator running against them, and the result shown.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

tests/platform.sh up
# shellcheck disable=SC1091
source target/platform/env
NS=${DEMO_NAMESPACE:-demo}

"$KUBECTL" apply --server-side --force-conflicts -f crds/ >/dev/null
"$KUBECTL" wait --for=condition=Established --timeout=60s -f crds/ >/dev/null
"$KUBECTL" create namespace "$NS" --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
"$KUBECTL" apply -n "$NS" -k deploy/examples

echo
"$KUBECTL" get srl,mxu -n "$NS"
