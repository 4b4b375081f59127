#!/usr/bin/env bash
# Benchmark: prints figures beside the baselines of the same run and writes
# them to .stack/bench/result.json; asserts nothing. What it measures and
# how: scripts/bench.py. Installs what it needs (sysbench and mydumper from
# Debian's packages; PyMySQL and confluent-kafka from PyPI into a virtual
# environment under ~/.local/share/tributary/), starts the local stack and
# builds the connectors in release mode.
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
command -v python3 >/dev/null || missing+=(python3 python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo=sudo; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
venv=$HOME/.local/share/tributary/bench-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import pymysql, confluent_kafka' 2>/dev/null; then
    log "installing PyMySQL and confluent-kafka into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q PyMySQL confluent-kafka
fi
cargo build --release --bins --locked
exec "$venv/bin/python" scripts/bench.py
