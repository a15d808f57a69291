#!/usr/bin/env bash
# http_bench.sh [BUILD_DIR] - requests per second of mabd's /v1/choose/EXP
# against Debian's nginx answering `return 200`, both on loopback, measured
# with wrk in the same run (2 threads, 64 keep-alive connections, 10 s
# each; DURATION=5s to shorten). Prints a markdown table and the ratio
# (target: mabd >= 0.8 x nginx, issue 18). Installs wrk and nginx with apt-get when
# missing. Not part of the test suite: it takes ~25 s and the machine's
# whole CPU.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
duration=${DURATION:-10s}

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
if ((${#missing[@]})); then
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
        { $sudo apt-get update >/dev/null && $sudo apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

tmp=$(mktemp -d)
mabd_pid=""
nginx_pid=""
cleanup() {
    [[ -n $mabd_pid ]] && kill -TERM "$mabd_pid" 2>/dev/null && wait "$mabd_pid" 2>/dev/null
    [[ -n $nginx_pid ]] && kill -QUIT "$nginx_pid" 2>/dev/null
    sleep 0.2
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---- mabd: no storage writes in the way (interval 1 h), one experiment ----
"$build/bin/mab" keygen "$tmp/mab.key" >/dev/null
cat >"$tmp/mab.json" <<EOF
{
  "plugin_path": ["$build/plugins"],
  "storage": {"plugin": "json_file", "path": "state.json", "sync": {"interval_ms": 3600000}},
  "secret_file": "mab.key",
  "experiments": {
    "color_btn": {"policy": {"plugin": "epsilon_greedy", "epsilon": 0.1},
                  "arms": {"green": "#00FF00", "red": "#FF0000", "blue": "#0000FF"}}
  }
}
EOF
(cd "$tmp" && exec "$build/bin/mabd" --config mab.json --listen 127.0.0.1:0 2>"$tmp/mabd.log") &
mabd_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$tmp/mabd.log" && break; sleep 0.1; done
mabd_port=$(grep -o 'http://127.0.0.1:[0-9]*' "$tmp/mabd.log" | head -1 | cut -d: -f3)
[[ -n $mabd_port ]] || { cat "$tmp/mabd.log" >&2; exit 1; }

# ---- nginx: its own config, prefix and pid file; stopped by pid ------------
nginx_port=$(free_port)
workers=$(nproc 2>/dev/null || echo 2)
mkdir -p "$tmp/nginx/logs"
cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes $workers;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/logs/error.log;
daemon on;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $tmp/nginx/body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$nginx_port;
        location / { return 200 "ok\n"; }
    }
}
EOF
"$nginx_bin" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf"
for _ in $(seq 50); do [[ -s $tmp/nginx/nginx.pid ]] && break; sleep 0.1; done
nginx_pid=$(cat "$tmp/nginx/nginx.pid")

rps() { # rps URL: wrk's Requests/sec
    wrk -t2 -c64 -d"$duration" --latency "$1" >"$tmp/wrk.out"
    grep -q "Non-2xx" "$tmp/wrk.out" && { cat "$tmp/wrk.out" >&2; echo "non-2xx answers" >&2; exit 1; }
    awk '/^Requests\/sec:/ {print $2}' "$tmp/wrk.out"
}

curl -sf "http://127.0.0.1:$mabd_port/v1/choose/color_btn" >/dev/null
curl -sf "http://127.0.0.1:$nginx_port/" >/dev/null
mabd_rps=$(rps "http://127.0.0.1:$mabd_port/v1/choose/color_btn")
nginx_rps=$(rps "http://127.0.0.1:$nginx_port/")
ratio=$(awk -v a="$mabd_rps" -v b="$nginx_rps" 'BEGIN {printf "%.2f", a / b}')
verdict=$(awk -v r="$ratio" 'BEGIN {print (r >= 0.8) ? "meets" : "misses"}')

echo "| server | route | requests/s |"
echo "|---|---|---:|"
printf '| mabd %s | `GET /v1/choose/color_btn` (new visitor: choose + signed cookie) | %.0f |\n' \
    "$("$build/bin/mabd" --version | awk '{print $2}')" "$mabd_rps"
printf '| nginx %s | `return 200` | %.0f |\n' \
    "$("$nginx_bin" -v 2>&1 | sed 's|.*nginx/||')" "$nginx_rps"
echo
echo "mabd / nginx = $ratio ($verdict the 0.8 target). wrk -t2 -c64 -d$duration, keep-alive,"
echo "loopback, $(nproc) CPUs shared by wrk and the server; $(uname -m), $(. /etc/os-release && echo "$PRETTY_NAME")."
