#!/usr/bin/env bash
# Starts (or stops) the engines of the shared backend on this machine:
# PostgreSQL (Debian's package) on loopback with a generated password, and
# Milvus standalone (PyPI milvus==2.3.5) fenced in a network namespace of its
# own: none of its ports (the management port 9091, etcd, the coordinators)
# can be reached from outside it. Its proxy port, which takes the generated
# root password, is the only way in: forwarded to 127.0.0.1 through a Unix
# socket only this user can open. Data, passwords, logs and the ports live
# in DIR (default .cluster/, git-ignored); `up` prints the settings as
# `export NAME=VALUE` lines:
#   eval "$(./scripts/cluster.sh up)"     # KNOCKOFF_STORE, KNOCKOFF_VECTORS
#   ./target/release/knockoff serve       # now a replica of the shared catalog
#   ./scripts/cluster.sh down             # stops both, keeps the data
# `up` again (after `down`, or after an engine died) starts what is not
# answering on the same ports, after ending what is left of it.
# ./scripts/test.sh uses it for the shared backend's tests; scripts/bench_engines.sh
# measures the engines.
set -euo pipefail
cd "$(dirname "$0")/.."
CMD=${1:-}; DIR=$(realpath -m "${2:-.cluster}")
VENV=$PWD/.cache/engines-venv
log() { echo "[cluster] $*" >&2; }
fail() { echo "[cluster] $*" >&2; exit 1; }
trap 'echo "[cluster] $CMD failed at scripts/cluster.sh line $LINENO (the message above says why)" >&2' ERR
ROOT=0; [ "$(id -u)" = 0 ] && ROOT=1
as_pg() { if [ $ROOT = 1 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(18))'; }
open_port() { python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 1)" 2>/dev/null; }

install_engines() {
  local need=()
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
  command -v socat >/dev/null || need+=(socat)
  command -v ip >/dev/null || need+=(iproute2)
  if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]} from Debian's packages"
    local sudo=""; [ $ROOT = 1 ] || sudo=sudo
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null \
      || fail "could not install ${need[*]} with apt-get"
  fi
  if [ ! -x "$VENV/bin/milvus-server" ] || ! "$VENV/bin/python" -c 'import pymilvus, psycopg, numpy' 2>/dev/null; then
    log "installing milvus 2.3.5, pymilvus 2.3.7 and psycopg into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "milvus==2.3.5" "pymilvus==2.3.7" "marshmallow<4" "psycopg[binary]>=3.1,<3.3" "numpy<2.3" "setuptools<75"
  fi
}

# PostgreSQL's data folder. Run as root, the server runs as `postgres`, which
# may not enter DIR (a clone under /root, or in a private folder): its data
# then lives under postgres's home, one folder per DIR, and DIR/pg links to it.
pg_data() {
  if [ -L "$DIR/pg" ]; then
    readlink -f "$DIR/pg"
  elif [ -f "$DIR/pg/PG_VERSION" ]; then
    echo "$DIR/pg"   # created inside DIR before
  elif [ $ROOT = 1 ]; then
    echo "/var/lib/postgresql/knockoff-$(echo -n "$DIR" | sha256sum | cut -c1-12)"
  else
    echo "$DIR/pg"
  fi
}

pg_up() {
  local pgbin data; pgbin=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)"); data=$(pg_data)
  if [ -f "$data/PG_VERSION" ] && { [ ! -f "$DIR/pg-password" ] || [ ! -f "$DIR/pg-port" ]; }; then
    # Left by an earlier DIR of the same path that was deleted (a re-clone): its password
    # went with it, so the data cannot be used. Kept aside once, never mixed in.
    log "PostgreSQL data at $data belongs to a deleted $DIR (no password or port file): moving it to $data.orphan"
    as_pg "$pgbin/pg_ctl" -D "$data" stop -m fast >/dev/null 2>&1 || true
    rm -rf "$data.orphan"; mv "$data" "$data.orphan"
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    mkdir -p "$data"; chmod 700 "$data"
    [ -f "$DIR/pg-password" ] || { secret > "$DIR/pg-password"; chmod 600 "$DIR/pg-password"; }
    [ -f "$DIR/pg-port" ] || free_port > "$DIR/pg-port"
    local pw="$data.pw"; cp "$DIR/pg-password" "$pw"; chmod 600 "$pw"
    if [ $ROOT = 1 ]; then chown postgres "$data" "$pw"; ln -sfn "$data" "$DIR/pg"; fi
    as_pg "$pgbin/initdb" -D "$data" -U knockoff -A scram-sha-256 --pwfile="$pw" > "$DIR/pg-initdb.log" 2>&1 \
      || { rm -f "$pw"; fail "PostgreSQL could not create its data folder: see $DIR/pg-initdb.log"; }
    rm -f "$pw"
  fi
  local port; port=$(cat "$DIR/pg-port")
  if ! open_port "$port"; then
    # A server that died leaves its pid file; pg_ctl starts over it when no such process runs.
    as_pg "$pgbin/pg_ctl" -D "$data" -l "$data/server.log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $data" start >/dev/null 2>&1 \
      || fail "PostgreSQL did not start: see $data/server.log"
    log "PostgreSQL on 127.0.0.1:$port (password only)"
  fi
  PGPASSWORD=$(cat "$DIR/pg-password") psql -h 127.0.0.1 -p "$port" -U knockoff -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'knockoff'" | grep -q 1 \
    || PGPASSWORD=$(cat "$DIR/pg-password") psql -h 127.0.0.1 -p "$port" -U knockoff -d postgres -qc "CREATE DATABASE knockoff"
  echo "export KNOCKOFF_STORE=postgres://knockoff:$(cat "$DIR/pg-password")@127.0.0.1:$port/knockoff"
}

