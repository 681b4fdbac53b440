#!/usr/bin/env bash
# Index benchmark (not a test), in one run:
#  1. ingest rate of `knockoff index` on all of ../shared/data/grocery against the
#     pure embedding rate (`knockoff bench-embed`, same images, same settings);
#  2. ANN quality and speed on N synthetic vectors clustered like the real
#     embeddings: knockoff (hnsw_rs) against hnswlib with the same M /
#     ef_construction / ef_search (scripts/bench_ann.py).
#   ./scripts/bench_index.sh [N=200000] [M=16] [EF_CONSTRUCTION=200] [EF_SEARCH=64]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}; M=${2:-16}; EFC=${3:-200}; EFS=${4:-64}
DATA=../shared/data/grocery
[ -d "$DATA" ] || { echo "bench_index.sh needs ../shared/data/grocery" >&2; exit 1; }
./scripts/setup.sh >/dev/null
cargo build --release -q
[ -x .venv/bin/python ] && .venv/bin/python -c 'import hnswlib' 2>/dev/null || .venv/bin/python -m pip install -q hnswlib==0.8.0
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
# All photos of the data set in one manifest (paths absolute).
python3 - "$DATA" "$WORK/all.csv" <<'PYEOF'
import csv, os, sys
data, out = sys.argv[1], sys.argv[2]
with open(out, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["image", "product_id", "label", "brand", "name", "category"])
    for m in ("catalog.csv", "photos-train.csv", "photos-val.csv"):
        for r in csv.DictReader(open(os.path.join(data, m))):
            w.writerow([os.path.abspath(os.path.join(data, r["image"])), r["product_id"], r["label"], r["brand"], r["name"], r["category"]])
PYEOF
mapfile -t FILES < <(tail -n +2 "$WORK/all.csv" | cut -d, -f1)
# Indexing alone (--no-calibrate), then the default command (which ends by fitting the index).
T0=$(date +%s.%N)
./target/release/knockoff index --no-calibrate "$WORK/all.csv" --index "$WORK/idx0" 2> "$WORK/index0.log"
T1=$(date +%s.%N)
./target/release/knockoff index "$WORK/all.csv" --index "$WORK/idx" 2> "$WORK/index.log"
T2=$(date +%s.%N)
EMB=$(./target/release/knockoff bench-embed --threads 1 --sessions "$(nproc)" --workers 1 --batch 16 "${FILES[@]}")
python3 - "$T0" "$T1" "$T2" "${#FILES[@]}" "$EMB" <<'PYEOF'
import json, sys
t0, t1, t2, n, emb = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5])
alone, fitted = n / (t1 - t0), n / (t2 - t1); pure = emb["pipelined"]["images_per_s"]
print(f"ingest: {n} images; knockoff index --no-calibrate {alone:.1f} images/s (whole command: start-up, decode, thumbnails, copy features, SQLite, HNSW, dump) "
      f"vs pure embedding {pure:.1f} images/s = {100*alone/pure:.0f}%; with the index fitting it ends with (the default): {fitted:.1f} images/s = {100*fitted/pure:.0f}%")
PYEOF
.venv/bin/python scripts/bench_ann.py "$WORK/idx" "$WORK" "$N" "$M" "$EFC" "$EFS"
