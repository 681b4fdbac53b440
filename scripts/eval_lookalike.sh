#!/usr/bin/env bash
# Look-alike verdict protocol on ../shared/data/grocery (packaged goods only):
# some products are relabelled `counterfeit` as stand-ins for knock-offs of
# their siblings (same brand, near-identical packaging). Catalog: their studio
# image + train photos; queries: their val photos, with the same labels. The
# right verdict for a query is its product's label. Prints the JSON report's
# verdict accuracy and confusion matrix.
# ONE_PHOTO=1: the catalog is the studio images alone (one photo per product,
# so the index calibrates itself on synthetic views).
#   [ONE_PHOTO=1] ./scripts/eval_lookalike.sh [extra knockoff eval args, e.g. --model sscd-lite0 --tune --json FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
# KNOCKOFF_BIN: a built binary to use instead of building.
source scripts/eval_env.sh
python3 - "$DATA" "$WORK" "${ONE_PHOTO:-}" <<'PYEOF'
import csv, os, sys
data, work, one_photo = sys.argv[1], sys.argv[2], sys.argv[3]
FAKES = {  # stand-in knock-off -> the authentic sibling it imitates
    "arla-lactose-medium-fat-milk": "arla-medium-fat-milk",
    "god-morgon-orange-red-grapefruit-juice": "god-morgon-red-grapefruit-juice",
    "tropicana-golden-grapefruit": "tropicana-juice-smooth",
    "alpro-vanilla-soyghurt": "alpro-blueberry-soyghurt",
    "alpro-shelf-soy-milk": "alpro-fresh-soy-milk",
    "arla-ecological-sour-cream": "arla-sour-cream",
    "yoggi-vanilla-yoghurt": "yoggi-strawberry-yoghurt",
}
def rows(name):
    for r in csv.DictReader(open(os.path.join(data, name))):
        if r["category"].startswith("Packages/"):
            r["image"] = os.path.abspath(os.path.join(data, r["image"]))
            r["label"] = "counterfeit" if r["product_id"] in FAKES else "authentic"
            yield r
def write(path, rs):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, ["image", "product_id", "label", "brand", "name", "category"]); w.writeheader(); w.writerows(rs)
write(f"{work}/catalog.csv", list(rows("catalog.csv")) + ([] if one_photo else list(rows("photos-train.csv"))))
write(f"{work}/queries.csv", list(rows("photos-val.csv")))
PYEOF
"$K" eval --catalog "$WORK/catalog.csv" --queries "$WORK/queries.csv" "$@" > "$WORK/report.json"
python3 - "$WORK/report.json" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"look-alike protocol: {d['n_queries']} packaged queries, {d['n_catalog_images']} catalog images; "
      f"verdict accuracy {d['verdict_accuracy']:.3f}; product R@1 {d['recall_at_1']:.3f}; "
      f"false accusation rate {d['false_accusation_rate']:.3f}, catch rate {d['catch_rate']:.3f}, coverage {d['coverage']:.3f}")
cols = ["likely_authentic", "likely_counterfeit", "uncertain", "no_match"]
print("| truth → verdict | " + " | ".join(cols) + " |")
print("|---" * (len(cols) + 1) + "|")
for row in ("authentic", "counterfeit"):
    r = d["verdict_confusion"].get(row, {})
    print(f"| {row} | " + " | ".join(str(r.get(c, 0)) for c in cols) + " |")
PYEOF
