#!/usr/bin/env bash
# Starts (or stops) the engines of the shared backend on this machine:
# PostgreSQL (Debian's package) on loopback and Milvus standalone (PyPI
# milvus==2.3.5). Milvus listens on every interface, so it runs with its
# authorization on and a generated root password. Data, passwords and logs
# live in DIR (default .cluster/, git-ignored); `up` prints the settings as
# `export NAME=VALUE` lines:
#   eval "$(./scripts/cluster.sh up)"     # KNOCKOFF_STORE, KNOCKOFF_VECTORS
#   ./target/release/knockoff serve       # now a replica of the shared catalog
#   ./scripts/cluster.sh down             # stops both, keeps the data
# ./scripts/test.sh uses it for the shared backend's tests; scripts/bench_engines.sh
# measures the engines.
set -euo pipefail
cd "$(dirname "$0")/.."
CMD=${1:-}; DIR=$(realpath -m "${2:-.cluster}")
VENV=.cache/engines-venv
log() { echo "[cluster] $*" >&2; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(18))'; }
open_port() { python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 1)" 2>/dev/null; }

install() {
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    log "installing PostgreSQL from Debian's packages"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  if [ ! -x "$VENV/bin/milvus-server" ] || ! "$VENV/bin/python" -c 'import pymilvus, psycopg, numpy' 2>/dev/null; then
    log "installing milvus 2.3.5, pymilvus 2.3.7 and psycopg into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "milvus==2.3.5" "pymilvus==2.3.7" "marshmallow<4" "psycopg[binary]>=3.1,<3.3" "numpy<2.3" "setuptools<75"
  fi
}

pg_up() {
  local pgbin; pgbin=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
  if [ ! -f "$DIR/pg/PG_VERSION" ]; then
    mkdir -p "$DIR/pg" "$DIR/pgrun"; chmod 700 "$DIR/pg"
    secret > "$DIR/pg-password"; chmod 600 "$DIR/pg-password"; free_port > "$DIR/pg-port"
    cp "$DIR/pg-password" "$DIR/pgrun/pw"
    if [ "$(id -u)" = 0 ]; then chown postgres "$DIR/pg" "$DIR/pgrun" "$DIR/pgrun/pw"; fi
    as_pg "$pgbin/initdb" -D "$DIR/pg" -U knockoff -A scram-sha-256 --pwfile="$DIR/pgrun/pw" >/dev/null
    rm -f "$DIR/pgrun/pw"
  fi
  local port; port=$(cat "$DIR/pg-port")
  if ! open_port "$port"; then
    as_pg "$pgbin/pg_ctl" -D "$DIR/pg" -l "$DIR/pgrun/server.log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $DIR/pgrun" start >/dev/null
    log "PostgreSQL on 127.0.0.1:$port"
  fi
  PGPASSWORD=$(cat "$DIR/pg-password") psql -h 127.0.0.1 -p "$port" -U knockoff -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'knockoff'" | grep -q 1 \
    || PGPASSWORD=$(cat "$DIR/pg-password") psql -h 127.0.0.1 -p "$port" -U knockoff -d postgres -qc "CREATE DATABASE knockoff"
  echo "export KNOCKOFF_STORE=postgres://knockoff:$(cat "$DIR/pg-password")@127.0.0.1:$port/knockoff"
}

milvus_up() {
  [ -f "$DIR/milvus-port" ] || free_port > "$DIR/milvus-port"
  local port; port=$(cat "$DIR/milvus-port")
  if ! open_port "$port"; then
    # Its embedded etcd and coordinators use fixed ports: one Milvus standalone per machine.
    if ss -ltn 2>/dev/null | grep -q ':2379 '; then log "port 2379 is taken (another Milvus or etcd?)"; exit 1; fi
    mkdir -p "$DIR/milvus"
    nohup "$VENV/bin/milvus-server" --data "$DIR/milvus" --proxy-port "$port" --authorization-enabled true \
      > "$DIR/milvus.log" 2>&1 &
    echo $! > "$DIR/milvus.pid"
    for i in $(seq 1 180); do
      open_port "$port" && break
      kill -0 "$(cat "$DIR/milvus.pid")" 2>/dev/null || { log "Milvus did not start: see $DIR/milvus/logs"; exit 1; }
      [ "$i" = 180 ] && { log "Milvus did not open port $port in 180 s"; exit 1; }
      sleep 1
    done
    log "Milvus on port $port (every interface; authorization on)"
  fi
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
  local pgbin; pgbin=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1)")
  [ -f "$DIR/pg/postmaster.pid" ] && as_pg "$pgbin/pg_ctl" -D "$DIR/pg" -m fast -w stop >/dev/null && log "PostgreSQL stopped"
  if [ -f "$DIR/milvus.pid" ]; then
    # milvus-server runs the milvus binary from the data folder in a session of its own: stop both.
    kill "$(cat "$DIR/milvus.pid")" 2>/dev/null || true
    pkill -f "$DIR/milvus/bin/milvus" 2>/dev/null || true
    for _ in $(seq 1 30); do pgrep -f "$DIR/milvus/bin/milvus" >/dev/null || break; sleep 1; done
    pkill -9 -f "$DIR/milvus/bin/milvus" 2>/dev/null || true
    rm -f "$DIR/milvus.pid"; log "Milvus stopped"
  fi
}

case "$CMD" in
  up) install; mkdir -p "$DIR"; chmod 755 "$DIR"; pg_up; milvus_up ;;
  down) down ;;
  *) echo "usage: $0 up|down [DIR]" >&2; exit 2 ;;
esac
