#!/usr/bin/env bash
# nginx_test.sh BUILD_DIR SOURCE_DIR - Debian's /usr/sbin/nginx with the built
# ngx_http_mab_module.so, 4 worker processes sharing one LMDB store, on free
# loopback ports, driven by curl with cookie jars: choose -> sticky ->
# reward -> redirect (and refused open redirects), the arm in an upstream's
# request header (proxy_set_header) and in the access log, `nginx -t`
# naming the directive for bad configs, and exact LMDB totals after load
# from many connections (curl and wrk) spread over the 4 workers.
#
# In an AddressSanitizer build libmab needs the ASan runtime loaded first;
# Debian's nginx is not built with it, so nginx runs with the runtime in
# LD_PRELOAD. If that cannot work the test says so loudly and exits 77,
# which CTest reports as skipped (never as passed).
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
[[ -x $nginx ]] || { echo "FAIL: $nginx is missing (scripts/deps installs Debian's nginx)" >&2; exit 1; }
[[ -f $module ]] || { echo "FAIL: $module was not built (install nginx-dev: scripts/deps; see the CMake warning)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "FAIL: wrk is missing (scripts/deps installs it)" >&2; exit 1; }

# ---- sanitizer builds: preload the runtimes libmab was linked with ----------
preload=""
for lib in libasan libubsan; do
    path=$(ldd "$build/lib/libmab.so" | awk -v l="$lib" '$1 ~ "^" l "\\." {print $3}')
    [[ -n $path ]] && preload="${preload:+$preload:}$path"
done
# ASAN_OPTIONS (leak checking included) come from the environment; nginx
# sends its stderr, hence sanitizer reports, to the error log checked below.
nginx_cmd=("$nginx")
[[ -n $preload ]] && nginx_cmd=(env "LD_PRELOAD=$preload" "$nginx")

port=$(free_port)
upstream_port=$(free_port)
base=http://127.0.0.1:$port

stats() { "$mab" stats "$tmp/mab.json" --json; }
pulls() { # pulls EXP: total pulls of the experiment in storage
    stats | $py -c 'import json, sys
print(sum(a["pulls"] for a in json.load(sys.stdin)["experiments"][sys.argv[1]]["arms"].values()))' "$1"
}

# ---- the mab config: LMDB shared by the workers ----------------------------
"$mab" keygen "$tmp/mab.key" >/dev/null
cat >"$tmp/mab.json" <<EOF
{
  "plugin_path": ["$build/plugins"],
  "storage": {"plugin": "lmdb", "path": "mab.lmdb", "sync": {"interval_ms": 50}, "refresh_ms": 50},
  "secret_file": "mab.key",
  "redirect_allow": ["https://shop.example.com/"],
  "debug_header": true,
  "experiments": {
    "color": {"policy": {"plugin": "epsilon_greedy", "epsilon": 0.3},
              "arms": {"green": "#00FF00", "red": "#FF0000"}},
    "txt": {"policy": {"plugin": "thompson"},
            "arms": {"casual": "Hey \"dude\"", "neutral": {"label": "Add to cart"}}},
    "load-x": {"policy": {"plugin": "ucb1"}, "arms": {"a": 1, "b": 2, "c": 3}},
    "once": {"policy": {"plugin": "epsilon_greedy"}, "arms": {"a": 1, "b": 2}}
  }
}
EOF

# ---- the nginx config: own prefix, pid, logs; the module loaded ------------
mkdir -p "$tmp/logs"
# As root, nginx runs workers as `nobody` unless told otherwise, and nobody
# cannot enter the test's private directory.
user_line=""
[[ $(id -u) -eq 0 ]] && user_line="user root;"
write_nginx_conf() { # write_nginx_conf FILE HTTP_EXTRA SERVER_EXTRA
    cat >"$1" <<EOF
load_module $module;
$user_line
events { worker_connections 512; }
http {
    client_body_temp_path $tmp/body;
    proxy_temp_path $tmp/proxy;
    fastcgi_temp_path $tmp/fastcgi;
    uwsgi_temp_path $tmp/uwsgi;
    scgi_temp_path $tmp/scgi;
    keepalive_requests 100000;
    $2
    log_format mab '\$pid \$uri \$status arm=\$mab_arm_color prob=\$mab_prob_color '
                   'reward=\$mab_reward_color txt=\$mab_arm_txt load=\$mab_arm_load_x';
    access_log $tmp/logs/access.log mab;

    server {
        # reuseport: one socket per worker, so connections spread over all 4
        listen 127.0.0.1:$port reuseport;
        $3
        location = /choose {
            mab_choose color \$color;
            mab_choose txt \$txt;
            add_header X-Arm \$mab_arm_color;
            return 200 "color=\$color arm=\$mab_arm_color prob=\$mab_prob_color txt=\$txt\n";
        }
        location = /silent {
            mab_choose color \$color;
            return 204;
        }
        location = /reward {
            mab_reward color;
            return 200 "\$mab_reward_color\n";
        }
        location = /go {
            mab_reward_redirect txt \$arg_to;
        }
        location = /rate {
            mab_reward txt \$arg_v;
            return 200 "\$mab_reward_txt\n";
        }
        location = /app {
            mab_choose color \$color;
            proxy_set_header X-Mab-Arm \$mab_arm_color;
            proxy_set_header X-Mab-Value \$color;
            proxy_pass http://127.0.0.1:$upstream_port/echo;
        }
        location = /once/choose {
            mab_choose once \$once;
            return 200 "\$once\n";
        }
        location = /once/reward {
            mab_reward once;
            return 200 "\$mab_reward_once\n";
        }
        location = /load {
            mab_choose load-x \$load_value;
            mab_reward load-x;
            return 200 "\$load_value\n";
        }
    }
    server {
        listen 127.0.0.1:$upstream_port;
        access_log off;
        location = /echo {
            return 200 "arm=\$http_x_mab_arm value=\$http_x_mab_value\n";
        }
    }
}
EOF
}
write_nginx_conf "$tmp/nginx.conf" "mab_config $tmp/mab.json;" ""

nginx_t() { # nginx_t CONF: `nginx -t`; output in $tmp/t.out
    "${nginx_cmd[@]}" -t -p "$tmp" -c "$1" -g "pid $tmp/t.pid; error_log stderr;" >"$tmp/t.out" 2>&1
}

if ! nginx_t "$tmp/nginx.conf"; then
    if [[ -n $preload ]]; then
        echo "============================================================================" >&2
        echo "SKIPPED: nginx_test cannot run Debian's nginx with this sanitizer build of" >&2
        echo "libmab (LD_PRELOAD=$preload). nginx said:" >&2
        cat "$tmp/t.out" >&2
        echo "The nginx integration test did NOT run in this build; it runs in the plain build." >&2
        echo "============================================================================" >&2
        exit 77
    fi
    cat "$tmp/t.out" >&2
    echo "FAIL: nginx -t refused the test config" >&2
    exit 1
fi
[[ -n $preload ]] && echo "nginx_test: Debian's nginx runs with LD_PRELOAD=$preload (sanitizer build)"

# ---- nginx -t names the directive and the mab error --------------------------
expect_t_error() { # expect_t_error WHAT NEEDLE... (the config is in $tmp/bad.conf)
    local what=$1
    shift
    if nginx_t "$tmp/bad.conf"; then
        fail "nginx -t accepted $what"
        return
    fi
    for needle in "$@"; do
        grep -qF -- "$needle" "$tmp/t.out" || fail "nginx -t on $what lacks '$needle': $(cat "$tmp/t.out")"
    done
}
write_nginx_conf "$tmp/bad.conf" "mab_config $tmp/mab.json;" \
    "location = /x { mab_choose nope \$x; return 200; }"
expect_t_error "an unknown experiment" '"mab_choose" directive' 'unknown experiment "nope"' "bad.conf:"
write_nginx_conf "$tmp/bad.conf" "mab_config $tmp/mab.json;" \
    "location = /x { mab_reward color 7; return 200; }"
expect_t_error "a reward out of range" '"mab_reward" directive' 'outside the reward range [0, 1]'
write_nginx_conf "$tmp/bad.conf" "mab_config $tmp/mab.json;" \
    "location = /x { mab_choose color \$txt; return 200; }"
expect_t_error "one variable for two experiments" '"mab_choose" directive' \
    'the variable "$txt" already holds experiment "color"'
write_nginx_conf "$tmp/bad.conf" "" ""
expect_t_error "directives without mab_config" '"mab_choose" directive needs "mab_config"'
sed 's/"epsilon": 0.3/"epsilon": 3/' "$tmp/mab.json" >"$tmp/bad.json"
write_nginx_conf "$tmp/bad.conf" "mab_config $tmp/bad.json;" ""
expect_t_error "a bad mab config" '"mab_config" directive' 'bad.json' 'epsilon'
write_nginx_conf "$tmp/bad.conf" "mab_config $tmp/missing.json;" ""
expect_t_error "a missing mab config" '"mab_config" directive' 'missing.json'
chmod 644 "$tmp/mab.key"
if nginx_t "$tmp/nginx.conf"; then
    fail "nginx -t accepted a world-readable key"
elif ! grep -qF '"mab_config" directive' "$tmp/t.out" || ! grep -qF 'mab.key' "$tmp/t.out"; then
    fail "nginx -t on a world-readable key: $(cat "$tmp/t.out")"
fi
chmod 600 "$tmp/mab.key"
# nginx -t opens the store as a worker will (ngx_http_mab_probe), so that
# what a worker could not open is refused before any worker starts.
[[ -d $tmp/mab.lmdb ]] || fail "nginx -t did not open the storage as the workers will"

# ---- one-process storage with several workers: refused by nginx -t ----------
sed 's/"plugin": "lmdb", "path": "mab.lmdb"/"plugin": "json_file", "path": "one.json"/' \
    "$tmp/mab.json" >"$tmp/one.json.conf"
grep -q json_file "$tmp/one.json.conf" || fail "test setup: no json_file config"
write_nginx_conf "$tmp/bad.conf" "mab_config $tmp/one.json.conf;" ""
if "${nginx_cmd[@]}" -t -p "$tmp" -c "$tmp/bad.conf" \
    -g "pid $tmp/t.pid; error_log stderr; worker_processes 4;" >"$tmp/t.out" 2>&1; then
    fail "nginx -t accepted json_file storage with 4 worker processes"
else
    for needle in '"mab_config" directive' 'one.json.conf' '"json_file"' '4 worker processes' \
                  'use "lmdb" storage' 'bad.conf:'; do
        grep -qF -- "$needle" "$tmp/t.out" || fail "nginx -t on json_file x 4 workers lacks '$needle': $(cat "$tmp/t.out")"
    done
    [[ $(grep -c 'emerg' "$tmp/t.out") == 1 ]] || fail "json_file x 4 workers: not one message: $(cat "$tmp/t.out")"
fi
"${nginx_cmd[@]}" -t -p "$tmp" -c "$tmp/bad.conf" \
    -g "pid $tmp/t.pid; error_log stderr; worker_processes 1;" >"$tmp/t.out" 2>&1 ||
    fail "nginx -t refused json_file storage with one worker process: $(cat "$tmp/t.out")"

# The store is checked read-only too (mab_check(), as `mab check`): one the
# workers could not open fails nginx -t.
sed "s|\"mab.lmdb\"|\"mab.key/store\"|" "$tmp/mab.json" >"$tmp/bad.json"
cmp -s "$tmp/mab.json" "$tmp/bad.json" && fail "the lmdb path was not replaced in bad.json"
write_nginx_conf "$tmp/bad.conf" "mab_config $tmp/bad.json;" ""
expect_t_error "a store that cannot be opened" '"mab_config" directive' 'mab.key/store'

# ---- start: not a daemon, master + 4 workers; stopped by pid ------------------
"${nginx_cmd[@]}" -p "$tmp" -c "$tmp/nginx.conf" \
    -g "daemon off; master_process on; worker_processes 4; pid $tmp/nginx.pid; error_log $tmp/logs/error.log info;" &
pid=$!
for _ in $(seq 100); do
    curl -s -o /dev/null "$base/nothing" && break
    sleep 0.1
done
curl -s -o /dev/null "$base/nothing" || { cat "$tmp/logs/error.log" >&2; echo "FAIL: nginx did not start" >&2; exit 1; }
new_visitors=0

# ---- choose: value, arm, probability, cookie ----------------------------------
jar=$tmp/jar
req choose1 -c "$jar" -b "$jar" "$base/choose"
expect_status 200 "choose"
new_visitors=$((new_visitors + 1))
arm=$(sed -n 's/.* arm=\([a-z]*\) .*/\1/p' <<<"$body")
case $arm in
    green) [[ $body == "color=#00FF00 arm=green "* ]] || fail "value of green: $body" ;;
    red) [[ $body == "color=#FF0000 arm=red "* ]] || fail "value of red: $body" ;;
    *) fail "no arm in: $body" ;;
