#!/usr/bin/env bash
# Runs tests many times with the CPU kept busy, to find the ones that fail at random.
#
#   scripts/stress.sh [-n RUNS] [-b BUSY_LOOPS] [pytest arguments...]
#
# Defaults: 10 runs of tests/commands/batch with a busy loop on each core (as CI's machine may be
# loaded). Each run's output is kept under ${STRESS_LOGS:-/tmp/vidsr-stress}/run-N.log;
# the summary names every failed test and how many runs it failed. Exits 1 if any run
# failed. Uses the project's .venv (scripts/setup.sh makes it).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${VIDSR_VENV:-$ROOT/.venv}/bin/python"
runs=10
busy=$(nproc)
while getopts "n:b:" opt; do
    case $opt in
        n) runs=$OPTARG ;;
        b) busy=$OPTARG ;;
        *) echo "usage: $0 [-n RUNS] [-b BUSY_LOOPS] [pytest arguments...]" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || set -- tests/commands/batch
logs="${STRESS_LOGS:-/tmp/vidsr-stress}"
mkdir -p "$logs"
rm -f "$logs"/run-*.log

loops=()
stop_loops() { [ ${#loops[@]} -eq 0 ] || kill "${loops[@]}" 2>/dev/null; }
trap stop_loops EXIT
trap "exit 130" INT TERM  # through the EXIT trap: no busy loop outlives the harness
for _ in $(seq 1 "$busy"); do
    "$PYTHON" -c "while True: pass" &
    loops+=($!)
done

cd "$ROOT"
failed_runs=0
for i in $(seq 1 "$runs"); do
    log="$logs/run-$i.log"
    start=$(date +%s)
    if "$PYTHON" -m pytest "$@" -q -p no:cacheprovider >"$log" 2>&1; then
        verdict="green"
    else
        verdict="RED"
        failed_runs=$((failed_runs + 1))
    fi
    echo "run $i/$runs: $verdict in $(( $(date +%s) - start )) s: $(tail -n 1 "$log")"
done
echo "$failed_runs of $runs runs failed ($busy busy loop(s), pytest $*)"
grep -h -E '^(FAILED|ERROR) ' "$logs"/run-*.log 2>/dev/null | sed 's/ - .*//' | sort | uniq -c
[ "$failed_runs" -eq 0 ]
