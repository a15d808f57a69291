#!/usr/bin/env bash
# check_test.sh BUILD_DIR SOURCE_DIR - `mab check` and `mabd -t`, the config
# test every host shares: a table of configs whose faults only a host would
# find (key file, the mabd section, the store's place), each named in the
# message, with the directory listed before and after every check (nothing
# may be created or modified); the good config passes without creating its
# json_file or lmdb store; `mabd -t` exit codes; and both checks while a
# real mabd holds the json_file store.
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

dir=$tmp/site
mkdir -p "$dir/var" "$dir/logs"
$mab keygen "$dir/mab.key" >/dev/null
echo "admin-token-0123456789abcdef" >"$dir/admin.token"

# write_config FILE [STORAGE_JSON]: the good config; faults are seds of it.
write_config() {
    local storage='{"plugin": "json_file", "path": "var/state.json", "sync": "always"}'
    [[ $# -lt 2 ]] || storage=$2
    cat >"$1" <<EOF
{
  "plugin_path": ["$build/plugins"],
  "storage": $storage,
  "secret_file": "mab.key",
  "redirect_allow": ["/", "https://shop.example.com/"],
  "mabd": {"admin_token_file": "admin.token", "access_log": "logs/access.log",
           "log_level": "info", "timeout_s": 5},
  "experiments": {
    "color": {"policy": {"plugin": "epsilon_greedy", "epsilon": 0.3},
              "arms": {"green": "#0f0", "red": "#f00"}},
    "txt": {"policy": {"plugin": "ucb1"}, "arms": {"casual": "Hey", "neutral": "Add to cart"}}
  }
}
EOF
}
write_config "$dir/good.json"

# Everything under $dir with size, mode and modification time.
listing() { find "$dir" -printf '%P %s %m %T@\n' | sort; }

# run_check WHAT WANT_STATUS CMD...: run, keep stdout/stderr, compare listings.
run_check() {
    local what=$1 want=$2
    shift 2
    local before
    before=$(listing)
    local st=0
    "$@" >"$tmp/out" 2>"$tmp/err" || st=$?
    [[ $st == "$want" ]] || fail "$what: exit $st, expected $want; stderr: $(cat "$tmp/err")"
    [[ $(listing) == "$before" ]] ||
        fail "$what: the check changed files: $(diff <(echo "$before") <(listing) || true)"
}

# ---- the good config passes and creates neither store ----------------------

run_check "good config" 0 "$mab" check "$dir/good.json"
grep -q "^store: *ok" "$tmp/out" || fail "check does not say the store was checked: $(cat "$tmp/out")"
grep -q "^mabd: *ok" "$tmp/out" || fail "check does not say the mabd section is ok: $(cat "$tmp/out")"
grep -q "^secret_file: *ok" "$tmp/out" || fail "check does not say the key is ok: $(cat "$tmp/out")"
grep -qE "^color +epsilon_greedy +2 .*/epsilon_greedy\.so$" "$tmp/out" ||
    fail "check does not print the policy file of color: $(cat "$tmp/out")"
[[ ! -e $dir/var/state.json && ! -e $dir/var/state.json.lock ]] || fail "check created the json_file store"
[[ ! -e $dir/logs/access.log ]] || fail "check created the access log"

# ---- json_file's journal: entries counted, a torn or damaged tail named -----

write_config "$dir/journal.json" '{"plugin": "json_file", "path": "var/j.json", "sync": "always"}'
$mab reward "$dir/journal.json" color red 1 >/dev/null
journal=$dir/var/j.json.journal
[[ -f $journal ]] || fail "no journal beside the json_file store"
run_check "a clean journal" 0 "$mab" check "$dir/journal.json"
grep -q "^journal: *$journal: 0 entries (0 bytes) beyond the snapshot" "$tmp/out" ||
    fail "check does not report the journal: $(grep journal "$tmp/out" || cat "$tmp/out")"
! grep -q "warning" "$tmp/out" "$tmp/err" || fail "a warning for a clean journal: $(cat "$tmp/err")"
size=$(stat -c %s "$journal")
# A frame that claims 80 bytes of payload, of which 8 follow (a writer killed mid-append).
printf '\x50\x00\x00\x00\x01\x02\x03\x04\x05\x06\x07\x08abcdefgh' >>"$journal"
run_check "a torn journal tail" 0 "$mab" check "$dir/journal.json"
grep -q "^warning: *$journal: the entry at byte $size is cut short (20 of 92 bytes): it and the 20 bytes after it are not replayed" "$tmp/out" ||
    fail "no warning naming the journal and the byte: $(cat "$tmp/out")"
grep -q "warning: $journal: the entry at byte $size" "$tmp/err" || fail "no torn-tail warning on stderr: $(cat "$tmp/err")"
[[ $(stat -c %s "$journal") -eq $((size + 20)) ]] || fail "check changed the journal"
# A whole frame whose checksum fails (a flipped bit).
truncate -s "$size" "$journal"
printf '\x04\x00\x00\x00\x01\x02\x03\x04\x05\x06\x07\x08abcd' >>"$journal"
run_check "a damaged journal entry" 0 "$mab" check "$dir/journal.json"
grep -q "^warning: *$journal: the entry at byte $size fails its checksum" "$tmp/out" ||
    fail "no warning for a damaged entry: $(cat "$tmp/out")"
# The next open cuts the tail off, and the store still holds the reward.
$mab reward "$dir/journal.json" color red 1 >/dev/null
run_check "the journal after an open" 0 "$mab" check "$dir/journal.json"
! grep -q "warning" "$tmp/out" || fail "the torn tail is still there after an open: $(cat "$tmp/out")"
"$mab" stats "$dir/journal.json" | grep -qE "^ +red +[0-9]+ +2 " ||
    fail "the rewards before the torn tail were lost: $("$mab" stats "$dir/journal.json")"
rm -f "$dir/journal.json" "$dir"/var/j.json*

# ---- json_file past the size where a snapshot takes over a second ---------

# many_config FILE EXPERIMENTS STORAGE_JSON: that many experiments of 3 arms.
many_config() {
    "$py" - "$1" "$2" "$3" "$build/plugins" <<'PY'
import json, sys
path, n, storage, plugins = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
exps = {"e%d" % i: {"policy": {"plugin": "epsilon_greedy"},
                    "arms": {"a": 0, "b": 1, "c": 2}} for i in range(n)}
json.dump({"plugin_path": [plugins], "storage": json.loads(storage), "experiments": exps},
          open(path, "w"))
PY
}
json_store='{"plugin": "json_file", "path": "var/big.json"}'
many_config "$dir/big.json" 10000 "$json_store"
run_check "json_file at 30000 arms" 0 "$mab" check "$dir/big.json"
grep -q "^warning: *json_file holds 30000 arms, at or above 30000: commits append to its journal, but the snapshot .*lmdb" "$tmp/out" ||
    fail "no size warning at 30000 arms: $(head -12 "$tmp/out")"
grep -q "warning: json_file holds 30000 arms" "$tmp/err" || fail "no size warning on stderr: $(cat "$tmp/err")"
many_config "$dir/big.json" 9999 "$json_store"
run_check "json_file below 30000 arms" 0 "$mab" check "$dir/big.json"
! grep -q "warning" "$tmp/out" "$tmp/err" || fail "a size warning below 30000 arms: $(head -12 "$tmp/out")"
! grep -q "warning" <("$mab" check "$dir/good.json" 2>&1) || fail "a size warning on the good config"
rm -f "$dir/big.json"

if [[ -f $build/plugins/lmdb.so ]]; then
    write_config "$dir/lmdb.json" '{"plugin": "lmdb", "path": "var/lmdb/deeper"}'
    run_check "lmdb config" 0 "$mab" check "$dir/lmdb.json"
    [[ ! -e $dir/var/lmdb ]] || fail "check created the lmdb store's directory"
    sed 's|var/lmdb/deeper|mab.key/sub|' "$dir/lmdb.json" >"$dir/lmdb-bad.json"
    run_check "lmdb store under a file" 1 "$mab" check "$dir/lmdb-bad.json"
    grep -q "mab.key/sub" "$tmp/err" || fail "lmdb under a file: $(cat "$tmp/err")"
    sed 's|"path": "var/lmdb/deeper"|"path": "var/lmdb", "map_size": 1|' "$dir/lmdb.json" >"$dir/lmdb-bad.json"
    run_check "lmdb map_size" 1 "$mab" check "$dir/lmdb-bad.json"
    grep -q "storage.map_size" "$tmp/err" || fail "lmdb map_size: $(cat "$tmp/err")"
    # An existing environment is read (MDB_RDONLY | MDB_NOLOCK): lock.mdb and
    # data.mdb are left exactly as they are; one that is not LMDB is named.
    sed 's|var/lmdb/deeper|var/lmdb|' "$dir/lmdb.json" >"$dir/lmdb-here.json"
    "$mab" stats "$dir/lmdb-here.json" >/dev/null || fail "mab stats could not create the lmdb store"
    [[ -f $dir/var/lmdb/data.mdb ]] || fail "no lmdb store to check"
    run_check "existing lmdb store" 0 "$mab" check "$dir/lmdb-here.json"
    grep -q "^store: *ok" "$tmp/out" || fail "existing lmdb store: $(cat "$tmp/out")"
    mv "$dir/var/lmdb/data.mdb" "$dir/var/lmdb/data.mdb.good"
    head -c 20000 /dev/urandom >"$dir/var/lmdb/data.mdb"
    run_check "lmdb store that is not LMDB" 1 "$mab" check "$dir/lmdb-here.json"
    grep -q "var/lmdb: cannot read the LMDB environment" "$tmp/err" || fail "corrupt lmdb: $(cat "$tmp/err")"
    rm -rf "$dir/var/lmdb" "$dir/lmdb.json" "$dir/lmdb-bad.json" "$dir/lmdb-here.json"
else
    echo "check_test: lmdb plugin not built: its cases are skipped" >&2
fi

# mongodb: against the wire-protocol stand-in of the storage suite, the check
# connects and reads but writes nothing (the stand-in journals every write
# to --state, so the file appears only when something was written); an
# unreachable server is named.
standin=$(dirname "${BASH_SOURCE[0]}")/../storage/mongo/standin.py
if [[ -f $build/plugins/mongodb.so && -f $standin ]]; then
    mongo_pid=""
    $py "$standin" --port 0 --port-file "$tmp/standin.port" --state "$tmp/standin.bson" \
        --journal >"$tmp/standin.log" 2>&1 &
    mongo_pid=$!
    for _ in $(seq 200); do [[ -s $tmp/standin.port ]] && break; sleep 0.1; done
    mport=$(cat "$tmp/standin.port" 2>/dev/null || true)
    if [[ -n $mport ]]; then
        write_config "$dir/mongo.json" \
            "{\"plugin\": \"mongodb\", \"uri\": \"mongodb://127.0.0.1:$mport/?serverSelectionTimeoutMS=2000\", \"database\": \"shop\"}"
        run_check "mongodb config" 0 "$mab" check "$dir/mongo.json"
        grep -q "^store: *ok" "$tmp/out" || fail "mongodb check: $(cat "$tmp/out")"
        [[ ! -e $tmp/standin.bson ]] || fail "mab check wrote to MongoDB"
        "$mab" stats "$dir/mongo.json" >/dev/null || fail "mab stats against the stand-in"
        [[ -e $tmp/standin.bson ]] || fail "the stand-in journals no write: the check above proves nothing"
    else
        fail "the MongoDB stand-in did not start: $(cat "$tmp/standin.log")"
    fi
    kill "$mongo_pid" 2>/dev/null || true
    wait "$mongo_pid" 2>/dev/null || true
    nobody=$(free_port)
    write_config "$dir/mongo.json" \
        "{\"plugin\": \"mongodb\", \"uri\": \"mongodb://127.0.0.1:$nobody/?serverSelectionTimeoutMS=300\", \"database\": \"shop\"}"
    run_check "unreachable mongodb" 1 "$mab" check "$dir/mongo.json"
    grep -q "MongoDB" "$tmp/err" && grep -q "127.0.0.1:$nobody" "$tmp/err" ||
        fail "unreachable mongodb not named: $(cat "$tmp/err")"
    rm -f "$dir/mongo.json"
else
    echo "check_test: mongodb plugin or its stand-in missing: its cases are skipped" >&2
fi

# ---- faults only a host would find: each named, nothing created ------------

cp "$dir/mab.key" "$dir/open.key"
chmod 644 "$dir/open.key"
printf 'not a key\n' >"$dir/bad.key"
chmod 600 "$dir/bad.key"
printf '{"format": "something else"}' >"$dir/var/corrupt.json"

# name | sed expression applied to good.json | text the error must hold
faults=(
    'missing key file|s|"secret_file": "mab.key"|"secret_file": "nokey.key"|nokey.key: cannot open secret_file'
    'key readable by others|s|"secret_file": "mab.key"|"secret_file": "open.key"|open.key: secret_file is readable or writable by others'
    'key file without a key|s|"secret_file": "mab.key"|"secret_file": "bad.key"|bad.key: line 1: expected a base64 key'
    'typo in the mabd section|s|"timeout_s": 5|"timeout_s": 5, "listen_typo": "x"|mabd: unknown key "listen_typo"'
    'bad mabd value|s|"timeout_s": 5|"timeout_s": 0|mabd.timeout_s: 0 is outside [1, 3600]'
    'unknown log_level|s|"log_level": "info"|"log_level": "verbose"|mabd.log_level: expected "error", "warn", "info" or "debug"'
    'access log directory missing|s|logs/access.log|nologs/access.log|mabd.access_log: directory'
    'admin token file missing|s|"admin.token"|"noadmin.token"|mabd.admin_token_file'
    'bad redirect_allow entry|s|"https://shop.example.com/"|"shop.example.com"|redirect_allow[1]'
    'unknown policy plugin|s|"plugin": "ucb1"|"plugin": "ucb9"|experiments.txt.policy.plugin'
    'storage directory missing|s|var/state.json|novar/state.json|novar: No such file or directory'
    'corrupt json_file store|s|var/state.json|var/corrupt.json|corrupt.json'
    'typo in storage|s|"sync": "always"|"sync": "always", "pth": "x"|storage: unknown key "pth"'
)
for row in "${faults[@]}"; do
    IFS='|' read -r name _ from to want <<<"$row"
    # sed with | as the separator: the fields hold no |.
    sed "s|$from|$to|" "$dir/good.json" >"$dir/fault.json"
    cmp -s "$dir/good.json" "$dir/fault.json" && { fail "$name: the sed changed nothing"; continue; }
    run_check "mab check: $name" 1 "$mab" check "$dir/fault.json"
    grep -qF -- "$want" "$tmp/err" || fail "mab check: $name: expected '$want' in: $(cat "$tmp/err")"
    grep -qF "fault.json" "$tmp/err" || [[ $want == *.key* || $want == *corrupt* || $want == *novar* ]] ||
        fail "mab check: $name: the message does not name the config: $(cat "$tmp/err")"
    run_check "mabd -t: $name" 1 "$mabd" -t --config "$dir/fault.json"
    grep -qF -- "$want" "$tmp/err" || fail "mabd -t: $name: expected '$want' in: $(cat "$tmp/err")"
    grep -q "configuration test failed" "$tmp/err" || fail "mabd -t: $name: no verdict: $(cat "$tmp/err")"
done
rm -f "$dir/fault.json"

# Without secret_file: `mab check` says every host refuses it, mabd -t fails.
grep -v '"secret_file"' "$dir/good.json" >"$dir/nokey.json"
run_check "mab check without secret_file" 0 "$mab" check "$dir/nokey.json"
grep -q "^secret_file: *not set: mabd" "$tmp/out" || fail "no secret_file: $(cat "$tmp/out")"
run_check "mabd -t without secret_file" 1 "$mabd" -t --config "$dir/nokey.json"
grep -q "secret_file: required" "$tmp/err" || fail "mabd -t without secret_file: $(cat "$tmp/err")"
rm -f "$dir/nokey.json"

# ---- mabd -t: 0 and the verdict; usage errors are 2 -------------------------

run_check "mabd -t good" 0 "$mabd" -t --config "$dir/good.json"
grep -q "test is successful" "$tmp/err" || fail "mabd -t good: $(cat "$tmp/err")"
run_check "mabd --test-config good" 0 "$mabd" --test-config --config "$dir/good.json"
run_check "mabd -t without --config" 2 "$mabd" -t
run_check "mabd -t missing config" 1 "$mabd" -t --config "$dir/missing.json"
grep -q "missing.json" "$tmp/err" || fail "mabd -t missing config: $(cat "$tmp/err")"

# ---- while mabd holds the json_file store -----------------------------------

port=$(free_port)
(cd "$dir" && exec "$mabd" --config good.json --listen "127.0.0.1:$port" 2>"$tmp/log") &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$tmp/log" 2>/dev/null && break; sleep 0.1; done
grep -q "listening on" "$tmp/log" || fail "mabd did not start: $(cat "$tmp/log")"
[[ -e $dir/var/state.json.lock ]] || fail "mabd did not lock its store"
run_check "mab check while mabd serves" 0 "$mab" check "$dir/good.json"
run_check "mabd -t while mabd serves" 0 "$mabd" -t --config "$dir/good.json"
kill -TERM "$pid"
wait "$pid" || fail "mabd exited non-zero"
pid=""

if ((failures)); then
    echo "check_test: $failures failure(s)" >&2
    exit 1
fi
echo "check_test: ok"
