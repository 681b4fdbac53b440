#!/usr/bin/env bash
# Sets everything up (idempotent), builds, and runs knockoff's main job.
#   ./scripts/run.sh [knockoff args]   (default: embed the sample photos)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release -q
if [ $# -eq 0 ]; then
  set -- embed tests/fixtures/photos/coffee.jpg tests/fixtures/photos/chelsea.jpg
fi
exec ./target/release/knockoff "$@"
