#!/usr/bin/env bash
# Sweep benchmark: seconds to sweep N expired clips (default 1,000,000) and clip-lookup
# latency before and during the sweep. Builds the release binary if missing.
#   scripts/bench-sweep.sh [--rows N] [--store embedded|postgres] [--bin PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ " $* " != *" --bin "* ]] && [ ! -x target/release/ferry ]; then
  cargo build --release
fi
exec python3 scripts/bench_sweep.py "$@"
