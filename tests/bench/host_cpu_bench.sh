#!/usr/bin/env bash
# host_cpu_bench.sh BUILD_DIR [LABEL=DIR...] - what a request costs the
# server, for the three hosts side by side in one run: Debian's nginx
# answering `return 200`, the same nginx with the mab module
# (`mab_choose` + `return 200`, a new visitor: choose, pull, signed
# cookie; and a returning visitor sending a valid cookie), and mabd's
# GET /v1/choose/EXP (the new visitor's work). For each, wrk
# (2 threads, 64 keep-alive connections, DURATION=5s each, ROUNDS=2
# interleaved rounds) gives the rate, and the server's CPU time (utime +
# stime of its pids, nginx's master and workers, from /proc/PID/stat)
# before and after the run, divided by the requests wrk completed, gives
# the CPU per request. Extra LABEL=DIR arguments add the module and mabd of
# another build (e.g. before=/tmp/old/build-release) as more rows of the
# same run. Targets (issue 18): module <= 1.10 x plain in CPU per request;
# mabd >= 0.8 x nginx plain in requests per second. Not part of the test
# suite: ~40 s per build and the machine's whole CPU.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
duration=${DURATION:-5s}
rounds=${ROUNDS:-2}
nginx_bin=/usr/sbin/nginx
tck=$(getconf CLK_TCK)

builds=("now=$(cd "${1:-$src/build-release}" && pwd)")
shift || true
builds+=("$@")

for tool in wrk curl "$nginx_bin"; do
    command -v "$tool" >/dev/null || { echo "$tool is missing (scripts/deps installs it)" >&2; exit 1; }
done

tmp=$(mktemp -d)
server_pids=()
nginx_masters=()
cleanup() {
    for p in "${nginx_masters[@]}"; do kill -QUIT "$p" 2>/dev/null || true; done
    for p in "${server_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
workers=$(nproc 2>/dev/null || echo 2)
user_line=""
[[ $(id -u) -eq 0 ]] && user_line="user root;"

declare -A url pids_of header # row -> URL; row -> "nginx MASTER" or "pid PID"; row -> a request header
rows=()

start_nginx() { # start_nginx LABEL BUILD: nginx with /plain and /mab locations
    local label=$1 build=$2 dir=$tmp/nginx-$1 port
    port=$(free_port)
    mkdir -p "$dir/logs"
    "$build/bin/mab" keygen "$dir/mab.key" >/dev/null
    cat >"$dir/mab.json" <<JSON
{
  "plugin_path": ["$build/plugins"],
  "storage": {"plugin": "lmdb", "path": "mab.lmdb", "sync": {"interval_ms": 1000}},
  "secret_file": "mab.key",
  "experiments": {
    "color_btn": {"policy": {"plugin": "epsilon_greedy", "epsilon": 0.1},
                  "arms": {"green": "#00FF00", "red": "#FF0000", "blue": "#0000FF"}}
  }
}
JSON
    cat >"$dir/nginx.conf" <<CONF
load_module $build/nginx/ngx_http_mab_module.so;
$user_line
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/logs/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    keepalive_requests 1000000;
    mab_config $dir/mab.json;
    server {
        listen 127.0.0.1:$port;
        location = /mab {
            mab_choose color_btn \$color;
            return 200 "\$color\n";
        }
        location = /plain {
            set \$color "#00FF00";
            return 200 "\$color\n";
        }
    }
}
CONF
    "$nginx_bin" -p "$dir" -c "$dir/nginx.conf" -g "daemon on; master_process on;"
    for _ in $(seq 100); do [[ -s $dir/nginx.pid ]] && break; sleep 0.1; done
    local master
    master=$(cat "$dir/nginx.pid")
    nginx_masters+=("$master")
    for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/plain" && break; sleep 0.1; done
    curl -sf -o /dev/null "http://127.0.0.1:$port/mab" || { cat "$dir/logs/error.log" >&2; exit 1; }
    if [[ $label == now ]]; then
        rows+=("nginx return 200")
        url["nginx return 200"]="http://127.0.0.1:$port/plain"
        pids_of["nginx return 200"]="nginx $master"
    fi
    rows+=("nginx + mab ($label)")
    url["nginx + mab ($label)"]="http://127.0.0.1:$port/mab"
    pids_of["nginx + mab ($label)"]="nginx $master"
    # A returning visitor: every request sends the cookie of a first answer
    # (decoded and verified, the kept arm, no Set-Cookie back).
    local cookie
    cookie=$(curl -sf -D - -o /dev/null "http://127.0.0.1:$port/mab" |
             sed -n 's/^[Ss]et-[Cc]ookie: \([^;]*\).*/\1/p' | head -1)
    [[ -n $cookie ]] || { echo "no cookie from /mab" >&2; exit 1; }
    if curl -sf -D - -o /dev/null -H "Cookie: $cookie" "http://127.0.0.1:$port/mab" |
        grep -qi "^set-cookie"; then
        echo "a returning visitor got a new cookie" >&2; exit 1
    fi
    rows+=("nginx + mab, returning ($label)")
    url["nginx + mab, returning ($label)"]="http://127.0.0.1:$port/mab"
    header["nginx + mab, returning ($label)"]="Cookie: $cookie"
    pids_of["nginx + mab, returning ($label)"]="nginx $master"
}

