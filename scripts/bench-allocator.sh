#!/usr/bin/env bash
# Usage:
#   cargo build --release -p rushhour && cp target/release/rushhour /tmp/rushhour-jemalloc
#   cargo build --release -p rushhour --no-default-features --features kafka && cp target/release/rushhour /tmp/rushhour-system
#   scripts/bench-allocator.sh   (prints bench JSON heads and RSS; full JSON in /tmp/ba-*.json)
# The cost of jemalloc and of its heap profiler on intake (ADR 0011): three
# servers side by side, runs interleaved: the system allocator (the build
# without the `jemalloc` feature), jemalloc with the profiler compiled in
# and off (the default), and jemalloc sampling from start
# ([profiling] heap = true, one sample per 512 KiB). The same bench client
# drives all three.
set -u
JE=${JE:-/tmp/rushhour-jemalloc}
SYS=${SYS:-/tmp/rushhour-system}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8s}
start() { # binary, port, data dir, env...
  local bin=$1 port=$2 dir=$3; shift 3
  rm -rf "$dir"; mkdir -p "$dir"
  env RUSHHOUR__TELEMETRY__LOG_FILTER=warn "$@" "$bin" serve --addr 127.0.0.1:$port --data-dir "$dir" > "$dir.out" 2>&1 &
  echo $!
}
SYSTEM=$(start "$SYS" 8291 /tmp/ba-system)
JEOFF=$(start "$JE" 8292 /tmp/ba-jemalloc)
JEON=$(start "$JE" 8293 /tmp/ba-jemalloc-prof RUSHHOUR__PROFILING__HEAP=true)
for port in 8291 8292 8293; do
  for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:$port/health/ready && break; sleep 0.1; done
done
for round in $(seq "$ROUNDS"); do
  for port in 8291 8292 8293; do
    echo "== round $round port $port (8291 = system allocator, 8292 = jemalloc, profiler off, 8293 = jemalloc, heap profiling on)"
    "$JE" bench --url http://127.0.0.1:$port --scenario orders --connections 64 --duration "$DURATION" --json > /tmp/ba-$round-$port.json 2>/dev/null
    head -c 700 /tmp/ba-$round-$port.json; echo
  done
done
echo "== resident memory after the runs (KiB)"
for p in "system $SYSTEM" "jemalloc $JEOFF" "jemalloc+heap-profiling $JEON"; do
  set -- $p; echo "$1 $(ps -o rss= -p "$2")"
done
kill "$SYSTEM" "$JEOFF" "$JEON"
wait "$SYSTEM" "$JEOFF" "$JEON" 2>/dev/null
