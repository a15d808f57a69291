#!/usr/bin/env bash
# mabd_redis_test.sh BUILD_DIR - one cookie rewarded 2 x 10 times in parallel
# through two mabd processes sharing one Debian redis-server (sync "always"),
# then once more after a restart: counted exactly once (issue 16; the claim
# is the Redis storage's, not either process's memory). redis-server runs on
# a free loopback port in a temporary directory and is stopped by its pid.
set -euo pipefail

build=$(cd "$1" && pwd)
mab=$build/bin/mab
mabd=$build/bin/mabd
py=/usr/bin/python3
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do
        if kill -0 "$p" 2>/dev/null; then kill -KILL "$p"; fi
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v redis-server >/dev/null || { echo "FAIL: redis-server is not installed (scripts/deps installs it)" >&2; exit 1; }
port=$(free_port)
redis-server --port "$port" --bind 127.0.0.1 --dir "$tmp" --save '' --appendonly yes \
    --appendfsync always >"$tmp/redis.log" 2>&1 &
pids+=($!)
redis_pid=$!
for _ in $(seq 100); do
    redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
done
redis-cli -h 127.0.0.1 -p "$port" ping | grep -q PONG || { echo "FAIL: redis-server did not start: $(cat "$tmp/redis.log")" >&2; exit 1; }

$mab keygen "$tmp/mab.key" >/dev/null
cat >"$tmp/mab.json" <<JSON
{
  "storage": {"plugin": "redis", "url": "redis://127.0.0.1:$port/0", "sync": "always"},
  "secret_file": "mab.key",
  "experiments": {
    "color": {"policy": {"plugin": "epsilon_greedy", "epsilon": 0.3},
              "arms": {"green": "#0f0", "red": "#f00"}}
  }
}
JSON
"$mab" check "$tmp/mab.json" | grep -q "reward once: per assignment across every process" ||
    fail "mab check does not say redis claims: $("$mab" check "$tmp/mab.json")"

start() { # start NAME: sets started_pid, started_base
    (cd "$tmp" && exec "$mabd" --config mab.json --listen 127.0.0.1:0 2>"$tmp/$1.log") &
    started_pid=$!
    pids+=("$started_pid")
    for _ in $(seq 100); do
        grep -q "listening on" "$tmp/$1.log" && break
        sleep 0.1
    done
    local p
    p=$(grep -o 'http://127.0.0.1:[0-9]*' "$tmp/$1.log" | head -1 | cut -d: -f3)
    [[ -n $p ]] || { echo "FAIL: mabd $1 did not start: $(cat "$tmp/$1.log")" >&2; exit 1; }
    started_base=http://127.0.0.1:$p
}
stop() { kill -TERM "$1"; wait "$1" || fail "mabd $1 exited $? after SIGTERM"; }
rewards() { # rewards of experiment color in the Redis store
    "$mab" stats "$tmp/mab.json" --json | $py -c 'import json, sys
print(sum(a["rewards"] for a in json.load(sys.stdin)["experiments"]["color"]["arms"].values()))'
}

start one; a=$started_pid; base_a=$started_base
start two; b=$started_pid; base_b=$started_base
req choose -c "$tmp/jar" "$base_a/v1/choose/color"
expect_status 200 "choose on mabd one"
cookie=$(awk '$6 == "mab" {print $7}' "$tmp/jar")
[[ -n $cookie ]] || fail "no mab cookie from choose: $body"
children=()
for base in "$base_a" "$base_b"; do
    seq 10 | xargs -P 10 -I{} curl -s --max-time 20 -X POST -H "Cookie: mab=$cookie" \
        -w '\n' "$base/v1/reward/color?n={}" >>"$tmp/once.out" &
    children+=($!)
done
for j in "${children[@]}"; do wait "$j"; done
answers=$(grep -c '"counted"' "$tmp/once.out" || true)
counted=$(grep -c '"counted": *true' "$tmp/once.out" || true)
[[ $answers == 20 ]] || fail "two mabds: $answers answers to 20 rewards: $(cat "$tmp/once.out")"
[[ $counted == 1 ]] || fail "one cookie through two mabds on one Redis counted $counted times"
stop "$a"
stop "$b"
[[ $(rewards) == 1 ]] || fail "Redis holds $(rewards) rewards for one cookie"
# A restart: a new process with an empty adapter memory.
start three; c=$started_pid
req again -X POST -H "Cookie: mab=$cookie" "$started_base/v1/reward/color"
pycheck "the cookie after a restart" "$body" 'assert d["counted"] is False and d["reason"] == "replayed", d'
stop "$c"
[[ $(rewards) == 1 ]] || fail "after the restart Redis holds $(rewards) rewards"
kill -TERM "$redis_pid"; wait "$redis_pid" || true

if ((failures)); then
    echo "mabd_redis_test: $failures failure(s); logs:" >&2
    cat "$tmp"/*.log >&2
    exit 1
fi
echo "mabd_redis_test: one cookie rewarded 20 times through two mabds on one Redis and once after a restart: counted $counted time(s)"
