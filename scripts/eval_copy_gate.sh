#!/usr/bin/env bash
# Calibrates the copy check's gate (src/search/copy/gate.rs): the copy
# protocols of scripts/eval_copies.sh (photos-val: 4 originals per product,
# seed 7; photos-train: 6, seed 11) looked up with the gate off
# (`knockoff eval --no-copy-gate`: every photo checked in full, the gate only
# measured), then, per threshold, how many detected copies (source first,
# above the score that flags 1 % of the non-copies) the gate would have
# stopped, and the share of non-copies (the next shot of the same item: the
# hardest) it lets through to the full check. The shipped threshold is
# GATE_INLIERS in src/search/copy/verify.rs.
#   MODEL=sscd-lite0 ./scripts/eval_copy_gate.sh     # another model than the default
set -euo pipefail
cd "$(dirname "$0")/.."
# KNOCKOFF_BIN: a built binary to use instead of building.
source scripts/eval_env.sh
MODEL_ARGS=(); [ -n "${MODEL:-}" ] && MODEL_ARGS=(--model "$MODEL")
for spec in val:4:7 train:6:11; do
  IFS=: read -r split per seed <<< "$spec"
  "$K" make-copies "$DATA/photos-$split.csv" --out "$WORK/$split" --per-product "$per" --seed "$seed" > /dev/null
  "$K" index --index "$WORK/$split/idx" "${MODEL_ARGS[@]}" "$WORK/$split/catalog.csv" 2> /dev/null
  "$K" eval --index "$WORK/$split/idx" --queries "$WORK/$split/queries.csv" --no-copy-gate \
    --per-query "$WORK/$split/per-query.jsonl" > "$WORK/$split/report.json" 2> /dev/null
  python3 - "$WORK/$split/per-query.jsonl" "$split" "$(grep -oP 'GATE_INLIERS: usize = \K\d+' src/search/copy/verify.rs)" <<'PYEOF'
import collections, json, sys
rows, split, shipped = [json.loads(l) for l in open(sys.argv[1])], sys.argv[2], int(sys.argv[3])
checks = [r["copy_check"] for r in rows]
non = sorted((c["score"] for c in checks if not c["is_copy"]), reverse=True)
flag = non[int(0.01 * len(non))]
detected = [(r["image"], r["copy_check"]) for r in rows if r["copy_check"]["is_copy"] and r["copy_check"]["source_first"] and r["copy_check"]["score"] > flag]
nons = [c for c in checks if not c["is_copy"]]
through = lambda c, g: c["gate_inliers"] is None or c["gate_inliers"] >= g
print(f"photos-{split}: {len(detected)} detected copies, {len(nons)} non-copies; shipped threshold {shipped}")
print("| glance points | detected copies stopped | non-copies checked in full | stopped edits |")
print("|---|---|---|---|")
for g in sorted({4, 6, 8, 10, 12, 15, 20, shipped}):
    stopped = [img for img, c in detected if not through(c, g)]
    edits = collections.Counter(img.rsplit("-", 1)[-1].rsplit(".", 1)[0] for img in stopped)
    mark = " (shipped)" if g == shipped else ""
    print(f"| {g}{mark} | {len(stopped)} ({len(stopped) / max(len(detected), 1):.3f}) | {sum(through(c, g) for c in nons) / len(nons):.2f} | {dict(edits) or '-'} |")
PYEOF
done
