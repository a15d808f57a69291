#!/usr/bin/env bash
# mabd_threads_test.sh BUILD_DIR - mabd's counters are per thread
# (hosts/mabd/threads.h, core/adapter/counters.h) and stay exact: N
# requests from parallel keep-alive clients show as N in /metrics
# (assignments, the choose histogram's count, pulls); and across SIGHUP
# reloads under the same load no request fails and none is lost from the
# counters (the reload guard lets requests finish and holds new ones).
set -euo pipefail

build=$(cd "$1" && pwd)
mabd=$build/bin/mabd
mab=$build/bin/mab
py=/usr/bin/python3
tmp=$(mktemp -d)
pid=""
cleanup() {
    touch "$tmp/stop" # clients still running end
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

$mab keygen "$tmp/mab.key" >/dev/null
cat >"$tmp/mab.json" <<JSON
{
  "plugin_path": ["$build/plugins"],
  "storage": {"plugin": "json_file", "path": "state.json", "sync": {"interval_ms": 50}},
  "secret_file": "mab.key",
  "mabd": {"threads": 4},
  "experiments": {
    "color": {"policy": {"plugin": "epsilon_greedy"}, "arms": {"green": 1, "red": 2}}
  }
}
JSON

# clients CLIENTS REQUESTS_EACH: parallel keep-alive clients, each sending
# its requests to /v1/choose/color (new visitors: one assignment each);
# REQUESTS_EACH 0: until the file $tmp/stop exists. Prints
# {"ok": N, "failed": [...], "n_failed": M} when all are done.
clients() {
    PORT=$port STOP=$tmp/stop $py - "$1" "$2" <<'PY'
import http.client, json, os, sys, threading
clients, each, port = int(sys.argv[1]), int(sys.argv[2]), int(os.environ["PORT"])
ok, failed, lock = [0], [], threading.Lock()
def run():
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    n = 0
    while (n < each) if each else not os.path.exists(os.environ["STOP"]):
        n += 1
        try:
            conn.request("GET", "/v1/choose/color")
            r = conn.getresponse()
            r.read()
            good = r.status == 200
            why = "status %d" % r.status
        except Exception as e:  # a reset or a closed connection is a failure
            good, why = False, repr(e)
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        with lock:
            if good:
                ok[0] += 1
            else:
                failed.append(why)
    conn.close()
threads = [threading.Thread(target=run) for _ in range(clients)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"ok": ok[0], "failed": failed[:5], "n_failed": len(failed)}))
PY
}

metrics() { # metrics: the families this test reads, as JSON
    curl -s "$base/metrics" | $py -c '
import json, re, sys
out = {"pulls": 0}
for line in sys.stdin:
    if line.startswith("#"):
        continue
    name, value = line.rsplit(" ", 1)
    if name.startswith("mab_pulls_total{"):
        out["pulls"] += int(value)
    elif name in ("mab_assignments_total", "mab_choose_duration_seconds_count",
                  "mab_bad_requests_total"):
        out[name] = int(value)
    elif name.startswith("mab_reloads_total{"):
        out["reloads_" + re.search(r"result=\"(\w+)\"", name).group(1)] = int(value)
print(json.dumps(out))'
}

mabd_start
# ---- 8 clients x 400 requests, at once, on 4 threads ----------------------
result=$(clients 8 400)
pycheck "parallel clients" "$result" 'assert d["ok"] == 3200 and d["n_failed"] == 0, d'
m=$(metrics)
pycheck "counters after 3200 parallel requests" "$m" '
assert d["mab_assignments_total"] == 3200, d
assert d["mab_choose_duration_seconds_count"] == 3200, d
assert d["pulls"] == 3200, d
assert d["mab_bad_requests_total"] == 0, d
'

# ---- the same load across 6 reloads: the clients run until all are done ----
clients 8 0 >"$tmp/under_reload" &
client_pid=$!
sleep 0.5
for i in $(seq 6); do
    kill -HUP "$pid" 2>/dev/null || { fail "mabd is gone before reload $i: $(tail -3 "$tmp/log")"; break; }
    # The next signal after this reload is done (the log says so).
    for _ in $(seq 100); do
        [[ $(grep -c "reloaded" "$tmp/log") -ge $i ]] && break
        sleep 0.05
    done
    sleep 0.1
done
touch "$tmp/stop"
wait "$client_pid" || fail "the clients exited $?"
result=$(cat "$tmp/under_reload")
echo "under reloads: $result"
kill -0 "$pid" 2>/dev/null || { fail "mabd died under reloads: $(tail -3 "$tmp/log")"; exit 1; }
pycheck "clients across reloads" "$result" 'assert d["ok"] > 0 and d["n_failed"] == 0, d'
m=$(metrics)
N=$((3200 + $($py -c 'import json, sys; print(json.load(sys.stdin)["ok"])' <"$tmp/under_reload"))) \
pycheck "counters across reloads" "$m" '
n = int(os.environ["N"])
assert d["reloads_ok"] == 6 and d["reloads_failed"] == 0, d
assert d["mab_assignments_total"] == n, (n, d)
assert d["mab_choose_duration_seconds_count"] == n, (n, d)
assert d["pulls"] == n, (n, d)
'
grep -q "reload refused" "$tmp/log" && fail "a reload was refused: $(grep 'reload' "$tmp/log")"
mabd_stop

if ((failures)); then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "mabd threads: all checks passed"
