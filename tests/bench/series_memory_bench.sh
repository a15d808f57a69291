#!/usr/bin/env bash
# series_memory_bench.sh [BUILD_DIR] - memory of mabd's dashboard series at
# scale: mabd over EXPERIMENTS (default 100,000) experiments of 3 arms,
# sampling every second (series.interval_s 1, keep 1440), run for SECONDS
# (default 40: the 64 MiB cap fills in ~12 samples) with the default
# series.max_bytes (64 MiB), and again with max_bytes 0 (no series); with
# BASELINE=DIR also a build from before the byte cap (no max_bytes key).
# Prints mabd's VmRSS and VmHWM (/proc/PID/status) after the run as a
# markdown table: the series' memory is the difference to the max_bytes 0
# row. (/metrics and /v1/dashboard are not read here:
# tests/bench/mabd_scale_bench.sh measures them.) Not part of the test
# suite: ~3 min, a few hundred MB of memory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$src/build-release}" && pwd)
n=${EXPERIMENTS:-100000}
seconds=${SECONDS_RUN:-40}
source "$here/mabd_lib.sh"
bench_mabd_begin
"$build/bin/mab" keygen "$tmp/mab.key" >/dev/null

run() { # run MAX_BYTES|none [BUILD]: one table row
    local max=$1 b=${2:-$build}
    python3 - "$tmp/mab.json" "$b/plugins" "$n" "$max" <<'PY'
import json, sys
path, plugins, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
series = {"interval_s": 1, "keep": 1440}
if sys.argv[4] != "none":
    series["max_bytes"] = int(sys.argv[4])
exps = {"exp%06d" % i: {"policy": {"plugin": "epsilon_greedy"},
                        "arms": {"green": 1, "red": 2, "blue": 3}} for i in range(n)}
json.dump({"plugin_path": [plugins], "secret_file": "mab.key",
           "storage": {"plugin": "lmdb", "path": "mab.lmdb"},
           "mabd": {"series": series},
           "experiments": exps}, open(path, "w"))
PY
    rm -rf "$tmp/mab.lmdb"
    bench_mabd_start "$b"
    local started=$startup_wall
    sleep "$seconds"
    local rss hwm
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
    bench_mabd_stop
    local what
    case $max in
        none) what="before the cap (keep 1440 only)" ;;
        0) what="0 (no series)" ;;
        *) what="$((max >> 20)) MiB" ;;
    esac
    awk -v w="$what" -v r="$rss" -v h="$hwm" -v st="$started" 'BEGIN {
        printf "| %s | %.0f MiB | %.0f MiB | %d s |\n", w, r / 1024, h / 1024, st }'
}

echo "| series.max_bytes | VmRSS | VmHWM | start-up |"
echo "|---|---:|---:|---:|"
run $((64 << 20))
run 0
[[ -n ${BASELINE:-} ]] && run none "$(cd "$BASELINE" && pwd)"

echo
echo "$n experiments x 3 arms, series.interval_s 1, keep 1440, VmRSS after ${seconds} s; LMDB storage."
echo "Before the byte cap a sample copied every id: a 32-byte point + \"exp000000\" + the arm id, 48"
echo "bytes per arm, so 1440 samples of $((n * 3)) arms held $(awk -v a=$((n * 3)) 'BEGIN {printf "%.1f", a * 48 * 1440 / 1e9}') GB (plus malloc's headers)."
