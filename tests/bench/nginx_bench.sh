#!/usr/bin/env bash
# nginx_bench.sh [BUILD_DIR] - requests per second of Debian's nginx with the
# mab module: a location with `mab_choose` + `return 200 $variable` against
# the same location without mab, in the same nginx, in the same run, measured
# with wrk (2 threads, 64 keep-alive connections, 10 s per run; DURATION=5s
# to shorten), in ROUNDS (default 2) interleaved rounds. wrk keeps no cookies, so every request is a new visitor: the
# policy chooses, a pull is counted and a signed cookie is sent — the
# expensive case. A third row sends a valid cookie (a returning visitor:
# signature checked, no pull). Storage is LMDB, shared by the workers.
# Prints a markdown table and the overhead (target: <= 10%). Not part of the
# test suite: it takes ~65 s and the machine's whole CPU.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
duration=${DURATION:-10s}
rounds=${ROUNDS:-2}
module=$build/nginx/ngx_http_mab_module.so
nginx_bin=/usr/sbin/nginx

for tool in wrk "$nginx_bin"; do
    command -v "$tool" >/dev/null || { echo "$tool is missing (scripts/deps installs it)" >&2; exit 1; }
done
[[ -f $module ]] || { echo "$module is missing: build with cmake first (needs nginx-dev)" >&2; exit 1; }

tmp=$(mktemp -d)
nginx_pid=""
cleanup() {
    if [[ -n $nginx_pid ]]; then
        kill -QUIT "$nginx_pid" 2>/dev/null || true
        wait "$nginx_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
workers=$(nproc 2>/dev/null || echo 2)

"$build/bin/mab" keygen "$tmp/mab.key" >/dev/null
cat >"$tmp/mab.json" <<EOF
{
  "plugin_path": ["$build/plugins"],
  "storage": {"plugin": "lmdb", "path": "mab.lmdb", "sync": {"interval_ms": 1000}},
  "secret_file": "mab.key",
  "experiments": {
    "color_btn": {"policy": {"plugin": "epsilon_greedy", "epsilon": 0.1},
                  "arms": {"green": "#00FF00", "red": "#FF0000", "blue": "#0000FF"}}
  }
}
EOF
mkdir -p "$tmp/logs"
user_line=""
[[ $(id -u) -eq 0 ]] && user_line="user root;"
cat >"$tmp/nginx.conf" <<EOF
load_module $module;
$user_line
worker_processes $workers;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $tmp/body;
    proxy_temp_path $tmp/proxy;
    fastcgi_temp_path $tmp/fastcgi;
    uwsgi_temp_path $tmp/uwsgi;
    scgi_temp_path $tmp/scgi;
    keepalive_requests 1000000;
    mab_config $tmp/mab.json;
    server {
        listen 127.0.0.1:$port reuseport;
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
EOF
"$nginx_bin" -p "$tmp" -c "$tmp/nginx.conf" \
    -g "daemon off; master_process on; pid $tmp/nginx.pid; error_log $tmp/logs/error.log;" &
nginx_pid=$!
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/plain" && break; sleep 0.1; done

rps() { # rps URL [WRK_ARGS...]: wrk's Requests/sec
    local url=$1
    shift
    wrk -t2 -c64 -d"$duration" "$@" "$url" >"$tmp/wrk.out"
    grep -q "Non-2xx" "$tmp/wrk.out" && { cat "$tmp/wrk.out" >&2; echo "non-2xx answers" >&2; exit 1; }
    awk '/^Requests\/sec:/ {print $2}' "$tmp/wrk.out"
}

cookie=$(curl -s -D - -o /dev/null "http://127.0.0.1:$port/mab" |
         sed -n 's/^Set-Cookie: \(mab=[^;]*\);.*/\1/p')
[[ -n $cookie ]] || { echo "no Set-Cookie from /mab" >&2; exit 1; }

# Interleaved rounds, so drift (CPU frequency, the other load on the
# machine) falls on every row alike; each row's figure is its mean.
plain_all=() mab_all=() returning_all=()
for _ in $(seq "$rounds"); do
    plain_all+=("$(rps "http://127.0.0.1:$port/plain")")
    mab_all+=("$(rps "http://127.0.0.1:$port/mab")")
    returning_all+=("$(rps "http://127.0.0.1:$port/mab" -H "Cookie: $cookie")")
done
mean() { printf '%s\n' "$@" | awk '{s += $1} END {printf "%.0f", s / NR}'; }
plain_rps=$(mean "${plain_all[@]}")
mab_rps=$(mean "${mab_all[@]}")
returning_rps=$(mean "${returning_all[@]}")

overhead=$(awk -v m="$mab_rps" -v p="$plain_rps" 'BEGIN {printf "%.1f", (1 - m / p) * 100}')
returning_overhead=$(awk -v m="$returning_rps" -v p="$plain_rps" 'BEGIN {printf "%.1f", (1 - m / p) * 100}')
verdict=$(awk -v o="$overhead" 'BEGIN {print (o <= 10) ? "meets" : "misses"}')
version=$("$nginx_bin" -v 2>&1 | sed 's|.*nginx/||')

echo "| nginx $version, $workers workers | location | requests/s | overhead |"
echo "|---|---|---:|---:|"
printf '| without mab | `set $color "#00FF00"; return 200 "$color\\n"` | %.0f | – |\n' "$plain_rps"
printf '| mab, new visitor | `mab_choose color_btn $color; return 200 "$color\\n"` (choose, pull, signed Set-Cookie) | %.0f | %s%% |\n' \
    "$mab_rps" "$overhead"
printf '| mab, returning visitor | the same, with a valid cookie (signature checked, no pull) | %.0f | %s%% |\n' \
    "$returning_rps" "$returning_overhead"
echo
echo "Overhead of mab_choose for new visitors: $overhead% ($verdict the 10% target)."
echo "wrk -t2 -c64 -d$duration, keep-alive, mean of $rounds interleaved rounds, loopback, LMDB storage;"
echo "runs per row (requests/s): without mab ${plain_all[*]}; new ${mab_all[*]}; returning ${returning_all[*]}."
echo "$(nproc) CPUs shared by wrk and nginx; $(uname -m), $(. /etc/os-release && echo "$PRETTY_NAME")."
