#!/usr/bin/env bash
# The review loop measured on ../shared/data/grocery (`knockoff eval --review-budget`):
# a marketplace stream in rounds; each round a simulated analyst decides the
# most review-worthy 10 % of its lookups with the truth, the index refits, and
# the next round is looked up. Three make-ups:
#   studio     one studio photo per product; stream: every shelf photo (train + val)
#   shelf      studio photos + the train shelf photos; stream: the val shelf photos
#   lookalike  packaged products only, one studio photo each; stream: their shelf photos
# In every one, the look-alike stand-ins (scripts/eval_lookalike.sh) are labelled
# counterfeit, and every ninth product (by a hash of its id) is left out of the
# catalog: its photos in the stream are listings of products the catalog lacks.
# Prints one row per round; writes the JSON and HTML (learning curves) per make-up
# to $OUT (default: target/eval-review).
#   [MAKEUPS="studio shelf"] [BUDGET_SHARE=10] ./scripts/eval_review.sh [--review-rounds R] [--model NAME]
set -euo pipefail
cd "$(dirname "$0")/.."
# KNOCKOFF_BIN: a built binary to use instead of building.
source scripts/eval_env.sh
OUT=${OUT:-target/eval-review}
mkdir -p "$OUT"
python3 - "$DATA" "$WORK" <<'PYEOF'
import csv, hashlib, os, sys
data, work = sys.argv[1], sys.argv[2]
FAKES = {"arla-lactose-medium-fat-milk", "god-morgon-orange-red-grapefruit-juice", "tropicana-golden-grapefruit",
         "alpro-vanilla-soyghurt", "alpro-shelf-soy-milk", "arla-ecological-sour-cream", "yoggi-vanilla-yoghurt"}
def left_out(pid):
    return int(hashlib.sha256(pid.encode()).hexdigest(), 16) % 9 == 0
def rows(name, packaged=False):
    out = []
    for r in csv.DictReader(open(os.path.join(data, name))):
        if packaged and not r["category"].startswith("Packages/"):
            continue
        r["image"] = os.path.abspath(os.path.join(data, r["image"]))
        r["label"] = "counterfeit" if r["product_id"] in FAKES else "authentic"
        out.append(r)
    return out
def catalog(rs):
    return [r for r in rs if not left_out(r["product_id"])]
def stream(rs):
    return [dict(r, product_id="" if left_out(r["product_id"]) else r["product_id"]) for r in rs]
def write(path, rs):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, ["image", "product_id", "label", "brand", "name", "category"], extrasaction="ignore")
        w.writeheader(); w.writerows(rs)
studio, train, val = rows("catalog.csv"), rows("photos-train.csv"), rows("photos-val.csv")
write(f"{work}/studio-catalog.csv", catalog(studio)); write(f"{work}/studio-stream.csv", stream(train + val))
write(f"{work}/shelf-catalog.csv", catalog(studio + train)); write(f"{work}/shelf-stream.csv", stream(val))
p = lambda n: rows(n, packaged=True)
write(f"{work}/lookalike-catalog.csv", catalog(p("catalog.csv")))
write(f"{work}/lookalike-stream.csv", stream(p("photos-train.csv") + p("photos-val.csv")))
PYEOF
echo "| make-up | round | lookups | reviews before | R@1 | ECE | mean confidence / top-1 right | model coverage | coverage | catch rate | false accusations | catalogued listings: ECE: confidence / right | out-of-catalog listings: mean confidence / p_no_match |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for m in ${MAKEUPS:-studio shelf lookalike}; do
  n=$(($(wc -l < "$WORK/$m-stream.csv") - 1))
  rounds=5
  budget=$(( (n / rounds * ${BUDGET_SHARE:-10} + 50) / 100 ))
  "$K" eval --catalog "$WORK/$m-catalog.csv" --queries "$WORK/$m-stream.csv" --review-budget "$budget" --review-rounds "$rounds" "$@" \
    --json "$OUT/$m.json" --report "$OUT/$m.html" >/dev/null 2>"$OUT/$m.log"
  python3 - "$OUT/$m.json" "$m" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
f = lambda v: "–" if v is None else f"{v:.3f}"
for r in d["review_curve"]:
    print(f"| {sys.argv[2]} | {r['round']} | {r['lookups']} | {r['reviews_before']} | {r['recall_at_1']:.3f} | {r['ece']:.3f} | "
          f"{r['mean_confidence']:.3f} / {r['top1_accuracy']:.3f} | "
          f"{r['model_coverage']:.3f} | {r['coverage']:.3f} | {f(r['catch_rate'])} | {f(r['false_accusation_rate'])} | "
          f"{r['catalogued']['ece']:.3f}: {r['catalogued']['mean_confidence']:.3f} / {r['catalogued']['top1_accuracy']:.3f} | "
          f"{f(r['elsewhere_mean_confidence'])} / {f(r['elsewhere_mean_p_no_match'])} |")
PYEOF
done
