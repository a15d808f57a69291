#!/usr/bin/env bash
# mabd_history_test.sh BUILD_DIR - the dashboard's history survives a
# restart: /v1/dashboard's per-bucket counts ("buckets") and the seeded
# time series ("series") come from the store's time buckets (json_file,
# storage ABI 1.5), so after SIGTERM and a new start they still hold the
# pulls and rewards of the first run.
set -euo pipefail

build=$(cd "$1" && pwd)
mabd=$build/bin/mabd
mab=$build/bin/mab
py=/usr/bin/python3
tmp=$(mktemp -d)
pid=""
cleanup() {
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

$mab keygen "$tmp/mab.key" >/dev/null
cat >"$tmp/mab.json" <<JSON
{
  "plugin_path": ["$build/plugins"],
  "storage": {"plugin": "json_file", "path": "state.json", "bucket_seconds": 60},
  "secret_file": "mab.key",
  "experiments": {
    "color": {"policy": {"plugin": "epsilon_greedy"}, "arms": {"green": 1, "red": 2}}
  }
}
JSON

start() { # start mabd on a free loopback port; sets $pid and $base
    : >"$tmp/log"
    (cd "$tmp" && exec "$mabd" --config mab.json --listen 127.0.0.1:0 2>"$tmp/log") &
    pid=$!
    for _ in $(seq 100); do
        grep -q "listening on" "$tmp/log" && break
        sleep 0.1
    done
    local port
    port=$(grep -o 'http://127.0.0.1:[0-9]*' "$tmp/log" | head -1 | cut -d: -f3)
    [[ -n $port ]] || { fail "mabd did not start: $(cat "$tmp/log")"; exit 1; }
    base=http://127.0.0.1:$port
}
stop() {
    kill -TERM "$pid"
    wait "$pid" || fail "mabd exited $? after SIGTERM"
    pid=""
}
summary() { # the dashboard's buckets of "color", summed per arm, and the series' latest sample
    req dash "$base/v1/dashboard"
    expect_status 200 "GET /v1/dashboard"
    printf '%s' "$body" | $py -c '
import json, sys
d = json.load(sys.stdin)
exp = [e for e in d["experiments"] if e["id"] == "color"][0]
assert d["bucket_seconds"] == 60, d["bucket_seconds"]
pulls = [sum(b["pulls"][a] for b in exp["buckets"]) for a in range(2)]
rewards = [sum(b["rewards"][a] for b in exp["buckets"]) for a in range(2)]
for b in exp["buckets"]:
    assert b["start"] % 60 == 0, b
    for a in range(2):
        assert (b["rate"][a] is None) == (b["pulls"][a] == 0), b
last = d["series"][-1]["e"]["color"] if d["series"] else {}
print(json.dumps({"pulls": pulls, "rewards": rewards,
                  "series_pulls": sum(v[0] for v in last.values()), "samples": len(d["series"])}))'
}

start
jar=$tmp/jar
for _ in $(seq 7); do curl -s -o /dev/null "$base/v1/choose/color"; done
curl -s -o /dev/null -c "$jar" -b "$jar" "$base/v1/choose/color"
req reward -c "$jar" -b "$jar" -X POST -H 'Content-Type: application/json' \
    -d '{"value": 1}' "$base/v1/reward/color"
expect_status 200 "reward"
first=$(summary)
pycheck "first run's buckets" "$first" '
assert sum(d["pulls"]) == 8, d
assert sum(d["rewards"]) == 1, d'
stop

start
second=$(summary)
export FIRST=$first
pycheck "buckets after the restart" "$second" '
first = json.loads(os.environ["FIRST"])
assert d["pulls"] == first["pulls"] and d["rewards"] == first["rewards"], (d, first)
# The series was seeded from the buckets: its newest sample holds the 8 pulls,
# and there is more than the one sample taken at start.
assert d["series_pulls"] == 8, d
assert d["samples"] >= 2, d' 
stop

((failures == 0)) || exit 1
echo "mabd_history: ok"
