#!/usr/bin/env bash
# HTTP benchmark (not a test): wrk on loopback against POST /v1/lookup with real
# photos at concurrency 1, 2, 8 and 32, and in the same run the library's own
# embed+search throughput (`knockoff bench-lookup`, no HTTP) as the baseline.
#   ./scripts/bench_http.sh [SECONDS_PER_LEVEL=10]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
DATA=../shared/data/grocery
[ -d "$DATA" ] || { echo "bench_http.sh needs ../shared/data/grocery" >&2; exit 1; }
command -v wrk >/dev/null || { echo "[bench] installing wrk (apt)" >&2; apt-get install -y -qq wrk >/dev/null; }
./scripts/setup.sh --no-python >/dev/null
cargo build --release -q
WORK=$(mktemp -d); PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
# Catalog: the studio images + train photos; queries: 64 val photos.
python3 - "$DATA" "$WORK" <<'PYEOF'
import csv, os, sys
data, work = sys.argv[1], sys.argv[2]
with open(f"{work}/catalog.csv", "w", newline="") as f:
    w = csv.writer(f); w.writerow(["image", "product_id", "label", "brand", "name", "category"])
    for m in ("catalog.csv", "photos-train.csv"):
        for r in csv.DictReader(open(os.path.join(data, m))):
            w.writerow([os.path.abspath(os.path.join(data, r["image"])), r["product_id"], r["label"], r["brand"], r["name"], r["category"]])
val = [os.path.abspath(os.path.join(data, r["image"])) for r in csv.DictReader(open(os.path.join(data, "photos-val.csv")))][::4][:64]
open(f"{work}/queries.txt", "w").write("\n".join(val) + "\n")
# wrk script: cycle through the query photos.
lua = ["bodies = {}"]
for i, p in enumerate(val):
    lua.append(f'local f = io.open("{p}", "rb"); bodies[{i+1}] = f:read("*all"); f:close()')
lua.append('n = 0\nrequest = function()\n  n = n % #bodies + 1\n  return wrk.format("POST", "/v1/lookup", {["Content-Type"] = "image/jpeg"}, bodies[n])\nend')
open(f"{work}/post.lua", "w").write("\n".join(lua) + "\n")
# The same lookups with listing context: each is recorded as a review case.
open(f"{work}/post-case.lua", "w").write("\n".join(lua).replace('"/v1/lookup"', '"/v1/lookup?seller_id=bench&listing_id=bench"') + "\n")
PYEOF
./target/release/knockoff index "$WORK/catalog.csv" --index "$WORK/idx" 2>/dev/null
mapfile -t Q < "$WORK/queries.txt"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
./target/release/knockoff serve --index "$WORK/idx" --addr "127.0.0.1:$PORT" 2>"$WORK/serve.log" & PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
echo "catalog: $(./target/release/knockoff stats --json --index "$WORK/idx" | python3 -c 'import json,sys; print(json.load(sys.stdin)["images"])') images; queries: ${#Q[@]} val photos; $DUR s per level; $(nproc) cores"
LIB1=$(./target/release/knockoff bench-lookup --index "$WORK/idx" --concurrency 1 --requests 200 "${Q[@]}")
LIB2=$(./target/release/knockoff bench-lookup --index "$WORK/idx" --concurrency "$(nproc)" --requests 400 "${Q[@]}")
echo "library (no HTTP): concurrency 1: $LIB1"
echo "library (no HTTP): concurrency $(nproc): $LIB2"
echo "| concurrency | requests/s | p50 ms | p99 ms | non-2xx | vs library |"
echo "|---|---|---|---|---|---|"
for c in 1 2 8 32; do
  wrk -t$(( c < 2 ? 1 : 2 )) -c$c -d${DUR}s --latency -s "$WORK/post.lua" "http://127.0.0.1:$PORT" > "$WORK/wrk-$c.txt" 2>&1
  python3 - "$WORK/wrk-$c.txt" "$c" "$LIB1" "$LIB2" <<'PYEOF'
