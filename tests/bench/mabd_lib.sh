# mabd_lib.sh - the mabd start and stop shared by the bench scripts that run
# a real mabd (sourced, not run). The sourcing script calls bench_mabd_begin
# first, then writes $tmp/mab.json.

# bench_mabd_begin: a scratch $tmp and $pid (the bench's mabd, empty until
# bench_mabd_start); at exit the mabd still running is stopped and $tmp
# removed.
bench_mabd_begin() {
    tmp=$(mktemp -d)
    pid=""
    trap bench_mabd_end EXIT
}
bench_mabd_end() {
    [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}

# bench_mabd_start BUILD: start BUILD's mabd in $tmp with --config mab.json
# on loopback port 0 (mabd picks a free port, its log names it), its stderr
# in $tmp/log, and wait for its "listening on" line however long start-up
# takes (a big config takes minutes); if mabd exits first, print its log and
# exit 1. Sets $pid, $port and $startup_wall (seconds from the start to the
# line).
bench_mabd_start() {
    : >"$tmp/log"
    local t0 t1
    t0=$(date +%s.%N)
    (cd "$tmp" && LD_LIBRARY_PATH="$1/lib" exec "$1/bin/mabd" --config mab.json --listen 127.0.0.1:0 2>"$tmp/log") &
    pid=$!
    while ! grep -q "listening on" "$tmp/log"; do
        kill -0 "$pid" 2>/dev/null || { cat "$tmp/log" >&2; exit 1; }
        sleep 0.05
    done
    t1=$(date +%s.%N)
    port=$(grep -o 'http://127.0.0.1:[0-9]*' "$tmp/log" | head -1 | cut -d: -f3)
    startup_wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
}

# bench_mabd_stop: SIGTERM to $pid and wait (its exit status is not the
# bench's business).
bench_mabd_stop() {
    kill -TERM "$pid"
    wait "$pid" || true
    pid=""
}
