#!/usr/bin/env bash
# The test command: starts the local stack (installing what is missing on a
# fresh Debian machine), builds the connectors, runs every unit and
# end-to-end test, and checks that docker-compose.yml parses. Python (for a
# test reading the topics with confluent-kafka) comes from scripts/python.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/stack.sh up

# docker-compose.yml is a deliverable that cannot run here; it must parse.
if ! command -v docker-compose >/dev/null; then
    echo "test: installing docker-compose (to validate docker-compose.yml)" >&2
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo=sudo; fi
    $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends docker-compose >/dev/null
fi
docker-compose -f docker-compose.yml config -q
echo "test: docker-compose.yml is valid" >&2

# The console is tested in a real browser: Debian's Chromium, headless.
if ! command -v chromium >/dev/null; then
    echo "test: installing chromium (to test the console in a browser)" >&2
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo=sudo; fi
    $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
TEST_CHROMIUM=$(command -v chromium)
export TEST_CHROMIUM

# A consumer that is not ours reads the topics in one test.
TEST_PYTHON=$(scripts/python.sh)
export TEST_PYTHON

# A clean checkout gains nothing from incremental compilation, and its
# caches add more than a gigabyte to the build on disk (about 3 GB without).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
free_kb=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ "${free_kb:-0}" -lt $((4 * 1024 * 1024)) ]; then
    echo "test: warning: $((free_kb / 1024)) MB free on $(df -P . | awk 'NR == 2 { print $6 }'); the build and the stack need about 4 GB" >&2
fi
cargo build --workspace --bins --tests --locked
cargo test --workspace --locked -- --test-threads="${TEST_THREADS:-3}"
