#!/usr/bin/env bash
# Install the system packages the test suite runs for real, when they are missing: the PostgreSQL
# server binaries (initdb, pg_ctl), redis-server and docker-compose (validates the compose file).
# Called by `make test`, so a fresh machine needs no other command first. Uses apt-get (as root,
# or through sudo); elsewhere it names what to install and stops.
set -euo pipefail

missing=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1 \
    || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
((${#missing[@]})) || exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "the tests need these system packages: ${missing[*]}; install them, then run make test again" >&2
    exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "the tests need: ${missing[*]}; run as root or install them (apt-get install ${missing[*]})" >&2
        exit 1
    fi
    sudo=(sudo)
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
