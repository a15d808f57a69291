#!/usr/bin/env bash
# nginx_context_test.sh BUILD_DIR - context features through Debian's nginx
# with ngx_http_mab_module.so (one worker: json_file keeps the policy
# statistics where the test reads them) on a free loopback port:
# `mab_feature NAME VALUE;` at the server level and overridden in a
# location reaches the echo fixture policy's choose
# (tests/fixtures/policy_echo.c plays the arm its first feature names) and
# update (sums per arm at pulls, exp[0] at rewards, exp[1] counts missing);
# a reward's update sees the choice's features from the cookie, never the
# reward request's; a value that is not a number is a missing feature
# (NAN); `nginx -t` refuses a bad feature name and a duplicate. The sums are
# read from the json_file store after nginx stops.
# A sanitizer build that cannot be loaded into Debian's nginx exits 77
# (skipped, loudly), as nginx_test.sh.
set -euo pipefail

build=$(cd "$1" && pwd)
module=$build/nginx/ngx_http_mab_module.so
mab=$build/bin/mab
nginx=/usr/sbin/nginx
py=/usr/bin/python3
tmp=$(mktemp -d)
pid=""
cleanup() {
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ -x $nginx ]] || { echo "FAIL: $nginx is missing (scripts/deps)" >&2; exit 1; }
[[ -f $module ]] || { echo "FAIL: $module was not built (nginx-dev: scripts/deps)" >&2; exit 1; }

preload=""
for lib in libasan libubsan; do
    path=$(ldd "$build/lib/libmab.so" | awk -v l="$lib" '$1 ~ "^" l "\\." {print $3}')
    [[ -n $path ]] && preload="${preload:+$preload:}$path"
done
nginx_cmd=("$nginx")
[[ -n $preload ]] && nginx_cmd=(env "LD_PRELOAD=$preload" "$nginx")

port=$(free_port)
base=http://127.0.0.1:$port
"$mab" keygen "$tmp/mab.key" >/dev/null
cat >"$tmp/mab.json" <<EOF
{
  "plugin_path": ["$build/plugins"],
  "storage": {"plugin": "json_file", "path": "state.json"},
  "secret_file": "mab.key",
  "experiments": {
    "ctx": {"policy": {"plugin": "$build/tests/fixtures/policy_echo.so", "features": ["slot", "hour"]},
            "arms": {"a": 1, "b": 2, "c": 3}}
  }
}
EOF
mkdir -p "$tmp/logs"
user_line=""
[[ $(id -u) -eq 0 ]] && user_line="user root;"
write_conf() { # write_conf FILE SERVER_EXTRA
    cat >"$1" <<EOF
load_module $module;
$user_line
events { worker_connections 256; }
http {
    client_body_temp_path $tmp/body;
    proxy_temp_path $tmp/proxy;
    fastcgi_temp_path $tmp/fastcgi;
    uwsgi_temp_path $tmp/uwsgi;
    scgi_temp_path $tmp/scgi;
    access_log off;
    mab_config $tmp/mab.json;
    server {
        listen 127.0.0.1:$port reuseport;
        mab_feature slot \$arg_slot;
        mab_feature hour 7;
        $2
        location = /choose {
            mab_choose ctx \$ctx;
            return 200 "\$mab_arm_ctx\n";
        }
        location = /choose-header {
            mab_feature slot \$http_x_slot;
            mab_choose ctx \$ctx;
            return 200 "\$mab_arm_ctx\n";
        }
        location = /reward {
            mab_reward ctx;
            return 200 "\$mab_reward_ctx\n";
        }
    }
}
EOF
}
nginx_t() { # nginx_t CONF
    "${nginx_cmd[@]}" -t -p "$tmp" -c "$1" -g "pid $tmp/t.pid; error_log stderr;" >"$tmp/t.out" 2>&1
}
write_conf "$tmp/nginx.conf" ""
if ! nginx_t "$tmp/nginx.conf"; then
    if [[ -n $preload ]]; then
        echo "SKIPPED: nginx_context_test cannot run Debian's nginx with this sanitizer build" \
             "(LD_PRELOAD=$preload): $(cat "$tmp/t.out")" >&2
        exit 77
    fi
    cat "$tmp/t.out" >&2
    echo "FAIL: nginx -t refused the test config" >&2
    exit 1