# Ends whatever is left of a Milvus of this DIR (the fence, the server, the forwarders).
milvus_stop() {
  local pid
  for f in "$DIR/milvus.pid" "$DIR/milvus-forward.pid"; do
    if [ -f "$f" ]; then pid=$(cat "$f"); kill "$pid" 2>/dev/null || true; rm -f "$f"; fi
  done
  pkill -f "$DIR/milvus/bin/milvus" 2>/dev/null || true
  pkill -f "UNIX-LISTEN:$DIR/milvus.sock" 2>/dev/null || true
  pkill -f "UNIX-CONNECT:$DIR/milvus.sock" 2>/dev/null || true
  for _ in $(seq 1 30); do pgrep -f "$DIR/milvus/bin/milvus" >/dev/null || break; sleep 1; done
  pkill -9 -f "$DIR/milvus/bin/milvus" 2>/dev/null || true
  rm -f "$DIR/milvus.sock"
}

# Whether Milvus answers on the forwarded port with its password (or, before it is set, the default one).
milvus_answers() {
  local pw=Milvus; [ -f "$DIR/milvus-password" ] && pw=$(cat "$DIR/milvus-password")
  python3 - "$1" "$pw" <<'PYEOF' 2>/dev/null
import json, sys, urllib.request
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/v1/vector/collections", headers={"Authorization": f"Bearer root:{sys.argv[2]}"})
sys.exit(0 if json.load(urllib.request.urlopen(req, timeout=3)).get("code") == 200 else 1)
PYEOF
}

# The fence: a network namespace (as root: `unshare --net`; otherwise inside a
# user namespace as well), its loopback up, Milvus and the inner forwarder in it.
fence() {
  if [ $ROOT = 1 ]; then echo "unshare --net"; else echo "unshare --user --map-root-user --net"; fi
}

milvus_up() {
  [ -f "$DIR/milvus-port" ] || free_port > "$DIR/milvus-port"
  local port; port=$(cat "$DIR/milvus-port")
  if milvus_answers "$port"; then
    echo "export KNOCKOFF_VECTORS=milvus://root:$(cat "$DIR/milvus-password")@127.0.0.1:$port"
    return
  fi
  milvus_stop
  $(fence) true 2>/dev/null || fail "Milvus is not started: it must run fenced in a network namespace of its own (its management port 9091 and etcd answer without a password), and this machine refuses one ($(fence))"
  mkdir -p "$DIR/milvus"
  # Inside: bring the loopback up, forward the Unix socket to the proxy, run Milvus (it binds its fixed ports in here).
  nohup $(fence) sh -c "ip link set lo up && umask 077 && \
    (socat UNIX-LISTEN:$DIR/milvus.sock,fork,mode=600 TCP:127.0.0.1:19530,nodelay &) && \
    exec '$VENV/bin/milvus-server' --data '$DIR/milvus' --proxy-port 19530 --authorization-enabled true" \
    > "$DIR/milvus.log" 2>&1 &
  echo $! > "$DIR/milvus.pid"
  # Outside: the proxy port on loopback, nothing else.
  nohup socat "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork,backlog=128,nodelay" "UNIX-CONNECT:$DIR/milvus.sock" > "$DIR/milvus-forward.log" 2>&1 &
  echo $! > "$DIR/milvus-forward.pid"
  for i in $(seq 1 180); do
    milvus_answers "$port" && break
    kill -0 "$(cat "$DIR/milvus.pid")" 2>/dev/null || fail "Milvus did not start: see $DIR/milvus.log and $DIR/milvus/logs"
    [ "$i" = 180 ] && fail "Milvus did not answer in 180 s: see $DIR/milvus.log and $DIR/milvus/logs"
    sleep 1
  done
  log "Milvus on 127.0.0.1:$port (fenced: only its proxy port, with the password)"
  if [ ! -f "$DIR/milvus-password" ]; then
    secret > "$DIR/milvus-password.new"; chmod 600 "$DIR/milvus-password.new"
    "$VENV/bin/python" - "$port" "$DIR/milvus-password.new" <<'PYEOF'
import sys
from pymilvus import connections, utility
port, path = sys.argv[1], sys.argv[2]
connections.connect(uri=f"http://127.0.0.1:{port}", user="root", password="Milvus")
utility.reset_password("root", "Milvus", open(path).read().strip())
PYEOF
    mv "$DIR/milvus-password.new" "$DIR/milvus-password"
  fi
  echo "export KNOCKOFF_VECTORS=milvus://root:$(cat "$DIR/milvus-password")@127.0.0.1:$port"
}

down() {
  local pgbin data; pgbin=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1)"); data=$(pg_data)
  if [ -f "$data/postmaster.pid" ]; then
    as_pg "$pgbin/pg_ctl" -D "$data" -m fast -w stop >/dev/null && log "PostgreSQL stopped"
  fi
  if [ -f "$DIR/milvus.pid" ] || pgrep -f "$DIR/milvus/bin/milvus" >/dev/null; then
    milvus_stop
    log "Milvus stopped"
  fi
}

case "$CMD" in
  up)
    install_engines
    mkdir -p "$DIR"
    # Private, unless PostgreSQL keeps its data inside it from before (then `postgres` must pass through).
    if [ -d "$DIR/pg" ] && [ ! -L "$DIR/pg" ] && [ $ROOT = 1 ]; then chmod 711 "$DIR"; else chmod 700 "$DIR"; fi
    pg_up
    milvus_up
    ;;
  down) down ;;
  *) echo "usage: $0 up|down [DIR]" >&2; exit 2 ;;
esac
