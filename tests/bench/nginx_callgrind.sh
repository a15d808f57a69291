#!/usr/bin/env bash
# nginx_callgrind.sh [BUILD_DIR] - instructions per request (callgrind) of
# one nginx worker (master_process off) with the mab module loaded: N
# (default 2000) keep-alive requests to a plain `return 200` location, then
# N to the same location with `mab_choose` as new visitors (no cookie: a
# choose, a signed cookie encoded and sent), then N as a returning visitor
# (the valid cookie of the new-visitor run's last response in every
# request: the cookie decoded and verified, the kept arm, no Set-Cookie),
# each in a run of its own, minus a run without requests (start-up and
# stop), so only the requests are in the figures.
# Prints both, their ratio and the functions that make the difference
# (callgrind_annotate, inclusive). Not timed, so the machine's load does
# not change it. Not part of the test suite: ~1 min.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$src/build-release}" && pwd)
n=${REQUESTS:-2000}
tmp=$(mktemp -d)
vg_pid=""
cleanup() {
    [[ -n $vg_pid ]] && kill -TERM "$vg_pid" 2>/dev/null && wait "$vg_pid" 2>/dev/null
    [[ -n ${KEEP:-} ]] && echo "kept $tmp" >&2 || rm -rf "$tmp"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$build/bin/mab" keygen "$tmp/mab.key" >/dev/null
cat >"$tmp/mab.json" <<JSON
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
mkdir -p "$tmp/logs"
user_line=""
[[ $(id -u) -eq 0 ]] && user_line="user root;"
cat >"$tmp/nginx.conf" <<CONF
load_module $build/nginx/ngx_http_mab_module.so;
$user_line
master_process off;
daemon off;
pid $tmp/nginx.pid;
error_log $tmp/logs/error.log;
events { worker_connections 64; }
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
run() { # run PATH|none: total instructions of one nginx worker's life (start-up,
    # N requests to PATH, a graceful stop), from its own callgrind file
    rm -f "$tmp"/cg.*
    valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.%p" \
        /usr/sbin/nginx -p "$tmp" -c "$tmp/nginx.conf" 2>"$tmp/vg.log" &
    vg_pid=$!
    for _ in $(seq 600); do
        python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' \
            "$port" 2>/dev/null && break
        sleep 0.2
    done
    [[ $1 == none ]] || requests "$1"
    kill -QUIT "$vg_pid"
    wait "$vg_pid" || true
    vg_pid=""
}
requests() { # requests PATH: N keep-alive GETs on one connection; /mab
    # saves the last Set-Cookie to $tmp/cookie, /mab?returning sends it
    python3 - "$port" "$1" "$n" "$tmp/cookie" <<'PY'
import http.client, sys
port, path, n, jar = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
headers = {}
if path.endswith("?returning"):
    path = path[: -len("?returning")]
    headers["Cookie"] = open(jar).read()
c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
for _ in range(n):
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    r.read()
    assert r.status == 200, r.status
    set_cookie = r.getheader("Set-Cookie")
    if headers:
        assert set_cookie is None, "a returning visitor got a new cookie: " + set_cookie
    elif path == "/mab":
        assert set_cookie, "a new visitor got no cookie"
        open(jar, "w").write(set_cookie.split(";")[0])
PY
}
totals() { # totals PATH|none: run, then the worker's file (the one named by its pid)
    run "$1" >/dev/null
    local f
    f=$(grep -l "^totals:" "$tmp"/cg.* | xargs ls -S | head -1)
    cp "$f" "$tmp/last$(echo "$1" | tr '/?' '__')"
    awk '/^totals:/ {print $2}' "$f"
}
idle=$(totals none)
plain=$(( $(totals /plain) - idle ))
mab=$(( $(totals /mab) - idle ))
back=$(( $(totals "/mab?returning") - idle ))
awk -v p="$plain" -v m="$mab" -v b="$back" -v n="$n" 'BEGIN {
    printf "| location | instructions per request | over plain |\n|---|---:|---:|\n"
    printf "| return 200 | %.0f | |\n", p / n
    printf "| mab_choose + return 200 (new visitor) | %.0f | %+.0f (%.1f%%) |\n", m / n, (m - p) / n, (m / p - 1) * 100
    printf "| mab_choose + return 200 (returning visitor) | %.0f | %+.0f (%.1f%%) |\n", b / n, (b - p) / n, (b / p - 1) * 100
    printf "\n%d requests each, one keep-alive connection, one nginx worker.\n", n }'
top() { # top FILE: inclusive cost per request of each function of the run
    # minus the same function in the plain run (start-up, stop and nginx's
    # own request work cancel out): what the module adds, the largest first
    callgrind_annotate --inclusive=yes --threshold=100 "$tmp/last_plain" >"$tmp/idle.txt" 2>/dev/null
    callgrind_annotate --inclusive=yes --threshold=100 "$1" >"$tmp/run.txt" 2>/dev/null
    python3 - "$tmp/idle.txt" "$tmp/run.txt" "$n" "${TOP:-30}" <<'PY'
import re, sys
def costs(path):
    out = {}
    for line in open(path):
        m = re.match(r"\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(\S+?:\S+)", line)
        if m:
            name = m.group(2).split(":", 1)[1]
            out[name] = max(out.get(name, 0), int(m.group(1).replace(",", "")))
    return out
idle, run, n, top = costs(sys.argv[1]), costs(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
pat = re.compile(r"ngx_http_mab|mab_|mab__|sodium|crypto|hmac|sha|base64|compress|encode|decode|"
                 r"epsilon|printf|__tls|malloc|calloc|free|cJSON|mdb_|memcpy|memset|strlen|"
                 r"ngx_palloc|ngx_pnalloc|ngx_list_push|ngx_http_variable|ngx_http_complex|"
                 r"ngx_http_get_variable|ngx_pool_cleanup")
rows = [(run[f] - idle.get(f, 0), f) for f in run if pat.search(f)]
for cost, f in sorted(rows, reverse=True)[:top]:
    if cost > 0:
        print(f"{cost / n:10.0f} per request  {f}")
PY
}
echo
echo "Inclusive costs per request in the new-visitor run, minus the plain run (callgrind_annotate --inclusive=yes):"
top "$tmp/last_mab"
echo
echo "The same for the returning-visitor run:"
top "$tmp/last_mab_returning"
