# Sourced (never run) by the grocery evaluation scripts, from the project root:
# checks that ../shared/data/grocery is there, sets DATA, K (the binary:
# $KNOCKOFF_BIN, else a fresh release build) and WORK (a temporary folder,
# removed on exit).
DATA=../shared/data/grocery
[ -d "$DATA" ] || { echo "$(basename "$0") needs $DATA" >&2; exit 1; }
./scripts/setup.sh --no-python >/dev/null
K=${KNOCKOFF_BIN:-./target/release/knockoff}
[ -n "${KNOCKOFF_BIN:-}" ] || cargo build --release -q
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
