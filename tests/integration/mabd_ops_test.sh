#!/usr/bin/env bash
# mabd_ops_test.sh BUILD_DIR - operating mabd: the access log's lines after
# choose, reward and redirect requests (combined log format plus, per
# experiment, the arm, the probability it was chosen with, the pull and the
# reward counted), SIGHUP reopening a renamed access log, log_level, and the
# `mab` commands while mabd holds the json_file store (reading ones work,
# writing ones refuse with advice).
set -euo pipefail

build=$(cd "$1" && pwd)
mab=$build/bin/mab
mabd=$build/bin/mabd
py=/usr/bin/python3
tmp=$(mktemp -d)
pid=""
cleanup() {
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

wait_log() { # wait_log TEXT [COUNT]: until the log holds TEXT COUNT times (10 s)
    for _ in $(seq 100); do
        (($(grep -c -- "$1" "$tmp/log" || true) >= ${2:-1})) && return 0
        sleep 0.1
    done
    fail "timed out waiting for '$1' in the log: $(cat "$tmp/log")"
    return 1
}

$mab keygen "$tmp/mab.key" >/dev/null
write_config() { # write_config LOG_LEVEL
    cat >"$tmp/mab.json" <<EOF
{
  "plugin_path": ["$build/plugins"],
  "storage": {"plugin": "json_file", "path": "state.json", "sync": "always"},
  "secret_file": "mab.key",
  "redirect_allow": ["/"],
  "mabd": {"access_log": "access.log", "log_level": "$1"},
  "experiments": {
    "color": {"policy": {"plugin": "epsilon_greedy", "epsilon": 0.5},
              "arms": {"green": "#0f0", "red": "#f00", "blue": "#00f"}},
    "txt": {"policy": {"plugin": "thompson", "probability_draws": 0},
            "arms": {"casual": "Hey", "neutral": "Add"}}
  }
}
EOF
}
write_config info

port=$(free_port)
base=http://127.0.0.1:$port
start() {
    (cd "$tmp" && exec "$mabd" --config mab.json --listen "127.0.0.1:$port" 2>>"$tmp/log") &
    pid=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null "$base/healthz" && return 0
        sleep 0.1
    done
    fail "mabd did not answer: $(cat "$tmp/log")"
}
stop() {
    kill -TERM "$pid"
    wait "$pid" || fail "mabd exited non-zero"
    pid=""
}
start

jar=$tmp/jar
# 1. choose two experiments (new assignments: pull=1), 2. again (kept: pull=0),
# 3. reward color (counted), 4. reward color again (refused), 5. a redirect
# rewarding txt, 6. a choose with a token in the query (not logged).
req c1 -c "$jar" -b "$jar" -A "ops-test/1" -e "https://ref.example/" "$base/v1/choose/color,txt"
expect_status 200 "first choose"
choose_body=$body
c1_size=$(stat -c %s "$tmp/c1.b")
req c2 -c "$jar" -b "$jar" "$base/v1/choose/color,txt"
req r1 -c "$jar" -b "$jar" -H 'Content-Type: application/json' -d '{"value": 1}' "$base/v1/reward/color"
pycheck "first reward counted" "$body" 'assert d["counted"] is True'
req r2 -c "$jar" -b "$jar" -H 'Content-Type: application/json' -d '{"value": 1}' "$base/v1/reward/color"
pycheck "second reward refused" "$body" 'assert d["counted"] is False'
req r3 -c "$jar" -b "$jar" "$base/r/txt?to=/thanks&value=1"
expect_status 303 "redirect"
req c3 "$base/v1/choose/color?token=secret-looking-token"

stop
[[ -f $tmp/access.log ]] || fail "no access log"
CHOSEN=$choose_body C1_SIZE=$c1_size pycheck "access log lines" "$(
    $py -c 'import json, sys; print(json.dumps(open(sys.argv[1]).read()))' "$tmp/access.log")" '
import re
line_re = re.compile(r"^(\S+) - - \[(\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] "
                     r"\"(\S+) (\S+) (HTTP/1\.[01])\" (\d{3}) (\d+) \"([^\"]*)\" \"([^\"]*)\""
                     r"((?: mab=\"[^\"]*\")*)$")
lines = d.rstrip("\n").split("\n")
entries = []
for line in lines:
    m = line_re.match(line)
    assert m, "not combined format + mab fields: " + line
    fields = [dict(kv.split("=", 1) for kv in f.split(" "))
              for f in re.findall(r"mab=\"([^\"]*)\"", m.group(10))]
    entries.append((m, fields))
entries = [e for e in entries if e[0].group(4) != "/healthz"]
assert len(entries) == 6, [e[0].group(0) for e in entries]
chosen = json.loads(os.environ["CHOSEN"])

(m, f) = entries[0]
assert m.group(1) == "127.0.0.1" and m.group(3) == "GET" and m.group(4) == "/v1/choose/color,txt"
assert m.group(6) == "200" and int(m.group(7)) == int(os.environ["C1_SIZE"]), m.group(0)
assert m.group(8) == "https://ref.example/" and m.group(9) == "ops-test/1", m.group(0)
assert [x["exp"] for x in f] == ["color", "txt"], f
for x in f:
    assert x["arm"] == chosen[x["exp"]]["arm"], (x, chosen)
    assert x["pull"] == "1" and x["reward"] == "-", x
