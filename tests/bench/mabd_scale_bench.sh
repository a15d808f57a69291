#!/usr/bin/env bash
# mabd_scale_bench.sh [BUILD_DIR] - mabd at 10^3, 10^4 and 10^5 experiments
# (EXPERIMENTS="1000 10000 100000") of 3 arms, LMDB storage, the default
# series settings. Per size, a real mabd on a loopback port (stopped by its
# pid): start-up (to the "listening on" line), the same with
# mabd.series.max_bytes 0 (no series), then two GETs of /metrics (the first
# after the start, and one more with nothing changed in between), one each
# of /v1/dashboard (its default page) and /v1/report/exp000000 (time and
# bytes as curl reports them), and mabd's VmRSS and VmHWM after them. Before the
# reads, 200 visitors get an arm and 40 a reward on exp000000 (so a bucket and
# the report have something). With BASELINE=DIR the same rows for another
# build (e.g. one from before a change), run interleaved with this one's.
# LABEL names this build in the first column (default "now").
# A request that takes longer than MAX_TIME seconds (default 600) is shown
# as "> MAX_TIME s"; READS=0 measures the start-ups only. A start-up is the
# wall time and mabd's CPU time (utime + stime, /proc/PID/stat) when the
# "listening on" line appears; a request's, its time as curl reports it and
# mabd's CPU time from before to after it (the CPU figures hold on a loaded
# machine; 1/CLK_TCK resolution, and mabd's own background ticks included).
# Prints a markdown table. Not part of the test suite.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$src/build-release}" && pwd)
sizes=${EXPERIMENTS:-1000 10000 100000}
max_time=${MAX_TIME:-600}
source "$here/mabd_lib.sh"
bench_mabd_begin
"$build/bin/mab" keygen "$tmp/mab.key" >/dev/null

config() { # config N PLUGINS SERIES_MAX_BYTES|default
    python3 - "$tmp/mab.json" "$2" "$1" "$3" <<'PY'
import json, sys
path, plugins, n, max_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
mabd = {}
if max_bytes != "default":
    mabd["series"] = {"max_bytes": int(max_bytes)}
exps = {"exp%06d" % i: {"policy": {"plugin": "thompson"},
                        "arms": {"green": 1, "red": 2, "blue": 3}} for i in range(n)}
json.dump({"plugin_path": [plugins], "secret_file": "mab.key",
           "storage": {"plugin": "lmdb", "path": "mab.lmdb"},
           "mabd": mabd, "experiments": exps}, open(path, "w"))
PY
}

startup=""
start() { # start BUILD: sets pid, port and startup (wall and CPU time to "listening on")
    bench_mabd_start "$1"
    local ticks
    ticks=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
    startup=$(awk -v w="$startup_wall" -v c="$ticks" -v hz="$(getconf CLK_TCK)" \
                  'BEGIN { printf "%.1f s (CPU %.1f s)", w, c / hz }')
}
stop() { bench_mabd_stop; }

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }

get() { # get PATH: "TIME s (CPU C s), BYTES"; C: mabd's CPU time over the request
    local out before after
    before=$(cpu_ticks)
    if out=$(curl -s -o /dev/null --max-time "$max_time" -w '%{http_code} %{time_total} %{size_download}' \
                  "http://127.0.0.1:$port$1"); then
        after=$(cpu_ticks)
        awk -v o="$out" -v c=$((after - before)) -v hz="$(getconf CLK_TCK)" 'BEGIN { split(o, f, " ");
            printf "%s%.3f s (CPU %.2f s), %.0f kB", (f[1] == 200 ? "" : f[1] " "), f[2], c / hz,
                   f[3] / 1e3 }'
    else
        printf '> %s s' "$max_time"
    fi
}

traffic() {
    local base="http://127.0.0.1:$port" i
    for i in $(seq 200); do
        curl -s -c "$tmp/jar$i" -o /dev/null "$base/v1/choose/exp000000"
    done
    for i in $(seq 40); do
        curl -s -b "$tmp/jar$i" -o /dev/null -X POST -d '{"value": 1}' "$base/v1/reward/exp000000"
    done
    rm -f "$tmp"/jar*
}

row() { # row N BUILD LABEL
    local n=$1 b=$2 label=$3 bare full metrics dash report rss hwm
    rm -rf "$tmp/mab.lmdb"
    config "$n" "$b/plugins" 0
    start "$b"
    bare=$startup
    stop
    config "$n" "$b/plugins" default
    start "$b"
    full=$startup
    if [[ ${READS:-1} == 0 ]]; then
        stop
        echo "| $label | $n | $full | $bare | | | | | | |"
        return
    fi
    traffic
    metrics=$(get /metrics)
    again=$(get /metrics)
    dash=$(get /v1/dashboard)
    report=$(get /v1/report/exp000000)
    rss=$(awk '/^VmRSS/ {printf "%.0f MiB", $2 / 1024}' "/proc/$pid/status")
    hwm=$(awk '/^VmHWM/ {printf "%.0f MiB", $2 / 1024}' "/proc/$pid/status")
    stop
    echo "| $label | $n | $full | $bare | $metrics | $again | $dash | $report | $rss | $hwm |"
}

echo "| build | experiments | start-up | start-up, no series | /metrics | /metrics again | /v1/dashboard | /v1/report/EXP | VmRSS | VmHWM |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in $sizes; do
    row "$n" "$build" "${LABEL:-now}"
    [[ -n ${BASELINE:-} ]] && row "$n" "$(cd "$BASELINE" && pwd)" before
done
echo
echo "3 arms per experiment (thompson), LMDB storage over an empty store, 200 choose and 40"
echo "rewards on exp000000 before the reads; default mabd settings (series on unless \"no series\")."
