#!/usr/bin/env bash
# The test platform: a real kube-apiserver over embedded etcd, a real Synapse,
# and the helm/kubectl CLIs, all on loopback. One way to start it, used by the
# tests, the demo, .ci/run and people.
#
#   tests/platform.sh up       start what is not running, write target/platform/env
#   tests/platform.sh down     stop everything this script started
#   tests/platform.sh status   say what runs
#   tests/platform.sh tools    only build/fetch the binaries and the Synapse venv
#   tests/platform.sh synapse  start only Synapse (bench/: contenders that need no API server)
#   tests/platform.sh restart-apiserver [SECONDS]
#                              stop the kube-apiserver (and its etcd), wait SECONDS (default 0), start it
#                              again on the same etcd data, port and certificates: every object survives
#
# EXO_MATRIX_PLATFORM_DIR puts the state elsewhere (one platform per benchmark contender);
# EXO_MATRIX_BCRYPT_ROUNDS=default gives a new Synapse production password hashing (the tests use 4).
#
# Heavy builds are cached in $EXO_MATRIX_CACHE (default ~/.cache/exo-matrix-operator)
# and rebuilt only when their inputs change.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${EXO_MATRIX_PLATFORM_DIR:-$ROOT/target/platform}
CACHE=${EXO_MATRIX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/exo-matrix-operator}
BIN=$CACHE/bin
SYNAPSE_VERSION=1.163.2
HELM_VERSION=v4.3.1
KUBE_SCORE_VERSION=v1.20.0
VENV=$CACHE/synapse-venv-$SYNAPSE_VERSION
SERVER_NAME=exo.test
# A known secret: the platform is a loopback test bed, never a deployment.
SHARED_SECRET=platform-shared-secret-not-for-production