p_color = float(f[0]["p"])
assert abs(p_color - chosen["color"]["probability"]) < 1e-5, (f, chosen)
assert f[1]["p"] == "-", f          # no probability: Thompson without its estimate

(m, f) = entries[1]
assert [x["pull"] for x in f] == ["0", "0"] and f[0]["arm"] == chosen["color"]["arm"], f
assert abs(float(f[0]["p"]) - p_color) < 1e-5, f

(m, f) = entries[2]
assert m.group(3) == "POST" and m.group(4) == "/v1/reward/color" and m.group(6) == "200"
assert len(f) == 1 and f[0]["exp"] == "color" and f[0]["arm"] == chosen["color"]["arm"], f
assert f[0]["reward"] == "1" and f[0]["pull"] == "0" and "reason" not in f[0], f
assert abs(float(f[0]["p"]) - p_color) < 1e-5, f

(m, f) = entries[3]
assert f[0]["reward"] == "-" and f[0]["reason"] == "already_rewarded", f

(m, f) = entries[4]
assert m.group(4) == "/r/txt?to=/thanks&value=1" and m.group(6) == "303", m.group(0)
assert f[0]["exp"] == "txt" and f[0]["reward"] == "1" and f[0]["arm"] == chosen["txt"]["arm"], f

(m, f) = entries[5]
assert m.group(4) == "/v1/choose/color?token=-", m.group(0)
assert "secret-looking-token" not in d
'

# ---- SIGHUP: the renamed log is left, a new one is opened --------------------
start
mv "$tmp/access.log" "$tmp/access.log.1"
kill -HUP "$pid"
wait_log "access log reopened"
req h1 "$base/v1/choose/color"
[[ -f $tmp/access.log ]] || fail "SIGHUP did not reopen the access log"
grep -q '"GET /v1/choose/color HTTP/1.1" 200' "$tmp/access.log" ||
    fail "the reopened access log lacks the request: $(cat "$tmp/access.log" 2>/dev/null)"
grep -q '"GET /v1/choose/color HTTP/1.1" 200' "$tmp/access.log.1" &&
    fail "the request after SIGHUP went to the renamed log"
grep -q "mabd\[info\]: reloaded" "$tmp/log" || fail "the reload is not logged at info: $(cat "$tmp/log")"

# A reload to a store that cannot be opened is refused by the check, before
# the serving engine is closed: the previous config keeps serving.
cp "$tmp/mab.json" "$tmp/mab.json.good"
sed -i 's|"path": "state.json"|"path": "novar/state.json"|' "$tmp/mab.json"
kill -HUP "$pid"
wait_log "reload refused"
grep -q "mabd\[error\]: reload refused: .*novar.*; the previous config keeps serving" "$tmp/log" ||
    fail "a reload to a store that cannot open was not refused by the check: $(cat "$tmp/log")"
req h2 "$base/v1/choose/color"
expect_status 200 "choose after a refused reload"
cp "$tmp/mab.json.good" "$tmp/mab.json"

# ---- the mab commands while mabd holds the json_file store -------------------
# sync "always": every reward above is in state.json already.
expect_cli() { # expect_cli WANT ARGS...
    local want=$1 st=0
    shift
    "$mab" "$@" >"$tmp/cli.out" 2>"$tmp/cli.err" || st=$?
    [[ $st == "$want" ]] || fail "mab $*: exit $st, expected $want: $(cat "$tmp/cli.err")"
}
expect_cli 0 stats "$tmp/mab.json" --json
pycheck "stats while serving" "$(cat "$tmp/cli.out")" '
arms = d["experiments"]["color"]["arms"]
assert sum(a["rewards"] for a in arms.values()) == 1, arms
assert sum(a["pulls"] for a in arms.values()) >= 2, arms'
expect_cli 0 export "$tmp/mab.json"
grep -q '"color"' "$tmp/cli.out" || fail "export while serving: $(cat "$tmp/cli.out")"
expect_cli 0 check "$tmp/mab.json"
for cmd in "reward $tmp/mab.json color green 1" "reset $tmp/mab.json color" \
           "choose $tmp/mab.json color"; do
    # shellcheck disable=SC2086
    expect_cli 1 $cmd
    grep -q "stop the server first, or use the lmdb storage" "$tmp/cli.err" ||
        fail "mab $cmd while serving: no advice: $(cat "$tmp/cli.err")"
done
"$mab" export "$tmp/mab.json" --out "$tmp/export.json" 2>/dev/null || fail "export --out while serving"
expect_cli 1 import "$tmp/mab.json" "$tmp/export.json"
grep -q "stop the server first" "$tmp/cli.err" || fail "import while serving: $(cat "$tmp/cli.err")"
stop

# ---- log_level: "error" keeps info lines out, "debug" adds refused rewards ---
: >"$tmp/log"
write_config error
start
stop
grep -q "\[info\]" "$tmp/log" && fail "log_level error still logs info: $(cat "$tmp/log")"
write_config debug
start
req d1 -H 'Content-Type: application/json' -d '{"value": 1}' "$base/v1/reward/color"
stop
grep -q "mabd\[info\]: listening on" "$tmp/log" || fail "log_level debug lacks info lines: $(cat "$tmp/log")"
grep -q "mabd\[debug\]: reward for color not counted: no_cookie" "$tmp/log" ||
    fail "log_level debug does not log the refused reward: $(cat "$tmp/log")"

if ((failures)); then
    echo "mabd_ops_test: $failures failure(s)" >&2
    exit 1
fi
echo "mabd_ops_test: ok"
