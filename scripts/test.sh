#!/usr/bin/env bash
# Sets everything up (idempotent) and runs every test.
#   ./scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --with-browser
cargo test --release "$@"