esac
[[ $body =~ prob=(0|1|0\.[0-9]+)\  ]] || fail "no probability in: $body"
[[ $body == *'txt=Hey "dude"'* || $body == *'txt={"label":"Add to cart"}'* ]] ||
    fail "txt value (JSON string decoded, object as JSON): $body"
[[ $(header choose1 X-Arm) == "$arm" ]] || fail "add_header X-Arm: '$(header choose1 X-Arm)', arm $arm"
[[ $(header choose1 Set-Cookie) == mab=*"; Path=/; Max-Age="*"HttpOnly; SameSite=Lax" ]] ||
    fail "Set-Cookie: '$(header choose1 Set-Cookie)'"
[[ $(header choose1 X-MAB-Debug) == "STORE; color:$arm;txt:"* ]] || fail "X-MAB-Debug: '$(header choose1 X-MAB-Debug)'"

# ---- sticky: the same cookie keeps the arm, no new pull, no new cookie ------
cp "$jar" "$tmp/jar.before"
first=$body
for i in 1 2 3 4 5 6; do
    req sticky -c "$jar" -b "$jar" "$base/choose"
    [[ $body == "$first" ]] || fail "sticky request $i: '$body', first '$first'"
    [[ -z $(header sticky Set-Cookie) ]] || fail "sticky request $i sent a new Set-Cookie"
    [[ $(header sticky X-MAB-Debug) == "SAVED; color:$arm;txt:"* ]] || fail "sticky X-MAB-Debug"
