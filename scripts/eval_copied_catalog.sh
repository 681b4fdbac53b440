#!/usr/bin/env bash
# A catalog whose photos of a product are copies of one another, on
# ../shared/data/grocery: each studio packshot (catalog.csv) made into 6 edited
# copies (cut to 80-100 %, tilted up to 8 degrees, re-lit, half of them mirrored:
# one shot resized and re-cropped for a web shop, as brands often publish), 486 photos.
# Queries: photos-val.csv. Evaluated as `knockoff index` leaves it and with the
# model's shipped calibration (`--no-fit`): R@1, ECE, a calibrated model's ECE,
# mean p_no_match, and how the index fitted itself.
#   ./scripts/eval_copied_catalog.sh [--model NAME]
set -euo pipefail
cd "$(dirname "$0")/.."
# KNOCKOFF_BIN: a built binary to use instead of building.
source scripts/eval_env.sh
./scripts/setup.sh >/dev/null  # .venv with Pillow, to make the copies
.venv/bin/python - "$DATA" "$WORK" <<'PYEOF'
import csv, os, random, sys
from PIL import Image, ImageEnhance, ImageOps
data, work = sys.argv[1:]
rng, rows = random.Random(0), []
for r in csv.DictReader(open(os.path.join(data, "catalog.csv"))):
    im = ImageOps.exif_transpose(Image.open(os.path.join(data, r["image"]))).convert("RGB")
    w, h = im.size
    for k in range(6):
        f = rng.uniform(0.8, 1.0); cw, ch = int(w * f), int(h * f); x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        v = im.crop((x, y, x + cw, y + ch)).rotate(rng.uniform(-8, 8), expand=True, fillcolor=(255, 255, 255))
        v = ImageEnhance.Brightness(v).enhance(rng.uniform(0.85, 1.15))
        if rng.random() < 0.5:
            v = ImageOps.mirror(v)
        path = os.path.join(work, f"{r['product_id']}-{k}.jpg"); v.save(path, quality=90)
        rows.append(dict(r, image=path))
with open(os.path.join(work, "copies.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, ["image", "product_id", "label", "brand", "name", "category"], extrasaction="ignore")
    w.writeheader(); w.writerows(rows)
PYEOF
echo "| calibration | fitted on | R@1 | ECE | a calibrated model's ECE | mean p_no_match | verdict no_match |"
echo "|---|---|---|---|---|---|---|"
for how in fitted shipped; do
  extra=(); [ "$how" = shipped ] && extra=(--no-fit)
  "$K" eval --catalog "$WORK/copies.csv" --queries "$DATA/photos-val.csv" "${extra[@]}" "$@" \
    --json "$WORK/r.json" --per-query "$WORK/q.jsonl" >/dev/null 2>"$WORK/err"
  python3 - "$WORK" "$how" <<'PYEOF'
import json, sys
work, how = sys.argv[1:]
d = json.load(open(f"{work}/r.json")); q = [json.loads(l) for l in open(f"{work}/q.jsonl")]
err = open(f"{work}/err").read()
on = "synthetic views (copies)" if "copies of one another" in err else "held-out halves" if "held-out lookups" in err else "–"
print(f"| {'index' if how == 'fitted' else 'shipped'} | {on} | {d['recall_at_1']:.3f} | {d['ece']:.3f} | {d['ece_check']['if_calibrated']:.3f} | "
      f"{sum(a['p_no_match'] for a in q) / len(q):.3f} | {sum(a['verdict'] == 'no_match' for a in q)} of {len(q)} |")
PYEOF
done
