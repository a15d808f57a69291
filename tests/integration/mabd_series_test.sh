#!/usr/bin/env bash
# mabd_series_test.sh BUILD_DIR - the dashboard's time series is capped in
# bytes (mabd.series.max_bytes): with 300 experiments sampled every second
# under a cap that holds only a few samples, the series' memory (the
# mabd_series_bytes gauge, /v1/dashboard's series_bytes) stays within the
# cap while samples keep coming, the samples kept are the newest ones, and
# the newest holds the latest pulls; max_bytes 0 keeps no series; a bad
# value is refused naming mabd.series.max_bytes.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mabd_test_begin "$1"

$mab keygen "$tmp/mab.key" >/dev/null
write_config() { # write_config SERIES_JSON [EXPERIMENTS]
    local n=${2:-300}
    $py - "$tmp/mab.json" "$build/plugins" "$1" "$n" <<'PY'
import json, sys
path, plugins, series, n = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
exps = {"exp%04d" % i: {"policy": {"plugin": "epsilon_greedy"},
                        "arms": {"green": 1, "red": 2, "blue": 3}} for i in range(n)}
json.dump({"plugin_path": [plugins], "secret_file": "mab.key",
           "storage": {"plugin": "json_file", "path": "state.json"},
           "mabd": {"series": series}, "experiments": exps}, open(path, "w"))
PY
}

gauge() { # the value of mabd_series_bytes in /metrics
    curl -s "$base/metrics" | awk '$1 == "mabd_series_bytes" {print $2}'
}

# ---- a cap of 60,000 bytes: one sample of 900 arms is 14,400 bytes of
# values beside a 26 KB layout (ids shared by the samples), so two fit ----
cap=60000
write_config "{\"interval_s\": 1, \"max_bytes\": $cap}"
mabd_start
t0=$(date +%s)
max_seen=0
for round in $(seq 8); do
    curl -s -o /dev/null "$base/v1/choose/exp0299"
    sleep 1
    g=$(gauge)
    [[ -n $g ]] || { fail "no mabd_series_bytes gauge in /metrics"; break; }
    if (( g > max_seen )); then max_seen=$g; fi
    (( g <= cap )) || fail "round $round: mabd_series_bytes $g above the cap $cap"
done
(( max_seen > 0 )) || fail "mabd_series_bytes stayed 0: no sample was kept"
# The choose just before the last sample: the newest sample must hold it.
curl -s -o /dev/null "$base/v1/choose/exp0299"
sleep 2
# One page of all 300 (the default page is 50): the series is the page's.
req dash "$base/v1/dashboard?limit=300"
expect_status 200 "GET /v1/dashboard"
T0=$t0 CAP=$cap pycheck "the series under a tiny cap" "$body" '
cap, t0 = int(os.environ["CAP"]), int(os.environ["T0"])
assert d["series_max_bytes"] == cap, d["series_max_bytes"]
assert 0 < d["series_bytes"] <= cap, d["series_bytes"]
assert d["series_refused"] == 0, d["series_refused"]
s = d["series"]
assert 1 <= len(s) <= 2, [x["t"] for x in s]
# The newest samples: taken within the last seconds, long after the first
# ones (those were dropped), in order.
ts = [x["t"] for x in s]
assert ts == sorted(ts), ts
assert ts[0] >= t0 + 5, (ts, t0)
assert ts[-1] >= d["now"] - 2, (ts, d["now"])
last = s[-1]["e"]
assert len(last) == 300, len(last)
assert sum(v[0] for v in last["exp0299"].values()) == 9, last["exp0299"]
'
mabd_stop

# ---- max_bytes 0: no series at all -----------------------------------------
write_config '{"interval_s": 1, "max_bytes": 0}' 3
mabd_start
sleep 2
curl -s -o /dev/null "$base/v1/choose/exp0001"
req dash "$base/v1/dashboard"
pycheck "max_bytes 0" "$body" '
assert d["series"] == [], d["series"]
assert d["series_bytes"] == 0 and d["series_max_bytes"] == 0, d
assert d["series_refused"] == 0, d["series_refused"]
'
[[ $(gauge) == 0 ]] || fail "max_bytes 0: mabd_series_bytes is $(gauge)"
mabd_stop

# ---- the default: 64 MiB ------------------------------------------------------
write_config '{"interval_s": 1}' 3
mabd_start
req dash "$base/v1/dashboard"
pycheck "default max_bytes" "$body" '
assert d["series_max_bytes"] == 64 * 1024 * 1024, d["series_max_bytes"]
assert 0 < d["series_bytes"] < 100000, d["series_bytes"]
'
mabd_stop

# ---- bad values: refused at start and by -t, naming the key -------------------
for bad in '-1' '"64M"' '1.5' '2199023255553'; do
    write_config "{\"max_bytes\": $bad}" 3
    if (cd "$tmp" && "$mabd" --config mab.json --listen 127.0.0.1:0 >"$tmp/out" 2>&1); then
        fail "max_bytes $bad: mabd started"
    fi
    grep -Eq "mabd\.series\.max_bytes: (.* is outside|expected an integer)" "$tmp/out" ||
        fail "max_bytes $bad: the error does not name mabd.series.max_bytes: $(cat "$tmp/out")"
    if (cd "$tmp" && "$mabd" -t --config mab.json >"$tmp/out" 2>&1); then
        fail "max_bytes $bad: mabd -t passed"
    fi
done

if ((failures)); then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "mabd series: all checks passed"
