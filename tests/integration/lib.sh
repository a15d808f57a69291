# lib.sh - helpers shared by the bash integration tests (sourced, not run).
# The sourcing script sets $py (Debian's /usr/bin/python3) and $tmp (its
# scratch directory) first, or calls mabd_test_begin (below) right after
# sourcing, and exits non-zero at the end when $failures > 0.

failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# pycheck WHAT JSON_TEXT PYTHON: run PYTHON with the parsed JSON in `d`; it
# must exit 0 (use assert). Other data reaches PYTHON through the environment
# (os.environ), never pasted into its source.
pycheck() {
    local what=$1 text=$2 code=$3
    if ! printf '%s' "$text" | $py -c "import json, os, sys
import math
d = json.load(sys.stdin)
$code" 2>"$tmp/pyerr"; then
        fail "$what: $(cat "$tmp/pyerr") in: $text"
    fi
}

# req NAME CURL_ARGS...: run curl; body in $body, status in $status,
# headers in $tmp/NAME.h.
req() {
    local name=$1
    shift
    status=$(curl -s -o "$tmp/$name.b" -D "$tmp/$name.h" -w '%{http_code}' "$@") || status=000
    body=$(cat "$tmp/$name.b")
}

header() { # header NAME FIELD
    grep -i "^$2:" "$tmp/$1.h" | head -1 | cut -d' ' -f2- | tr -d '\r' || true
}

expect_status() { # WANT WHAT
    [[ $status == "$1" ]] || fail "$2: status $status, expected $1; body: $body"
}

free_port() { # a loopback TCP port nobody listens on now
    $py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# mabd_test_begin BUILD_DIR: the set-up of a test of one mabd at a time:
# $build, $mabd, $mab, $py, a scratch $tmp, and $pid (the test's mabd,
# empty until it starts one), killed if still running and $tmp removed
# when the test exits. Call it right after sourcing this file.
mabd_test_begin() {
    build=$(cd "$1" && pwd)
    mabd=$build/bin/mabd
    mab=$build/bin/mab
    py=/usr/bin/python3
    tmp=$(mktemp -d)
    pid=""
    trap mabd_test_end EXIT
}
mabd_test_end() {
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    rm -rf "$tmp"
}

# mabd_start [MABD_ARGS...]: start $mabd in $tmp with --config mab.json on
# loopback port 0 (mabd picks a free one and its log names it), its stderr
# in $tmp/log (emptied first). Sets $pid, $port and $base. If mabd exits or
# has not said "listening on" within 60 s, the test fails and exits (the
# exit trap of mabd_test_begin kills it).
mabd_start() {
    : >"$tmp/log"
    (cd "$tmp" && exec "$mabd" --config mab.json --listen 127.0.0.1:0 "$@" 2>"$tmp/log") &
    pid=$!
    for _ in $(seq 600); do
        grep -q "listening on" "$tmp/log" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    port=$(grep -o 'http://127.0.0.1:[0-9]*' "$tmp/log" | head -1 | cut -d: -f3 || true)
    [[ -n $port ]] || { fail "mabd did not start: $(cat "$tmp/log")"; exit 1; }
    base=http://127.0.0.1:$port
}
# mabd_stop: SIGTERM to $pid and wait; a non-zero exit status is a failure
# (shown with the end of $tmp/log).
mabd_stop() {
    local rc=0
    kill -TERM "$pid"
    wait "$pid" || rc=$?
    pid=""
    ((rc == 0)) || fail "mabd exited $rc after SIGTERM: $(tail -5 "$tmp/log")"
}
