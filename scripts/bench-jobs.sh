#!/usr/bin/env bash
# Job-queue throughput, measured side by side in one run
# (docs/adr/0006-job-queue.md): no-op jobs drained per second from a backlog
# of $JOBS, for
#   1. Sidekiq (Debian's ruby-sidekiq, Redis db 15), scripts/peers/sidekiq_noop.rb,
#      at each concurrency in $SIDEKIQ_CONCURRENCY (the best one counts),
#   2. `rushhour bench jobs --backend sqlite` (the embedded queue),
#   3. `rushhour bench jobs --backend postgres` (the scale queue, throwaway schema),
#      each at every concurrency in $CONCURRENCY (jobs in flight) and every
#      prefetch buffer in $PREFETCH (`default`: the runner's own; 0: off),
#      and, with OLD_BIN=path, the same runs of an older build (which knows
#      no --prefetch) right before each of this build's, for a side by side,
#   4. Sidekiq again (the machine is noisy; the two brackets show it),
#   5. with --apalis: apalis 1.0 on SQLite and PostgreSQL (bench/apalis-peer,
#      its own Cargo project and target dir) at each storage batch size in
#      $APALIS_BATCH; runs are capped at $APALIS_MAX_SECONDS and then report
#      the rate reached so far.
# Prints every peer's JSON line on stderr and a Markdown table on stdout with
# rushhour / Sidekiq per backend (Sidekiq = mean of the two brackets), the
# runner's queue calls (claims, jobs per claim, completes, heartbeats) and,
# with OLD_BIN, each row's ratio to the old build at the same backend and
# concurrency.
#
#   scripts/bench-jobs.sh
#   scripts/bench-jobs.sh --apalis
#   JOBS=20000 CONCURRENCY="8 64" CLAIM_BATCH=500 scripts/bench-jobs.sh
#   OLD_BIN=/work/target-jobs-old/release/rushhour CONCURRENCY="8 64 256" PREFETCH="0 default" scripts/bench-jobs.sh
#   BIN=path/to/rushhour scripts/bench-jobs.sh      # a given build, not built here
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

APALIS=0
for arg in "$@"; do
  case "$arg" in
    --apalis) APALIS=1 ;;
    *) echo "usage: $0 [--apalis]" >&2; exit 2 ;;
  esac
done

JOBS="${JOBS:-100000}"
CONCURRENCY="${CONCURRENCY:-64 256}"
PREFETCH="${PREFETCH:-default}"
OLD_BIN="${OLD_BIN:-}"
SIDEKIQ_CONCURRENCY="${SIDEKIQ_CONCURRENCY:-10 25}"
SQLITE_SYNC="${SQLITE_SYNC:-full}"
APALIS_MAX_SECONDS="${APALIS_MAX_SECONDS:-60}"
APALIS_BATCH="${APALIS_BATCH:-10 100}"
APALIS_CONCURRENCY="${APALIS_CONCURRENCY:-64}"
PG="${POSTGRES_URL:-${RUSHHOUR_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-release}"
extra=()
[[ -n "${CLAIM_BATCH:-}" ]] && extra+=(--claim-batch "$CLAIM_BATCH")

if [[ -z "${BIN:-}" ]]; then
  cargo build --release --bin rushhour >&2
  BIN="$CARGO_TARGET_DIR/release/rushhour"
fi
[[ -n "$OLD_BIN" && ! -x "$OLD_BIN" ]] && { echo "OLD_BIN=$OLD_BIN is not an executable" >&2; exit 2; }
if [[ $APALIS == 1 ]]; then
  (cd bench/apalis-peer && CARGO_TARGET_DIR="${APALIS_TARGET_DIR:-/work/target-apalis}" cargo build --release >&2)
  APALIS_BIN="${APALIS_TARGET_DIR:-/work/target-apalis}/release/apalis-peer"
fi

OUT="$(mktemp)"
trap 'rm -f "$OUT"' EXIT
run() { # label, command...
  local label="$1"; shift
  echo "== $label" >&2
  local line
  line="$("$@" | tail -n 1)"
  echo "$line" >&2
  printf '%s\t%s\n' "$label" "$line" >>"$OUT"
}

sidekiq_bracket() {
  for c in $SIDEKIQ_CONCURRENCY; do
    run "$1" ruby scripts/peers/sidekiq_noop.rb --jobs "$JOBS" --concurrency "$c"
  done
}

