#!/usr/bin/env bash
# Lookup latency while the service refits in the background, against the same
# service idle: index the P2 catalog (grocery catalog + train photos, less the
# last 60) without fitting, serve it with a 1 s refit check, time sequential
# lookups of 60 val photos (baseline), then add the other val photos and the 60
# train photos held back (+11 %, over the 10 % refit trigger) through an indexing
# job and time the same lookups from the job's end until /v1/stats shows the new
# calibration (each lookup of both windows after a /v1/stats call). The looked-up
# photos are never added: a photo that is in the catalog is a copy, whose check
# costs a lookup more, which is not what the refit costs.
# COPIES=1 (P2 catalog): the looked-up photos are in the catalog from the start, so
# lookups of both windows are copies (the copy check reads a thumbnail from the store).
# Prints p50 / p99 / max of both windows and the p99 ratio.
# SINGLE_PHOTO=1: a catalog with one photo per product instead (the 81 studio
# images), grown by 81 new products (each one's first shelf photo) to 162: the
# refit then fits on synthetic views, which the service's own model embeds.
#   [SINGLE_PHOTO=1] [COPIES=1] ./scripts/bench_refit.sh [MODEL]        (default efficientnet-lite0)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=../shared/data/grocery
[ -d "$DATA" ] || { echo "bench_refit.sh needs ../shared/data/grocery" >&2; exit 1; }
MODEL=${1:-efficientnet-lite0}
K=${KNOCKOFF_BIN:-./target/release/knockoff}
[ -n "${KNOCKOFF_BIN:-}" ] || cargo build --release -q
WORK=$(mktemp -d); trap 'kill $SERVER 2>/dev/null && wait $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
python3 - "$DATA" "$WORK" "${SINGLE_PHOTO:-0}" "${COPIES:-0}" <<'PYEOF'
import csv, os, sys
data, work, single, copies = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4] == "1"
cols = ["image", "product_id", "label", "brand", "name", "category"]
def rows(name):
    for r in csv.DictReader(open(os.path.join(data, name))):
        r["image"] = os.path.abspath(os.path.join(data, r["image"])); yield r
def new_products(name):
    seen = set()
    for r in rows(name):
        if r["product_id"] not in seen:
            seen.add(r["product_id"]); r["product_id"] += "-shelf"; yield r
# The first 60 val photos are the lookups (below): never added, or with COPIES=1 indexed from the start.
train, val = list(rows("photos-train.csv")), list(rows("photos-val.csv"))
looked_up = val[:60] if copies else []
parts = ((("catalog.csv", list(rows("catalog.csv"))), ("more.csv", list(new_products("photos-train.csv")))) if single else
         (("catalog.csv", [*rows("catalog.csv"), *train[:-60], *looked_up]), ("more.csv", [*val[60:], *train[-60:]])))
for out, rs in parts:
    with open(os.path.join(work, out), "w", newline="") as f:
        w = csv.DictWriter(f, cols, extrasaction="ignore"); w.writeheader(); w.writerows(rs)
PYEOF
"$K" index "$WORK/catalog.csv" --index "$WORK/idx" --model "$MODEL" --no-calibrate > /dev/null 2>&1
printf 'refit_interval_ms = 1000\nallow_private_urls = true\n' > "$WORK/k.toml"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$K" serve --index "$WORK/idx" --addr "127.0.0.1:$PORT" --config "$WORK/k.toml" > "$WORK/serve.log" 2>&1 &
SERVER=$!
python3 - "$PORT" "$DATA" "$WORK/more.csv" <<'PYEOF'
import csv, json, os, sys, time, urllib.request
port, data, more = sys.argv[1], sys.argv[2], sys.argv[3]
base = f"http://127.0.0.1:{port}"
for _ in range(120):
    try: urllib.request.urlopen(base + "/healthz"); break
    except Exception: time.sleep(0.5)
photos = [open(os.path.join(data, r["image"]), "rb").read() for r in csv.DictReader(open(os.path.join(data, "photos-val.csv")))][:60]
def lookup(i):
    req = urllib.request.Request(base + "/v1/lookup", data=photos[i % len(photos)], headers={"Content-Type": "image/jpeg"})
    t = time.perf_counter(); urllib.request.urlopen(req).read(); return (time.perf_counter() - t) * 1e3
def stats(): return json.load(urllib.request.urlopen(base + "/v1/stats"))
def pct(xs, q): xs = sorted(xs); return xs[min(len(xs) - 1, int(q * len(xs)))]
for i in range(20): lookup(i)
# The same requests in both windows: each lookup follows a /v1/stats call (the
# refit window polls it to see the new calibration arrive).
baseline = []
for i in range(200):
    stats(); baseline.append(lookup(i))
before = (stats().get("calibration") or {}).get("fitted_at")
job = json.load(urllib.request.urlopen(urllib.request.Request(base + "/v1/jobs/index", data=open(more, "rb").read(), headers={"Content-Type": "text/csv"})))
while json.load(urllib.request.urlopen(base + "/v1/jobs/" + job["id"]))["status"] not in ("done", "done_with_errors", "failed"): time.sleep(0.2)
during, i, t0 = [], 0, time.time()
while (stats().get("calibration") or {}).get("fitted_at") == before and time.time() - t0 < 300:
    during.append(lookup(i)); i += 1
print(f"refit bench ({stats()['model']}): {len(baseline)} idle lookups p50 {pct(baseline,.5):.1f} ms p99 {pct(baseline,.99):.1f} ms max {max(baseline):.0f} ms; "
      f"{len(during)} lookups during the refit ({time.time()-t0:.1f} s) p50 {pct(during,.5):.1f} ms p99 {pct(during,.99):.1f} ms max {max(during):.0f} ms; "
      f"p99 ratio {pct(during,.99)/pct(baseline,.99):.2f}x (goal <= 1.5x)")
PYEOF
