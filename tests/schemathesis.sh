#!/usr/bin/env bash
# The live API against its own OpenAPI document: schemathesis (from PyPI,
# in a virtualenv cached under ~/.cache) generates requests from
# /api/v1/openapi.json, sends them to a real `dmarcd serve` holding the
# corpus, and checks every response's status, content type and body
# against the document, with all of schemathesis's checks on every
# operation (reprocess included: nothing is excluded). Raw messages are
# checked through the deserializer in tests/schemathesis_hooks.py.
# Called by .ci/run; runnable by hand.
#   tests/schemathesis.sh [path/to/dmarcd]
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${1:-${CARGO_TARGET_DIR:-target}/debug/dmarcd}"
VENV="${HOME}/.cache/dmarcd-schemathesis-4.32.5"
if [ ! -x "$VENV/bin/schemathesis" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "schemathesis==4.32.5"
fi

WORK="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export DMARCD_DATA_DIR="$WORK/data"
export DMARCD_WEB_LISTEN="127.0.0.1:$PORT"
export DMARCD_SMTP_ENABLED=false
export DMARCD_ENRICH_REVERSE_DNS=false
export DMARCD_LOG=warn
unset DATABASE_URL DMARCD_DATABASE_URL

"$BIN" import tests/fixtures/corpus/parsedmarc >/dev/null
TOKEN="$("$BIN" token create --name schemathesis --write 2>/dev/null)"
"$BIN" serve >"$WORK/serve.log" 2>&1 &
SERVER=$!
# serve finishes the outbox pass it is in before stopping, and the run
# queues thousands of test messages to unreachable hosts: give it 30 s.
stop_server() {
    kill "$SERVER" 2>/dev/null || true
    for _ in $(seq 1 300); do
        kill -0 "$SERVER" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    rm -rf "$WORK"
}
trap stop_server EXIT

for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done

SCHEMATHESIS_HOOKS="$PWD/tests/schemathesis_hooks.py" \
"$VENV/bin/schemathesis" run "http://127.0.0.1:$PORT/api/v1/openapi.json" \
    --header "Authorization: Bearer $TOKEN" \
    --checks all \
    --max-examples 25 \
    --seed 1 \
    --workers 1
