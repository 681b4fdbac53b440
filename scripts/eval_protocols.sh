#!/usr/bin/env bash
# The two standard protocols on ../shared/data/grocery, for every accuracy
# step, in one run (the README's step table):
#   P1 catalog only:   catalog = catalog.csv,                     queries = photos-val.csv
#   P2 catalog+photos: catalog = catalog.csv + photos-train.csv,  queries = photos-val.csv
# Steps that switch a feature off run on model variants written to a temporary
# models folder (same ONNX files, one manifest line changed).
#   ./scripts/eval_protocols.sh [OUT_DIR]      # JSON reports land in OUT_DIR (default: a temp dir)
# Needs ./scripts/setup.sh --with-sscd for the sscd rows (skipped otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
G=../shared/data/grocery
[ -d "$G" ] || { echo "eval_protocols.sh needs ../shared/data/grocery" >&2; exit 1; }
# KNOCKOFF_BIN: a built binary to use instead of building (e.g. a copy, so that
# rebuilding during a long run does not change the binary half-way).
K=${KNOCKOFF_BIN:-./target/release/knockoff}
[ -n "${KNOCKOFF_BIN:-}" ] || cargo build --release -q
OUT=${1:-$(mktemp -d)}
mkdir -p "$OUT"
M=$(mktemp -d); trap 'rm -rf "$M"' EXIT
for d in models/*/; do ln -s "$PWD/$d" "$M/$(basename "$d")"; done
variant() { # NAME FROM SED-EXPR: a copy of FROM's manifest with one change
  mkdir -p "$M/$1"
  sed -e "0,/^name = \".*\"/s//name = \"$1\"/" -e "$3" "models/$2/model.toml" > "$M/$1/model.toml"
  for f in models/$2/*.onnx; do [ -e "$f" ] && ln -s "$PWD/$f" "$M/$1/"; done
  true
}
variant lite0-nocrop efficientnet-lite0 '/^focus_crop/d'
have_sscd=0
if [ -f models/sscd-distilled/sscd_distilled.onnx ]; then
  have_sscd=1
  variant fused50-nocrop sscd-lite0 '/^focus_crop/d; s/^weight = 0\.[37]$/weight = 0.5/'
  variant fused30-nocrop sscd-lite0 '/^focus_crop/d'
fi
run() { # LABEL MODEL [--tune]
  local label=$1 model=$2; shift 2
  $K eval --models "$M" --model "$model" --catalog $G/catalog.csv --queries $G/photos-val.csv "$@" --json "$OUT/$label-P1.json" > /dev/null 2> "$OUT/$label-P1.log"
  $K eval --models "$M" --model "$model" --catalog $G/catalog.csv --catalog $G/photos-train.csv --queries $G/photos-val.csv "$@" --json "$OUT/$label-P2.json" > /dev/null 2> "$OUT/$label-P2.log"
  echo "[protocols] $label done" >&2
}
# Rows with --no-fit measure the index as embedded (the retrieval steps); the
# last row of each model is the default path: what `knockoff index` ends with
# (projection when cross-validation says it helps, then self-calibration).
run "lite0 (no focus crop)" lite0-nocrop --no-fit
run "lite0 + focus crop" efficientnet-lite0 --no-fit
run "lite0 + focus crop + index fitting (default path)" efficientnet-lite0
if [ $have_sscd = 1 ]; then
  run "sscd 0.5 + lite0 0.5 (no focus crop)" fused50-nocrop --no-fit
  run "sscd 0.3 + lite0 0.7 (no focus crop)" fused30-nocrop --no-fit
  run "sscd 0.3 + lite0 0.7 + focus crop (sscd-lite0)" sscd-lite0 --no-fit
  run "sscd-lite0 + focus crop + index fitting (default path)" sscd-lite0
fi
python3 - "$OUT" <<'PYEOF'
import glob, json, os, sys
out = sys.argv[1]
labels = sorted({os.path.basename(p)[:-8] for p in glob.glob(f"{out}/*-P1.json")}, key=lambda l: os.path.getmtime(f"{out}/{l}-P1.json"))
def g(r, group, key):
    v = r["by_group"].get(group, {}).get(key) if group else r[key]
    return "–" if v is None else f"{v:.3f}"
print("| step | P1 R@1 | P1 packaged R@1 | P1 packaged R@5 | P1 fruit / veg R@1 | P1 ECE | P2 R@1 | P2 R@5 | P2 packaged R@1 | P2 packaged R@5 | P2 fruit / veg R@1 | P2 ECE |")
print("|---" * 12 + "|")
for l in labels:
    a, b = (json.load(open(f"{out}/{l}-{p}.json")) for p in ("P1", "P2"))
    print(f"| {l} | {g(a,None,'recall_at_1')} | {g(a,'Packages','recall_at_1')} | {g(a,'Packages','recall_at_5')} | "
          f"{g(a,'Fruit','recall_at_1')} / {g(a,'Vegetables','recall_at_1')} | {g(a,None,'ece')} | "
          f"{g(b,None,'recall_at_1')} | {g(b,None,'recall_at_5')} | {g(b,'Packages','recall_at_1')} | {g(b,'Packages','recall_at_5')} | "
          f"{g(b,'Fruit','recall_at_1')} / {g(b,'Vegetables','recall_at_1')} | {g(b,None,'ece')} |")
print(f"\n(JSON reports in {out})")
PYEOF
