#!/usr/bin/env bash
# mabd_admin_test.sh BUILD_DIR - mabd's admin routes against other sites:
# a Host that is not mabd's (DNS rebinding) is refused, a form POST to
# /v1/reset changes nothing, a cross-site reward riding on the cookie is
# refused, mabd.server_names admits a proxy's name; and off loopback (a
# private network namespace, where 0.0.0.0 reaches only its own lo) the admin
# routes are closed without a token, with a warning at start-up.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mabd_test_begin "$1"
wait_log() { # wait_log TEXT: until the log holds TEXT (10 s)
    for _ in $(seq 100); do
        grep -q "$1" "$tmp/log" && return 0
        sleep 0.1
    done
    fail "timed out waiting for '$1' in the log:"
    cat "$tmp/log" >&2
    return 1
}

$mab keygen "$tmp/mab.key" >/dev/null
echo "admin-token-0123456789abcdef" >"$tmp/admin.token"
write_config() { # write_config MABD_OBJECT
    cat >"$tmp/mab.json" <<EOF
{
  "plugin_path": ["$build/plugins"],
  "storage": {"plugin": "json_file", "path": "state.json", "sync": {"interval_ms": 3600000}},
  "secret_file": "mab.key",
  "mabd": $1,
  "experiments": {
    "color": {"policy": {"plugin": "epsilon_greedy"}, "arms": {"green": 1, "red": 2}}
  }
}
EOF
}
pulls() { # total pulls of "color" by /v1/stats
    req stats "$base/v1/stats"
    printf '%s' "$body" | $py -c '
import json, sys
print(sum(a["pulls"] for a in json.load(sys.stdin)["experiments"]["color"]["arms"].values()))'
}

# ---- loopback, no token: admin routes open, but only to mabd's own Host -------
write_config '{}'
mabd_start
for v in 1 2 3; do curl -s -o /dev/null "$base/v1/choose/color"; done

for host in "127.0.0.1:$port" "localhost:$port" "127.0.0.5:$port"; do
    req host_ok -H "Host: $host" "$base/v1/stats"
    expect_status 200 "stats with Host $host"
done
for host in "evil.example:$port" "evil.example" "127.0.0.1:1" "localhost.evil.example:$port" \
            "127.0.0.1.evil.example:$port"; do
    for route in /v1/stats / /v1/dashboard /metrics; do
        req host_bad -H "Host: $host" "$base$route"
        expect_status 421 "$route with Host $host (DNS rebinding)"
    done
done
req rebind_reset -H "Host: evil.example:$port" -H 'Content-Type: application/json' -X POST \
    "$base/v1/reset/color"
expect_status 421 "reset with a foreign Host"
[[ $(pulls) == 3 ]] || fail "a reset with a foreign Host changed the counters"

# What an HTML form on another page can send: none may reset.
req form -X POST -d 'x=1' "$base/v1/reset/color"
expect_status 403 "form POST (urlencoded) to /v1/reset"
req form_text -X POST -H 'Content-Type: text/plain' -d '{}' "$base/v1/reset/color"
expect_status 403 "form POST (text/plain) to /v1/reset"
req form_multi -X POST -F 'x=1' "$base/v1/reset/color"
expect_status 403 "form POST (multipart) to /v1/reset"
req form_none -X POST "$base/v1/reset/color"
expect_status 403 "POST /v1/reset without a content type"
pycheck "form refusal" "$body" 'assert "application/json" in d["error"], d'
[[ $(pulls) == 3 ]] || fail "a form POST changed the counters"
req reset_json -X POST -H 'Content-Type: application/json; charset=utf-8' "$base/v1/reset/color"
expect_status 200 "reset with Content-Type application/json"
[[ $(pulls) == 0 ]] || fail "reset with application/json did not reset"
curl -s -o /dev/null "$base/v1/choose/color"
req reset_header -X POST -H 'X-MAB-Request: 1' "$base/v1/reset/color"
expect_status 200 "reset with X-MAB-Request"
[[ $(pulls) == 0 ]] || fail "reset with X-MAB-Request did not reset"

# Rewards: a cross-site request riding on the cookie is refused; the site's
# own pages, servers (no Sec-Fetch-Site) and token holders are served.
jar=$tmp/jar
curl -s -o /dev/null -c "$jar" -b "$jar" "$base/v1/choose/color"
req xsite -b "$jar" -X POST -H 'Sec-Fetch-Site: cross-site' -H 'Content-Type: text/plain' \
    -d '{"value": 1}' "$base/v1/reward/color"