rushhour_runs() { # backend, backend args...
  local backend="$1"; shift
  for c in $CONCURRENCY; do
    if [[ -n "$OLD_BIN" ]]; then
      run "old-$backend" "$OLD_BIN" bench jobs --backend "$backend" "$@" \
        --jobs "$JOBS" --concurrency "$c" "${extra[@]}" --json
    fi
    for p in $PREFETCH; do
      local pf=()
      [[ "$p" != default ]] && pf=(--prefetch "$p")
      run "rushhour-$backend" "$BIN" bench jobs --backend "$backend" "$@" \
        --jobs "$JOBS" --concurrency "$c" "${extra[@]}" "${pf[@]}" --json
    done
  done
}

sidekiq_bracket sidekiq-before
rushhour_runs sqlite --sqlite-sync "$SQLITE_SYNC"
rushhour_runs postgres --postgres-url "$PG"
sidekiq_bracket sidekiq-after
if [[ $APALIS == 1 ]]; then
  for b in $APALIS_BATCH; do
    run apalis-sqlite "$APALIS_BIN" --backend sqlite --jobs "$JOBS" --concurrency "$APALIS_CONCURRENCY" \
      --batch-size "$b" --max-seconds "$APALIS_MAX_SECONDS"
    run apalis-postgres "$APALIS_BIN" --backend postgres --postgres-url "$PG" --jobs "$JOBS" \
      --concurrency "$APALIS_CONCURRENCY" --batch-size "$b" --max-seconds "$APALIS_MAX_SECONDS"
  done
fi

python3 - "$OUT" <<'PY'
import json, sys
rows = []
for line in open(sys.argv[1]):
    label, js = line.rstrip("\n").split("\t", 1)
    rows.append((label, json.loads(js)))

def best(label):
    runs = [d for l, d in rows if l == label]
    return max(runs, key=lambda d: d["jobs_per_sec"])

before, after = best("sidekiq-before"), best("sidekiq-after")
sidekiq = (before["jobs_per_sec"] + after["jobs_per_sec"]) / 2
old = {(d["backend"], d["concurrency"]): d["jobs_per_sec"] for l, d in rows if l.startswith("old-")}
print(f"| measurement ({before['jobs']:,} no-op jobs) | drained jobs/s | vs Sidekiq | vs old runner "
      f"| claims | jobs/claim | completes | heartbeats |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for label, d in rows:
    calls = ["", "", "", ""]
    vs_old = ""
    if label.startswith("sidekiq"):
        what = f"Sidekiq {d['version']} ({label.split('-')[1]}), -c {d['concurrency']}"
    elif label.startswith("old-"):
        what = f"old runner, {d['backend']}, concurrency {d['concurrency']}"
        vs_old = "1.00×"
    elif label.startswith("rushhour"):
        pf = "off" if d["prefetch"] == 0 else d["prefetch"]
        what = f"rushhour {d['backend']}, concurrency {d['concurrency']}, prefetch {pf}"
        if d.get("sqlite_sync"):
            what += f", synchronous={d['sqlite_sync']}"
        calls = [f"{d['claims']:,}", f"{d['jobs_per_claim']:.1f}", f"{d['completes']:,}", f"{d['heartbeats']:,}"]
        base = old.get((d["backend"], d["concurrency"]))
        if base:
            vs_old = f"{d['jobs_per_sec'] / base:.2f}×"
    else:
        what = f"apalis {d['version']} {d['backend']}, concurrency {d['concurrency']}, batch {d['batch_size']}"
        if not d.get("completed", True):
            what += f" (capped: {d['handled']:,} in {d['seconds']:.0f} s)"
    ratio = "" if label.startswith("sidekiq") else f"{d['jobs_per_sec'] / sidekiq:.2f}×"
    print(f"| {what} | {d['jobs_per_sec']:,.0f} | {ratio} | {vs_old} | " + " | ".join(calls) + " |")
print()
print(f"Sidekiq (best concurrency per bracket): {before['jobs_per_sec']:,.0f}/s before, "
      f"{after['jobs_per_sec']:,.0f}/s after, mean {sidekiq:,.0f}/s.")
# Issue 13's goals, per backend and concurrency.
GOALS = {("postgres", 8): 3, ("postgres", 64): 8, ("sqlite", 64): 12}
for label, d in rows:
    if label.startswith("rushhour") and d.get("prefetch", 0) != 0:
        r = d["jobs_per_sec"] / sidekiq
        lo = d["jobs_per_sec"] / max(before["jobs_per_sec"], after["jobs_per_sec"])
        goal = GOALS.get((d["backend"], d["concurrency"]))
        verdict = f": {'meets' if r >= goal else 'MISSES'} the {goal}× goal" if goal else ""
        print(f"rushhour {d['backend']} at concurrency {d['concurrency']}, prefetch {d['prefetch']}: "
              f"{r:.2f}× Sidekiq (against the faster bracket {lo:.2f}×){verdict}.")
PY
