#!/usr/bin/env bash
# Benchmark: prints figures beside the baselines of the same run and writes
# them to .stack/bench/result.json; asserts nothing. What it measures and
# how: scripts/bench.py. Installs what it needs (sysbench and mydumper from
# Debian's packages; Python's environment by scripts/python.sh), starts the
# local stack and builds the connectors in release mode.
#
# Environment: BENCH_TABLES (4), BENCH_ROWS (250000), BENCH_CDC_TXNS
# (50000), BENCH_LATENCY_RATE (500), BENCH_LATENCY_SECS (60), and the
# stack's STACK_*_PORT.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'bench: %s\n' "$*" >&2; }

scripts/stack.sh up
missing=()
command -v sysbench >/dev/null || missing+=(sysbench)
command -v mydumper >/dev/null || missing+=(mydumper)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo=sudo; fi
    $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
python=$(scripts/python.sh)
cargo build --release --bins --locked
exec "$python" scripts/bench.py
