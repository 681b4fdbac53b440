#!/usr/bin/env bash
# Migration round trip on the grocery set: indexes catalog + train photos into a
# folder (fitted projection and calibration included), migrates it to the shared
# backend (a fresh PostgreSQL database + Milvus, started by scripts/cluster.sh) and
# back into a second folder, then compares the lookups of every 6th validation
# photo on the three (products, similarities and confidences to 4 decimals, verdict).
#   ./scripts/migrate_roundtrip.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=../shared/data/grocery
WORK=$(realpath -m "${1:-/tmp/knockoff-roundtrip}")
BIN=./target/release/knockoff
export KNOCKOFF_DEFAULT_MODEL=${KNOCKOFF_DEFAULT_MODEL:-efficientnet-lite0}
cargo build --release -q
eval "$(./scripts/cluster.sh up)"
STORE=$KNOCKOFF_STORE VECTORS=$KNOCKOFF_VECTORS
unset KNOCKOFF_STORE KNOCKOFF_VECTORS
rm -rf "$WORK" && mkdir -p "$WORK"
$BIN index "$DATA/photos-train.csv" --index "$WORK/folder" --no-calibrate >&2
$BIN index "$DATA/catalog.csv" --index "$WORK/folder" >&2
DB=roundtrip_$$
PGPASSWORD=$(cat .cluster/pg-password) psql -h 127.0.0.1 -p "$(cat .cluster/pg-port)" -U knockoff -d postgres -qc "CREATE DATABASE $DB"
SHARED=${STORE%/*}/$DB
# The engines' passwords through the environment, never in the process list.
KNOCKOFF_STORE=$SHARED KNOCKOFF_VECTORS=$VECTORS /usr/bin/time -f "[roundtrip] folder -> shared %e s" $BIN migrate --from "$WORK/folder" --to-shared
KNOCKOFF_STORE=$SHARED KNOCKOFF_VECTORS=$VECTORS /usr/bin/time -f "[roundtrip] shared -> folder %e s" $BIN migrate --from-shared --to "$WORK/back"
summ() { python3 -c 'import json,sys; d=json.load(sys.stdin); print([(m["product_id"], round(m["similarity"],4), round(m["confidence"],4)) for m in d["matches"]], d["verdict"])'; }
same=0; close=0; n=0
for i in $(seq 2 6 "$(wc -l < "$DATA/photos-val.csv")"); do
  IMG=$DATA/$(sed -n "${i}p" "$DATA/photos-val.csv" | cut -d, -f1)
  a=$($BIN search "$IMG" --index "$WORK/folder" --json 2>/dev/null | summ)
  b=$($BIN search "$IMG" --store "$SHARED" --vectors "$VECTORS" --json 2>/dev/null | summ)
  c=$($BIN search "$IMG" --index "$WORK/back" --json 2>/dev/null | summ)
  n=$((n+1))
  [ "$a" = "$c" ] || { echo "round trip differs on $IMG:"; echo " $a"; echo " $c"; exit 1; }
  if [ "$a" = "$b" ]; then same=$((same+1)); else echo "shared differs on $IMG:"; echo " folder $a"; echo " shared $b"; fi
done
echo "[roundtrip] $n photos: round-trip folder identical on all; shared identical on $same"
PGPASSWORD=$(cat .cluster/pg-password) psql -h 127.0.0.1 -p "$(cat .cluster/pg-port)" -U knockoff -d postgres -qc "DROP DATABASE $DB WITH (FORCE)"
