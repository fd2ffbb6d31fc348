#!/usr/bin/env bash
# The board's figures in a real headless Chromium (issue 11): time from an
# order's 202 to its ticket on an open board (p50/p99 over
# RUSHHOUR_BOARD_ORDERS orders, placed one at a time), and the board's
# frame time with RUSHHOUR_BOARD_OPEN open tickets while 20 more arrive.
#
#   scripts/bench-board.sh [ORDERS] [OPEN]     # default 300 500
#
# Needs Debian's chromium and chromium-driver. Runs the browser test
# `board_figures_…` at full size against the debug binary the tests use
# (the time is the browser's and the stream's, not the server's CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSHHOUR_BOARD_ORDERS="${1:-300}"
export RUSHHOUR_BOARD_OPEN="${2:-500}"
cargo test -q -p rushhour --test it board_figures -- --nocapture 2>&1 | grep -E "board figures|test result|panicked"
