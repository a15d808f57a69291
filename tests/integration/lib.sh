# lib.sh - helpers shared by the bash integration tests (sourced, not run).
# The sourcing script sets $py (Debian's /usr/bin/python3) and $tmp (its
# scratch directory) first, and exits non-zero at the end when $failures > 0.

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