done
sleep 0.3
[[ $(pulls color) == 1 && $(pulls txt) == 1 ]] || fail "sticky requests counted pulls: $(stats)"

# ---- the arm reaches the upstream through proxy_set_header --------------------
req app -b "$jar" "$base/app"
expect_status 200 "proxied request"
value=$([[ $arm == green ]] && echo '#00FF00' || echo '#FF0000')
[[ $body == "arm=$arm value=$value" ]] || fail "upstream received '$body', want arm=$arm value=$value"

# ---- reward: once per assignment ----------------------------------------------
req reward1 -c "$jar" -b "$jar" "$base/reward"
[[ $body == counted ]] || fail "reward: '$body'"
[[ -n $(header reward1 Set-Cookie) ]] || fail "a counted reward must send the cookie with its rewarded flag"
req reward2 -c "$jar" -b "$jar" "$base/reward"
[[ $body == already_rewarded ]] || fail "second reward: '$body'"
req reward3 "$base/reward"
[[ $body == no_cookie ]] || fail "reward without cookie: '$body'"
req reward4 -H "Cookie: mab=AAAAforged" "$base/reward"
[[ $body == invalid_cookie ]] || fail "reward with a forged cookie: '$body'"
# Replay: the old cookie again. The adapter remembers rewarded assignments per
# process (docs/hosts.md), so send both requests on one keep-alive connection,
# which one worker serves.
req visitor2 -c "$tmp/jar2" "$base/choose"
new_visitors=$((new_visitors + 1))
old_cookie=$(awk '$6 == "mab" {print $7}' "$tmp/jar2")
replay=$(curl -s -H "Cookie: mab=$old_cookie" "$base/reward" "$base/reward" | tr '\n' ' ')
[[ $replay == "counted replayed " ]] || fail "reward then replay of the same cookie: '$replay'"

