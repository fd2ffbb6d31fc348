#!/usr/bin/env bash
# Usage: cargo build --release && scripts/bench-tracing.sh   (prints bench JSON heads; full JSON in /tmp/bt-*.json)
# The cost of traces on intake: three servers side by side, same binary,
# runs interleaved: traces off, on with 1% sampling, on with 100%, the two
# traced ones exporting over OTLP/HTTP to a local dummy receiver (a Python
# HTTP server that reads each export and answers 200 with an empty body,
# i.e. an empty ExportTraceServiceResponse).
set -u
BIN=${BIN:-target/release/rushhour}
OTLP_PORT=${OTLP_PORT:-14318}
ROUNDS=${ROUNDS:-2}
python3 - "$OTLP_PORT" > /tmp/bt-otlp.out 2>&1 <<'PY' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    received = 0
    def do_POST(self):
        n = int(self.headers.get("content-length", 0))
        self.rfile.read(n)
        H.received += n
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
R=$!
start() { # port, data dir, env...
  local port=$1 dir=$2; shift 2
  rm -rf "$dir"; mkdir -p "$dir"
  env RUSHHOUR__TELEMETRY__LOG_FILTER=warn "$@" $BIN serve --addr 127.0.0.1:$port --data-dir "$dir" > "$dir.out" 2>&1 &
  echo $!
}
OFF=$(start 8191 /tmp/bt-off)
ONE=$(start 8192 /tmp/bt-1pc RUSHHOUR__TELEMETRY__OTLP_ENDPOINT=http://127.0.0.1:$OTLP_PORT RUSHHOUR__TELEMETRY__TRACE_SAMPLE_RATIO=0.01)
ALL=$(start 8193 /tmp/bt-100pc RUSHHOUR__TELEMETRY__OTLP_ENDPOINT=http://127.0.0.1:$OTLP_PORT RUSHHOUR__TELEMETRY__TRACE_SAMPLE_RATIO=1.0)
for port in 8191 8192 8193; do
  for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:$port/health/ready && break; sleep 0.1; done
done
for round in $(seq "$ROUNDS"); do
  for port in 8191 8192 8193; do
    echo "== round $round port $port (8191 = traces off, 8192 = 1%, 8193 = 100%)"
    $BIN bench --url http://127.0.0.1:$port --scenario orders --connections 64 --duration 8s --json > /tmp/bt-$round-$port.json 2>/dev/null
    head -c 700 /tmp/bt-$round-$port.json; echo
  done
done
kill "$OFF" "$ONE" "$ALL"
wait "$OFF" "$ONE" "$ALL" 2>/dev/null
kill "$R"
