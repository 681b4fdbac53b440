#!/usr/bin/env bash
# Webhook latency benchmark (not a test): how long after a lookup's answer its
# `case.created` webhook reaches a loopback receiver, against the 2 s goal
# (p99 on an idle service), one lookup at a time and with 8 clients at once.
#   ./scripts/bench_webhooks.sh [LOOKUPS_PER_PHASE=100]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100}
./scripts/setup.sh --no-python >/dev/null
cargo build --release -q
WORK=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
F=tests/fixtures/photos
printf 'image,product_id,label,brand\n%s,coffee-cup,authentic,Acme\n%s,cat-poster,counterfeit,Acme\n%s,astro-print,authentic,Nasa\n%s,rocket-toy,counterfeit,Nasa\n' \
  "$PWD/$F/coffee.jpg" "$PWD/$F/chelsea.jpg" "$PWD/$F/astronaut.jpg" "$PWD/$F/rocket.jpg" > "$WORK/m.csv"
./target/release/knockoff index "$WORK/m.csv" --index "$WORK/idx" 2>/dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HOOK=$(free_port); PORT=$(free_port)
# The receiver: answers 200 and logs (arrival time, case id) per delivery.
python3 - "$HOOK" "$WORK/arrivals" <<'PYEOF' & PIDS+=($!)
import http.server, json, sys, time
log = open(sys.argv[2], "a", buffering=1)
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        log.write(f'{time.time()} {json.loads(body)["data"]["case_id"]}\n')
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PYEOF
cat > "$WORK/k.toml" <<TOML
allow_private_urls = true
[[webhooks]]
url = "http://127.0.0.1:$HOOK/hook"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
events = ["case.created"]
TOML
./target/release/knockoff serve --index "$WORK/idx" --addr "127.0.0.1:$PORT" --config "$WORK/k.toml" 2>"$WORK/serve.log" & PIDS+=($!)
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.2; done
python3 - "$PORT" "$WORK/arrivals" "$N" "$PWD/$F/rocket.jpg" <<'PYEOF'
import concurrent.futures, json, sys, time, urllib.request
port, arrivals, n, photo = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), open(sys.argv[4], "rb").read()
def lookup(i):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/lookup?listing_id=b{i}&seller_id=bench", data=photo,
                                 headers={"Content-Type": "image/jpeg"})
    case = json.load(urllib.request.urlopen(req))["case_id"]
    return case, time.time()
def phase(name, clients, start):
    answered = {}
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for case, t in pool.map(lookup, range(start, start + n)):
            answered[case] = t
            if clients == 1:
                time.sleep(0.05)
    deadline = time.time() + 60
    while time.time() < deadline:
        got = {int(c): float(t) for t, c in (l.split() for l in open(arrivals))}
        if all(c in got for c in answered):
            break
        time.sleep(0.1)
    lat = sorted(max(0.0, got[c] - t) for c, t in answered.items() if c in got)
    missing = len(answered) - len(lat)
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
    print(f"{name:<28} {len(lat):>4} delivered  p50 {q(0.5)*1000:6.0f} ms  p99 {q(0.99)*1000:6.0f} ms  max {lat[-1]*1000:6.0f} ms"
          f"  p99/goal(2 s) {q(0.99)/2:.2f}" + (f"  MISSING {missing}" if missing else ""))
print(f"webhook latency: lookup answered -> case.created received (loopback receiver), {n} lookups a phase")
phase("idle, one lookup at a time", 1, 0)
phase("8 clients at once", 8, n)
PYEOF
