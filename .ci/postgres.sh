#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 with trust auth
# for the postgres user: starts the installed cluster, or installs one.
set -euo pipefail

ready() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "installing PostgreSQL"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
fi

if ! ready; then
    version="$(ls /etc/postgresql | sort -V | tail -1)"
    if [ -z "$version" ]; then
        echo "no PostgreSQL cluster found" >&2
        exit 1
    fi
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    # Local test server only: trust connections from this machine.
    if ! grep -q "dmarcd-ci" "$hba"; then
        sed -i '1i host all all 127.0.0.1/32 trust # dmarcd-ci\nlocal all all trust # dmarcd-ci' "$hba"
    fi
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || pg_ctlcluster "$version" main start
    for _ in $(seq 1 30); do
        ready && break
        sleep 1
    done
fi
ready || { echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2; exit 1; }

# Databases left behind by earlier test runs: dmarcd_test_<pid>_<n>, dropped
# once the test process that made it is gone (another run may be going on).
psql -h 127.0.0.1 -U postgres -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'dmarcd_test_%'" postgres \
    | while read -r name; do
        pid="$(echo "$name" | cut -d_ -f3)"
        if ! kill -0 "$pid" 2>/dev/null; then
            psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS \"$name\"" postgres
        fi
    done
echo "PostgreSQL is ready"