# ---- reward once across the 4 workers: a claim in the shared LMDB -------------
# One cookie sent to /once/reward by 8 curl processes at once, 5 requests
# each on fresh connections: reuseport spreads them over the workers, each
# with its own replay memory; storage's claim lets exactly one count.
reward_once_across_workers() {
    req once_choose -c "$tmp/jar_once" "$base/once/choose"
    expect_status 200 "choose once"
    local cookie
    cookie=$(awk '$6 == "mab" {print $7}' "$tmp/jar_once")
    [[ -n $cookie ]] || { fail "no cookie from /once/choose"; return; }
    seq 8 | xargs -P 8 -I{} sh -c 'for i in 1 2 3 4 5; do
        curl -s -H "Cookie: mab=$1" "$2/once/reward?c={}&i=$i"; done' _ "$cookie" "$base" \
        >"$tmp/once.out"
    local answers counted
    answers=$(wc -l <"$tmp/once.out")
    counted=$(grep -c '^counted$' "$tmp/once.out" || true)
    [[ $answers == 40 ]] || fail "reward once: $answers answers to 40 requests"
    [[ $counted == 1 ]] || fail "one cookie through 4 workers counted $counted times: $(sort "$tmp/once.out" | uniq -c)"
    if grep -qv '^\(counted\|replayed\)$' "$tmp/once.out"; then
        fail "reward once: unexpected answers: $(sort "$tmp/once.out" | uniq -c)"
    fi
    echo "nginx_test: one cookie rewarded 40 times at once: counted $counted time(s)"
}
reward_once_across_workers

# ---- the module runs before `return`: a choice nobody reads still assigns ---
req silent "$base/silent"
new_visitors=$((new_visitors + 1))
expect_status 204 "mab_choose + return 204"
[[ $(header silent Set-Cookie) == mab=* ]] || fail "mab_choose before return 204 sent no cookie"

# ---- a reward value from a variable: checked per request -------------------
req visitor3 -c "$tmp/jar3" "$base/choose"
new_visitors=$((new_visitors + 1))
for v in abc 5 -1 nan; do
    req rate -b "$tmp/jar3" "$base/rate?v=$v"
    expect_status 400 "reward value '$v'"
done
req rate -b "$tmp/jar3" "$base/rate?v=0.25"
[[ $status == 200 && $body == counted ]] || fail "reward value 0.25: $status '$body'"

