#!/usr/bin/env bash
# Start a local Kafka-protocol broker (tansu 0.6.0, SQLite storage) for the
# scale-mode tests and benchmarks, unless one already answers on the port.
# Installs tansu first when it is not on PATH (about 15-20 min on 2 cores).
#
#   scripts/tansu.sh [PORT]      # default 19092; prints the broker address
#
# Notes (from running it here): tansu reads a .env file in its working
# directory, so it runs from its own directory; its memory:// engine loses
# records when a consumer resumes mid-batch, so SQLite storage is used; the
# sqlite:// path is resolved relative to the working directory.
#
# tansu 0.6's SQLite schema has no index on its `header` table, and its
# fetch looks up each record's headers by (topition, offset_id): every
# record fetched scans every header the broker ever stored. Once a few
# thousand records with a header are in (a traced producer), a consuming
# worker slows the whole broker down, produces included, by 2-3x
# (docs/adr/0005-kafka-log.md). The index is added
# here as soon as tansu has created its schema; TANSU_HEADER_INDEX=0
# leaves tansu's schema as shipped (to measure the difference).
set -euo pipefail
PORT="${1:-19092}"
DIR="${RUSHHOUR_TANSU_DIR:-$HOME/.cache/rushhour/tansu-$PORT}"

if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "127.0.0.1:$PORT"
  exit 0
fi
if ! command -v tansu >/dev/null; then
  echo "tansu not found; installing tansu 0.6.0 (slow: builds from source)" >&2
  cargo install tansu@0.6.0 --locked --features dynostore,libsql,postgres >&2
fi
mkdir -p "$DIR"
cd "$DIR"
rm -f .env
nohup tansu broker \
  --storage-engine "sqlite://tansu.db" \
  --listener-url "tcp://127.0.0.1:$PORT" \
  --advertised-listener-url "tcp://127.0.0.1:$PORT" \
  --silent >tansu.log 2>&1 &
echo $! >tansu.pid
for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    [ "${TANSU_HEADER_INDEX:-1}" = 0 ] || python3 - tansu.db <<'PY' >&2 || echo "warning: could not index tansu's header table" >&2
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=10)
for _ in range(50):  # the schema is created at start; wait for it
    if db.execute("select 1 from sqlite_master where name = 'header'").fetchone():
        db.execute("create index if not exists header_record on header (topition, offset_id)")
        db.commit()
        break
    time.sleep(0.1)
else:
    sys.exit("tansu created no header table")
PY
    echo "127.0.0.1:$PORT"
    exit 0
  fi
  sleep 0.2
done
echo "tansu did not start; see $DIR/tansu.log" >&2
tail -20 tansu.log >&2 || true
exit 1
