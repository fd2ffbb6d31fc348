#!/usr/bin/env bash
# The contract run (issue 14): schemathesis, from PyPI, fuzzes the published
# /openapi.json of a fresh embedded `rushhour serve` as an admin, with every
# check on (`--checks all`: no 5xx, every status / content type / header /
# body as documented, valid data accepted, invalid data refused, auth not
# ignored) and stateful links on (it places orders, then reads and cancels
# them through the links of the 202). Two runs: a fixed seed (reproducible)
# and a random one (printed, so a failure can be replayed with
# RUSHHOUR_ST_SEEDS=<seed>).
#
#   scripts/schemathesis.sh PATH/TO/rushhour [EXAMPLES]
#
# Exits non-zero on any failure; the last line of each run is schemathesis'
# summary (requests sent, failures). The venv is cached in
# ~/.cache/rushhour/st-venv (RUSHHOUR_ST_VENV); nothing else is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(realpath "${1:?usage: scripts/schemathesis.sh PATH/TO/rushhour [EXAMPLES]}")"
EXAMPLES="${2:-${RUSHHOUR_ST_EXAMPLES:-20}}"
VERSION=4.32.5
VENV="${RUSHHOUR_ST_VENV:-$HOME/.cache/rushhour/st-venv}"
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -qF "$VERSION" \
   || ! "$VENV/bin/python" -c "import brotli" 2>/dev/null; then
  echo "installing schemathesis $VERSION into $VENV"
  python3 -m venv "$VENV"
  # brotli: the menu answers `br` when asked, and the checks read bodies.
  "$VENV/bin/pip" install -q "schemathesis==$VERSION" "brotli==1.1.0"
fi

work="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
key="st-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
webhook_secret="whsec_st-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"

# A fresh embedded server. The shared staff key acts as admin, so every
# route is reachable; the webhook secret lets the hook sign payment
# callbacks; rate limits stay on (429 is a documented answer).
env -u RUSHHOUR_CONFIG RUSHHOUR__AUTH__STAFF_KEY="$key" RUSHHOUR__WEBHOOKS__SECRET="$webhook_secret" \
  RUSHHOUR__TELEMETRY__LOG_FILTER=warn \
  "$BIN" serve --addr "127.0.0.1:$port" --data-dir "$work/data" >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
  curl -fsS "$base/health/ready" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/server.log"; echo "rushhour serve exited" >&2; exit 1; }
  sleep 0.1
done

export RUSHHOUR_ST_BASE="$base" RUSHHOUR_ST_KEY="$key" RUSHHOUR_ST_WEBHOOK_SECRET="$webhook_secret"
export SCHEMATHESIS_HOOKS="$PWD/scripts/schemathesis/hooks.py"
status=0
# RUSHHOUR_ST_SEEDS replays given seeds instead (a failure prints its seed).
seeds="${RUSHHOUR_ST_SEEDS:-1 $(python3 -c 'import random; print(random.randrange(1, 2**31))')}"
for seed in $seeds; do
  echo "== schemathesis: seed $seed, $EXAMPLES examples per operation"
  "$VENV/bin/schemathesis" --config-file scripts/schemathesis/schemathesis.toml run "$base/openapi.json" \
    --checks all --max-examples "$EXAMPLES" --seed "$seed" --workers 2 --no-color || status=1
done
if ! kill -0 "$pid" 2>/dev/null; then
  echo "rushhour serve died during the run:" >&2
  tail -50 "$work/server.log" >&2
  status=1
elif grep -q "panicked" "$work/server.log"; then
  echo "the server panicked during the run:" >&2
  grep -A5 "panicked" "$work/server.log" >&2
  status=1
fi
exit "$status"