# ---- redirect and the open-redirect guard -------------------------------------
req go -c "$jar" -b "$jar" "$base/go?to=/thanks"
expect_status 303 "mab_reward_redirect"
[[ $(header go Location) == "http://127.0.0.1:$port/thanks" ]] || fail "Location: '$(header go Location)'"
[[ -n $(header go Set-Cookie) ]] || fail "redirect without the rewarded cookie"
# $arg_to is the query as sent: the module decodes it once, as mabd does.
req go_enc -b "$jar" "$base/go?to=%2Fthanks"
expect_status 303 "mab_reward_redirect to=%2Fthanks"
[[ $(header go_enc Location) == "http://127.0.0.1:$port/thanks" ]] || fail "to=%2Fthanks: Location '$(header go_enc Location)'"
req go_enc2 -b "$jar" "$base/go?to=%2Fthanks%3Fa%3D1"
expect_status 303 "mab_reward_redirect to=%2Fthanks%3Fa%3D1"
[[ $(header go_enc2 Location) == "http://127.0.0.1:$port/thanks?a=1" ]] || fail "to=%2Fthanks%3Fa%3D1: Location '$(header go_enc2 Location)'"
req go_abs -b "$jar" "$base/go?to=https://shop.example.com/checkout"
expect_status 303 "allowed absolute redirect"
[[ $(header go_abs Location) == "https://shop.example.com/checkout" ]] || fail "Location: '$(header go_abs Location)'"
req go_abs_enc -b "$jar" "$base/go?to=https%3A%2F%2Fshop.example.com%2Fcheckout"
expect_status 303 "allowed absolute redirect, encoded"
[[ $(header go_abs_enc Location) == "https://shop.example.com/checkout" ]] || fail "Location: '$(header go_abs_enc Location)'"
# Encoded and double-encoded open redirects: decoded once, still refused.
for target in '//evil.example' '/%5Cevil.example' 'https://evil.example/' \
              'https://shop.example.com.evil/' '%2F%2Fevil.example' 'javascript:alert(1)' \
              '/ok%0d%0aSet-Cookie:x=1' '%5C%5Cevil.example' '/%5C%5Cevil.example' \
              '%2F%5Cevil.example' '/%2Fevil.example' '%252F%252Fevil.example' \
              '/%252F%252Fevil.example' '/%255Cevil.example' 'https%3A%2F%2Fevil.example%2F' \
              'https%3A%2F%2Fshop.example.com.evil%2F' 'javascript%3Aalert(1)' '/ok%00x' \
              '%2Fok%0D%0ASet-Cookie:x=1'; do
    req refused -b "$jar" "$base/go?to=$target"
    expect_status 400 "open redirect to $target"
    [[ -z $(header refused Location) ]] || fail "refused redirect to $target sent a Location"
done
grep -q 'mab_reward_redirect: redirect refused' "$tmp/logs/error.log" ||
    fail "refused redirects are not in the error log (info level)"

# ---- exact totals under load: many connections, 4 workers, one LMDB ------------
# 8 curl processes x 250 requests (URL globbing, one keep-alive connection
# each), every one a new visitor (no cookie): one pull and one reward each.
seq 8 | xargs -P 8 -I{} curl -s -o /dev/null -w '%{http_code}\n' "$base/load?c={}&n=[1-250]" \
    >"$tmp/codes"
sent=$(wc -l <"$tmp/codes")
ok=$(grep -c '^200$' "$tmp/codes" || true)
[[ $sent == 2000 && $ok == 2000 ]] || fail "curl load: $ok of $sent requests answered 200"
# Then wrk for 3 s; nginx's access log counts what it answered.
wrk -t2 -c32 -d3s "$base/load" >"$tmp/wrk.out" 2>&1 || fail "wrk failed: $(cat "$tmp/wrk.out")"
grep -q "Non-2xx" "$tmp/wrk.out" && fail "wrk saw non-2xx answers: $(cat "$tmp/wrk.out")"

# ---- stop by pid (graceful: workers write what is pending) -----------------------
kill -QUIT "$pid"
set +e
wait "$pid"
rc=$?
set -e
pid=""
[[ $rc == 0 ]] || fail "nginx exited $rc after SIGQUIT"
if grep -E '\[(alert|emerg|crit)\]' "$tmp/logs/error.log" >&2; then
    fail "alerts in nginx's error log (above)"
fi
grep -E 'AddressSanitizer|LeakSanitizer|runtime error' "$tmp/logs/error.log" >&2 && fail "sanitizer reports (above)"

