#!/usr/bin/env bash
# Sets everything up (idempotent), builds, and starts the lookup service on the
# embedded default store in ./index/ (web page and API on http://127.0.0.1:8080).
# A missing ./index/ is seeded with a 4-product demo catalog (scripts/demo-catalog.csv);
# index your own with: ./target/release/knockoff index MANIFEST.csv
#   ./scripts/run.sh                 serve (flags and KNOCKOFF_* variables apply, e.g. KNOCKOFF_ADDR)
#   ./scripts/run.sh <subcommand>    run any other knockoff command instead
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --no-python
cargo build --release -q
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  exec ./target/release/knockoff "$@"
fi
INDEX=${KNOCKOFF_INDEX:-index}
if [ ! -f "$INDEX/catalog.sqlite3" ]; then
  echo "[run] $INDEX/ is empty: seeding the demo catalog (scripts/demo-catalog.csv)" >&2
  ./target/release/knockoff index scripts/demo-catalog.csv --index "$INDEX"
fi
exec ./target/release/knockoff serve --index "$INDEX" "$@"
