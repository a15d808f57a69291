#!/usr/bin/env bash
# mabd_dropped_test.sh BUILD_DIR - an increment the store refuses as invalid
# (the memory fixture's refuse_arm) is dropped by the engine, the rest are
# written, and mabd's log says so once per new drop (issue 10, item 1).
set -euo pipefail

build=$(cd "$1" && pwd)
mabd=$build/bin/mabd
mab=$build/bin/mab
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
  "storage": {"plugin": "$build/tests/fixtures/storage_memory.so", "refuse_arm": "red",
              "sync": {"interval_ms": 50}},
  "secret_file": "mab.key",
  "experiments": {
    "color": {"policy": {"plugin": "epsilon_greedy", "epsilon": 1.0},
              "arms": {"green": "#0f0", "red": "#f00"}}
  }
}
JSON
mabd_start

# epsilon 1: uniform; 40 fresh visitors all but surely include red and green.
reds=0
for _ in $(seq 40); do
    body=$(curl -s --max-time 10 "$base/v1/choose/color")
    [[ $body == *'"arm":"red"'* || $body == *'"arm": "red"'* ]] && reds=$((reds + 1))
done
(( reds > 0 && reds < 40 )) || fail "expected both arms among 40 uniform choices (chance of this failing: 2^-39), red: $reds"

for _ in $(seq 100); do grep -q "storage: dropped" "$tmp/log" && break; sleep 0.1; done
grep -q "storage: dropped" "$tmp/log" || fail "no 'storage: dropped' line in the log: $(cat "$tmp/log")"
line=$(grep "storage: dropped" "$tmp/log" | head -1)
for needle in 'refused as invalid' 'fixture refuses arm red' 'color' 'the rest were written'; do
    [[ $line == *"$needle"* ]] || fail "the drop line lacks '$needle': $line"
done
grep -q "retry succeeded" "$tmp/log" && fail "a drop was also reported as a failed write: $(grep 'retry succeeded' "$tmp/log")"
# Once per new drop, not once a second: once every pull is published (stats
# publishes what threads hold) and written, no new pulls, no new lines.
curl -s --max-time 10 "$base/v1/stats" >/dev/null
sleep 2
n=$(grep -c "storage: dropped" "$tmp/log")
sleep 2.5
[[ $(grep -c "storage: dropped" "$tmp/log") == "$n" ]] || fail "the drop was logged again without a new drop: $(grep 'storage: dropped' "$tmp/log")"
# The rest was written: green's pulls are in the store (the fixture keeps
# records in memory: read them through mabd's stats).
stats=$(curl -s --max-time 10 "$base/v1/stats")
[[ $stats == *green* ]] || fail "no stats for green: $stats"
kill -TERM "$pid"; wait "$pid" || true; pid=""
if (( failures > 0 )); then
    echo "mabd_dropped_test: $failures failure(s); mabd log:" >&2
    cat "$tmp/log" >&2
    exit 1
fi
echo "mabd_dropped_test: $reds pulls of red dropped and logged, green written"