once_workers=$(grep ' /once/reward 200 ' "$tmp/logs/access.log" | cut -d' ' -f1 | sort -u | wc -l)
((once_workers >= 2)) || fail "the 40 rewards of one cookie reached $once_workers worker(s)"
echo "nginx_test: the 40 rewards of one cookie were served by $once_workers workers"
served=$(grep -c ' /load 200 ' "$tmp/logs/access.log" || true)
workers=$(grep ' /load 200 ' "$tmp/logs/access.log" | cut -d' ' -f1 | sort -u | wc -l)
((served > 2000)) || fail "wrk's requests are not in the access log ($served /load lines)"
((workers >= 2)) || fail "the load reached $workers worker(s); reuseport should spread it over 4"
pycheck "LMDB totals equal the requests served ($served /load by $workers workers)" "$(stats)" "
served = $served
arms = d['experiments']['load-x']['arms'].values()
assert sum(a['pulls'] for a in arms) == served, ('pulls', [a['pulls'] for a in arms], served)
assert sum(a['rewards'] for a in arms) == served, ('rewards', [a['rewards'] for a in arms], served)
color = d['experiments']['color']['arms'].values()
assert sum(a['pulls'] for a in color) == $new_visitors, ('color pulls', d)
assert sum(a['rewards'] for a in color) == 2, ('color rewards: jar and the first replayed copy', d)
once = d['experiments']['once']['arms'].values()
assert sum(a['rewards'] for a in once) == 1, ('one cookie through 4 workers', d)
txt = d['experiments']['txt']['arms'].values()
assert sum(a['rewards'] for a in txt) == 2, ('txt: once by the redirects, once by /rate', d)
assert sum(a['reward_sum'] for a in txt) == 1.25, ('txt reward sum: 1 + 0.25', d)"
echo "nginx_test: $served requests to /load by $workers workers; LMDB pulls and rewards match"

# ---- the access log records arm and probability ---------------------------------
grep -q "^[0-9]* /choose 200 arm=$arm prob=[0-9.]* reward=- txt=[a-z]* load=-\$" "$tmp/logs/access.log" ||
    fail "access log lacks arm and probability: $(grep ' /choose ' "$tmp/logs/access.log" | head -2)"
grep -q " /reward 200 arm=- prob=- reward=counted " "$tmp/logs/access.log" ||
    fail "access log lacks the reward result: $(grep ' /reward ' "$tmp/logs/access.log" | head -2)"
grep -q " /app 200 arm=$arm prob=[0-9.]* " "$tmp/logs/access.log" ||
    fail "access log of the proxied request lacks its (kept) arm"

# ids with '-' are written with '_' in variable names ($mab_arm_load_x)
grep -q " /load 200 arm=- prob=- reward=- txt=- load=[abc]\$" "$tmp/logs/access.log" ||
    fail "access log lacks \$mab_arm_load_x for experiment load-x: $(grep ' /load ' "$tmp/logs/access.log" | head -2)"

# ---- a second nginx: start, wait until it answers, stop ------------------------
# small_conf FILE USER_LINE MAB_CONFIG PORT EXTRA: one server with /choose,
# /reward, /plain (no mab), temp paths beside FILE.
small_conf() {
    local dir
    dir=$(dirname "$1")
    cat >"$1" <<EOF
load_module $module;
$2
events { worker_connections 64; }
http {
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    access_log off;
    mab_config $3;
    $5
    server {
        listen 127.0.0.1:$4;
        location = /choose { mab_choose color \$color; return 200 "\$mab_arm_color\n"; }
        location = /reward { mab_reward color; return 200 "\$mab_reward_color\n"; }
        location = /plain { return 200 "plain\n"; }
    }
}
EOF
}
pid2=""
start2() { # start2 CONF PREFIX PORT WORKERS: nginx in the background, pid in $pid2
    "${nginx_cmd[@]}" -p "$2" -c "$1" \
        -g "daemon off; master_process on; worker_processes $4; pid $2/nginx.pid; error_log $2/error.log info;" &
    pid2=$!
    # up when the plain location answers (a worker serves it)
    for _ in $(seq 100); do
        curl -s -m 5 -o /dev/null "http://127.0.0.1:$3/plain" && return 0
        kill -0 "$pid2" 2>/dev/null || break
        sleep 0.1
    done
    # not serving (a master left without workers, or nginx exited): stop it
    kill -KILL "$pid2" 2>/dev/null || true
    wait "$pid2" 2>/dev/null || true
    pid2=""
    return 1
}
stop2() {
    [[ -n $pid2 ]] || return 0
    kill -QUIT "$pid2" 2>/dev/null || true
    wait "$pid2" 2>/dev/null || true
    pid2=""
}
mnt=""
pub=""
cleanup2() {
    if [[ -n $pid2 ]] && kill -0 "$pid2" 2>/dev/null; then kill -KILL "$pid2"; fi
    if [[ -n $mnt ]] && mountpoint -q "$mnt"; then umount "$mnt"; fi
    if [[ -n $pub ]]; then rm -rf "$pub"; fi
    cleanup
}
trap cleanup2 EXIT

# ---- secrets read by the master: root master, `user nobody` workers, 0600 key ---
# The key as `mab keygen` writes it when run as root (0600, root-owned): the
# workers, running as nobody, cannot read it; the master reads it at
# configuration time and the workers inherit the keys.
if [[ $(id -u) -ne 0 ]] || ! id nobody >/dev/null 2>&1; then
    echo "=====================================================================" >&2
    echo "NOT RUN: the root-master / nobody-worker checks need root and a user" >&2
    echo "'nobody' (uid $(id -u)). The rest of nginx_test ran." >&2
    echo "=====================================================================" >&2
