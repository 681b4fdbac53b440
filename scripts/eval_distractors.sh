#!/usr/bin/env bash
# Distractor protocol on ../shared/data/grocery: the catalog (studio image +
# train photos) holds every other product (sorted by id); the queries are all
# val photos, those of the left-out products as distractors (no product_id:
# the right answer is `no_match`). Prints the distractor false-match rate (a
# distractor given any verdict but `no_match`), the mean p_no_match of
# distractors and of catalog queries, the catalog queries' R@1, and the ECE of
# `confidence` over all queries (a distractor's top match counts as wrong).
# SINGLE_PHOTO=1: the catalog is the studio image alone (one photo per product).
#   [SINGLE_PHOTO=1] ./scripts/eval_distractors.sh [extra knockoff eval args, e.g. --model sscd-lite0 --json FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
# KNOCKOFF_BIN: a built binary to use instead of building.
source scripts/eval_env.sh
python3 - "$DATA" "$WORK" "${SINGLE_PHOTO:-0}" <<'PYEOF'
import csv, os, sys
data, work, single = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
def rows(name):
    for r in csv.DictReader(open(os.path.join(data, name))):
        r["image"] = os.path.abspath(os.path.join(data, r["image"]))
        yield r
products = sorted({r["product_id"] for r in rows("catalog.csv")})
kept = set(products[::2])
cols = ["image", "product_id", "label", "brand", "name", "category"]
def write(path, rs):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, cols); w.writeheader(); w.writerows(rs)
sources = ("catalog.csv",) if single else ("catalog.csv", "photos-train.csv")
write(f"{work}/catalog.csv", [r for n in sources for r in rows(n) if r["product_id"] in kept])
write(f"{work}/queries.csv", [dict(r, product_id=r["product_id"] if r["product_id"] in kept else "") for r in rows("photos-val.csv")])
PYEOF
# PER_QUERY=FILE keeps the per-query records.
PQ=${PER_QUERY:-$WORK/per-query.jsonl}
"$K" eval --catalog "$WORK/catalog.csv" --queries "$WORK/queries.csv" --per-query "$PQ" "$@" > "$WORK/report.json"
python3 - "$WORK/report.json" "$PQ" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
recs = [json.loads(l) for l in open(sys.argv[2])]
dis = [r for r in recs if not r["truth"]]
cat = [r for r in recs if r["truth"]]
mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")
print(f"distractor protocol ({d['model']}): {len(dis)} distractor and {len(cat)} catalog queries; "
      f"distractor false-match rate {d['distractor_false_match_rate']:.3f}, p_no_match dominant for "
      f"{mean([r['p_no_match'] >= max([r['p_no_match']] + [m['confidence'] for m in r['matches']]) for r in dis]):.3f} of distractors; "
      f"mean p_no_match {mean([r['p_no_match'] for r in dis]):.3f} (distractors) vs {mean([r['p_no_match'] for r in cat]):.3f} (catalog queries); "
      f"catalog queries R@1 {d['recall_at_1']:.3f}; ECE over all queries {d['ece']:.3f}")
PYEOF
