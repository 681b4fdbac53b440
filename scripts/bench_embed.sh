#!/usr/bin/env bash
# Embedding benchmark: end-to-end images/s (read + decode + preprocess + infer)
# for knockoff and for the Python baseline (onnxruntime + Pillow, same model,
# same thread count), in one run, printed as ratios. Not a test. knockoff runs
# THREADS single-threaded sessions in parallel (its bulk default); Python runs one
# session with THREADS intra-op threads, as onnxruntime users do by default.
#
# Both sides run MODEL (default efficientnet-lite0; pinned, not the service's
# default, which is sscd-lite0 once SSCD is installed and which the Python
# baseline does not run); the table names it, and the run stops if knockoff
# reports another model.
#
#   [MODEL=efficientnet-lite0] ./scripts/bench_embed.sh [N_IMAGES=400] [THREADS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-400}; THREADS=${2:-2}; MODEL=${MODEL:-efficientnet-lite0}
DATA=../shared/data/grocery
[ -d "$DATA" ] || { echo "bench_embed.sh needs ../shared/data/grocery" >&2; exit 1; }
./scripts/setup.sh >/dev/null
cargo build --release -q
# The first N photos of photos-val.csv, then photos-train.csv.
mapfile -t FILES < <(tail -q -n +2 "$DATA/photos-val.csv" "$DATA/photos-train.csv" | cut -d, -f1 | head -n "$N" | sed "s|^|$DATA/|")
OUT=$(mktemp -d)
# Three interleaved rounds; the table reports each configuration's median round.
for round in 1 2 3; do
  for b in 1 16; do
    ./target/release/knockoff bench-embed --model "$MODEL" --threads 1 --sessions "$THREADS" --batch $b --workers 1 "${FILES[@]}" > "$OUT/rust-$b-$round.json"
    .venv/bin/python scripts/reference_embed.py --bench --threads "$THREADS" --batch $b "models/$MODEL" "${FILES[@]}" > "$OUT/py-$b-$round.json"
  done
done
python3 - "$OUT" "$THREADS" "$MODEL" <<'PYEOF'
import json, os, sys
out, threads, model = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ran = {json.load(open(f"{out}/rust-{b}-{k}.json")).get("model") for b in (1, 16) for k in (1, 2, 3)}
if ran != {model}:
    sys.exit(f"bench_embed.sh: knockoff ran {sorted(map(str, ran))}, not {model}: the ratios would compare different models")
chk = json.load(open(f"models/{model}/export-check.json"))
gflop = chk.get("gflop_per_image", 0.768)
ghz = 0.0
for line in open("/proc/cpuinfo"):
    if line.startswith("cpu MHz"):
        ghz = float(line.split(":")[1]) / 1000; break
flags = open("/proc/cpuinfo").read()
per_cycle = 32  # fp32 FLOP/cycle/core: 2 x 256-bit FMA units (AVX2 / Zen 4 AVX-512)
peak = threads * ghz * per_cycle
print(f"model {model} on both sides ({gflop} GFLOP/image), {threads} threads, peak estimate {peak:.0f} GFLOP/s ({threads} cores x {ghz:.2f} GHz x {per_cycle} FLOP/cycle)")
print("| batch | knockoff img/s (pipelined) | knockoff img/s (sequential, 1 thread) | Python baseline img/s | ratio (pipelined / Python) | knockoff preprocess share | Python preprocess share | knockoff GFLOP/s (% of peak) |")
print("|---|---|---|---|---|---|---|---|")
for b in (1, 16):
    rs_ = sorted((json.load(open(f"{out}/rust-{b}-{k}.json")) for k in (1, 2, 3)), key=lambda x: x["pipelined"]["images_per_s"])
    ps_ = sorted((json.load(open(f"{out}/py-{b}-{k}.json")) for k in (1, 2, 3)), key=lambda x: x["images_per_s"])
    r, p = rs_[1], ps_[1]
    rp = r["pipelined"]["images_per_s"]; rs = r["sequential"]["images_per_s"]; pp = p["images_per_s"]
    gf = gflop * rp
    print(f"| {b} | {rp:.1f} | {rs:.1f} | {pp:.1f} | {rp/pp:.2f}x | {r['sequential']['preprocess_share']*100:.0f}% | {p['preprocess_share']*100:.0f}% | {gf:.0f} ({100*gf/peak:.0f}%) |")
print(f"images: {r['images']}; median of 3 interleaved rounds; Python baseline = scripts/reference_embed.py (onnxruntime defaults + Pillow)")
PYEOF
rm -rf "$OUT"