else
    nobody_group=$(id -gn nobody)
    pub=$(mktemp -d)
    chmod 755 "$pub"
    "$mab" keygen "$pub/mab.key" >/dev/null
    [[ $(stat -c '%U %a' "$pub/mab.key") == "root 600" ]] || fail "keygen as root: $(stat -c '%U %a' "$pub/mab.key")"
    mkdir "$pub/store" && chown nobody "$pub/store"
    sed -e 's|"path": "mab.lmdb"|"path": "store/mab.lmdb"|' "$tmp/mab.json" >"$pub/mab.json"
    chmod 644 "$pub/mab.json"
    port2=$(free_port)
    small_conf "$pub/nginx.conf" "user nobody $nobody_group;" "$pub/mab.json" "$port2" ""
    nginx_t "$pub/nginx.conf" || fail "nginx -t refused the nobody-worker config: $(cat "$tmp/t.out")"
    if ! start2 "$pub/nginx.conf" "$pub" "$port2" 2; then
        fail "nginx with nobody workers and a root-only key does not answer: $(tail -5 "$pub/error.log")"
    else
        req k1 -m 10 -c "$pub/jar" "http://127.0.0.1:$port2/choose"
        expect_status 200 "choose with nobody workers and a root-only key"
        [[ $body == green || $body == red ]] || fail "choose with nobody workers: '$body'"
        req k2 -m 10 -b "$pub/jar" "http://127.0.0.1:$port2/reward"
        [[ $status == 200 && $body == counted ]] || fail "reward with nobody workers: $status '$body'"
        workers_user=$(ps -o user= --ppid "$pid2" | sort -u | tr '\n' ' ')
        [[ $workers_user == "nobody " ]] || fail "workers run as '$workers_user', expected nobody"
        # A reload re-reads the key and checks again, in the running master.
        started=$(grep -c 'start worker process' "$pub/error.log")
        kill -HUP "$pid2"
        for _ in $(seq 300); do
            (($(grep -c 'start worker process' "$pub/error.log") >= started + 2)) && break
            sleep 0.1
        done
        (($(grep -c 'start worker process' "$pub/error.log") >= started + 2)) ||
            fail "no new workers after a reload: $(tail -5 "$pub/error.log")"
        req k3 -m 10 -b "$pub/jar" "http://127.0.0.1:$port2/choose"
        [[ $status == 200 && $body == "$(cat "$tmp/k1.b")" ]] || fail "choose after a reload: $status '$body'"
        # A reload the workers' user could not serve is refused; the workers stay.
        chmod 700 "$pub/store" && chown root "$pub/store"
        kill -HUP "$pid2"
        for _ in $(seq 300); do
            grep -q 'as a worker will' "$pub/error.log" && break
            sleep 0.1
        done
        grep -q 'as a worker will' "$pub/error.log" || fail "a reload onto a closed store was not refused: $(tail -5 "$pub/error.log")"
        req k4 -m 10 -b "$pub/jar" "http://127.0.0.1:$port2/choose"
        [[ $status == 200 ]] || fail "choose after a refused reload: $status '$body'"
        chown nobody "$pub/store"
        stop2
        sed -i '/as a worker will/d' "$pub/error.log"
        if grep -E '\[(alert|emerg)\]|AddressSanitizer|LeakSanitizer|runtime error' "$pub/error.log" >&2; then
            fail "alerts with nobody workers (above)"
        fi
    fi

    # What a worker cannot open is refused by nginx -t, naming it.
    mkdir -p "$pub/closed" && chmod 700 "$pub/closed"
    sed -e 's|"path": "mab.lmdb"|"path": "closed/mab.lmdb"|' "$tmp/mab.json" >"$pub/closed.json"
    small_conf "$pub/bad.conf" "user nobody $nobody_group;" "$pub/closed.json" "$port2" ""
    if nginx_t "$pub/bad.conf"; then
        fail "nginx -t accepted a store the workers' user cannot enter"
    else
        for needle in '"mab_config" directive' 'closed/mab.lmdb' 'as a worker will' 'bad.conf:'; do
            grep -qF -- "$needle" "$tmp/t.out" || fail "nginx -t on an unreadable store lacks '$needle': $(cat "$tmp/t.out")"
        done
        echo "nginx_test: nginx -t on a store nobody cannot enter: $(grep -o '"mab_config" directive.*' "$tmp/t.out")"
    fi
    cp "$pub/mab.json" "$pub/private.json" && chmod 600 "$pub/private.json"
    small_conf "$pub/bad.conf" "user nobody $nobody_group;" "$pub/private.json" "$port2" ""
    if nginx_t "$pub/bad.conf"; then
        fail "nginx -t accepted a mab config the workers' user cannot read"
    else
        grep -qF 'private.json' "$tmp/t.out" || fail "nginx -t on a private mab config: $(cat "$tmp/t.out")"
    fi
fi

