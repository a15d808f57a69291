#!/usr/bin/env bash
# embed_test.sh BUILD_DIR SOURCE_DIR [SANITIZE] - examples/embed against an install in a
# temporary prefix: build it with its Makefile (pkg-config), run it on a free
# loopback port and drive the two hooks with curl and a cookie jar: choose,
# sticky, reward once, redirect and the refused open redirect, errors; then
# SIGTERM writes the counters; and with sync "always" on a full tmpfs a
# reward that cannot be written is answered 503. With SANITIZE=ON (an ASan+UBSan libmab) the
# example is built with the same sanitizers, so their runtime loads first.
set -euo pipefail

fail() { echo "embed_test: FAIL: $*" >&2; exit 1; }
note() { echo "embed_test: $*"; }

[[ $# -ge 2 ]] || fail "usage: $0 BUILD_DIR SOURCE_DIR [SANITIZE]"
make_flags=()
case ${3:-OFF} in
ON | on | 1 | TRUE | true) make_flags=(CFLAGS="-O1 -g -Wall -Wextra -Werror -fsanitize=address,undefined") ;;
*) make_flags=(CFLAGS="-O2 -Wall -Wextra -Werror") ;;
esac
BUILD_DIR=$(cd "$1" && pwd)
SOURCE_DIR=$(cd "$2" && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mab-embed.XXXXXX")
pid=""
cleanup() {
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

PREFIX=$TMP/prefix
cmake --install "$BUILD_DIR" --prefix "$PREFIX" >"$TMP/install.log" 2>&1 ||
    { cat "$TMP/install.log" >&2; fail "cmake --install failed"; }
PC_DIR=$(dirname "$(find "$PREFIX" -name mab.pc -path '*/pkgconfig/*' | head -n 1)")
LIB_DIR=$(dirname "$PC_DIR")

WORK=$TMP/embed
cp -R "$SOURCE_DIR/examples/embed" "$WORK"
rm -f "$WORK/embed" "$WORK/state.json" "$WORK/mab.key"
PKG_CONFIG_PATH=$PC_DIR make -C "$WORK" "${make_flags[@]}" >"$TMP/make.log" 2>&1 ||
    { cat "$TMP/make.log" >&2; fail "make -C $WORK with PKG_CONFIG_PATH=$PC_DIR failed"; }
[[ -x $WORK/embed ]] || fail "make did not produce $WORK/embed"
PKG_CONFIG_PATH=$PC_DIR pkg-config --cflags mab | grep -q -- "-I$PREFIX/" ||
    fail "pkg-config --cflags mab does not point into $PREFIX"
# It runs against the install's libmab, through the run path the Makefile set.
loaded=$(ldd "$WORK/embed" | awk '$1 == "libmab.so.1" { print $3 }')
[[ -n $loaded && $(realpath "$loaded") == $(realpath "$LIB_DIR")/* ]] ||
    fail "embed does not load the install's libmab.so.1 ($LIB_DIR): $(ldd "$WORK/embed" | grep mab)"
note "built against $PREFIX with pkg-config"

# The example's config, with the temporary install's plugin directory (an
# install in the default prefix needs no plugin_path).
"$PREFIX/bin/mab" keygen "$WORK/mab.key" >/dev/null
# Plus an experiment over the echo fixture policy (it plays the arm its
# first feature names), for the query's context features.
python3 - "$WORK/config.json" "$LIB_DIR/mab/plugins" "$BUILD_DIR/tests/fixtures/policy_echo.so" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
config["plugin_path"] = [sys.argv[2]]
config["experiments"]["ctx"] = {"policy": {"plugin": sys.argv[3], "features": ["slot"]},
                                "arms": {"a": 1, "b": 2, "c": 3}}
json.dump(config, open(sys.argv[1], "w"), indent=2)
PY

(cd "$WORK" && exec ./embed config.json 0 >"$TMP/out" 2>"$TMP/err") &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$TMP/out" 2>/dev/null && break; sleep 0.05; done
port=$(grep -o '127.0.0.1:[0-9]*' "$TMP/out" | cut -d: -f2)
[[ -n $port ]] || { cat "$TMP/err" >&2; fail "embed did not start"; }
base=http://127.0.0.1:$port
jar=$TMP/jar

req() { # req URL [CURL_ARGS...]: body in $body, status in $status, headers in $TMP/h
    local url=$1
    shift
    status=$(curl -s -o "$TMP/b" -D "$TMP/h" -w '%{http_code}' "$@" "$url") || status=000
    body=$(cat "$TMP/b")
}
has_cookie() { grep -qi '^Set-Cookie: mab=' "$TMP/h"; }

req "$base/choose/color_btn" -c "$jar" -b "$jar"
[[ $status == 200 ]] || fail "choose: $status $body"
has_cookie || fail "choose sent no cookie"
first=$body
arm=$(python3 -c 'import json, sys; d = json.loads(sys.argv[1]); print(d["arm"])' "$body")
note "choose: $body"
for _ in 1 2 3; do
    req "$base/choose/color_btn" -c "$jar" -b "$jar"
    [[ $body == "$first" ]] || fail "not sticky: $first then $body"
    ! has_cookie || fail "a sticky choice sent a new cookie"
done
cp "$jar" "$TMP/old-jar"
req "$base/reward/color_btn" -c "$jar" -b "$jar"
[[ $body == *'"counted": true'* ]] || fail "first reward: $body"
req "$base/reward/color_btn" -c "$jar" -b "$jar"
[[ $body == *'"already_rewarded"'* ]] || fail "second reward: $body"
req "$base/reward/color_btn" -b "$TMP/old-jar"
[[ $body == *'"replayed"'* ]] || fail "replayed cookie: $body"
req "$base/reward/color_btn"
[[ $body == *'"no_cookie"'* ]] || fail "no cookie: $body"
note "reward counted once; already_rewarded, replayed and no_cookie refused"

req "$base/reward/color_btn?to=/thanks"
[[ $status == 303 ]] && grep -qi '^Location: /thanks' "$TMP/h" || fail "redirect: $status $(cat "$TMP/h")"
for target in //evil.example/ https://evil.example/ https://shop.example.com.evil/; do
    req "$base/reward/color_btn?to=$target" -b "$jar"
    [[ $status == 400 ]] || fail "open redirect to $target answered $status"
done
req "$base/reward/color_btn?to=https://shop.example.com/cart"
[[ $status == 303 ]] || fail "allowed absolute redirect: $status"
note "redirect: /thanks 303; open redirects 400"

# Context features from the query reach the policy: slot 2 plays arm c; a
# value that is not a number is missing (arm a).
req "$base/choose/ctx?f.other=1&f.slot=2"
[[ $status == 200 && $body == *'"arm": "c"'* ]] || fail "choose with f.slot=2: $status $body"
req "$base/choose/ctx?f.slot=abc"
[[ $status == 200 && $body == *'"arm": "a"'* ]] || fail "choose with f.slot=abc: $status $body"
req "$base/choose/nope"
[[ $status == 404 && $body == *nope* ]] || fail "unknown experiment: $status $body"
req "$base/reward/color_btn?value=7"
[[ $status == 400 ]] || fail "reward out of range: $status $body"
req "$base/other"
[[ $status == 404 ]] || fail "unknown route: $status"

kill -TERM "$pid"
wait "$pid" || fail "embed exited with $?: $(cat "$TMP/err")"
pid=""
python3 - "$WORK/state.json" "$arm" <<'PY' || fail "state.json does not hold 1 pull and 1 reward for $arm: $(cat "$WORK/state.json")"
import json, sys
arms = json.load(open(sys.argv[1]))["experiments"]["color_btn"]
assert arms[sys.argv[2]]["rewards"] == 1, arms
assert sum(a["pulls"] for a in arms.values()) == 1, arms  # one new visitor chose once
PY
note "SIGTERM: counters written"

# sync "always" on a full disk (a tmpfs this test mounts): a reward that
# cannot be written is answered 503, never {"counted": true}.
DISK=$TMP/disk
mkdir -p "$DISK"
if ! mount -t tmpfs -o size=1m tmpfs "$DISK" 2>"$TMP/mount.err"; then
    note "SKIPPED (loudly): cannot mount a tmpfs ($(cat "$TMP/mount.err")): the full-disk answer was NOT tested"
else
    trap 'if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi; umount "$DISK"; rm -rf "$TMP"' EXIT
    python3 - "$WORK/config.json" "$DISK/state.json" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
config["storage"] = {"plugin": "json_file", "path": sys.argv[2], "sync": "always"}
json.dump(config, open(sys.argv[1], "w"), indent=2)
PY
    (cd "$WORK" && exec ./embed config.json 0 >"$TMP/out" 2>"$TMP/err") &
    pid=$!
    for _ in $(seq 100); do grep -q "listening on" "$TMP/out" 2>/dev/null && break; sleep 0.05; done
    port=$(grep -o '127.0.0.1:[0-9]*' "$TMP/out" | cut -d: -f2)
    [[ -n $port ]] || { cat "$TMP/err" >&2; fail "embed did not start on the tmpfs store"; }
    base=http://127.0.0.1:$port
    rm -f "$jar"
    req "$base/choose/color_btn" -c "$jar" -b "$jar"
    [[ $status == 200 ]] || fail "choose on the tmpfs store: $status $body"
    dd if=/dev/zero of="$DISK/filler" bs=4096 2>/dev/null || true
    # json_file appends each reward to its journal, whose last page may still
    # have room: rewards are written (and counted) until one is not.
    refused=""
    for i in $(seq 300); do
        rm -f "$jar"
        req "$base/choose/color_btn" -c "$jar" -b "$jar"
        req "$base/reward/color_btn" -c "$jar" -b "$jar"
        if [[ $status == 503 ]]; then
            [[ $body != *'"counted": true'* ]] || fail "a 503 reward says counted: $body"
            refused=$i
            break
        fi
        [[ $status == 200 && $body == *'"counted": true'* ]] ||
            fail "a reward on a full disk was neither counted nor refused: $status $body"
    done
    [[ -n $refused ]] || fail "a reward that could not be written (full disk, sync always): none of 300 refused"
    note "full disk, sync always: reward $refused answered $status ($body)"
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null || true
    pid=""
fi
note "PASS"
