#!/usr/bin/env bash
# Copy-detection dev protocol on ../shared/data/grocery (`knockoff make-copies`):
# per product, every other in-store photo is an original (the catalog); the
# queries are one edited copy of each original (14 edits in turn, fixed seed,
# `copy_of` names the original) and the next photo of the same product — a
# consecutive shot of the same item, the hardest non-copy. Runs the photos-val
# protocol (4 originals per product, seed 7) and the photos-train one (6 per
# product, seed 11; the copy model's weights were fitted on it), and prints the
# copy metrics overall and per edit (source ranked first / detected with its
# source at the score that flags 1 % of the non-copies).
#   MODEL=sscd-lite0 ./scripts/eval_copies.sh     # another model than the default
#   GATE=off ./scripts/eval_copies.sh              # calibrate the copy check's gate
# GATE=off looks every query up with the gate off (`knockoff eval
# --no-copy-gate`: every photo checked in full, the gate only measured) and
# prints, per threshold, the detected copies (source first, above the score
# that flags 1 % of the non-copies) the gate would have stopped and the share
# of non-copies (the next shot of the same item: the hardest) it lets through
# to the full check. The shipped threshold is GATE_INLIERS in
# src/search/copy/verify.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
# KNOCKOFF_BIN: a built binary to use instead of building.
source scripts/eval_env.sh
MODEL_ARGS=(); [ -n "${MODEL:-}" ] && MODEL_ARGS=(--model "$MODEL")
GATE_ARGS=(); [ "${GATE:-on}" = off ] && GATE_ARGS=(--no-copy-gate)
for spec in val:4:7 train:6:11; do
  IFS=: read -r split per seed <<< "$spec"
  "$K" make-copies "$DATA/photos-$split.csv" --out "$WORK/$split" --per-product "$per" --seed "$seed" > /dev/null
  "$K" index --index "$WORK/$split/idx" "${MODEL_ARGS[@]}" "$WORK/$split/catalog.csv" 2> /dev/null
  "$K" eval --index "$WORK/$split/idx" --queries "$WORK/$split/queries.csv" ${GATE_ARGS[@]+"${GATE_ARGS[@]}"} \
    --per-query "$WORK/$split/per-query.jsonl" > "$WORK/$split/report.json" 2> /dev/null
  python3 - "$WORK/$split/report.json" "$split" <<'PYEOF'
import json, sys
d, split = json.load(open(sys.argv[1])), sys.argv[2]
f = lambda v: "-" if v is None else f"{v:.3f}"
print(f"photos-{split} ({d['model']}): {d['n_copy_queries']} copies, {d['by_group']['not-a-copy']['n_queries']} non-copies; "
      f"copy_recall_at_1 {f(d['copy_recall_at_1'])}, copy_tpr_at_fpr_1pct {f(d['copy_tpr_at_fpr_1pct'])}, "
      f"copy_auc {f(d['copy_auc'])}, copy_ece {f(d['copy_ece'])}; non-copies checked in full (past the gate) {f(d['non_copies_checked_in_full'])}; product recall_at_1 {f(d['recall_at_1'])}; "
      f"lookup p50 {d['latency']['search']['p50_ms']:.1f} ms search + {d['latency']['embed']['p50_ms']:.1f} ms decode/embed/features")
print("| edit | copies | source first | detected at 1% FPR |")
print("|---|---|---|---|")
for g, m in sorted(d["by_group"].items()):
    if g != "not-a-copy":
        print(f"| {g} | {m['n_copy_queries']} | {f(m['copy_recall_at_1'])} | {f(m['copy_tpr_at_fpr_1pct'])} |")
PYEOF
  [ "${GATE:-on}" = off ] || continue
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
