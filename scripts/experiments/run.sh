#!/usr/bin/env bash
# Runs one accuracy experiment from a clean checkout, computing the cached
# embeddings it needs first (in $EXP_DIR, default /tmp/knockoff-exp):
#   ./scripts/experiments/run.sh NAME [ARGS...]     e.g. run.sh flip_tta l0
#   ./scripts/experiments/run.sh --list
# Needs ../shared/data/grocery; installs what it uses with ./scripts/setup.sh --with-sscd
# (+ opencv-python-headless into .venv for sift_rerank).
set -euo pipefail
cd "$(dirname "$0")/../.."
E=scripts/experiments
if [ "${1:-}" = "--list" ] || [ $# -eq 0 ]; then
  grep -h '^ *# [a-z_]*:' "$E/run.sh" | sed 's/^ *# //'; exit 0
fi
[ -d ../shared/data/grocery ] || { echo "run.sh needs ../shared/data/grocery" >&2; exit 1; }
./scripts/setup.sh --with-sscd >&2
PY=.venv/bin/python
export EXP_DIR=${EXP_DIR:-/tmp/knockoff-exp}
mkdir -p "$EXP_DIR"
# Each cache, made once: grocery embeddings (orig + flip), crops, augmented catalog, trimmed packshots.
need() {
  for t in "$@"; do
    case $t in
      l0) [ -f "$EXP_DIR/l0.npz" ] || $PY $E/embed_grocery.py models/efficientnet-lite0 l0 ;;
      sscd) [ -f "$EXP_DIR/sscd.npz" ] || $PY $E/embed_grocery.py models/sscd-distilled sscd ;;
      l0gem)
        if [ ! -f "$EXP_DIR/l0gem.npz" ]; then
          [ -d "$EXP_DIR/lite0-gem" ] || { echo "l0gem: export GeM first: .venv/bin/python scripts/export_efficientnet_lite.py --pool gem --out $EXP_DIR/lite0-gem (see scripts/export_efficientnet_lite.py)" >&2; exit 1; }
          $PY $E/embed_grocery.py "$EXP_DIR/lite0-gem" l0gem
        fi ;;
      crops) [ -f "$EXP_DIR/crops.npz" ] || $PY $E/embed_crops.py ;;
      crops_cat) [ -f "$EXP_DIR/crops_cat.npz" ] || $PY $E/embed_crops.py catalog ;;
      aug) [ -f "$EXP_DIR/aug.npz" ] || $PY $E/embed_augmented.py 16 ;;
      trim) [ -f "$EXP_DIR/trim.npz" ] || $PY $E/embed_trimmed.py ;;
      cv2) $PY -c 'import cv2' 2>/dev/null || .venv/bin/pip install -q opencv-python-headless ;;
    esac
  done
}
name=$1; shift
case $name in
  # flip_tta: horizontal-flip test-time augmentation, Lite0 (args: cache tags, e.g. l0)
  flip_tta) need l0 ;;
  # gem_sscd_fusion: GeM pooling, SSCD alone, SSCD+Lite0 fusion weights, flips
  gem_sscd_fusion) need l0 sscd l0gem ;;
  # supervised_whitening: supervised whitening / LDA on P2
  supervised_whitening) need l0 sscd ;;
  # whitening_unseen_products: whitening evaluated on products the fit never saw
  whitening_unseen_products) need l0 sscd ;;
  # whitening_other_products: whitening learned on other products (P1-style)
  whitening_other_products) need l0 sscd ;;
  # sscd_weight_val: SSCD weight by category, on val
  sscd_weight_val) need l0 sscd ;;
  # sscd_weight_train: SSCD weight by category, on train (how 0.3 was chosen)
  sscd_weight_train) need l0 sscd ;;
  # sift_rerank: SIFT + RANSAC re-ranking of the top K (args: sift 10 640)
  sift_rerank) need l0 cv2 ;;
  # catalog_augmentation: augmented copies of the packshots in the catalog (+ query crop 0.7)
  catalog_augmentation) need l0 sscd aug ;;
  # focus_crop_fraction: focus-crop fraction (chosen on train), P1/P2 on val
  focus_crop_fraction) need l0 sscd crops ;;
  # crop_packshots: cropping the catalog packshots too
  crop_packshots) need l0 sscd crops crops_cat ;;
  # multicrop_trimmed_packshots: multi-crop queries, trimmed packshots
  multicrop_trimmed_packshots) need l0 sscd crops trim ;;
  # focus_crop_lite0: the focus crop with Lite0 alone
  focus_crop_lite0) need l0 sscd crops ;;
  # border_share: plain-border share of studio images vs shelf photos
  border_share) ;;
  # single_photo_transfer: one photo per product, three make-ups: shipped-style map vs mappings on plain / hard synthetic views (builds the binary)
  single_photo_transfer) cargo build --release -q ;;
  # presence_lead_risk: the lead over the 10th product in the presence model, thresholds on halves vs two clusters (look-alike)
  presence_lead_risk)
    [ -f "$EXP_DIR/single-photo/sscd-lite0-val.jsonl" ] || { cargo build --release -q; $PY $E/single_photo_transfer.py >&2; } ;;
  *) echo "unknown experiment '$name' (run.sh --list)" >&2; exit 2 ;;
esac
exec $PY "$E/$name.py" "$@"
