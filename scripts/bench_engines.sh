#!/usr/bin/env bash
# Engine benchmark behind the capacity plan (docs/capacity.md), not a test:
# starts PostgreSQL (Debian's package) and Milvus standalone (PyPI
# milvus==2.3.5, authorization on, a generated password) on loopback in a
# temporary folder, measures them through their Python clients with the
# catalog's row and vector shapes, and stops them.
#   ./scripts/bench_engines.sh [N=50000] [DIM=1280]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50000}; DIM=${2:-1280}
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "[engines] installing PostgreSQL from Debian's packages" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
PGBIN=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
VENV=.cache/engines-venv
if [ ! -x "$VENV/bin/milvus-server" ] || ! "$VENV/bin/python" -c 'import pymilvus, psycopg, numpy' 2>/dev/null; then
  echo "[engines] installing milvus 2.3.5, pymilvus 2.3.7, psycopg into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "milvus==2.3.5" "pymilvus==2.3.7" "marshmallow<4" "psycopg[binary]>=3.1,<3.3" "numpy<2.3" "setuptools<75"
fi
WORK=$(mktemp -d); chmod 755 "$WORK"
PG_PID=""; MV_PID=""
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  # milvus-server runs the milvus binary (from the data folder) in a session of its own: stop both.
  if [ -n "$MV_PID" ]; then
    kill "$MV_PID" 2>/dev/null; pkill -f "$WORK/milvus/bin/milvus" 2>/dev/null
    for _ in $(seq 1 30); do pgrep -f "$WORK/milvus/bin/milvus" >/dev/null || break; sleep 1; done
    pkill -9 -f "$WORK/milvus/bin/milvus" 2>/dev/null; wait "$MV_PID" 2>/dev/null
  fi
  [ -n "$PG_PID" ] && as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PGPORT=$(free_port); MVPORT=$(free_port)
PGPASS=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
MVPASS=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
# PostgreSQL: its own cluster, password auth, loopback only.
mkdir "$WORK/pg" "$WORK/pgsock"
printf '%s\n' "$PGPASS" > "$WORK/pgpass"
[ "$(id -u)" = 0 ] && chown postgres "$WORK/pg" "$WORK/pgsock" "$WORK/pgpass"
as_pg "$PGBIN/initdb" -D "$WORK/pg" -U knockoff -A scram-sha-256 --pwfile="$WORK/pgpass" >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pgsock/server.log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $WORK/pgsock -c shared_buffers=512MB" start >/dev/null
PG_PID=started
# Milvus standalone (it listens on every interface: authorization on, password replaced below).
# (Its embedded etcd and coordinators use fixed ports: one Milvus standalone per machine.)
if ss -ltn 2>/dev/null | grep -q ':2379 '; then echo "[engines] port 2379 is taken (another Milvus or etcd running?)" >&2; exit 1; fi
"$VENV/bin/milvus-server" --data "$WORK/milvus" --proxy-port "$MVPORT" --authorization-enabled true \
  > "$WORK/milvus.log" 2>&1 &
MV_PID=$!
for i in $(seq 1 180); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $MVPORT), 1)" 2>/dev/null && break
  kill -0 "$MV_PID" 2>/dev/null || { tail -5 "$WORK/milvus/logs/milvus-stdout.log" >&2; echo "[engines] Milvus did not start" >&2; exit 1; }
  [ "$i" = 180 ] && { echo "[engines] Milvus did not open port $MVPORT in 180 s" >&2; exit 1; }
  sleep 1
done
"$VENV/bin/python" scripts/bench_engines.py "$N" "$DIM" \
  "postgres://knockoff:$PGPASS@127.0.0.1:$PGPORT/postgres" "127.0.0.1:$MVPORT" "$MVPASS" "$MV_PID"