start_mabd() { # start_mabd LABEL BUILD
    local label=$1 build=$2 dir=$tmp/mabd-$1
    mkdir -p "$dir"
    "$build/bin/mab" keygen "$dir/mab.key" >/dev/null
    cat >"$dir/mab.json" <<JSON
{
  "plugin_path": ["$build/plugins"],
  "storage": {"plugin": "json_file", "path": "state.json", "sync": {"interval_ms": 3600000}},
  "secret_file": "mab.key",
  "experiments": {
    "color_btn": {"policy": {"plugin": "epsilon_greedy", "epsilon": 0.1},
                  "arms": {"green": "#00FF00", "red": "#FF0000", "blue": "#0000FF"}}
  }
}
JSON
    (cd "$dir" && exec "$build/bin/mabd" --config mab.json --listen 127.0.0.1:0 2>"$dir/log") &
    local pid=$!
    server_pids+=("$pid")
    for _ in $(seq 100); do grep -q "listening on" "$dir/log" && break; sleep 0.1; done
    local port
    port=$(grep -o 'http://127.0.0.1:[0-9]*' "$dir/log" | head -1 | cut -d: -f3 || true)
    [[ -n $port ]] || { cat "$dir/log" >&2; exit 1; }
    curl -sf -o /dev/null "http://127.0.0.1:$port/v1/choose/color_btn"
    rows+=("mabd ($label)")
    url["mabd ($label)"]="http://127.0.0.1:$port/v1/choose/color_btn"
    pids_of["mabd ($label)"]="pid $pid"
}

for b in "${builds[@]}"; do
    start_nginx "${b%%=*}" "${b#*=}"
    start_mabd "${b%%=*}" "${b#*=}"
done

cpu_ticks() { # cpu_ticks "nginx MASTER" | "pid PID": utime+stime of the server's processes
    local kind=${1%% *} pid=${1#* } list
    if [[ $kind == nginx ]]; then
        list="$pid $(ps -o pid= --ppid "$pid" | tr '\n' ' ')"
    else
        list=$pid
    fi
    local total=0 p
    for p in $list; do
        # Fields after the command's closing parenthesis: utime is the 12th, stime the 13th.
        local rest
        rest=$(sed 's/^.*) //' "/proc/$p/stat")
        total=$((total + $(echo "$rest" | awk '{print $12 + $13}')))
    done
    echo "$total"
}

declare -A sum_rps sum_cpu # row -> sums over rounds (rps; CPU seconds per request)
for _ in $(seq "$rounds"); do
    for row in "${rows[@]}"; do
        before=$(cpu_ticks "${pids_of[$row]}")
        extra=()
        [[ -n ${header[$row]:-} ]] && extra=(-H "${header[$row]}")
        wrk -t2 -c64 -d"$duration" "${extra[@]}" "${url[$row]}" >"$tmp/wrk.out"
        after=$(cpu_ticks "${pids_of[$row]}")
        grep -q "Non-2xx" "$tmp/wrk.out" && { cat "$tmp/wrk.out" >&2; echo "$row: non-2xx answers" >&2; exit 1; }
        requests=$(awk '/requests in/ {print $1}' "$tmp/wrk.out")
        rps=$(awk '/^Requests\/sec:/ {print $2}' "$tmp/wrk.out")
        sum_rps[$row]=$(awk -v a="${sum_rps[$row]:-0}" -v b="$rps" 'BEGIN {print a + b}')
        sum_cpu[$row]=$(awk -v a="${sum_cpu[$row]:-0}" -v t=$((after - before)) -v n="$requests" \
                        -v k="$tck" 'BEGIN {print a + t / k / n}')
    done
done

plain="nginx return 200"
p_rps=$(awk -v s="${sum_rps[$plain]}" -v r="$rounds" 'BEGIN {print s / r}')
p_cpu=$(awk -v s="${sum_cpu[$plain]}" -v r="$rounds" 'BEGIN {print s / r}')
echo "| server | requests/s | x nginx (rate) | server CPU per request | x nginx (CPU) |"
echo "|---|---:|---:|---:|---:|"
for row in "${rows[@]}"; do
    awk -v name="$row" -v s="${sum_rps[$row]}" -v c="${sum_cpu[$row]}" -v r="$rounds" \
        -v pr="$p_rps" -v pc="$p_cpu" 'BEGIN {
        rps = s / r; cpu = c / r
        printf "| %s | %.0f | %.2f | %.2f us | %.2f |\n", name, rps, rps / pr, cpu * 1e6, cpu / pc }'
done
echo
for b in "${builds[@]}"; do
    label=${b%%=*}
    m="nginx + mab ($label)" d="mabd ($label)" b="nginx + mab, returning ($label)"
    awk -v label="$label" -v mc="${sum_cpu[$m]}" -v pc="${sum_cpu[$plain]}" \
        -v bc="${sum_cpu[$b]}" -v dr="${sum_rps[$d]}" -v pr="${sum_rps[$plain]}" 'BEGIN {
        over = (mc / pc - 1) * 100; ratio = dr / pr; back = (bc / pc - 1) * 100
        printf "%s: the module adds %.1f%% CPU per request over plain for a new visitor, %.1f%% for a returning one (%s the 10%% target); ", label,
               over, back, (over <= 10 && back <= 10 ? "meets" : "misses")
        printf "mabd = %.2f x nginx requests/s (%s the 0.8 target).\n", ratio,
               (ratio >= 0.8 ? "meets" : "misses") }'
done
echo "wrk -t2 -c64 -d$duration, keep-alive, mean of $rounds interleaved rounds, loopback; nginx $workers"
echo "workers (LMDB), mabd default threads (json_file, no write in the run); CPU from /proc/PID/stat"
echo "at $tck ticks/s; $(nproc) CPUs shared by wrk and the servers; $(uname -m), $(. /etc/os-release && echo "$PRETTY_NAME")."
