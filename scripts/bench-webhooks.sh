#!/usr/bin/env bash
# Outbound webhooks (issue 12), side by side in one run:
#   A: a server with no webhook subscriber,
#   B: a server whose subscriber (every event type) never answers: each
#      delivery waits out webhooks.outbound.timeout_ms, then retries,
# both taking the same intake load (orders, closed loop), interleaved; then
#   C: deliveries per second from server A to a fast local receiver (a
#      subscriber for `confirmed`, fed by a closed-loop intake burst): the
#      receiver stamps each request; rate = requests / (last - first).
# Prints the intake JSON heads and a Markdown table (docs/benchmarks.md).
#
#   cargo build --release --bin rushhour && scripts/bench-webhooks.sh
#   BIN=target/debug/rushhour DURATION=8s scripts/bench-webhooks.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN="${BIN:-${CARGO_TARGET_DIR:-target}/release/rushhour}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
BURST_DURATION="${BURST_DURATION:-5s}"
TMP="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

# Receivers: 8301 answers 200 and logs one timestamp per request; 8302
# accepts and never answers.
cat >"$TMP/receiver.py" <<'PY'
import http.server, socket, sys, threading, time
mode, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if mode == "hang":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); s.listen(4096); held = []
    while True:
        held.append(s.accept()[0])
out = open(log, "a", buffering=1)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
        out.write(f"{time.time()}\n")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer.daemon_threads = True
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
python3 "$TMP/receiver.py" ok 8301 "$TMP/ok.log" & PIDS+=($!)
python3 "$TMP/receiver.py" hang 8302 /dev/null & PIDS+=($!)

export RUSHHOUR__TELEMETRY__LOG_FILTER=warn RUSHHOUR__LIMITS__ENABLED=false
for s in A B; do
  port=$([[ $s == A ]] && echo 8181 || echo 8182)
  "$BIN" serve --addr "127.0.0.1:$port" --data-dir "$TMP/$s" >"$TMP/$s.out" 2>&1 & PIDS+=($!)
done
sleep 5
"$BIN" webhooks add http://127.0.0.1:8302/hook --data-dir "$TMP/B" | head -1

intake() { # port -> orders 202/s
  "$BIN" bench --url "http://127.0.0.1:$1" --scenario orders --connections "$CONNECTIONS" \
    --duration "$DURATION" --json 2>/dev/null | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["overall"]["ok_rps"]))'
}
declare -A RATE
for round in 1 2; do
  for port in 8181 8182; do
    r=$(intake $port); echo "round $round port $port: $r orders/s" >&2
    RATE[$port]="${RATE[$port]:-} $r"
  done
done
pending=$("$BIN" webhooks deliveries 1 --limit 500 --data-dir "$TMP/B" | grep -c pending || true)
timedout=$("$BIN" webhooks deliveries 1 --state pending --limit 500 --data-dir "$TMP/B" | grep -c 'timed out' || true)

# C: delivery rate to the fast receiver.
"$BIN" webhooks add http://127.0.0.1:8301/hook --events confirmed --data-dir "$TMP/A" | head -1
: >"$TMP/ok.log"
# Closed-loop intake for $BURST_DURATION: if deliveries keep up with it, the
# rate below is intake's, a lower bound of the delivery rate.
burst=$("$BIN" bench --url http://127.0.0.1:8181 --scenario orders --connections "$CONNECTIONS" \
  --duration "$BURST_DURATION" --json 2>/dev/null | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["overall"]["ok_rps"]))')
want=$(( $(wc -l <"$TMP/ok.log") ))
for _ in $(seq 120); do # until the receiver stops seeing new requests
  sleep 1; now=$(wc -l <"$TMP/ok.log"); [[ $now == "$want" ]] && break; want=$now
done
read -r n secs < <(python3 -c 'import sys; t=[float(l) for l in open(sys.argv[1])]; print(len(t), max(t)-min(t))' "$TMP/ok.log")

echo
echo "| run | orders 202/s (two rounds) |"
echo "|---|---|"
echo "| A: no subscriber |${RATE[8181]} |"
echo "| B: one subscriber that never answers (every event type) |${RATE[8182]} |"
echo
echo "B's log during the run: $pending of the newest 500 deliveries pending, $timedout of them after a timeout"
python3 -c "import sys; n,s=int(sys.argv[1]),float(sys.argv[2]); print(f'C: {n} deliveries to a fast local receiver in {s:.1f} s = {n/max(s,1e-9):.0f}/s (intake meanwhile: {sys.argv[3]} orders/s)')" "$n" "$secs" "$burst"
