#!/usr/bin/env bash
# Build every fuzz target in fuzz/ once, then run each for a bounded time on
# a scratch copy of its seed corpus (the repository is never written), and
# fail on any crash, panic, timeout or out-of-memory.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 30; 0 only replays each seed corpus once
# (a regression check of the corpus, no new inputs). TARGETs default to
# every file in fuzz/fuzz_targets/.
#
# Stable Rust only: no cargo-fuzz and no nightly. The build is a plain
# `cargo build --target <host>` with the instrumentation flags cargo-fuzz
# passes with `--sanitizer none` (an explicit --target keeps them off
# build scripts and proc macros). Without a sanitizer, libFuzzer cannot
# see allocations by itself; fuzz/src/lib.rs reports them, so
# -malloc_limit_mb works as under one. CONTRIBUTING.md, "Fuzzing".
#
# Environment:
#   RUSHHOUR_FUZZ_TARGET_DIR  build directory (cached by CI), default
#                             ~/.cache/rushhour/fuzz-target
#   RUSHHOUR_FUZZ_ARTIFACTS   where failing inputs are written, default
#                             fuzz/artifacts (ignored by git)
#   RUSHHOUR_FUZZ_FLAGS       extra libFuzzer flags for every run
#
# Per target it prints one summary line, stable for grep:
#   fuzz <target>: <N> execs in <S> s (<R> exec/s), corpus <K> (<seeds> seeds + <new> new), peak RSS <M> MB: ok
# and on failure `...: FAILED (<kind>), input <path>`, the run's last lines,
# and how to reproduce; then a `fuzz total:` line. Exits non-zero if any
# target failed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz="$root/fuzz"
seconds="${1:-30}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
    echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
fi
if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for f in "$fuzz"/fuzz_targets/*.rs; do
        targets+=("$(basename "$f" .rs)")
    done
fi

target_dir="${RUSHHOUR_FUZZ_TARGET_DIR:-$HOME/.cache/rushhour/fuzz-target}"
artifacts="${RUSHHOUR_FUZZ_ARTIFACTS:-$fuzz/artifacts}"
triple="$(rustc -vV | sed -n 's/^host: //p')"

# Per-input limits. Largest input: the server refuses bodies over 64 KiB,
# but mutating inputs that large mostly wastes the run's time on copying;
# the decoders' loops are reached well below these lengths.
declare -A max_len=([order_request]=8192 [payment_callback]=4096 [log_record]=8192 [cursors]=1024)
rss_limit_mb=2048
# One allocation above this is an out-of-memory failure: no input of these
# sizes needs a single buffer anywhere near it, so one that big is an
# allocation sized by the input's claims rather than its bytes.
malloc_limit_mb=64
timeout_s=10

# The coverage instrumentation: what `cargo fuzz build --sanitizer none`
# passes. Debug assertions and overflow checks come from the `fuzz` profile
# (fuzz/Cargo.toml).
rustflags="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
rustflags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table"
rustflags+=" -Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth"
rustflags+=" -Cllvm-args=-simplifycfg-branch-fold-threshold=0"

echo "fuzz: building ${#targets[@]} target(s) for $triple into $target_dir"
build_start=$(date +%s)
bins=()
for t in "${targets[@]}"; do
    bins+=(--bin "$t")
done
if ! RUSTFLAGS="$rustflags ${RUSTFLAGS:-}" cargo build --manifest-path "$fuzz/Cargo.toml" --locked \
    --profile fuzz --target "$triple" --target-dir "$target_dir" "${bins[@]}"; then
    echo "fuzz: build failed. If cargo says the lock file needs updating, a fuzzed crate's" >&2
    echo "dependencies changed: refresh fuzz/Cargo.lock (CONTRIBUTING.md, \"Fuzzing\")." >&2
    exit 1
fi
echo "fuzz: built in $(( $(date +%s) - build_start )) s"

scratch="$(mktemp -d "${TMPDIR:-/tmp}/rushhour-fuzz.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$artifacts"

summary=()
failed=0
total_execs=0
for t in "${targets[@]}"; do
    bin="$target_dir/$triple/fuzz/$t"
    corpus="$scratch/$t"
    mkdir -p "$corpus" "$artifacts/$t"
    if [ -d "$fuzz/corpus/$t" ]; then
        cp "$fuzz/corpus/$t"/* "$corpus"/ 2>/dev/null || true
    fi
    seeds=$(find "$corpus" -type f | wc -l)
    log="$scratch/$t.log"
    if [ "$seconds" -eq 0 ]; then
        mode=(-runs=0)
    else
        mode=(-max_total_time="$seconds")
    fi
    echo "fuzz $t: running ${seconds} s from $seeds seed(s)"
    start=$(date +%s)
    status=0
    # shellcheck disable=SC2086 # RUSHHOUR_FUZZ_FLAGS is a list of flags.
    RUST_BACKTRACE=1 "$bin" "$corpus" "${mode[@]}" -max_len="${max_len[$t]:-4096}" -timeout="$timeout_s" \
        -rss_limit_mb="$rss_limit_mb" -malloc_limit_mb="$malloc_limit_mb" \
        -artifact_prefix="$artifacts/$t/" -print_final_stats=1 ${RUSHHOUR_FUZZ_FLAGS:-} \
        >"$log" 2>&1 || status=$?
    elapsed=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
    size=$(find "$corpus" -type f | wc -l)
    line="fuzz $t: ${execs:-0} execs in $elapsed s (${rate:-0} exec/s), corpus $size ($seeds seeds + $(( size - seeds )) new), peak RSS ${rss:-?} MB"
    if [ "$status" -eq 0 ]; then
        line+=": ok"
        echo "$line"
    else
        failed=1
        if grep -q 'panicked at' "$log"; then
            kind=panic
        else
            kind=$(sed -n 's/.*ERROR: libFuzzer: \([a-z -]*[a-z]\).*/\1/p' "$log" | head -1)
        fi
        input=$(sed -n 's/.*Test unit written to //p' "$log" | tail -1)
        line+=": FAILED (${kind:-exit $status}), input ${input:-none written}"
        echo "$line"
        cp "$log" "$artifacts/$t/last-run.log"
        echo "---- $t: the failure (whole run: $artifacts/$t/last-run.log) ----"
        grep -m1 -A1 'panicked at' "$log" || true
        grep -A16 '^stack backtrace' "$log" | head -17 || true
        grep -E 'ERROR: libFuzzer|^SUMMARY|Test unit written' "$log" || true
        echo "----"
        if [ -n "$input" ]; then
            echo "reproduce: $bin $input"
        fi
    fi
    summary+=("$line")
    total_execs=$(( total_execs + ${execs:-0} ))
done

echo
for line in "${summary[@]}"; do
    echo "$line"
done
echo "fuzz total: $total_execs execs over ${#targets[@]} target(s)"
exit "$failed"
