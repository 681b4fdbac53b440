#!/usr/bin/env bash
# Catalogs with one photo per product, of two make-ups, on ../shared/data/grocery:
#   studio      the studio packshot of each product (catalog.csv, P1)
#   shelf-first the first shelf photo of each product in photos-train.csv
#   shelf-last  the last one
# Queries: photos-val.csv. Each catalog is evaluated as `knockoff index` leaves it
# (calibrated on synthetic views of its own images) and with the model's shipped
# calibration (`--no-fit`), and the script prints one row per pair: R@1, ECE and
# what a perfectly calibrated model would show on the same queries.
#   ./scripts/eval_single_photo.sh [--model NAME]
set -euo pipefail
cd "$(dirname "$0")/.."
# KNOCKOFF_BIN: a built binary to use instead of building.
source scripts/eval_env.sh
python3 - "$DATA" "$WORK" <<'PYEOF'
import csv, os, sys
data, work = sys.argv[1], sys.argv[2]
def rows(name):
    out = []
    for r in csv.DictReader(open(os.path.join(data, name))):
        r["image"] = os.path.abspath(os.path.join(data, r["image"])); out.append(r)
    return out
def one_each(rs):
    seen, out = set(), []
    for r in rs:
        if r["product_id"] not in seen:
            seen.add(r["product_id"]); out.append(r)
    return out
train = rows("photos-train.csv")
for name, rs in [("studio", rows("catalog.csv")), ("shelf-first", one_each(train)), ("shelf-last", one_each(train[::-1]))]:
    with open(os.path.join(work, name + ".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, ["image", "product_id", "label", "brand", "name", "category"], extrasaction="ignore")
        w.writeheader(); w.writerows(rs)
PYEOF
echo "| catalog | calibration | R@1 | ECE | a calibrated model's ECE (median / 95th pct) | p | mean confidence | fit seconds |"
echo "|---|---|---|---|---|---|---|---|"
for cat in studio shelf-first shelf-last; do
  for how in views shipped; do
    extra=(); [ "$how" = shipped ] && extra=(--no-fit)
    "$K" eval --catalog "$WORK/$cat.csv" --queries "$DATA/photos-val.csv" "${extra[@]}" "$@" \
      --json "$WORK/r.json" --per-query "$WORK/q.jsonl" >/dev/null 2>"$WORK/err"
    python3 - "$WORK" "$cat" "$how" <<'PYEOF'
import json, re, sys
work, cat, how = sys.argv[1:]
d = json.load(open(f"{work}/r.json")); c = d["ece_check"]
conf = [json.loads(l)["matches"][0]["confidence"] for l in open(f"{work}/q.jsonl") if json.loads(l)["matches"]]
m = re.search(r"synthetic listing photos.*; ([0-9.]+)s", open(f"{work}/err").read())
print(f"| {cat} | {'synthetic views' if how == 'views' else 'shipped'} | {d['recall_at_1']:.3f} | {d['ece']:.3f} | "
      f"{c['if_calibrated']:.3f} / {c['if_calibrated_p95']:.3f} | {c['p_value']:.3f} | {sum(conf)/len(conf):.3f} | {m.group(1) if m else '–'} |")
PYEOF
  done
done