fi
# nginx -t: a bad name, a duplicate at one level, a missing value.
write_conf "$tmp/bad.conf" 'mab_feature "bad name" 1;'
nginx_t "$tmp/bad.conf" && fail "nginx -t accepted a feature name with a space"
grep -q '"mab_feature" directive: invalid feature name "bad name"' "$tmp/t.out" ||
    fail "bad name: $(cat "$tmp/t.out")"
write_conf "$tmp/bad.conf" 'mab_feature slot 2;'
nginx_t "$tmp/bad.conf" && fail "nginx -t accepted a feature given twice"
grep -q 'feature "slot" is already given at this level' "$tmp/t.out" ||
    fail "duplicate: $(cat "$tmp/t.out")"
write_conf "$tmp/bad.conf" 'mab_feature slot;'
nginx_t "$tmp/bad.conf" && fail "nginx -t accepted mab_feature without a value"

"${nginx_cmd[@]}" -p "$tmp" -c "$tmp/nginx.conf" \
    -g "daemon off; master_process on; worker_processes 1; pid $tmp/nginx.pid; error_log $tmp/logs/error.log info;" &
pid=$!
for _ in $(seq 100); do curl -s -o /dev/null "$base/reward" && break; sleep 0.1; done

choose() { # choose JAR URL [CURL_ARGS]: the arm
    local jar=$1 url=$2
    shift 2
    curl -s -c "$jar" "$@" "$base$url"
}
reward() { # reward JAR [QUERY]: "counted" or why not
    curl -s -b "$jar" "$base/reward${2:-}"
}

# 1. server-level $arg_slot reaches choose: slot 2 plays arm c.
jar=$tmp/j1
[[ $(choose "$jar" "/choose?slot=2") == c ]] || fail "slot 2 did not reach choose"
# The reward request's slot (0) is not what update sees: the cookie's is.
[[ $(reward "$jar" "?slot=0") == counted ]] || fail "reward 1 not counted"
# 2. a location's mab_feature replaces the server's: slot from a header.
jar=$tmp/j2
[[ $(choose "$jar" "/choose-header?slot=2" -H "X-Slot: 1") == b ]] ||
    fail "the location's feature did not replace the server's"
[[ $(reward "$jar") == counted ]] || fail "reward 2 not counted"
# 3. not a number is missing: arm a, missing at the pull and the reward.
for bad in "abc" "" "inf" "1e999"; do
    jar=$tmp/jbad
    rm -f "$jar"
    [[ $(choose "$jar" "/choose?slot=$bad") == a ]] || fail "slot '$bad' was not missing"
done
[[ $(reward "$jar" "?slot=2") == counted ]] || fail "reward 3 not counted"

kill -QUIT "$pid"
wait "$pid" || true
pid=""
grep -E "\[(alert|emerg)\]|AddressSanitizer|runtime error" "$tmp/logs/error.log" &&
    fail "nginx error log has alerts"
pycheck "update saw the choices' features" "$(cat "$tmp/state.json")" '
ps = {(s.get("arm"), s["layout"]): s["values"] for s in d["policy_stats"] if s["experiment"] == "ctx"}
ex = ps[(None, "echo/1:1,3")]
assert ex[0] == 3.0, ("reward feature sum: slot 2 + slot 1 + missing", ex)
assert ex[1] == 5.0, ("missing: 4 pulls and 1 reward", ex)
arms = {a: v for (a, l), v in ps.items() if a}
assert arms.get("c") == [2.0] and arms.get("b") == [1.0], arms'

if ((failures > 0)); then
    echo "nginx_context_test: $failures failure(s)" >&2
    exit 1
fi
echo "nginx_context_test: ok"
