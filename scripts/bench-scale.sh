#!/usr/bin/env bash
# Scale-mode figures, measured side by side in one run (docs/benchmarks.md):
#   1. a raw rdkafka producer (acks=all, idempotent) on the broker,
#   2. scale-mode intake: `rushhour api` + `rushhour worker` on PostgreSQL,
#      Redis and that broker, loaded by `rushhour bench --scenario orders`,
#   3. the raw producer again (the machine is noisy; the two brackets show it),
#   4. open loop at half the measured intake rate, then 202 -> confirmed
#      percentiles from the orders' own timestamps in PostgreSQL.
#
#   scripts/bench-scale.sh                 # tansu on 127.0.0.1:19092 (started if needed)
#   KAFKA=host:9092 scripts/bench-scale.sh # another broker
#   DURATION=20s CONNECTIONS=64 scripts/bench-scale.sh
#   WORKER=0 scripts/bench-scale.sh        # intake with no consuming worker
#                                          # (no 202 -> confirmed figures then)
#   FETCH_WAIT_MS=10 scripts/bench-scale.sh # consumers' fetch.wait.max.ms
#                                          # (log.fetch_wait_ms; default 100)
#   LINGER_MS=1 scripts/bench-scale.sh     # processors' batch linger
#                                          # (processor.linger_ms; default 5)
#   KAFKA_SET="max.in.flight.requests.per.connection=1" scripts/bench-scale.sh
#                                          # librdkafka settings for the log
#                                          # ([log.kafka]) and the raw producer
#
# The broker is probed (a one-second produce) before the run and after
# each phase: a broker that stops answering mid-run (tansu 0.6 has panicked
# under a consuming worker, docs/adr/0005) fails the script with the phase
# named, instead of printing a dying broker's figures as if they were ours.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION="${DURATION:-10s}"
WORKER="${WORKER:-1}"
CONNECTIONS="${CONNECTIONS:-64}"
PG="${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
REDIS="${REDIS_URL:-redis://127.0.0.1:6379}"
KAFKA="${KAFKA:-$(scripts/tansu.sh 19092)}"
if [ -z "${BIN:-}" ]; then # BIN=path/to/rushhour compares a given build
  cargo build --release --bin rushhour >&2
  BIN="${CARGO_TARGET_DIR:-target}/release/rushhour"
fi

RUN="bench$(date +%s)"
WORK="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -q "$PG" -c "DROP SCHEMA IF EXISTS $RUN CASCADE" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

export RUSHHOUR__STORE__URL="$PG" RUSHHOUR__STORE__SCHEMA="$RUN"
export RUSHHOUR__LOG__URL="kafka://$KAFKA" RUSHHOUR__LOG__TOPIC="$RUN.orders" RUSHHOUR__LOG__DLQ_TOPIC="$RUN.dlq"
export RUSHHOUR__PROCESSOR__GROUP="$RUN" RUSHHOUR__CACHE__URL="$REDIS" RUSHHOUR__CACHE__KEY_PREFIX="$RUN"
[ -n "${FETCH_WAIT_MS:-}" ] && export RUSHHOUR__LOG__FETCH_WAIT_MS="$FETCH_WAIT_MS"
[ -n "${LINGER_MS:-}" ] && export RUSHHOUR__PROCESSOR__LINGER_MS="$LINGER_MS"
# Scale mode refuses to start without the secrets every instance shares.
export RUSHHOUR__WEBHOOKS__SECRET="bench-webhook-secret-$RUN" RUSHHOUR__AUTH__SESSION_KEY="bench-session-key-shared-by-api-and-worker-$RUN"
export RUSHHOUR__AUTH__BOOTSTRAP_ADMIN_PASSWORD="bench-admin-password-$RUN"
export RUSHHOUR__AUTH__STAFF_KEY=bench RUSHHOUR__DATA_DIR="$WORK" RUSHHOUR__TELEMETRY__LOG_FILTER=warn
# librdkafka settings under test go to both sides: [log.kafka] for the
# api and the worker, --set for the raw producer.
CONFIG="$WORK/scale.toml"
produce_set=()
echo "[log.kafka]" >"$CONFIG"
for kv in ${KAFKA_SET:-}; do
  printf '"%s" = "%s"\n' "${kv%%=*}" "${kv#*=}" >>"$CONFIG"
  produce_set+=(--set "$kv")
done
export RUSHHOUR_CONFIG="$CONFIG"
"$BIN" migrate >/dev/null
RUSHHOUR__HTTP__ADDR=127.0.0.1:18180 "$BIN" api >"$WORK/api.log" 2>&1 & pids+=($!)
WORKER_URL=http://127.0.0.1:18180
if [ "$WORKER" = 1 ]; then
  RUSHHOUR__HTTP__ADDR=127.0.0.1:18181 "$BIN" worker >"$WORK/worker.log" 2>&1 & pids+=($!)
  WORKER_URL=http://127.0.0.1:18181
fi
# Ready within a minute, or the run stops here with the logs that say why
# (a run that loads a half-started api measures its startup, not intake).
ready=0
for _ in $(seq 300); do
  if curl -sf http://127.0.0.1:18180/health/ready >/dev/null && curl -sf "$WORKER_URL/health/ready" >/dev/null; then
    ready=1
    break
  fi
  sleep 0.2
