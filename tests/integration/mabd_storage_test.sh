#!/usr/bin/env bash
# mabd_storage_test.sh BUILD_DIR - mabd with LMDB `sync: "always"` on a small
# tmpfs that the test fills up: every reward answered 200 {"counted": true}
# is in the store after kill -9, every reward that could not be written got
# 503 (not counted), a 503 leaves the cookie able to retry, and the log shows
# the first failure of the streak, a summary while it lasts and the recovery.
# Needs root (mount); without it the test says so loudly and exits 77, which
# CTest reports as skipped, never as passed.
set -euo pipefail

build=$(cd "$1" && pwd)
mabd=$build/bin/mabd
mab=$build/bin/mab
py=/usr/bin/python3
tmp=$(mktemp -d)
pid=""
disk=$tmp/disk
cleanup() {
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    mountpoint -q "$disk" && umount "$disk"
    rm -rf "$tmp"
}
trap cleanup EXIT
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mkdir -p "$disk"
if ! mount -t tmpfs -o size=1m tmpfs "$disk" 2>"$tmp/mount.err"; then
    echo "SKIPPED: mabd_storage_test needs to mount a tmpfs (root): $(cat "$tmp/mount.err")" >&2
    echo "SKIPPED: the full-disk guarantees of mabd were NOT tested" >&2
    exit 77
fi

$mab keygen "$tmp/mab.key" >/dev/null
cat >"$tmp/mab.json" <<EOF
{
  "plugin_path": ["$build/plugins"],
  "storage": {"plugin": "lmdb", "path": "$disk/store", "sync": "always"},
  "secret_file": "mab.key",
  "mabd": {"storage_log_interval_s": 2},
  "experiments": {
    "color": {"policy": {"plugin": "epsilon_greedy", "epsilon": 0.3},
              "arms": {"green": "#0f0", "red": "#f00"}}
  }
}
EOF

start() {
    : >"$tmp/log"
    (cd "$tmp" && exec "$mabd" --config mab.json --listen 127.0.0.1:0 2>>"$tmp/log") &
    pid=$!
    wait_log "listening on"
    port=$(grep -o 'http://127.0.0.1:[0-9]*' "$tmp/log" | head -1 | cut -d: -f3)
    base=http://127.0.0.1:$port
}
wait_log() { # wait_log TEXT: until the log holds TEXT (60 s)
    for _ in $(seq 600); do
        grep -q "$1" "$tmp/log" && return 0
        sleep 0.1
    done
    fail "timed out waiting for '$1' in the log:"
    cat "$tmp/log" >&2
    return 1
}
kill9() { kill -KILL "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }
fill_disk() { dd if=/dev/zero of="$disk/filler" bs=4096 2>/dev/null || true; }
stored_rewards() { # rewards of "color" in the store, read by the CLI
    (cd "$tmp" && $mab stats mab.json --json) | $py -c '
import json, sys
d = json.load(sys.stdin)
exp = d["experiments"]["color"]
arms = exp["arms"] if isinstance(exp["arms"], dict) else {a["id"]: a for a in exp["arms"]}
print(sum(a["rewards"] for a in arms.values()))'
}
# reward NAME: POST a reward with visitor NAME's cookie jar; counts the answers.
ok=0 refused=0
reward() {
    req "r-$1" -c "$tmp/jar-$1" -b "$tmp/jar-$1" -X POST -H 'Content-Type: application/json' \
        -d '{"value": 1}' "$base/v1/reward/color"
    if [[ $status == 200 ]]; then
        pycheck "reward $1 answered 200" "$body" 'assert d["counted"] is True, d'
        ok=$((ok + 1))
    elif [[ $status == 503 ]]; then
        pycheck "reward $1 answered 503" "$body" '
assert d["counted"] is False and "not durable" in d["error"], d'
        refused=$((refused + 1))
    else
        fail "reward $1: status $status: $body"
    fi
}
choose() { curl -s -o /dev/null -c "$tmp/jar-$1" -b "$tmp/jar-$1" "$base/v1/choose/color"; }

# ---- 1. the disk fills up under a running mabd; kill -9 while it is full --------
start
for v in $(seq 1 20); do choose "a$v"; done
fill_disk
for v in $(seq 1 20); do reward "a$v"; done
wait_log "storage: write failed"
kill9
rm -f "$disk/filler"
stored=$(stored_rewards)
echo "full disk: $ok answered 200, $refused answered 503; $stored in the store after kill -9"
((refused > 0)) || fail "no reward got 503: the disk did not fill up, the test proves nothing"
((stored >= ok)) || fail "$ok rewards were acknowledged (200, counted) but only $stored are in the store after kill -9"
ok1=$ok

# ---- 2. a 503 left the cookie able to retry: after the restart it counts ---------
start
ok=0 refused=0
for v in $(seq 1 20); do
    [[ $(cat "$tmp/r-a$v.b") == *'"counted":false'* ]] && reward "a$v"
done
((ok == 20 - ok1)) || fail "retrying the 503'd rewards after a restart: $ok of $((20 - ok1)) counted"

# ---- 3. the log: first failure, summary, recovery; nothing acknowledged is lost ---
# On a new store: LMDB reuses the pages its earlier transactions freed, so
# an older store can go on writing on a full disk (durably: those get 200).
kill9
rm -rf "$disk/store"
start
ok=0 refused=0
for v in $(seq 1 20); do choose "b$v"; done
: >"$tmp/log.mark"
fill_disk
for v in $(seq 1 10); do reward "b$v"; done
echo "part 3 on the full disk: $ok answered 200, $refused answered 503"
wait_log "storage: still failing"
rm -f "$disk/filler"
wait_log "storage: recovered"
for v in $(seq 11 20); do reward "b$v"; done
((refused > 0)) || fail "part 3: no reward got 503 on the full disk"
kill9
stored=$(stored_rewards)
echo "part 3: $ok answered 200, $refused answered 503; $stored in the store after kill -9"
want_min=$ok
want_max=$((want_min + refused))
((stored >= want_min)) || fail "acknowledged rewards lost: $stored stored, $want_min acknowledged"
((stored <= want_max)) || fail "$stored rewards stored, more than the $want_max sent"
first=$(grep -n "storage: write failed" "$tmp/log" | head -1 | cut -d: -f1)
summary=$(grep -n "storage: still failing" "$tmp/log" | head -1 | cut -d: -f1)
recovered=$(grep -n "storage: recovered" "$tmp/log" | head -1 | cut -d: -f1)
((first < summary && summary < recovered)) ||
    fail "log lines out of order (first $first, summary $summary, recovery $recovered)"
grep "storage: write failed" "$tmp/log" | grep -qi "space\|storage\|lmdb" ||
    fail "the first failure does not say why: $(grep 'storage: write failed' "$tmp/log")"
(($(grep -c "storage: write failed" "$tmp/log") == 1)) ||
    fail "more than one 'first failure' line in one streak"

if ((failures)); then
    echo "mabd_storage_test: $failures failure(s); mabd log:" >&2
    cat "$tmp/log" >&2
    exit 1
fi
echo "mabd_storage_test: all checks passed"
