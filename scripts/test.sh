#!/usr/bin/env bash
# Sets everything up (idempotent), checks formatting and lints, and runs every test.
#   ./scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --with-browser
echo "[test] cargo fmt --check" >&2
cargo fmt --check
echo "[test] cargo clippy --all-targets -- -D warnings" >&2
cargo clippy --release --all-targets -q -- -D warnings
# New indexes in the tests use Lite0 whether or not the optional SSCD model is
# installed (the default model otherwise follows what is installed).
export KNOCKOFF_DEFAULT_MODEL=${KNOCKOFF_DEFAULT_MODEL:-efficientnet-lite0}
cargo test --release "$@"
