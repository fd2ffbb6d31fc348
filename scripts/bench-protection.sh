#!/usr/bin/env bash
# Usage: cargo build --release && scripts/bench-protection.sh   (prints bench JSON heads; full JSON in /tmp/pb-*.json)
# Intake with the rate limiter consulted on every request (limits on,
# loopback not exempt, a quota never reached) vs limits off; same binary,
# runs interleaved.

BIN=${BIN:-target/release/rushhour}
rm -rf /tmp/bA /tmp/bB; mkdir -p /tmp/bA /tmp/bB
RUSHHOUR__LIMITS__EXEMPT='[]' RUSHHOUR__LIMITS__INTAKE=2000000000 RUSHHOUR__LIMITS__READS=2000000000 RUSHHOUR__LIMITS__LOGIN=2000000000 RUSHHOUR__TELEMETRY__LOG_FILTER=warn \
  $BIN serve --addr 127.0.0.1:8181 --data-dir /tmp/bA > /tmp/bA.out 2>&1 &
A=$!
RUSHHOUR__LIMITS__ENABLED=false RUSHHOUR__TELEMETRY__LOG_FILTER=warn \
  $BIN serve --addr 127.0.0.1:8182 --data-dir /tmp/bB > /tmp/bB.out 2>&1 &
B=$!
sleep 5
for round in 1 2; do
  for port in 8181 8182; do
    echo "== round $round port $port (8181 = limits on, 8182 = off)"
    $BIN bench --url http://127.0.0.1:$port --scenario orders --connections 64 --duration 8s --json > /tmp/pb-$round-$port.json 2>/dev/null
    head -c 700 /tmp/pb-$round-$port.json; echo
  done
done
echo "== login time (argon2id OWASP params), 20 sequential logins on 8181"
PW=$(cat /tmp/bA/admin.password)
for i in $(seq 20); do curl -s -o /dev/null -w '%{time_total}\n' localhost:8181/v1/sessions -H 'content-type: application/json' -d "{\"username\":\"admin\",\"password\":\"$PW\"}"; done | sort -n | awk '{a[NR]=$1} END {print "min", a[1], "median", a[int(NR/2)+1], "max", a[NR]}'
kill $A $B
