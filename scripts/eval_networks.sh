#!/usr/bin/env bash
# Seller networks on generated marketplace streams (`knockoff eval --networks`):
# 20 photos each re-posted by 4 other sellers with reseller edits, among other
# photos posted once (other shots of the same products among them). Three photo
# pools (grocery photos-val, photos-train, the 81 studio packshots) x the models
# installed; prints pairwise precision and recall per make-up, the edits whose
# re-posts missed their network, and the time one listing takes to join.
#   FILLER=100000 ./scripts/eval_networks.sh   # the join time after 100,000 earlier cases (one make-up; ~10 min)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/eval_env.sh
MODELS=$("$K" models 2>/dev/null | awk '$NF == "ok" {print $1}' | grep -E '^(efficientnet-lite0|sscd-lite0)$' || true)
run() { # name model pool [filler]
  "$K" eval --model "$2" --catalog "$DATA/catalog.csv" --queries "$DATA/$3" --networks 20 --reposts 4 --unrelated 400 \
      --filler-cases "${4:-0}" > "$WORK/$1.json" 2> "$WORK/$1.err" || { tail -5 "$WORK/$1.err" >&2; exit 1; }
  python3 - "$WORK/$1.json" "$1" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
missed = ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in r["reposts_joined"].items() if v[0] < v[1]) or "-"
ms = "/".join(f"{x:.0f}" for x in r["join_ms"])
print(f"{sys.argv[2]:<28} {r['listings']:>5} {r['filler_cases']:>7} {r['precision']:.3f} {r['recall']:.3f} {ms:>12}  {missed}")
PYEOF
}
echo "make-up                      listings  filler  prec  recall  join ms p50/p99/max  re-posts that missed"
if [ -n "${FILLER:-}" ]; then
  run "efficientnet-lite0 val" efficientnet-lite0 photos-val.csv "$FILLER"
  exit 0
fi
for m in $MODELS; do
  for pool in photos-val photos-train catalog; do
    run "$m ${pool#photos-}" "$m" "$pool.csv"
  done
done