log() { printf '[platform] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- tools

k8s_version() {
  awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "$ROOT/tests/control-plane/go.mod"
}

# The control plane's binary is named after its sources, so that worktrees with
# different versions of tests/control-plane sharing one cache do not rebuild it
# in turn; kubectl depends only on the module versions.
control_plane_key() {
  local src=$ROOT/tests/control-plane
  cat "$src"/go.mod "$src"/go.sum "$src"/*.go | sha256sum | cut -c1-16
}

build_kube_tools() {
  local src=$ROOT/tests/control-plane
  local key modkey
  key=$(control_plane_key)
  modkey=$(cat "$src"/go.mod "$src"/go.sum | sha256sum | cut -c1-16)
  if [[ -x $BIN/control-plane-$key && -x $BIN/kubectl && -f $BIN/.kubectl.$modkey ]]; then
    return
  fi
  command -v go >/dev/null || die "Go is required to build the control plane (https://go.dev/dl)"
  local version major minor ldflags
  version=$(k8s_version)
  major=${version#v}; major=${major%%.*}
  minor=${version#v*.}; minor=${minor%%.*}
  # What `kubectl version` and /version report; a plain `go build` leaves v0.0.0-master.
  ldflags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  mkdir -p "$BIN"
  if [[ ! -x $BIN/control-plane-$key ]]; then
    log "building kube-apiserver $version (control-plane); first time takes a few minutes"
    (cd "$src" && GOFLAGS=-mod=mod go build -ldflags "$ldflags" -o "$BIN/control-plane-$key.tmp" .)
    mv "$BIN/control-plane-$key.tmp" "$BIN/control-plane-$key"
  fi
  if [[ ! -x $BIN/kubectl || ! -f $BIN/.kubectl.$modkey ]]; then
    log "building kubectl $version"
    (cd "$src" && GOFLAGS=-mod=mod go build -ldflags "$ldflags" -o "$BIN/kubectl.tmp" k8s.io/kubernetes/cmd/kubectl)
    mv "$BIN/kubectl.tmp" "$BIN/kubectl"
    rm -f "$BIN"/.kubectl.*
    touch "$BIN/.kubectl.$modkey"
  fi
}

build_helm() {
  if [[ -x $BIN/helm && -f $BIN/.helm-$HELM_VERSION ]]; then
    return
  fi
  command -v go >/dev/null || die "Go is required to build helm"
  log "building helm $HELM_VERSION from its Go module"
  mkdir -p "$BIN"
  GOBIN=$BIN GOFLAGS=-mod=mod go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
  rm -f "$BIN"/.helm-*
  touch "$BIN/.helm-$HELM_VERSION"
}

# A small Go program of the test platform (tests/<name>, a module of its own so
# its dependencies do not meet the control plane's replace lines), rebuilt when
# its sources change.
build_go_tool() {
  local name=$1 src=$ROOT/tests/$1
  local key stamp
  key=$(cat "$src"/go.mod "$src"/go.sum "$src"/*.go | sha256sum | cut -c1-16)
  stamp=$BIN/.$name.$key
  if [[ -x $BIN/$name && -f $stamp ]]; then
    return
  fi
  command -v go >/dev/null || die "Go is required to build $name"
  log "building $name from tests/$name"
  mkdir -p "$BIN"
  (cd "$src" && GOFLAGS=-mod=mod go build -o "$BIN/$name.tmp" .)
  mv "$BIN/$name.tmp" "$BIN/$name"
  rm -f "$BIN/.$name".*
  touch "$stamp"
}

# kube-score lints the chart's rendered manifests (kube-linter's module is not
# served by the Go module proxy these machines reach).
build_kube_score() {
  if [[ -x $BIN/kube-score && -f $BIN/.kube-score-$KUBE_SCORE_VERSION ]]; then
    return
  fi
  command -v go >/dev/null || die "Go is required to build kube-score"
  log "building kube-score $KUBE_SCORE_VERSION from its Go module"
  mkdir -p "$BIN"
  GOBIN=$BIN GOFLAGS=-mod=mod go install "github.com/zegl/kube-score/cmd/kube-score@$KUBE_SCORE_VERSION"
  rm -f "$BIN"/.kube-score-*
  touch "$BIN/.kube-score-$KUBE_SCORE_VERSION"
}

install_synapse() {
  if [[ -x $VENV/bin/python ]] && "$VENV/bin/python" -c 'import synapse' 2>/dev/null \
    && [[ -f $VENV/.complete ]]; then
    return
  fi
  command -v python3 >/dev/null || die "python3 is required for Synapse"
  log "installing matrix-synapse $SYNAPSE_VERSION into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "matrix-synapse==$SYNAPSE_VERSION"
  touch "$VENV/.complete"
}

timed() {
  local started=$SECONDS
  "$@"
  log "$1: $((SECONDS - started)) s"
}

tools() {
  mkdir -p "$BIN"
  # One builder at a time per machine: parallel test runs share the cache.
  exec 8>"$CACHE/.tools.lock"
  flock 8
  timed build_kube_tools
  timed build_helm
  timed build_go_tool kstatus
  timed build_go_tool argocd-health
  timed build_kube_score
  timed install_synapse
  flock -u 8
}

# ---------------------------------------------------------------- processes

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

port_free() {
  # SO_REUSEADDR as Synapse itself binds: a just-stopped server's TIME_WAIT sockets do not count.
  python3 -c 'import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1",int(sys.argv[1])))' "$1" 2>/dev/null
}

# A pid file counts only if that process is alive and is the program we started.
running() {
  local name=$1 pid
  [[ -f $STATE/$name.pid ]] || return 1
  pid=$(cat "$STATE/$name.pid")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  grep -qa "$2" "/proc/$pid/cmdline" 2>/dev/null
}

stop() {
  local name=$1 pid
  [[ -f $STATE/$name.pid ]] || return 0
  pid=$(cat "$STATE/$name.pid")
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && grep -qa "$2" "/proc/$pid/cmdline" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    log "stopped $name (pid $pid)"
  fi
  rm -f "$STATE/$name.pid"
}

# start_control_plane [--keep-data --port PORT]: the flags restart it on its old data.
start_control_plane() {
  local dir=$STATE/kube
  if running control-plane "$dir" && [[ -f $dir/ready ]]; then
    return
  fi
  stop control-plane "$dir"
  mkdir -p "$dir"
  rm -f "$dir/ready"
  [[ $# -gt 0 ]] || : >"$STATE/control-plane.log"  # a fresh cluster, a fresh log; a restart appends
  # Background jobs of a non-interactive shell ignore SIGINT, so a Ctrl-C that
  # stops a test run leaves the platform up; the lock fds are closed so the
  # long-lived child does not hold the locks.
  "$BIN/control-plane-$(control_plane_key)" --dir "$dir" "$@" >>"$STATE/control-plane.log" 2>&1 </dev/null 8>&- 9>&- &
  echo $! >"$STATE/control-plane.pid"
  for _ in $(seq 1 240); do
    [[ -f $dir/ready ]] && { log "kube-apiserver ready at $(cat "$dir/ready")"; return; }
    kill -0 "$(cat "$STATE/control-plane.pid")" 2>/dev/null \
      || { tail -20 "$STATE/control-plane.log" >&2; die "control-plane exited (log: $STATE/control-plane.log)"; }
    sleep 0.25
  done
  die "kube-apiserver not ready after 60 s (log: $STATE/control-plane.log)"
}

# A control-plane restart as a cluster has one: the process stops (SIGTERM, as
# a static pod's kubelet does), and a new one serves the same etcd data on the
# same URL with the same certificates.
restart_apiserver() {
  local pause=${1:-0} dir=$STATE/kube url port
  tools
  exec 9>"$STATE/.lock"
  flock 9
  [[ -f $dir/ready ]] && running control-plane "$dir" || die "no kube-apiserver runs here to restart"
  url=$(cat "$dir/ready")
  port=${url##*:}
  stop control-plane "$dir"
  rm -f "$dir/ready"
  sleep "$pause"
  start_control_plane --keep-data --port "$port"
  write_env
  flock -u 9
}

synapse_config() {
  local data=$1 port=$2 smtp_port=$3
  (cd "$data" && "$VENV/bin/python" -m synapse.app.homeserver --generate-config \
    -H "$SERVER_NAME" --report-stats no -c "$data/homeserver.yaml" \
    --config-directory "$data" --data-directory "$data" >/dev/null)
  # The generated log config writes to the current directory; keep the log in $data.
  sed -i "s|filename: .*|filename: $data/homeserver.log|" "$data/$SERVER_NAME.log.config"
  local limit='{per_second: 10000, burst_count: 100000}'
  local rounds=${EXO_MATRIX_BCRYPT_ROUNDS:-4} bcrypt=""
  [[ $rounds == default ]] || bcrypt="bcrypt_rounds: $rounds"
  cat >"$data/platform.yaml" <<EOF
listeners:
  - {port: $port, bind_addresses: ['127.0.0.1'], type: http, tls: false, x_forwarded: false,
     resources: [{names: [client], compress: false}]}
public_baseurl: http://127.0.0.1:$port/
registration_shared_secret: "$SHARED_SECRET"
enable_registration: false
trusted_key_servers: []
suppress_key_server_warning: true
federation_domain_whitelist: []
report_stats: false
presence: {enabled: false}
$bcrypt
enable_3pid_changes: true
# Notification emails go to an SMTP sink a test starts on this port when it needs one.
email:
  smtp_host: 127.0.0.1
  smtp_port: $smtp_port
  force_tls: false
  require_transport_security: false
  enable_tls: false
  notif_from: "Matrix <noreply@$SERVER_NAME>"
  enable_notifs: true
  notif_for_new_users: true
  notif_delay_before_mail: 2s
  app_name: exo-matrix-test
rc_message: $limit
rc_registration: $limit
rc_login: {address: $limit, account: $limit, failed_attempts: $limit}
rc_joins: {local: $limit, remote: $limit}
rc_joins_per_room: $limit
rc_invites: {per_room: $limit, per_user: $limit, per_issuer: $limit}
rc_room_creation: $limit
rc_media_create: $limit
rc_3pid_validation: $limit
rc_admin_redaction: $limit
rc_profile: $limit
rc_user_directory: $limit
rc_delayed_event_mgmt: $limit
rc_presence: {per_user: $limit}
EOF
}

start_synapse() {
  local data=$STATE/synapse
  if running synapse "$data" && [[ -f $STATE/synapse.port ]]; then
    return
  fi
  stop synapse "$data"
  local port smtp_port
  # A Synapse that stopped (a test cutting it off, a crash) comes back with its
  # data and its URL; anything else starts a fresh homeserver.
  if [[ -f $data/platform.yaml && -f $STATE/synapse.port ]] && port_free "$(cat "$STATE/synapse.port")"; then
    port=$(cat "$STATE/synapse.port")
  else
    rm -rf "$data"
    mkdir -p "$data"
    port=$(free_port)
    smtp_port=$(free_port)
    synapse_config "$data" "$port" "$smtp_port"
    echo "$port" >"$STATE/synapse.port"
    echo "$smtp_port" >"$STATE/smtp.port"
  fi
  "$VENV/bin/python" -m synapse.app.homeserver \
    -c "$data/homeserver.yaml" -c "$data/platform.yaml" \
    >"$STATE/synapse.log" 2>&1 </dev/null 8>&- 9>&- &
  echo $! >"$STATE/synapse.pid"
  for _ in $(seq 1 240); do
    if "$VENV/bin/python" - "$port" <<'EOF' 2>/dev/null; then
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=1).read()
EOF
      log "Synapse $SYNAPSE_VERSION ready at http://127.0.0.1:$port"
      return
    fi
    kill -0 "$(cat "$STATE/synapse.pid")" 2>/dev/null \
      || { tail -20 "$STATE/synapse.log" >&2; die "Synapse exited (log: $STATE/synapse.log)"; }
    sleep 0.25
  done
  die "Synapse not ready after 60 s (log: $STATE/synapse.log)"
}

write_env() {
  local tmp=$STATE/env.tmp
  echo "# Written by tests/platform.sh up; source it to use the platform." >"$tmp"
  if [[ -f $STATE/kube/ready ]] && running control-plane "$STATE/kube"; then
    cat >>"$tmp" <<EOF
export KUBECONFIG=$STATE/kube/kubeconfig
export KUBE_APISERVER_URL=$(cat "$STATE/kube/ready")
export KUBE_VERSION=$(k8s_version)
EOF
  fi
  cat >>"$tmp" <<EOF
export SYNAPSE_URL=http://127.0.0.1:$(cat "$STATE/synapse.port")
export SYNAPSE_SERVER_NAME=$SERVER_NAME
export SYNAPSE_SHARED_SECRET=$SHARED_SECRET
export SYNAPSE_VERSION=$SYNAPSE_VERSION
export SYNAPSE_PID=$(cat "$STATE/synapse.pid")
export SYNAPSE_DATA=$STATE/synapse
export SYNAPSE_PYTHON=$VENV/bin/python
export SYNAPSE_SMTP_PORT=$(cat "$STATE/smtp.port")
export HELM=$BIN/helm
export KUBECTL=$BIN/kubectl
export KSTATUS=$BIN/kstatus
export ARGOCD_HEALTH=$BIN/argocd-health
export KUBE_SCORE=$BIN/kube-score
EOF
  mv "$tmp" "$STATE/env"
}

up() {
  tools
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock 9
  start_control_plane
  start_synapse
  write_env
  flock -u 9
  log "ready; source $STATE/env"
}

synapse_only() {
  tools
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock 9
  start_synapse
  write_env
  flock -u 9
  log "ready; source $STATE/env"
}

down() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock 9
  stop synapse "$STATE/synapse"
  stop control-plane "$STATE/kube"
  rm -rf "$STATE/env" "$STATE/synapse" "$STATE"/operator-*.log
}

status() {
  local rc=0
  if running control-plane "$STATE/kube"; then
    echo "kube-apiserver $(k8s_version): running, $(cat "$STATE/kube/ready" 2>/dev/null) (pid $(cat "$STATE/control-plane.pid"))"
  else
    echo "kube-apiserver: not running"; rc=1
  fi
  if running synapse "$STATE/synapse"; then
    echo "synapse $SYNAPSE_VERSION: running, http://127.0.0.1:$(cat "$STATE/synapse.port") (pid $(cat "$STATE/synapse.pid"))"
  else
    echo "synapse: not running"; rc=1
  fi
  [[ -f $STATE/env ]] && echo "env: $STATE/env"
  return $rc
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  tools) tools ;;
  synapse) synapse_only ;;
  restart-apiserver) restart_apiserver "${2:-0}" ;;
  *) echo "usage: $0 up|down|status|tools|synapse|restart-apiserver [SECONDS]" >&2; exit 2 ;;
esac
