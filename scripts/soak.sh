#!/usr/bin/env bash
# Soak test on loopback: a steady mix of lookups, batch lookups, adds,
# deletes and indexing jobs against a real `knockoff serve`, with one restart
# half-way, for MINUTES (default 10). Prints per minute: server RSS, open file
# descriptors, lookup p50 / p99 and counts by status; at the end checks that
# RSS after warm-up grew by at most 10%, that no error other than deliberate
# 503s occurred, and that the catalog equals the expected one. Exit 1 if not.
#   ./scripts/soak.sh [MINUTES]
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-10}
./scripts/setup.sh >&2
cargo build --release -q
WORK=$(mktemp -d); trap 'kill $(cat "$WORK/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$WORK"' EXIT
./target/release/knockoff index scripts/demo-catalog.csv --index "$WORK/idx" 2>/dev/null
PORT=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
exec .venv/bin/python - "$WORK" "$PORT" "$MINUTES" <<'PYEOF'
import io, json, os, random, signal, subprocess, sys, threading, time, urllib.request, urllib.error
from PIL import Image

work, port, minutes = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
base = f"http://127.0.0.1:{port}"
photos = [open(f"tests/fixtures/photos/{n}.jpg", "rb").read() for n in ["coffee", "chelsea", "astronaut", "rocket"]]
rng = random.Random(7)

def start():
    log = open(f"{work}/serve.log", "a")
    p = subprocess.Popen(["./target/release/knockoff", "serve", "--index", f"{work}/idx", "--addr", f"127.0.0.1:{port}",
                          "--queue-depth", "8"], stdout=log, stderr=log)
    open(f"{work}/pid", "w").write(str(p.pid))
    for _ in range(600):
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1); return p
        except Exception:
            time.sleep(0.1)
    sys.exit("server did not come up")

def call(method, path, body=None, ctype=None, timeout=30):
    req = urllib.request.Request(base + path, data=body, method=method, headers={"Content-Type": ctype} if ctype else {})
    t = time.time()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), time.time() - t
    except urllib.error.HTTPError as e:
        return e.code, e.read(), time.time() - t
    except Exception as e:
        return 0, str(e).encode(), time.time() - t