# ---- sync "always" on a full disk: 503, and the failure streak in the log --------
# json_file (one worker) on a small tmpfs mounted here: LMDB on a full disk
# is another matter (issue 10, item 3).
mnt=$tmp/full
mkdir -p "$mnt"
if ! mount -t tmpfs -o size=512k tmpfs "$mnt" 2>"$tmp/mount.err"; then
    echo "=====================================================================" >&2
    echo "NOT RUN: the full-disk checks cannot mount a tmpfs: $(cat "$tmp/mount.err")" >&2
    echo "=====================================================================" >&2
    mnt=""
else
    sed -e "s|\"plugin\": \"lmdb\", \"path\": \"mab.lmdb\", \"sync\": {\"interval_ms\": 50}|\"plugin\": \"json_file\", \"path\": \"$mnt/state.json\", \"sync\": \"always\"|" \
        "$tmp/mab.json" >"$tmp/full.json"
    grep -q '"sync": "always"' "$tmp/full.json" || fail "test setup: no sync always config"
    mkdir -p "$tmp/full-prefix"
    port3=$(free_port)
    small_conf "$tmp/full-prefix/nginx.conf" "$user_line" "$tmp/full.json" "$port3" \
        "mab_storage_log_interval 1s;"
    log3=$tmp/full-prefix/error.log
    if ! start2 "$tmp/full-prefix/nginx.conf" "$tmp/full-prefix" "$port3" 1; then
        fail "nginx on the tmpfs store does not answer: $(tail -5 "$log3")"
    else
        b3=http://127.0.0.1:$port3
        req f1 -c "$tmp/jarf" "$b3/choose"
        req f2 -b "$tmp/jarf" "$b3/reward"
        [[ $status == 200 && $body == counted ]] || fail "reward before the disk is full: $status '$body'"
        dd if=/dev/zero of="$mnt/filler" bs=4k 2>/dev/null || true
        # Each visitor's reward must be durable before it is answered as
        # counted. json_file appends to its journal, whose last page may still
        # have room: rewards are counted until one is not, then the next two
        # (with everything refused still queued) are refused as well.
        codes="" refused=0
        for i in $(seq 300); do
            req fc -c "$tmp/jarf$i" "$b3/choose"
            req fr -b "$tmp/jarf$i" "$b3/reward"
            if [[ $status == 503 ]]; then
                codes="$codes$status "
                refused=$((refused + 1))
                ((refused < 3)) || break
            else
                [[ $refused == 0 && $status == 200 && $body == counted ]] ||
                    fail "reward $i on a full disk under sync always: $status '$body' after $refused 503s"
            fi
        done
        [[ $codes == "503 503 503 " ]] || fail "rewards on a full disk under sync always: $codes(want 503s)"
        grep -q 'writing to storage (json_file) failed: .*No space left on device' "$log3" ||
            fail "the first storage failure is not in the error log: $(grep mab_config "$log3" | tail -3)"
        # libmab's writer retries what is queued; a summary follows once
        # mab_storage_log_interval (1 s) has passed with more failures.
        for _ in $(seq 300); do
            grep -q 'writing to storage (json_file) still fails: [0-9]* failed writes' "$log3" && break
            sleep 0.1
        done
        grep -q 'writing to storage (json_file) still fails' "$log3" ||
            fail "no summary of the failure streak in the error log: $(grep mab_config "$log3" | tail -3)"
        [[ $(grep -c 'writing to storage (json_file) failed' "$log3") == 1 ]] ||
            fail "the streak is logged more than once as a first failure: $(grep -c 'writing to storage (json_file) failed' "$log3")"
        rm -f "$mnt/filler"
        for _ in $(seq 300); do
            grep -q 'writing to storage (json_file) succeeds again, after [0-9]* failed writes' "$log3" && break
            sleep 0.1
        done
        grep -q 'writing to storage (json_file) succeeds again' "$log3" ||
            fail "the recovery is not in the error log: $(grep mab_config "$log3" | tail -3)"
        req f4 -c "$tmp/jarf4" "$b3/choose"
        req f5 -b "$tmp/jarf4" "$b3/reward"
        [[ $status == 200 && $body == counted ]] || fail "reward after the disk has room again: $status '$body'"
        stop2
        if grep -E 'AddressSanitizer|LeakSanitizer|runtime error' "$log3" >&2; then
            fail "sanitizer reports with the full disk (above)"
        fi
        echo "nginx_test: the full-disk streak in the error log:"
        grep -o 'mab_config .*' "$log3" | grep 'writing to storage' | sed 's/^/    /'
    fi
    umount "$mnt"
    mnt=""
fi

if ((failures)); then
    echo "nginx_test: $failures failure(s); nginx error log:" >&2
    grep -v 'keepalive connection' "$tmp/logs/error.log" | tail -40 >&2
    exit 1
fi
echo "nginx_test: all checks passed"
