#!/usr/bin/env bash
# Engine benchmark behind the capacity plan (docs/capacity.md), not a test:
# starts PostgreSQL and Milvus standalone through scripts/cluster.sh in a
# temporary folder, measures them through their Python clients with the
# catalog's row and vector shapes, and stops them.
#   ./scripts/bench_engines.sh [N=50000] [DIM=1280]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50000}; DIM=${2:-1280}
WORK=$(mktemp -d)
trap './scripts/cluster.sh down "$WORK"; rm -rf "$WORK"' EXIT
eval "$(./scripts/cluster.sh up "$WORK")"
.cache/engines-venv/bin/python scripts/bench_engines.py "$N" "$DIM" "$KNOCKOFF_STORE" "$KNOCKOFF_VECTORS" "$(cat "$WORK/milvus.pid")"
