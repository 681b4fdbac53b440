#!/usr/bin/env bash
# Reseller edits on real shelf photos, outside the copy generator: a catalog
# of 3 photos-train shots per product; 21 of them (every 12th) edited with PIL
# the way resellers do (crop then pad, a wide plain border, upscaled, …) and
# looked up with `knockoff search --json`; then a catalog of the 81 studio
# packshots (198 px) with 21 of them upscaled 6x. Prints, per edit, how many
# were reported as copies of their source (`p_copy` >= 0.5).
#   MODEL=sscd-lite0 ./scripts/eval_reseller_edits.sh
#   GATE=off ./scripts/eval_reseller_edits.sh    # every photo checked in full (`search --no-copy-gate`)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/eval_env.sh
[ -x .venv/bin/python ] || ./scripts/setup.sh >/dev/null
MODEL_ARGS=(); [ -n "${MODEL:-}" ] && MODEL_ARGS=(--model "$MODEL")
GATE_ARGS=(); [ "${GATE:-on}" = off ] && GATE_ARGS=(--no-copy-gate)
.venv/bin/python - "$DATA" "$WORK" <<'PYEOF'
import csv, os, sys
from PIL import Image, ImageOps
data, work = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(f"{data}/photos-train.csv")))
by = {}
for r in rows:
    by.setdefault(r["product_id"], []).append(r)
cat = [dict(r, image=os.path.abspath(f"{data}/{r['image']}")) for rs in by.values() for r in rs[:3]]
with open(f"{work}/catalog.csv", "w") as f:
    w = csv.DictWriter(f, fieldnames=rows[0].keys()); w.writeheader(); w.writerows(cat)
os.makedirs(f"{work}/q", exist_ok=True)
def crop(im, s):
    w, h = im.size
    return im.crop((int(w * s), int(h * s), int(w * (1 - s)), int(h * (1 - s))))
edits = {
    "crop 6% + pad 25 px white": lambda im: ImageOps.expand(crop(im, 0.06), border=25, fill="white"),
    "crop 3% + pad 10 px white": lambda im: ImageOps.expand(crop(im, 0.03), border=10, fill="white"),
    "in 1400 px of white": lambda im: ImageOps.expand(im, border=1400, fill="white"),
    "4x upscaled in 1400 px of white": lambda im: ImageOps.expand(im.resize((im.width * 4, im.height * 4), Image.BICUBIC), border=1400, fill="white"),
    "upscaled 6x": lambda im: im.resize((im.width * 6, im.height * 6), Image.BICUBIC),
    "pad 40 px white": lambda im: ImageOps.expand(im, border=40, fill="white"),
    "crop 6%": lambda im: crop(im, 0.06),
}
studio = [dict(r, image=os.path.abspath(f"{data}/{r['image']}")) for r in csv.DictReader(open(f"{data}/catalog.csv"))]
with open(f"{work}/studio.csv", "w") as f:
    w = csv.DictWriter(f, fieldnames=studio[0].keys()); w.writeheader(); w.writerows(studio)
with open(f"{work}/studio.tsv", "w") as f:
    for i, r in enumerate(studio[::4][:21]):
        im = Image.open(r["image"]).convert("RGB")
        path = f"{work}/q/studio-{i}.jpg"
        im.resize((im.width * 6, im.height * 6), Image.BICUBIC).save(path, quality=90)
        f.write(f"studio packshot upscaled 6x\t{r['product_id']}\t{path}\n")
with open(f"{work}/queries.tsv", "w") as f:
    for i, r in enumerate(cat[::12][:21]):
        im = Image.open(r["image"]).convert("RGB")
        for k, (name, edit) in enumerate(edits.items()):
            path = f"{work}/q/{i}-{k}.jpg"
            edit(im).save(path, quality=90)
            f.write(f"{name}\t{r['product_id']}\t{path}\n")
PYEOF
"$K" index --index "$WORK/idx" "${MODEL_ARGS[@]}" "$WORK/catalog.csv" 2>/dev/null
"$K" index --index "$WORK/studio-idx" "${MODEL_ARGS[@]}" "$WORK/studio.csv" 2>/dev/null
{
  sed "s|\$|\tidx|" "$WORK/queries.tsv"
  sed "s|\$|\tstudio-idx|" "$WORK/studio.tsv"
} | while IFS=$'\t' read -r name product path idx; do
  "$K" search --index "$WORK/$idx" --json ${GATE_ARGS[@]+"${GATE_ARGS[@]}"} "$path" 2>/dev/null \
    | python3 -c "import json,sys; c=json.load(sys.stdin)['copies']; print('$name', int(bool(c) and c[0]['product_id']=='$product' and c[0]['p_copy']>=0.5))"
done | python3 -c "
import sys, collections
n, ok = collections.Counter(), collections.Counter()
order = []
for line in sys.stdin:
    name, hit = line.rsplit(' ', 1)
    if name not in n: order.append(name)
    n[name] += 1; ok[name] += int(hit)
for name in order: print(f'{name}: {ok[name]}/{n[name]} found as copies of their source')"