def variant(i):
    """A JPEG that no other add has sent: a photo with one pixel changed."""
    im = Image.open(io.BytesIO(photos[i % 4])).convert("RGB")
    im.putpixel((i % im.width, (i // im.width) % im.height), (i % 251, (i * 7) % 253, (i * 13) % 255))
    out = io.BytesIO(); im.save(out, "JPEG", quality=90); return out.getvalue()

lock = threading.Lock()
stats = {"lat": [], "codes": {}, "unexpected": []}
def note(kind, code, dt, body=b""):
    with lock:
        stats["codes"][f"{kind} {code}"] = stats["codes"].get(f"{kind} {code}", 0) + 1
        if kind == "lookup" and code == 200: stats["lat"].append(dt)
        if code not in (200, 201, 202, 204, 503):
            stats["unexpected"].append(f"{kind} {code} {body[:200]!r}")

expected = {"demo-coffee-cup", "demo-cat-poster", "demo-astronaut-print", "demo-rocket-toy"}
added, jobs = [], []
stop = threading.Event()
serving = threading.Event()  # cleared while the server restarts: lookups wait

def lookups():
    while not stop.is_set():
        serving.wait()
        code, body, dt = call("POST", "/v1/lookup?k=5", rng.choice(photos), "image/jpeg")
        note("lookup", code, dt, body); time.sleep(0.05)

def rss_fds(pid):
    rss = next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))

proc = start()
serving.set()
threads = [threading.Thread(target=lookups, daemon=True) for _ in range(3)]
for t in threads: t.start()
t0, n, minute, restarted, rows = time.time(), 0, 0, False, []
print(f"soak: {minutes} min on {base}; 3 lookup loops, 1 batch / add / delete per second, a job per minute, a restart at half-time", flush=True)
while time.time() - t0 < minutes * 60:
    n += 1
    b64 = [{"image_base64": __import__("base64").b64encode(rng.choice(photos)).decode()} for _ in range(3)]
    code, body, dt = call("POST", "/v1/lookup/batch", json.dumps({"images": b64}).encode(), "application/json"); note("batch", code, dt, body)
    pid_ = f"soak-{n}"
    code, body, dt = call("PUT", f"/v1/products/{pid_}", json.dumps({"label": rng.choice(["authentic", "counterfeit"])}).encode(), "application/json"); note("put", code, dt, body)
    code, body, dt = call("POST", f"/v1/products/{pid_}/images", variant(n), "image/jpeg"); note("add", code, dt, body)
    if code in (200, 201): added.append(pid_); expected.add(pid_)
    if len(added) > 20:
        victim = added.pop(rng.randrange(len(added) - 10))
        code, body, dt = call("DELETE", f"/v1/products/{victim}"); note("delete", code, dt, body)
        if code == 200: expected.discard(victim)
    if n % 60 == 1:
        paths = []
        for k in range(3):
            p = f"{work}/job-{n}-{k}.jpg"; open(p, "wb").write(variant(100000 + n * 3 + k)); paths.append(p)
        manifest = "image,product_id,label\n" + "".join(f"{p},job-{n}-{k},authentic\n" for k, p in enumerate(paths))
        code, body, dt = call("POST", "/v1/jobs/index", manifest.encode(), "text/csv"); note("job", code, dt, body)
        if code == 202: jobs.append(json.loads(body)["id"]); expected.update(f"job-{n}-{k}" for k in range(3))
    if not restarted and time.time() - t0 > minutes * 30:
        serving.clear(); time.sleep(0.5)  # let in-flight lookups finish
        proc.send_signal(signal.SIGTERM); proc.wait(timeout=60); proc = start(); restarted = True; serving.set()
        print(f"  restarted the server (SIGTERM, then start) at {time.time() - t0:.0f} s", flush=True)
    if time.time() - t0 >= (minute + 1) * 60:
        minute += 1
        with lock:
            lat = sorted(stats["lat"]); stats["lat"] = []
            codes = dict(stats["codes"]); stats["codes"] = {}
        rss, fds = rss_fds(proc.pid)
        p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3 if lat else float("nan")
        rows.append((minute, rss, fds, p(0.5), p(0.99), codes, restarted))
        print(f"  min {minute:>2}: rss {rss:6.1f} MB  fds {fds:3d}  lookup p50 {p(0.5):6.1f} ms  p99 {p(0.99):6.1f} ms  {json.dumps(codes, sort_keys=True)}", flush=True)
    time.sleep(max(0.0, t0 + n - time.time()))
stop.set()
for t in threads: t.join()
for j in jobs:
    for _ in range(600):
        code, body, _ = call("GET", f"/v1/jobs/{j}")
        if json.loads(body)["status"] in ("done", "done_with_errors", "failed"): break
        time.sleep(0.2)
# The catalog equals the expected one: every expected product is there, nothing else.
code, body, _ = call("GET", "/v1/stats"); st = json.loads(body)
missing = [p for p in sorted(expected) if call("GET", f"/v1/products/{p}")[0] != 200]
ok = True
if missing or st["products"] != len(expected):
    ok = False; print(f"FAIL catalog: {len(missing)} expected products missing {missing[:5]}, stats says {st['products']} products, expected {len(expected)}")
# RSS growth per server process: after its first full minute (warm-up), at most 10%.
growth, warm = 0.0, []
for segment in (False, True):
    seg = [r[1] for r in rows if r[6] == segment]
    if segment:
        seg = seg[1:]  # the minute of the restart mixes two processes
    seg = seg[1:] or seg  # warm-up
    if seg:
        warm.append(seg[0]); growth = max(growth, (max(seg) - seg[0]) / seg[0])
        if (max(seg) - seg[0]) / seg[0] > 0.10:
            ok = False; print(f"FAIL rss grew from {seg[0]:.1f} to {max(seg):.1f} MB after warm-up")
if stats["unexpected"]:
    ok = False; print(f"FAIL {len(stats['unexpected'])} unexpected errors, e.g. {stats['unexpected'][:3]}")
print(f"{'PASS' if ok else 'FAIL'}: {st['products']} products / {st['images']} images as expected; rss growth after warm-up at most {growth:.1%} per process; "
      f"unexpected errors {len(stats['unexpected'])}; one restart", flush=True)
proc.send_signal(signal.SIGTERM); proc.wait(timeout=60)
sys.exit(0 if ok else 1)
PYEOF