import json, re, sys
t, c, lib1, lib2 = open(sys.argv[1]).read(), int(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
def ms(s):
    v, u = re.match(r"([\d.]+)(us|ms|s)", s).groups(); return float(v) * {"us": 1e-3, "ms": 1, "s": 1e3}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", t, re.M).group(1)); p99 = ms(re.search(r"^\s+99%\s+(\S+)", t, re.M).group(1))
non2 = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", t)) else 0
if c == 1:
    vs = f"p50 {p50 / lib1['p50_ms']:.2f}x library embed+search ({lib1['p50_ms']:.1f} ms)"
else:
    vs = f"{100 * rps / lib2['per_s']:.0f}% of library throughput ({lib2['per_s']:.0f}/s)"
print(f"| {c} | {rps:.1f} | {p50:.1f} | {p99:.1f} | {non2} | {vs} |")
PYEOF
done
# Recording cases: the c=1 run again with listing context (every lookup becomes a case), p50 ratio.
wrk -t1 -c1 -d${DUR}s --latency -s "$WORK/post-case.lua" "http://127.0.0.1:$PORT" > "$WORK/wrk-case.txt" 2>&1
wrk -t1 -c1 -d${DUR}s --latency -s "$WORK/post.lua" "http://127.0.0.1:$PORT" > "$WORK/wrk-1b.txt" 2>&1
python3 - "$WORK/wrk-1b.txt" "$WORK/wrk-case.txt" <<'PYEOF'
import re, sys
def p50(path):
    v, u = re.match(r"([\d.]+)(us|ms|s)", re.search(r"^\s+50%\s+(\S+)", open(path).read(), re.M).group(1)).groups()
    return float(v) * {"us": 1e-3, "ms": 1, "s": 1e3}[u]
a, b = p50(sys.argv[1]), p50(sys.argv[2])
print(f"recording review cases (listing context on every lookup), concurrency 1: p50 {b:.1f} ms vs {a:.1f} ms without ({b / a:.2f}x; goal <= 1.10x)")
PYEOF
echo "503s are the deliberate load shedding of a full inference queue (default depth 64)."
echo "server peak RSS: $(grep VmHWM /proc/$PID/status | awk '{print $2/1024 " MB"}')"
curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^knockoff_(http_requests_total\{method="POST",route="/v1/lookup"|lookup_copy_checks_total)' || true
# Copy detection's cost: the same c=1 run against a second server with
# `copy_detection = false` (the lookup as it was before copy detection), p50 ratio.
kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true
echo "copy_detection = false" > "$WORK/no-copies.toml"
./target/release/knockoff serve --index "$WORK/idx" --addr "127.0.0.1:$PORT" --config "$WORK/no-copies.toml" 2>>"$WORK/serve.log" & PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
wrk -t1 -c1 -d${DUR}s --latency -s "$WORK/post.lua" "http://127.0.0.1:$PORT" > "$WORK/wrk-nocopies.txt" 2>&1
wrk -t2 -c8 -d${DUR}s --latency -s "$WORK/post.lua" "http://127.0.0.1:$PORT" > "$WORK/wrk-nocopies-8.txt" 2>&1
python3 - "$WORK/wrk-1.txt" "$WORK/wrk-nocopies.txt" "$WORK/wrk-8.txt" "$WORK/wrk-nocopies-8.txt" <<'PYEOF'
import re, sys
def p50(path):
    v, u = re.match(r"([\d.]+)(us|ms|s)", re.search(r"^\s+50%\s+(\S+)", open(path).read(), re.M).group(1)).groups()
    return float(v) * {"us": 1e-3, "ms": 1, "s": 1e3}[u]
rps = lambda path: float(re.search(r"Requests/sec:\s+([\d.]+)", open(path).read()).group(1))
on, off = p50(sys.argv[1]), p50(sys.argv[2])
print(f"copy detection at concurrency 1: p50 {on:.1f} ms with, {off:.1f} ms without (copy_detection = false): {on / off:.2f}x (goal <= 1.10x)")
print(f"copy detection at concurrency 8: {rps(sys.argv[3]):.1f} requests/s with, {rps(sys.argv[4]):.1f} without: {rps(sys.argv[3]) / rps(sys.argv[4]):.2f}x of the throughput (goal >= 0.90x)")
PYEOF
