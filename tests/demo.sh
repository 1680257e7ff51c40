#!/usr/bin/env bash
# The operator's main job, end to end, on the local platform: a real
# kube-apiserver and a real Synapse, the CRDs and the example objects applied,
# the operator running against them, and the result shown.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

tests/platform.sh up
STATE=${EXO_MATRIX_PLATFORM_DIR:-$ROOT/target/platform}
# shellcheck disable=SC1091
source "$STATE/env"
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

LOG=$STATE/demo-operator.log
"$BIN" run --credentials-secret "$NS/matrix-credentials" --namespace "$NS" >"$LOG" 2>&1 &
OPERATOR=$!
trap 'kill $OPERATOR 2>/dev/null || true' EXIT
echo "[demo] operator running (pid $OPERATOR, log $LOG); waiting for users and rooms"
"$KUBECTL" wait -n "$NS" --for=condition=Ready --timeout=60s mxu --all >/dev/null \
  || { tail -20 "$LOG"; exit 1; }
"$KUBECTL" wait -n "$NS" --for=condition=Ready --timeout=60s srl --all >/dev/null \
  || { tail -20 "$LOG"; exit 1; }

echo
"$KUBECTL" get srl,mxu -n "$NS"
echo
echo "[demo] the rooms, as Synapse itself shows them:"
TOKEN=$("$KUBECTL" -n "$NS" get secret matrix-credentials-operator-token -o jsonpath='{.data.accessToken}' | base64 -d)
ROOMS=$("$KUBECTL" get srl -n "$NS" -o jsonpath='{range .items[*]}{.status.roomId}{"\n"}{end}')
python3 - "$SYNAPSE_URL" "$TOKEN" $ROOMS <<'PY'
import json, sys, urllib.parse, urllib.request
url, token, rooms = sys.argv[1], sys.argv[2], sys.argv[3:]
def get(path):
    req = urllib.request.Request(url + path, headers={"Authorization": "Bearer " + token})
    return json.load(urllib.request.urlopen(req))
for room in rooms:
    r = urllib.parse.quote(room, safe="")
    details = get(f"/_synapse/admin/v1/rooms/{r}")
    members = get(f"/_synapse/admin/v1/rooms/{r}/members")["members"]
    levels = next(e["content"] for e in get(f"/_synapse/admin/v1/rooms/{r}/state")["state"] if e["type"] == "m.room.power_levels")
    print(f"  {details['name']!r} {details['canonical_alias']} ({room}, room version {details['version']})")
    for m in sorted(members):
        print(f"    {m}  power {levels.get('users', {}).get(m, 'creator' if m == details['creator'] else levels.get('users_default', 0))}")
PY
