#!/usr/bin/env bash
# Distractor protocol on ../shared/data/grocery: the catalog (studio image +
# train photos) holds some products; the queries are val photos, those of
# products left out as distractors (no product_id: the right answer is
# `no_match`). DISTRACTORS picks the make-up:
#   siblings (default)  the catalog holds every other product (sorted by id):
#                       the left-out ones are siblings of catalogued ones
#   scenes              the catalog holds the fruit; distractors are vegetables
#                       (photos of the same stores' produce bins)
#   unrelated           the catalog holds the packages; distractors are fruit
#                       and vegetables (other photos altogether)
# Prints the distractor false-match rate (a distractor given any verdict but
# `no_match`), the distractors answered likely_authentic / likely_counterfeit
# and uncertain, the mean p_no_match of distractors and of catalog queries,
# the catalog queries' R@1 and likely_authentic share, and the ECE of
# `confidence` over all queries (a distractor's top match counts as wrong).
# SINGLE_PHOTO=1: the catalog is the studio image alone (one photo per product).
#   [SINGLE_PHOTO=1] [DISTRACTORS=siblings|scenes|unrelated] ./scripts/eval_distractors.sh [extra knockoff eval args, e.g. --model sscd-lite0 --json FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
# KNOCKOFF_BIN: a built binary to use instead of building.
source scripts/eval_env.sh
python3 - "$DATA" "$WORK" "${SINGLE_PHOTO:-0}" "${DISTRACTORS:-siblings}" <<'PYEOF'
import csv, os, sys
data, work, single, makeup = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
def rows(name):
    for r in csv.DictReader(open(os.path.join(data, name))):
        r["image"] = os.path.abspath(os.path.join(data, r["image"]))
        yield r
catalog = list(rows("catalog.csv"))
products = sorted({r["product_id"] for r in catalog})
kind = {r["product_id"]: r["category"].split("/")[0] for r in catalog}
if makeup == "siblings":
    kept, asked = set(products[::2]), set(products)
elif makeup == "scenes":
    kept = {p for p in products if kind[p] == "Fruit"}
    asked = kept | {p for p in products if kind[p] == "Vegetables"}
elif makeup == "unrelated":
    kept, asked = {p for p in products if kind[p] == "Packages"}, set(products)
else:
    sys.exit(f"DISTRACTORS={makeup}: siblings, scenes or unrelated")
cols = ["image", "product_id", "label", "brand", "name", "category"]
def write(path, rs):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, cols); w.writeheader(); w.writerows(rs)
sources = ("catalog.csv",) if single else ("catalog.csv", "photos-train.csv")
write(f"{work}/catalog.csv", [r for n in sources for r in rows(n) if r["product_id"] in kept])
write(f"{work}/queries.csv", [dict(r, product_id=r["product_id"] if r["product_id"] in kept else "")
                              for r in rows("photos-val.csv") if r["product_id"] in asked])
PYEOF
# PER_QUERY=FILE keeps the per-query records.
PQ=${PER_QUERY:-$WORK/per-query.jsonl}
"$K" eval --catalog "$WORK/catalog.csv" --queries "$WORK/queries.csv" --per-query "$PQ" "$@" > "$WORK/report.json"
python3 - "$WORK/report.json" "$PQ" "${DISTRACTORS:-siblings}" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
recs = [json.loads(l) for l in open(sys.argv[2])]
dis = [r for r in recs if not r["truth"]]
cat = [r for r in recs if r["truth"]]
mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")
share = lambda g, vs: mean([r["verdict"] in vs for r in g])
print(f"distractor protocol ({d['model']}, {sys.argv[3]}): {len(dis)} distractor and {len(cat)} catalog queries; "
      f"distractor false-match rate {d['distractor_false_match_rate']:.3f}, p_no_match dominant for "
      f"{mean([r['p_no_match'] >= max([r['p_no_match']] + [m['confidence'] for m in r['matches']]) for r in dis]):.3f} of distractors; "
      f"distractors called likely_authentic/likely_counterfeit {share(dis, ('likely_authentic', 'likely_counterfeit')):.3f}, "
      f"uncertain {share(dis, ('uncertain',)):.3f}; "
      f"mean p_no_match {mean([r['p_no_match'] for r in dis]):.3f} (distractors) vs {mean([r['p_no_match'] for r in cat]):.3f} (catalog queries); "
      f"catalog queries R@1 {d['recall_at_1']:.3f}, likely_authentic {share(cat, ('likely_authentic',)):.3f} "
      f"(right {mean([r['matches'][0]['product_id'] == r['truth'] for r in cat if r['verdict'] == 'likely_authentic']):.3f}); "
      f"ECE over all queries {d['ece']:.3f}")
PYEOF
