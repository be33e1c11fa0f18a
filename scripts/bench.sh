#!/usr/bin/env bash
# Benchmark: builds release binaries and runs `bench`, which starts the local stack on
# loopback ports (mock TaskManager, auth server on sled, resource server) and prints
# throughput, latency percentiles and memory per phase. Arguments go to `bench`
# (`scripts/bench.sh --help`). Every phase is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
exec target/release/bench "$@"
