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

# DEMO_EXO=1: also import spaces from the tests' fake eXo server through an ExoSource,
# grouped in a Matrix space of its own (the ExoSource's name: not the example's `intranet`).
if [[ ${DEMO_EXO:-0} == 1 ]]; then
  cargo build --quiet --example fake_exo
  EXO_LOG=$STATE/demo-fake-exo.log
  "${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples/fake_exo" >"$EXO_LOG" 2>&1 &
  FAKE_EXO=$!
  for _ in $(seq 1 50); do [[ -s $EXO_LOG ]] && break; sleep 0.1; done
  EXO_URL=$(head -1 "$EXO_LOG")
  echo "[demo] fake eXo at $EXO_URL"
  "$KUBECTL" -n "$NS" create secret generic exo-admin --type=kubernetes.io/basic-auth \
    --from-literal=username=root --from-literal=password=gtn --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
  "$KUBECTL" -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: exomatrix.dev/v1alpha1
kind: ExoSource
metadata: {name: exo}
spec: {url: "$EXO_URL", credentialsSecretRef: {name: exo-admin}, interval: 30s, matrixSpace: {displayName: eXo intranet}}
YAML
fi

LOG=$STATE/demo-operator.log
"$BIN" run --credentials-secret "$NS/matrix-credentials" --namespace "$NS" >"$LOG" 2>&1 &
OPERATOR=$!
trap 'kill $OPERATOR ${FAKE_EXO:-} 2>/dev/null || true' EXIT
echo "[demo] operator running (pid $OPERATOR, log $LOG); waiting for users and rooms"
# The ExoSource first: it writes more users, links and a space.
if [[ ${DEMO_EXO:-0} == 1 ]]; then
  "$KUBECTL" wait -n "$NS" --for=condition=Ready --timeout=60s exo/exo >/dev/null || { tail -20 "$LOG"; exit 1; }
fi
"$KUBECTL" wait -n "$NS" --for=condition=Ready --timeout=60s mxu --all >/dev/null \
  || { tail -20 "$LOG"; exit 1; }
"$KUBECTL" wait -n "$NS" --for=condition=Ready --timeout=60s srl --all >/dev/null \
  || { tail -20 "$LOG"; exit 1; }
"$KUBECTL" wait -n "$NS" --for=condition=Ready --timeout=60s mxs --all >/dev/null \
  || { tail -20 "$LOG"; exit 1; }
# Ready comes with the room; members join as their accounts become ready.
"$KUBECTL" wait -n "$NS" --for=jsonpath='{.status.pendingMemberCount}'=0 --timeout=30s srl --all >/dev/null || true
sleep 1

echo
if [[ ${DEMO_EXO:-0} == 1 ]]; then "$KUBECTL" get exo -n "$NS"; echo; fi
"$KUBECTL" get srl,mxu,mxs -n "$NS"
echo
echo "[demo] the spaces and rooms, as Synapse itself shows them:"
TOKEN=$("$KUBECTL" -n "$NS" get secret matrix-credentials-operator-token -o jsonpath='{.data.accessToken}' | base64 -d)
SPACES=$("$KUBECTL" get mxs -n "$NS" -o jsonpath='{range .items[*]}{.status.roomId}{"\n"}{end}')
ROOMS=$("$KUBECTL" get srl -n "$NS" -o jsonpath='{range .items[*]}{.status.roomId}{"\n"}{end}')
python3 - "$SYNAPSE_URL" "$TOKEN" "$SPACES" $ROOMS <<'PY'
import json, sys, urllib.parse, urllib.request
url, token, spaces, rooms = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4:]
def get(path):
    req = urllib.request.Request(url + path, headers={"Authorization": "Bearer " + token})
    return json.load(urllib.request.urlopen(req))
def name(room):
    return get(f"/_synapse/admin/v1/rooms/{urllib.parse.quote(room, safe='')}")["name"]
# A space as a Matrix client walks it: its children from the hierarchy API.
for space in spaces:
    s = urllib.parse.quote(space, safe="")
    members = get(f"/_synapse/admin/v1/rooms/{s}/members")["members"]
    children = [c["room_id"] for c in get(f"/_matrix/client/v1/rooms/{s}/hierarchy?max_depth=1")["rooms"][1:]]
    print(f"  space {name(space)!r} ({space}), members {', '.join(sorted(members))}")
    for child in sorted(children, key=name):
        print(f"    - {name(child)!r}")
for room in rooms:
    r = urllib.parse.quote(room, safe="")
    details = get(f"/_synapse/admin/v1/rooms/{r}")
    members = get(f"/_synapse/admin/v1/rooms/{r}/members")["members"]
    levels = next(e["content"] for e in get(f"/_synapse/admin/v1/rooms/{r}/state")["state"] if e["type"] == "m.room.power_levels")
    print(f"  {details['name']!r} {details['canonical_alias']} ({room}, room version {details['version']})")
    for m in sorted(members):
        print(f"    {m}  power {levels.get('users', {}).get(m, 'creator' if m == details['creator'] else levels.get('users_default', 0))}")
PY
