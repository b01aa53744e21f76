#!/usr/bin/env bash
# Run a command as if the TimescaleDB extension were not installed: in a private mount namespace,
# PostgreSQL's library and extension folders are replaced by copies without timescaledb's files.
#
# Why: a fresh machine has no TimescaleDB (no package registry ships it), so the default test run
# must pass without it. On a machine where it was built by hand, this proves that before landing:
# .ci/run runs `make test` through this script. Where the extension is absent the command runs as
# is; where a mount namespace cannot be made (no unshare, no privilege) it says so and runs as is.
set -euo pipefail

if (($# == 0)); then
    echo "usage: $0 COMMAND [ARG...]" >&2
    exit 2
fi

folders=()
for dir in /usr/lib/postgresql/*/lib /usr/share/postgresql/*/extension; do
    compgen -G "$dir/timescaledb*" >/dev/null && folders+=("$dir")
done
if ((${#folders[@]} == 0)); then
    exec "$@"
fi
if ! unshare --mount --propagation private true 2>/dev/null; then
    echo "without-timescaledb: cannot make a private mount namespace here; running with" \
        "TimescaleDB visible: $*" >&2
    exec "$@"
fi

# shellcheck disable=SC2016  # expanded by the inner shell
exec unshare --mount --propagation private bash -euo pipefail -c '
    shadows=$(mktemp -d /tmp/without-timescaledb.XXXXXX)
    count=$1; shift
    for ((i = 0; i < count; i++)); do
        dir=$1; shift
        shadow="$shadows/$i"
        mkdir -p "$shadow"
        cp -a "$dir/." "$shadow/"
        rm -f "$shadow"/timescaledb*
        mount --bind "$shadow" "$dir"
    done
    echo "without-timescaledb: timescaledb hidden from PostgreSQL for: $*" >&2
    status=0
    "$@" || status=$?
    rm -rf "$shadows"
    exit $status
' without-timescaledb "${#folders[@]}" "${folders[@]}" "$@"
