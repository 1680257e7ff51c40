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

echo "[demo] building the operator"
cargo build --quiet --bin exo-matrix-operator
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/exo-matrix-operator

"$KUBECTL" apply --server-side --force-conflicts -f crds/ >/dev/null
"$KUBECTL" wait --for=condition=Established --timeout=60s -f crds/ >/dev/null
"$KUBECTL" create namespace "$NS" --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
# Only the shared secret: the operator registers its own admin account with it.
"$KUBECTL" -n "$NS" create secret generic matrix-credentials \
  --from-literal=sharedSecret="$SYNAPSE_SHARED_SECRET" --from-literal=serverUrl="$SYNAPSE_URL" \
  --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
"$KUBECTL" apply -n "$NS" -k deploy/examples

LOG=$ROOT/target/platform/demo-operator.log
"$BIN" run --credentials-secret "$NS/matrix-credentials" --namespace "$NS" >"$LOG" 2>&1 &
OPERATOR=$!
trap 'kill $OPERATOR 2>/dev/null || true' EXIT
echo "[demo] operator running (pid $OPERATOR, log $LOG); waiting for the users"
"$KUBECTL" wait -n "$NS" --for=condition=Ready --timeout=60s mxu --all >/dev/null \
  || { tail -20 "$LOG"; exit 1; }

echo
"$KUBECTL" get srl,mxu -n "$NS"
echo
echo "[demo] Synapse's view of mary:"
TOKEN=$("$KUBECTL" -n "$NS" get secret matrix-credentials-operator-token -o jsonpath='{.data.accessToken}' | base64 -d)
python3 - "$SYNAPSE_URL" "$TOKEN" <<'PY'
import json, sys, urllib.request
url, token = sys.argv[1], sys.argv[2]
req = urllib.request.Request(url + "/_synapse/admin/v2/users/%40mary%3Aexo.test", headers={"Authorization": "Bearer " + token})
u = json.load(urllib.request.urlopen(req))
print(f"  {u['name']}  displayname={u['displayname']!r}  emails={[t['address'] for t in u['threepids']]}  deactivated={u['deactivated']}")
PY