done
if [ "$ready" != 1 ]; then
  echo "NOT READY: the api or the worker did not answer /health/ready within 60 s" >&2
  for f in "$WORK"/api.log "$WORK"/worker.log; do
    # The error, not the backtrace under it.
    [ -f "$f" ] && { echo "== $f" >&2; grep -v '^ ' "$f" | tail -n 20 >&2; }
  done
  curl -s http://127.0.0.1:18180/health/ready >&2 || true
  exit 2
fi
sleep 3 # let the worker join its group

field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
# One second of raw produce with a deadline: the broker is alive if it
# acknowledged anything.
broker_alive() {
  local out
  out="$(timeout 30 "$BIN" bench produce --brokers "$KAFKA" --topic "$RUN.probe" --connections 1 \
    --duration 1s --json 2>/dev/null)" || return 1
  python3 -c "import json,sys; sys.exit(0 if json.loads(sys.argv[1])['per_sec'] > 0 else 1)" "$out"
}
check_broker() {
  if ! broker_alive; then
    echo "BROKER FAILURE $1: $KAFKA acknowledged nothing for 1 s; no figure of this run is valid" >&2
    exit 2
  fi
}
check_broker "before the run"
raw1="$("$BIN" bench produce --brokers "$KAFKA" --topic "$RUN.raw" --connections "$CONNECTIONS" --duration "$DURATION" --traceparent "${produce_set[@]}" --json)"
check_broker "after the first raw producer run"
intake="$("$BIN" bench --url http://127.0.0.1:18180 --scenario orders --connections "$CONNECTIONS" --duration "$DURATION" --json)"
check_broker "after the intake run"
raw2="$("$BIN" bench produce --brokers "$KAFKA" --topic "$RUN.raw" --connections "$CONNECTIONS" --duration "$DURATION" --traceparent "${produce_set[@]}" --json)"
check_broker "after the second raw producer run"

r1="$(echo "$raw1" | field 'd["per_sec"]')"
r2="$(echo "$raw2" | field 'd["per_sec"]')"
ir="$(echo "$intake" | field 'd["overall"]["ok_rps"]')"
ip99="$(echo "$intake" | field 'd["overall"]["latency_us"]["p99"]/1000')"
ierr="$(echo "$intake" | field 'd["overall"]["errors"] + d["overall"]["shed"]')"
half="$(python3 -c "print(max(1, int($ir / 2)))")"

sleep 5 # drain the closed-loop backlog before the latency run
since="$(date +%s%3N)"
open="$("$BIN" bench --url http://127.0.0.1:18180 --scenario orders --rate "$half" --duration "$DURATION" --json)"
sleep 5
until_ms="$(date +%s%3N)"
e2e="$(psql -At "$PG" -c "SELECT count(*), count(confirmed_at),
  round(percentile_cont(0.5) WITHIN GROUP (ORDER BY confirmed_at - placed_at)::numeric, 1),
  round(percentile_cont(0.99) WITHIN GROUP (ORDER BY confirmed_at - placed_at)::numeric, 1)
  FROM $RUN.orders WHERE placed_at BETWEEN $since AND $until_ms")"
IFS='|' read -r n nconf e50 e99 <<<"$e2e"
check_broker "after the open-loop run"
op99="$(echo "$open" | field 'd["overall"]["latency_us"]["p99"]/1000')"
ook="$(echo "$open" | field 'd["overall"]["ok_rps"]')"

WORKER="$WORKER" KAFKA_SET="${KAFKA_SET:-}" python3 - "$r1" "$r2" "$ir" "$ip99" "$ierr" "$half" "$ook" "$op99" "$n" "$nconf" "$e50" "$e99" <<'PY'
import sys
r1, r2, ir, ip99, ierr, half, ook, op99, n, nconf, e50, e99 = sys.argv[1:]
r1, r2, ir = float(r1), float(r2), float(ir)
raw = (r1 + r2) / 2
import os
print("| measurement | value |")
print("|---|---|")
print(f"| settings | worker {'on' if os.environ.get('WORKER', '1') == '1' else 'off'}, "
      f"fetch wait {os.environ.get('FETCH_WAIT_MS') or 'default (100)'} ms, "
      f"processor linger {os.environ.get('LINGER_MS') or 'default (5)'} ms, "
      f"librdkafka {os.environ.get('KAFKA_SET') or 'defaults'} |")
print(f"| raw rdkafka producer (acks=all, idempotent), before / after | {r1:,.0f}/s / {r2:,.0f}/s |")
print(f"| scale intake (HTTP 202 after Kafka ack) | {ir:,.0f}/s, p99 {float(ip99):.1f} ms, {ierr} errors/shed |")
print(f"| intake ÷ raw producer (goal >= 0.5x) | {ir / raw:.2f}x |")
print(f"| open loop at half that rate ({half}/s) | {float(ook):,.0f}/s, intake p99 {float(op99):.1f} ms |")
print(f"| 202 -> confirmed, {nconf} of {n} orders | p50 {e50} ms, p99 {e99} ms |")
PY
