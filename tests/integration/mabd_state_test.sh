#!/usr/bin/env bash
# mabd_state_test.sh BUILD_DIR - admin actions (pause, resume, conclude) on
# two mabd processes over one LMDB store: an action on one is stored
# (EXP@admin) and the other follows at its refresh (refresh_ms); a restart
# keeps it; resume makes both learn again. Refused without the token (state
# unchanged), an unknown arm is a 400 naming it, an unknown experiment a 404,
# a failing store a 503 with the state unchanged. Each action appears in the
# dashboard's events, on the mabd that took it and on the one that read it.
# `mab pause`, `mab conclude` and `mab clear` beside both servers.
set -euo pipefail

build=$(cd "$1" && pwd)
mabd=$build/bin/mabd
mab=$build/bin/mab
py=/usr/bin/python3
tmp=$(mktemp -d)
pid_a=""
pid_b=""
pid_c=""
stop() { # stop PID: kill one mabd we started, by its pid
    if [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; then
        kill -TERM "$1"
        wait "$1" 2>/dev/null || true
    fi
}
cleanup() {
    for p in $pid_a $pid_b $pid_c; do kill -0 "$p" 2>/dev/null && kill -KILL "$p"; done
    rm -rf "$tmp"
}
trap cleanup EXIT
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

$mab keygen "$tmp/mab.key" >/dev/null
token=admin-token-0123456789abcdef
echo "$token" >"$tmp/admin.token"
write_config() { # write_config FILE STORAGE_OBJECT
    cat >"$tmp/$1" <<EOF
{
  "plugin_path": ["$build/plugins"],
  "storage": $2,
  "secret_file": "mab.key",
  "mabd": {"admin_token_file": "admin.token"},
  "experiments": {
    "color": {"policy": {"plugin": "ucb1"}, "arms": {"green": 1, "red": 2, "blue": 3}}
  }
}
EOF
}
write_config mab.json '{"plugin": "lmdb", "path": "store", "sync": "always", "refresh_ms": 100}'

start() { # start NAME: a mabd on a free loopback port; sets pid_NAME, base_NAME
    local name=$1 port
    port=$(free_port)
    (cd "$tmp" && exec "$mabd" --config "${2:-mab.json}" --listen "127.0.0.1:$port" \
        2>"$tmp/log_$name") &
    eval "pid_$name=$!"
    eval "base_$name=http://127.0.0.1:$port"
    for _ in $(seq 100); do
        grep -qs "listening on" "$tmp/log_$name" && return 0
        sleep 0.1
    done
    fail "mabd $name did not start:"
    cat "$tmp/log_$name" >&2
    exit 1
}
auth=(-H "Authorization: Bearer $token")
action() { # action BASE ACTION [CURL_ARGS...]: POST an admin action
    local base=$1 what=$2
    shift 2
    req action "${auth[@]}" -H 'Content-Type: application/json' -X POST "$@" \
        "$base/v1/admin/experiments/color/$what"
}
served() { # served BASE: "ARM" or "ARM paused" of one fresh visitor
    req choose "$1/v1/choose/color"
    printf '%s' "$body" | $py -c '
import json, sys
c = json.load(sys.stdin)["color"]
print(c["arm"] + (" paused" if c.get("paused") else ""))'
}
pulls() { # pulls BASE: total pulls of "color" as that mabd sees them
    req stats "${auth[@]}" "$1/v1/stats"
    printf '%s' "$body" | $py -c '
import json, sys
print(sum(a["pulls"] for a in json.load(sys.stdin)["experiments"]["color"]["arms"].values()))'
}
until_served() { # until_served BASE WANT WHAT: wait (10 s at most) for WANT
    local got=""
    for _ in $(seq 100); do
        got=$(served "$1")
        [[ $got == "$2" ]] && return 0
        sleep 0.1
    done
    fail "$3: served '$got', expected '$2'"
}
events() { # events BASE: the dashboard's events as "action:arm:sequence" lines
    req dash "${auth[@]}" "$1/v1/dashboard"
    printf '%s' "$body" | $py -c '
import json, sys
for e in json.load(sys.stdin)["events"]:
    assert e["experiment"] == "color" and e["t"] > 1.7e9, e
    print("%s:%s:%d" % (e["action"], e["arm"], e["sequence"]))'
}

start a
start b
for _ in 1 2 3 4 5 6; do served "$base_a" >/dev/null; done

# ---- refused: no token, a form, unknown arm or experiment; nothing changes -----
req notoken -H 'Content-Type: application/json' -X POST "$base_a/v1/admin/experiments/color/pause"
expect_status 401 "pause without the token"
req form "${auth[@]}" -X POST -d 'arm=red' "$base_a/v1/admin/experiments/color/pause"
expect_status 403 "pause from a form"
req get "${auth[@]}" "$base_a/v1/admin/experiments/color/pause"
expect_status 405 "GET on an admin action"
[[ $(served "$base_a") != *paused* ]] || fail "a refused pause paused the experiment"
action "$base_a" conclude
expect_status 400 "conclude without an arm"
action "$base_a" conclude -d '{"arm": "purple"}'
expect_status 400 "conclude on an unknown arm"
[[ $body == *'\"purple\"'* ]] || fail "the 400 does not name the arm: $body"
req nope "${auth[@]}" -H 'Content-Type: application/json' -X POST \
    "$base_a/v1/admin/experiments/nope/pause"
expect_status 404 "pause of an unknown experiment"
action "$base_a" stop
expect_status 404 "an unknown action"
[[ $(served "$base_a") != *paused* ]] || fail "a refused action changed the state"
[[ -z $(events "$base_a") ]] || fail "events after refused actions: $(events "$base_a")"

# ---- pause on A: B follows at its refresh -------------------------------------
action "$base_a" pause -d '{"arm": "red"}'
expect_status 200 "pause on A"
pycheck "pause answer" "$body" 'assert d["state"] == "paused" and d["serve"] == "red" and d["source"] == "admin" and d["action"] == "pause" and d["sequence"] == 1, d'
[[ $(served "$base_a") == "red paused" ]] || fail "A does not serve red paused after its pause"
until_served "$base_b" "red paused" "B after A's pause"
# A's pulls from before its pause reach the store within its flush interval
# (1 s) and B's totals at B's next refresh: wait for B to see them all.
for _ in $(seq 100); do
    [[ $(pulls "$base_b") == "$(pulls "$base_a")" ]] && break
    sleep 0.1
done
[[ $(pulls "$base_b") == "$(pulls "$base_a")" ]] || fail "B never saw A's pulls"
before=$(pulls "$base_b")
for _ in 1 2 3 4 5; do
    [[ $(served "$base_b") == "red paused" ]] || fail "B stopped serving red paused"
done
[[ $(pulls "$base_b") == "$before" ]] || fail "B counted pulls while paused"
until_event() { # until_event BASE LINE WHAT: wait (10 s at most) for an event line
    for _ in $(seq 100); do
        events "$1" | grep -qx "$2" && return 0
        sleep 0.1
    done
    fail "$3: no event '$2' in: $(events "$1")"
}
until_event "$base_b" "pause:red:1" "B's dashboard after A's pause"

# ---- conclude on B (arm in the query): A follows -----------------------------
req action "${auth[@]}" -H 'X-MAB-Request: 1' -X POST "$base_b/v1/admin/experiments/color/conclude?arm=blue"
expect_status 200 "conclude on B"
pycheck "conclude answer" "$body" 'assert d["state"] == "concluded" and d["serve"] == "blue" and d["sequence"] == 2, d'
until_served "$base_a" "blue" "A after B's conclude"
until_event "$base_a" "conclude:blue:2" "A's dashboard after B's conclude"

# ---- a restart keeps it --------------------------------------------------------
stop "$pid_a"
start a
[[ $(served "$base_a") == "blue" ]] || fail "A after a restart does not serve the concluded arm"

# ---- resume: both learn again --------------------------------------------------
action "$base_a" resume
expect_status 200 "resume on A"
pycheck "resume answer" "$body" 'assert d["state"] == "running" and d["serve"] is None and d["action"] == "resume", d'
# ucb1 tries the arms concluded never served: another arm than blue, counted.
until_served "$base_b" "green" "B after A's resume (ucb1 tries an unpulled arm)"
before=$(pulls "$base_b")
for _ in 1 2 3 4; do served "$base_b" >/dev/null; done
[[ $(pulls "$base_b") -ge $((before + 4)) ]] || fail "B does not count pulls after resume"
before=$(pulls "$base_a")
for _ in 1 2 3 4; do served "$base_a" >/dev/null; done
[[ $(pulls "$base_a") -ge $((before + 4)) ]] || fail "A does not count pulls after resume"

# ---- the dashboard's events: this mabd's and the other's ----------------------
want=$'conclude:blue:2\nresume:None:3'
got=$(events "$base_a") # A restarted: it read conclude at open, took resume itself
[[ $got == "$want" ]] || fail "A's events: '$got', expected '$want'"
want=$'pause:red:1\nconclude:blue:2\nresume:None:3'
got=$(events "$base_b")
[[ $got == "$want" ]] || fail "B's events: '$got', expected '$want'"

# The dashboard page lists them (headless Chromium, as mabd_test.sh).
chromium_bin=$(command -v chromium || command -v chromium-browser || true)
if [[ -z $chromium_bin ]]; then
    fail "chromium is not installed (scripts/deps installs Debian's chromium): the dashboard's actions were NOT tested"
else
    profile=$(mktemp -d -p "$tmp")
    timeout 90 "$chromium_bin" --headless --no-sandbox --disable-gpu \
        --disable-background-networking --disable-component-update --disable-sync \
        --no-first-run --user-data-dir="$profile" --virtual-time-budget=10000 --dump-dom \
        "$base_b/?access_token=$token" >"$tmp/dom.html" 2>"$tmp/chromium.err" ||
        fail "chromium --dump-dom failed: $(tail -5 "$tmp/chromium.err")"
    got=$(grep -o '<li data-action="[a-z]*">[^<]*</li>' "$tmp/dom.html" |
          sed 's/<li data-action="\([a-z]*\)">[0-9:]* \([^<]*\)<\/li>/\1|\2/' | tr '\n' ';')
    want="pause|pause (serves red);conclude|conclude (serves blue);resume|resume;"
    [[ $got == "$want" ]] || fail "the dashboard lists '$got', expected '$want'"
fi

# ---- the mab command line, beside both servers (LMDB takes a second writer) ----
out=$($mab pause "$tmp/mab.json" color green) || fail "mab pause failed: $out"
[[ $out == *"paused, serving 'green'"* ]] || fail "mab pause says: $out"
until_served "$base_a" "green paused" "A after mab pause"
until_served "$base_b" "green paused" "B after mab pause"
if out=$($mab conclude "$tmp/mab.json" color purple 2>&1); then
    fail "mab conclude with an unknown arm succeeded: $out"
fi
[[ $out == *'"purple"'* ]] || fail "mab conclude does not name the arm: $out"
st=0
$mab conclude "$tmp/mab.json" color >/dev/null 2>&1 || st=$?
[[ $st == 2 ]] || fail "mab conclude without an arm: exit $st, expected 2 (usage)"
[[ $(served "$base_a") == "green paused" ]] || fail "a refused mab conclude changed the state"
out=$($mab clear "$tmp/mab.json" color) || fail "mab clear failed: $out"
[[ $out == *"running"*"the config's state"* ]] || fail "mab clear says: $out"
for _ in $(seq 100); do
    [[ $(served "$base_b") != *paused* ]] && break
    sleep 0.1
done
[[ $(served "$base_b") != *paused* ]] || fail "B still paused after mab clear"

stop "$pid_a"
stop "$pid_b"
pid_a=""
pid_b=""
pid_c=""

# ---- a failing store: 503, state unchanged -------------------------------------
write_config failing.json "{\"plugin\": \"$build/tests/fixtures/storage_memory.so\", \"fail_apply\": true}"
start c failing.json
action "$base_c" pause -d '{"arm": "red"}'
expect_status 503 "pause over a failing store"
[[ $body == *"not changed"* ]] || fail "the 503 does not say the state was not changed: $body"
[[ $(served "$base_c") != *paused* ]] || fail "a failed pause paused the experiment"
[[ -z $(events "$base_c") ]] || fail "a failed action appears in the events"
stop "$pid_c"

exit $((failures > 0))
