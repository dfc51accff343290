#!/usr/bin/env bash
# Compares dmarcd with parsedmarc 11.1.0 on the same inputs, in one run:
# wall time and peak RSS of each, and the throughput ratio.
#
#   bench/vs-parsedmarc.sh            # corpus + 100k-record report
#   RECORDS=20000 bench/vs-parsedmarc.sh
#
# parsedmarc is installed from PyPI into a throwaway virtualenv under
# $WORK (default: a temp dir); nothing is installed system-wide.
set -euo pipefail
cd "$(dirname "$0")/.."

RECORDS="${RECORDS:-100000}"
RUNS="${RUNS:-5}"
WORK="${WORK:-$(mktemp -d)}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dmarcd-target}"

echo "== building dmarcd (release)"
cargo build --release --quiet --bin dmarcd --example synthetic_report
DMARCD="$CARGO_TARGET_DIR/release/dmarcd"
GENERATE="$CARGO_TARGET_DIR/release/examples/synthetic_report"

if [ ! -x "$WORK/venv/bin/parsedmarc" ]; then
    echo "== installing parsedmarc==11.1.0 into $WORK/venv"
    python3 -m venv "$WORK/venv"
    "$WORK/venv/bin/pip" install --quiet parsedmarc==11.1.0
fi
PARSEDMARC="$WORK/venv/bin/parsedmarc"

echo "== generating a $RECORDS-record aggregate report"
"$GENERATE" "$RECORDS" "$WORK/big.xml"
"$GENERATE" "$RECORDS" "$WORK/big.xml.gz" --gzip

# measure RUNS COMMAND...: prints "best_seconds median_seconds peak_rss_mib"
# (each run in a fresh Python process, so ru_maxrss is that run's own).
measure() {
    local runs="$1"; shift
    python3 - "$runs" "$@" <<'PY'
import resource, statistics, subprocess, sys, time
runs = int(sys.argv[1]); command = sys.argv[2:]
times, peaks = [], []
for _ in range(runs):
    probe = ("import resource,subprocess,sys,time;t=time.perf_counter();"
             "r=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL);"
             "print(time.perf_counter()-t,resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,r.returncode)")
    out = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True, check=True).stdout.split()
    times.append(float(out[0])); peaks.append(int(out[1]) / 1024)
print(f"{min(times):.3f} {statistics.median(times):.3f} {max(peaks):.0f}")
PY
}

compare() {
    local label="$1"; shift
    local ours theirs
    ours=$(measure "$RUNS" "$DMARCD" parse "$@")
    theirs=$(measure 1 "$PARSEDMARC" --offline "$@")
    read -r our_best our_median our_rss <<<"$ours"
    read -r their_best _ their_rss <<<"$theirs"
    python3 - "$label" "$our_best" "$our_median" "$our_rss" "$their_best" "$their_rss" <<'PY'
import sys
label, ob, om, orss, tb, trss = sys.argv[1], *map(float, sys.argv[2:])
print(f"{label}")
print(f"  dmarcd:     best {ob:7.3f} s, median {om:7.3f} s, peak RSS {orss:6.0f} MiB")
print(f"  parsedmarc:      {tb:7.3f} s,                  peak RSS {trss:6.0f} MiB")
print(f"  ratio: {tb/ob:6.1f}x at dmarcd's best, {tb/om:6.1f}x at its median")
PY
}

mapfile -d '' CORPUS < <(find tests/fixtures/corpus/parsedmarc -type f ! -name empty.xml -print0 | sort -z)
echo "== results (dmarcd best/median of $RUNS runs; parsedmarc 1 run)"
compare "corpus (${#CORPUS[@]} files, one invocation)" "${CORPUS[@]}"
compare "aggregate report, $RECORDS records, plain XML ($(du -m "$WORK/big.xml" | cut -f1) MB)" "$WORK/big.xml"
compare "aggregate report, $RECORDS records, gzip ($(du -k "$WORK/big.xml.gz" | cut -f1) KB)" "$WORK/big.xml.gz"
