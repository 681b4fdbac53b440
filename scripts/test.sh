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
echo "[test] scripts/check_layers.py (the use graph follows the layers, no import circle, no file over 500 lines)" >&2
python3 scripts/check_layers.py
# New indexes in the tests use Lite0 whether or not the optional SSCD model is
# installed (the default model otherwise follows what is installed).
export KNOCKOFF_DEFAULT_MODEL=${KNOCKOFF_DEFAULT_MODEL:-efficientnet-lite0}
# The shared backend's tests (tests/backends.rs, tests/replicas.rs) run on
# PostgreSQL + Milvus started here (each test makes a database of its own);
# under CI they are stopped again at the end. KNOCKOFF_STORE / KNOCKOFF_VECTORS
# are unset so that no other test's `knockoff` process uses them.
cluster_env=$(./scripts/cluster.sh up) || { echo "test.sh: the shared backend's engines did not start (the [cluster] line above says which and where its log is)" >&2; exit 1; }
eval "$cluster_env"
export KNOCKOFF_TEST_STORE=$KNOCKOFF_STORE KNOCKOFF_TEST_VECTORS=$KNOCKOFF_VECTORS
unset KNOCKOFF_STORE KNOCKOFF_VECTORS
if [ -n "${CI:-}" ]; then trap './scripts/cluster.sh down' EXIT; fi
cargo test --release "$@"
