#!/usr/bin/env bash
# The Python environment the benchmark and the foreign-consumer test use: a
# virtual environment under ~/.local/share/tributary/ with PyMySQL,
# confluent-kafka (with its Avro and schema-registry extras) and fastavro from PyPI (python3 and its venv module from
# Debian's packages when missing). Prints the path of its interpreter.
set -euo pipefail

log() { printf 'python: %s\n' "$*" >&2; }

venv=$HOME/.local/share/tributary/python-venv
packages=(PyMySQL 'confluent-kafka[avro,schemaregistry]' fastavro)
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import pymysql, confluent_kafka, fastavro, confluent_kafka.schema_registry.avro' 2>/dev/null; then
    echo "$venv/bin/python"
    exit 0
fi
if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    log "installing python3 and python3-venv"
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo=sudo; fi
    $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends python3 python3-venv >/dev/null
fi
log "installing ${packages[*]} into $venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q "${packages[@]}"
echo "$venv/bin/python"
