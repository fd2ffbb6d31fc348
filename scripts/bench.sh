#!/usr/bin/env bash
# Build rushhour in release mode and run the one-run benchmark suite:
# HTTP ceiling, durable intake, cached menu, group commit on/off and the
# processor drain, each as a ratio against its goal (docs/benchmarks.md).
#
#   scripts/bench.sh                      # human table
#   scripts/bench.sh --markdown           # table for docs/benchmarks.md
#   scripts/bench.sh --json > bench.json  # everything, machine-readable
#   scripts/bench.sh --duration 30s --connections 128
#
# Release mode because a debug build measures the compiler, not the design.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --bin rushhour >&2
exec "${CARGO_TARGET_DIR:-target}/release/rushhour" bench suite "$@"