expect_status 403 "cross-site reward through the cookie"
req samesite -c "$jar" -b "$jar" -X POST -H 'Sec-Fetch-Site: same-origin' -H 'Content-Type: text/plain' \
    -d '{"value": 1}' "$base/v1/reward/color"
expect_status 200 "same-origin reward"
pycheck "same-origin reward counted" "$body" 'assert d["counted"] is True, d'
req tok "$base/v1/choose/color?token="
token=$(printf '%s' "$body" | $py -c 'import json,sys; print(json.load(sys.stdin)["$token"])')
req xsite_token -X POST -H 'Sec-Fetch-Site: cross-site' -d "{\"token\": \"$token\"}" "$base/v1/reward/color"
expect_status 200 "cross-site reward with the token"
pycheck "token reward counted" "$body" 'assert d["counted"] is True, d'

# mabd.server_names: a reverse proxy's name, on any port or on one.
write_config '{"server_names": ["AB.example.com", "stats.example.com:8443"]}'
kill -HUP "$pid"
wait_log "reloaded"
for host in ab.example.com ab.example.com:443 AB.Example.Com:8080 stats.example.com:8443; do
    req named -H "Host: $host" "$base/v1/stats"
    expect_status 200 "stats with Host $host in server_names"
done
for host in stats.example.com stats.example.com:80 x.ab.example.com; do
    req unnamed -H "Host: $host" "$base/v1/stats"
    expect_status 421 "stats with Host $host (not in server_names)"
done
mabd_stop
grep -q "warning" "$tmp/log" && fail "a warning on loopback: $(grep warning "$tmp/log")"

# ---- off loopback: in a private network namespace --------------------------
offloop() { # offloop MABD_OBJECT: run mabd on 0.0.0.0 in a new netns; sets $netlog, $netout
    write_config "$1"
    netlog=$tmp/net.log netout=$tmp/net.out
    unshare -n env MABD="$mabd" TMPD="$tmp" bash -c '
set -e
ip link set lo up
cd "$TMPD"
"$MABD" --config mab.json --listen 0.0.0.0:0 2>"$TMPD/net.log" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$TMPD/net.log" && break; sleep 0.1; done
port=$(grep -o "http://0.0.0.0:[0-9]*" "$TMPD/net.log" | head -1 | cut -d: -f3)
for what in none bearer; do
    auth=()
    [[ $what == bearer ]] && auth=(-H "Authorization: Bearer admin-token-0123456789abcdef")
    echo "$what $(curl -s -o /dev/null -w "%{http_code}" "${auth[@]}" "http://127.0.0.1:$port/v1/stats")"
done
echo "choose $(curl -s -o /dev/null -w "%{http_code}" "http://127.0.0.1:$port/v1/choose/color")"
kill -TERM $pid
wait $pid' >"$tmp/net.out" 2>"$tmp/net.err"
}
if ! unshare -n true 2>"$tmp/unshare.err"; then
    echo "SKIPPED: mabd_admin_test cannot create a network namespace ($(cat "$tmp/unshare.err")):" >&2
    echo "SKIPPED: admin routes off loopback were NOT tested" >&2
    ((failures == 0)) && exit 77
else
    offloop '{}'
    grep -q "^none 403$" "$netout" || fail "no token, 0.0.0.0: stats answered $(cat "$netout")"
    grep -q "^bearer 403$" "$netout" || fail "no token configured, 0.0.0.0: stats with a bearer: $(cat "$netout")"
    grep -q "^choose 200$" "$netout" || fail "0.0.0.0: choose: $(cat "$netout") $(cat "$tmp/net.err")"
    grep -q "warning: listening on the non-loopback address 0.0.0.0 without mabd.admin_token_file" "$netlog" ||
        fail "no start-up warning for closed admin routes: $(cat "$netlog")"
    offloop '{"admin_token_file": "admin.token"}'
    grep -q "^none 401$" "$netout" || fail "token, 0.0.0.0: stats without it answered $(cat "$netout")"
    grep -q "^bearer 200$" "$netout" || fail "token, 0.0.0.0: stats with it answered $(cat "$netout")"
    grep -q "warning: the dashboard and admin routes are open on the non-loopback address 0.0.0.0" "$netlog" ||
        fail "no start-up warning for admin routes open off loopback: $(cat "$netlog")"
fi

if ((failures)); then
    echo "mabd_admin_test: $failures failure(s); mabd log:" >&2
    cat "$tmp/log" >&2
    exit 1
fi
echo "mabd_admin_test: all checks passed"
