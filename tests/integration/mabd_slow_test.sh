#!/usr/bin/env bash
# mabd_slow_test.sh BUILD_DIR - Slowloris against the real mabd with its
# default limits: as many connections as mabd.max_connections trickle a header
# line every second from 127.0.0.1; a real request from another loopback
# address (127.0.0.2: Linux routes all of 127/8 to lo) is still answered, the
# per-address limit refused the surplus, and every trickling connection is
# closed by mabd once its request deadline passes, although bytes keep coming.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mabd_test_begin "$1"

$mab keygen "$tmp/mab.key" >/dev/null
# Only max_connections is set (an existing key): the limits under test are
# the defaults (max_connections_per_ip 64, request_timeout_s 10).
cat >"$tmp/mab.json" <<EOF
{
  "plugin_path": ["$build/plugins"],
  "storage": {"plugin": "json_file", "path": "state.json", "sync": {"interval_ms": 3600000}},
  "secret_file": "mab.key",
  "mabd": {"max_connections": 100},
  "experiments": {
    "color": {"policy": {"plugin": "epsilon_greedy"}, "arms": {"green": 1, "red": 2}}
  }
}
EOF
mabd_start

PORT=$port $py - <<'EOF' || fail "slow clients (above)"
import os, select, socket, sys, time

port = int(os.environ["PORT"])
N = 100          # = mabd.max_connections
LINES = 60       # a header line a second: a minute of trickling at most
problems = []

def connect(src):
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    return s

def closed_by_server(s):
    """True when mabd closed s (EOF or reset), without blocking."""
    r, _, _ = select.select([s], [], [], 0)
    if not r:
        return False
    try:
        return s.recv(4096) == b""
    except OSError:
        return True

# Open N connections from 127.0.0.1, each sending the start of a request.
slow = []
for i in range(N):
    s = connect("127.0.0.1")
    s.sendall(b"GET /v1/choose/color HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    slow.append(s)
time.sleep(1)
for s in slow:
    try:
        s.sendall(b"X-Slow: 1\r\n")
    except OSError:
        pass
time.sleep(0.5)
open_now = [s for s in slow if not closed_by_server(s)]
print(f"{len(open_now)} of {N} trickling connections from 127.0.0.1 held by mabd")
if len(open_now) > 64:
    problems.append(f"one address holds {len(open_now)} connections (per-address limit 64)")

# A real request from another loopback address is answered meanwhile.
try:
    c = connect("127.0.0.2")
    c.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    answer = b""
    while True:
        chunk = c.recv(4096)
        if not chunk:
            break
        answer += chunk
    c.close()
    if not answer.startswith(b"HTTP/1.1 200"):
        problems.append(f"127.0.0.2 got {answer[:80]!r} while 127.0.0.1 trickled")
    else:
        print("127.0.0.2 was answered 200 while 127.0.0.1 trickled")
except OSError as e:
    problems.append(f"127.0.0.2 was not answered while 127.0.0.1 trickled: {e}")

# Keep trickling: mabd must close every connection at its deadline although
# bytes keep arriving (an idle timeout would never fire).
alive = list(open_now)
for line in range(LINES):
    still = []
    for s in alive:
        if closed_by_server(s):
            continue
        try:
            s.sendall(b"X-Slow: %d\r\n" % line)
            still.append(s)
        except OSError:
            pass
    alive = still
    if not alive:
        print(f"every trickling connection was closed by mabd after {line + 2} header lines")
        break
    time.sleep(1)
if alive:
    problems.append(f"{len(alive)} connections still open after {LINES} header lines, one a second")
for p in problems:
    print("FAIL:", p, file=sys.stderr)
sys.exit(1 if problems else 0)
EOF

req healthz --interface 127.0.0.2 "http://127.0.0.1:$port/healthz"
expect_status 200 "healthz after the slow clients"
req metrics "http://127.0.0.1:$port/metrics"
[[ $body == *"mab_slow_clients_closed_total "[1-9]* ]] ||
    fail "metrics do not count the slow clients closed: $(grep slow_clients "$tmp/metrics.b")"

if ((failures)); then
    echo "mabd_slow_test: $failures failure(s); mabd log:" >&2
    cat "$tmp/log" >&2
    exit 1
fi
echo "mabd_slow_test: all checks passed"
