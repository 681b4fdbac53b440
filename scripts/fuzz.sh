#!/usr/bin/env bash
# The fuzz campaign (tests/fuzz.rs): mutates the seed corpus of every target
# for SECONDS in all (default 600), under a memory cap, so an input that makes
# the process allocate without bound aborts it instead of the machine.
#   ./scripts/fuzz.sh [SECONDS]            all targets
#   FUZZ_TARGETS=decode,body ./scripts/fuzz.sh 300
# New corpus entries (inputs that reached an outcome not seen before) are
# copied to tests/fuzz/corpus/<target>/; panics and aborts to
# tests/fuzz/crashes/<target>/ — commit both: `cargo test --test fuzz`
# replays them on every run. A summary line per target is printed and
# appended to target/fuzz-log.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TOTAL=${1:-600}
OUT=target/fuzz-out
MEM_KB=${FUZZ_MEM_KB:-6000000}   # 6 GB of address space
mkdir -p "$OUT" tests/fuzz/crashes
cargo test --release --test fuzz --no-run -q 2>/dev/null
started=$(date +%s)
round=0
while :; do
  left=$(( SECONDS_TOTAL - ($(date +%s) - started) ))
  [ "$left" -gt 5 ] || break
  round=$((round + 1))
  set +e
  ( ulimit -v "$MEM_KB"; FUZZ_SECONDS=$left FUZZ_OUT=$OUT FUZZ_SEED=$(( $(date +%s) + round )) \
      cargo test --release --test fuzz -q campaign -- --ignored --nocapture --test-threads 1 ) 2>&1 | tee -a target/fuzz-log.txt | grep '^\[fuzz\]'
  rc=${PIPESTATUS[0]}
  set -e
  # An abort leaves the input that caused it as current-<target>.
  for cur in "$OUT"/current-*; do
    [ -e "$cur" ] || continue
    t=${cur##*/current-}
    mkdir -p "tests/fuzz/crashes/$t"
    mv "$cur" "tests/fuzz/crashes/$t/abort-$(sha256sum "$cur" | cut -c1-16)"
    echo "[fuzz] $t: the process died (rc $rc) on an input, kept in tests/fuzz/crashes/$t/" | tee -a target/fuzz-log.txt
  done
  [ "$rc" = 0 ] && break
done
# Panics found by the campaign become regression inputs too.
if [ -d "$OUT/panics" ]; then
  for d in "$OUT"/panics/*/; do t=$(basename "$d"); mkdir -p "tests/fuzz/crashes/$t"; cp "$d"* "tests/fuzz/crashes/$t/" 2>/dev/null || true; done
fi
for d in "$OUT"/*/; do
  t=$(basename "$d"); [ "$t" = panics ] && continue
  mkdir -p "tests/fuzz/corpus/$t"; cp -n "$d"* "tests/fuzz/corpus/$t/" 2>/dev/null || true
done
echo "[fuzz] done: $(( $(date +%s) - started )) s; corpus $(find tests/fuzz/corpus -type f | wc -l) files, crashes $(find tests/fuzz/crashes -type f | wc -l) files" | tee -a target/fuzz-log.txt
