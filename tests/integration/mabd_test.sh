#!/usr/bin/env bash
# mabd_test.sh BUILD_DIR SOURCE_DIR - the real mabd on a free loopback port,
# driven by curl with a cookie jar: sticky choice, rewards once, replays,
# the redirect guard, admin auth, malformed requests, SIGHUP reloads (an
# added arm keeps counts; a bad config keeps the old one serving), the
# dashboard in headless Chromium (screenshot kept in BUILD_DIR/tests), and
# SIGTERM writing the counters to storage.
set -euo pipefail

build=$(cd "$1" && pwd)
mabd=$build/bin/mabd
mab=$build/bin/mab
py=/usr/bin/python3
tmp=$(mktemp -d)
pid=""
more_pids=() # further mabd processes (reward_once_across_mabds)
cleanup() {
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    for p in "${more_pids[@]}"; do
        if kill -0 "$p" 2>/dev/null; then kill -KILL "$p"; fi
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
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
write_config() { # write_config COLOR_ARMS [STORAGE_PATH]
    cat >"$tmp/mab.json" <<EOF
{
  "plugin_path": ["$build/plugins"],
  "storage": {"plugin": "json_file", "path": "${2:-state.json}", "sync": {"interval_ms": 3600000}},
  "secret_file": "mab.key",
  "redirect_allow": ["https://shop.example.com/"],
  "debug_header": true,
  "mabd": {"admin_token_file": "admin.token", "series": {"interval_s": 1}, "timeout_s": 5},
  "experiments": {
    "color": {"policy": {"plugin": "epsilon_greedy", "epsilon": 0.3}, "arms": $1},
    "txt": {"policy": {"plugin": "ucb1"}, "arms": {"casual": "Hey", "neutral": "Add to cart"}},
    "fair": {"policy": {"plugin": "exp3"}, "arms": {"a": 1, "b": 2, "c": 3}}
  }
}
EOF
}
write_config '{"green": "#0f0", "red": "#f00"}'

$mabd --help | grep -q "/v1/choose/EXP" || fail "--help does not list the routes"
if $mabd --config "$tmp/missing.json" 2>"$tmp/err"; then fail "mabd started without a config"; fi
grep -q "missing.json" "$tmp/err" || fail "missing config error does not name the file: $(cat "$tmp/err")"
# The "mabd" section is mabd's: a typo in it, or a non-object, stops the start
# with the JSON path named.
sed 's/"timeout_s": 5/"timeout_s": 5, "listen_typo": "x"/' "$tmp/mab.json" >"$tmp/typo.json"
if $mabd --config "$tmp/typo.json" 2>"$tmp/err"; then fail "mabd started with a typo in its section"; fi
grep -qF 'typo.json: mabd: unknown key "listen_typo"' "$tmp/err" ||
    fail "mabd section typo: $(cat "$tmp/err")"
sed 's/"timeout_s": 5/"timeout_s": 0/' "$tmp/mab.json" >"$tmp/typo.json"
if $mabd --config "$tmp/typo.json" 2>"$tmp/err"; then fail "mabd started with timeout_s 0"; fi
grep -qF 'typo.json: mabd.timeout_s: 0 is outside [1, 3600]' "$tmp/err" ||
    fail "mabd.timeout_s out of range: $(cat "$tmp/err")"
sed 's/"series": {"interval_s": 1}/"series": {"interval": 1}/' "$tmp/mab.json" >"$tmp/typo.json"
if $mabd --config "$tmp/typo.json" 2>"$tmp/err"; then fail "mabd started with a typo in series"; fi
grep -qF 'typo.json: mabd.series: unknown key "interval"' "$tmp/err" ||
    fail "mabd.series typo: $(cat "$tmp/err")"
# mab check reads a config holding the mabd section (and only claimed keys).
$mab check "$tmp/mab.json" >/dev/null 2>"$tmp/err" || fail "mab check refused mabd's config: $(cat "$tmp/err")"
sed 's/"mabd":/"mabdd":/' "$tmp/mab.json" >"$tmp/typo.json"
if $mab check "$tmp/typo.json" >/dev/null 2>"$tmp/err"; then fail "mab check passed a section nobody reads"; fi
grep -qF 'unknown key "mabdd"' "$tmp/err" || fail "mab check, unknown section: $(cat "$tmp/err")"

(cd "$tmp" && exec "$mabd" --config mab.json --listen 127.0.0.1:0 2>"$tmp/log") &
pid=$!
wait_log "listening on"
port=$(grep -o 'http://127.0.0.1:[0-9]*' "$tmp/log" | head -1 | cut -d: -f3)
base=http://127.0.0.1:$port
auth=(-H "Authorization: Bearer admin-token-0123456789abcdef")
jar=$tmp/jar

stats() { req stats "${auth[@]}" "$base/v1/stats"; echo "$body"; }

# ---- choose: new assignment, then sticky ------------------------------
req choose1 -c "$jar" -b "$jar" "$base/v1/choose/color,txt"
expect_status 200 "first choose"
pycheck "first choose" "$body" 'assert set(d) == {"color", "txt"}, d
assert d["color"]["arm"] in ("green", "red") and d["color"]["value"] in ("#0f0", "#f00")
assert "$token" not in d'
first=$body
[[ -n $(header choose1 Set-Cookie) ]] || fail "first choose sent no Set-Cookie"
[[ $(header choose1 X-MAB-Debug) == "STORE; color:"*";txt:"* ]] ||
    fail "debug header: $(header choose1 X-MAB-Debug)"
[[ $(header choose1 Set-Cookie) == *"HttpOnly; SameSite=Lax"* ]] || fail "cookie attributes"

for i in 1 2 3; do
    req choose2 -c "$jar" -b "$jar" "$base/v1/choose/color,txt"
    [[ $body == "$first" ]] || fail "repeat $i changed the arms: $first -> $body"
    [[ -z $(header choose2 Set-Cookie) ]] || fail "repeat $i sent a new cookie"
    [[ $(header choose2 X-MAB-Debug) == "SAVED; "* ]] || fail "repeat debug header"
done
pycheck "one pull per experiment" "$(stats)" '
for e in ("color", "txt"):
    assert sum(a["pulls"] for a in d["experiments"][e]["arms"].values()) == 1, d'

# ---- reward once; replay refused ----------------------------------------
cp "$jar" "$tmp/jar.before"
req reward1 -c "$jar" -b "$jar" -X POST -d '{"value": 1}' "$base/v1/reward/color"
expect_status 200 "reward"
pycheck "reward counted" "$body" 'assert d["counted"] is True and d["reason"] is None, d'
req reward2 -c "$jar" -b "$jar" -X POST "$base/v1/reward/color"
pycheck "second reward" "$body" 'assert d == {"counted": False, "reason": "already_rewarded", "arm": None}, d'
req replay -b "$tmp/jar.before" -X POST "$base/v1/reward/color"
pycheck "replayed cookie" "$body" 'assert d["counted"] is False and d["reason"] == "replayed", d'
req nocookie -X POST "$base/v1/reward/color"
pycheck "no cookie" "$body" 'assert d["reason"] == "no_cookie", d'
req forged -H "Cookie: mab=AAAAforged" -X POST "$base/v1/reward/color"
pycheck "forged cookie" "$body" 'assert d["reason"] == "invalid_cookie", d'
pycheck "one reward" "$(stats)" '
assert sum(a["rewards"] for a in d["experiments"]["color"]["arms"].values()) == 1, d'

# ---- redirect and the open-redirect guard ---------------------------------
req redirect -c "$jar" -b "$jar" "$base/r/txt?to=/thanks&value=1"
expect_status 303 "redirect"
[[ $(header redirect Location) == "/thanks" ]] || fail "Location: $(header redirect Location)"
req redirect_abs -b "$jar" "$base/r/txt?to=https%3A%2F%2Fshop.example.com%2Fcheckout"
expect_status 303 "allowed absolute redirect"
for target in '//evil.example' '/%5Cevil.example' 'https://evil.example/' \
              'https://shop.example.com.evil/' '%2F%2Fevil.example' 'javascript:alert(1)'; do
    enc=$($py -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$target")
    req refused -b "$jar" "$base/r/txt?to=$enc"
    expect_status 400 "open redirect to $target"
    [[ -z $(header refused Location) ]] || fail "refused redirect sent a Location"
    pycheck "refused redirect body" "$body" 'assert "redirect refused" in d["error"], d'
done
pycheck "txt rewarded once by the redirects" "$(stats)" '
assert sum(a["rewards"] for a in d["experiments"]["txt"]["arms"].values()) == 1, d'

# ---- callers without cookies: the token ------------------------------------
req token1 "$base/v1/choose/txt?token="
pycheck "token issued" "$body" 'assert len(d["$token"]) > 40, d'
token=$(printf '%s' "$body" | $py -c 'import json,sys; print(json.load(sys.stdin)["$token"])')
req token2 "$base/v1/choose/txt?token=$token"
[[ $(printf '%s' "$body" | $py -c 'import json,sys; print(json.load(sys.stdin)["txt"]["arm"])') == \
   $(printf '%s' "$(cat "$tmp/token1.b")" | $py -c 'import json,sys; print(json.load(sys.stdin)["txt"]["arm"])') ]] ||
    fail "token is not sticky"
req token3 -X POST -d "{\"token\": \"$token\", \"value\": 1}" "$base/v1/reward/txt"
pycheck "reward by token" "$body" 'assert d["counted"] is True and len(d["token"]) > 40, d'

# ---- admin routes, health, malformed requests ------------------------------
req healthz "$base/healthz"
expect_status 200 "healthz"
for route in / /v1/stats /metrics /v1/report/color; do
    req noauth "$base$route"
    expect_status 401 "admin route $route without token"
done
req badauth -H "Authorization: Bearer wrong" "$base/v1/stats"
expect_status 401 "wrong admin token"
req metrics "${auth[@]}" "$base/metrics"
expect_status 200 "metrics"
for needle in 'mab_pulls_total{experiment="color",arm="green"}' 'mab_reward_sum{experiment="txt"' \
              'mab_choose_duration_seconds_bucket{le="+Inf"}' 'mab_cookies_forged_total 1' \
              'mab_replays_refused_total 1' 'mab_storage_flush_errors_total 0' \
              'mab_redirects_refused_total 6'; do
    [[ $body == *"$needle"* ]] || fail "metrics lack $needle"
done
# The report: the core's document; its P(best) and expected loss in /metrics.
req report "${auth[@]}" "$base/v1/report/color"
expect_status 200 "GET /v1/report/color"
report_color=$body
METRICS=$(cat "$tmp/metrics.b") STATS=$(stats) pycheck "/v1/report/color" "$report_color" '
stats = json.loads(os.environ["STATS"])["experiments"]["color"]["arms"]
assert d["experiment"] == "color" and d["policy"] == "epsilon_greedy", d
assert d["policy_params"] == {"plugin": "epsilon_greedy", "epsilon": 0.3}, d
assert d["winner_rule"] == {"p_best": 0.95, "expected_loss": 0.001} and d["model"] == "beta", d
assert list(d["arms"]) == ["green", "red"] and d["arms"] == stats, (d, stats)
assert d["leader"] in d["arms"] and d["winner"] is False, d
assert d["recommendation"].startswith("keep exploring: P(best) "), d
assert abs(sum(a["p_best"] for a in d["arms"].values()) - 1) < 1e-9, d
assert d["srm_p_value"] is None and d["holdout"] is None and "srm_p_value" in d["not_available"], d
assert d["srm_status"].startswith("not available: the policy reports no probabilities"), d
lines = os.environ["METRICS"].splitlines()
for family, field in (("mab_arm_p_best", "p_best"), ("mab_arm_expected_loss", "expected_loss")):
    assert "# TYPE %s gauge" % family in lines, family
    for arm, a in d["arms"].items():
        key = "%s{experiment=\"color\",arm=\"%s\"} " % (family, arm)
        got = [float(l[len(key):]) for l in lines if l.startswith(key)]
        assert got == [a[field]], (family, arm, got, a)
assert any(l.startswith("mab_arm_p_best{experiment=\"txt\",arm=\"casual\"} ") for l in lines)'
# The sample-ratio check: exp3 reports the probabilities of every arm, so
# "fair" has a p-value, in the report and in /metrics; ABI 1 policies
# (color, txt) have none, and no sample is made up for them.
for _ in $(seq 40); do req srm_choose "$base/v1/choose/fair"; done
expect_status 200 "choose fair"
req srm_report "${auth[@]}" "$base/v1/report/fair"
srm_report=$body
req srm_metrics "${auth[@]}" "$base/metrics"
METRICS=$body pycheck "sample-ratio check in /v1/report and /metrics" "$srm_report" '
assert d["pulls"] == 40 and d["srm_status"].startswith("ok: p = "), d
assert 0.001 <= d["srm_p_value"] <= 1 and "srm_p_value" not in d["not_available"], d
lines = os.environ["METRICS"].splitlines()
assert "# TYPE mab_experiment_srm_p_value gauge" in lines, lines
assert any(l.startswith("# HELP mab_experiment_srm_p_value ") for l in lines), lines
key = "mab_experiment_srm_p_value{experiment=\"fair\"} "
assert [float(l[len(key):]) for l in lines if l.startswith(key)] == [d["srm_p_value"]], lines
assert not any(l.startswith("mab_experiment_srm_p_value{experiment=\"color\"}") for l in lines)'
req report_again "${auth[@]}" "$base/v1/report/color"
[[ $body == "$report_color" ]] || fail "the same counters gave another report: $report_color then $body"
req report_unknown "${auth[@]}" "$base/v1/report/nope"
expect_status 404 "report of an unknown experiment"
pycheck "report of an unknown experiment" "$body" 'assert "no experiment \"nope\"" in d["error"], d'
req report_bad "${auth[@]}" "$base/v1/report/bad%21id"
expect_status 400 "report of a malformed id"
req report_post "${auth[@]}" -X POST -H 'Content-Type: application/json' "$base/v1/report/color"
expect_status 405 "POST /v1/report"
req badjson -X POST -d 'not json' "$base/v1/reward/color"
expect_status 400 "malformed reward body"
pycheck "malformed body error" "$body" 'assert "JSON object" in d["error"], d'
req badkey -X POST -d '{"valeu": 1}' "$base/v1/reward/color"
expect_status 400 "unknown body key"
head -c 70000 /dev/zero | tr '\0' 'x' >"$tmp/big"
req big -X POST --data-binary @"$tmp/big" "$base/v1/reward/color"
expect_status 413 "body over 64 KiB"
req range -b "$jar" -X POST -d '{"value": 5}' "$base/v1/reward/txt"
expect_status 400 "reward out of range"
req unknown "$base/v1/choose/nope"
expect_status 404 "unknown experiment"
req badid "$base/v1/choose/bad%21id"
expect_status 400 "malformed experiment id"
req noroute "$base/nothing"
expect_status 404 "unknown route"
req method -X DELETE "$base/v1/choose/color"
expect_status 405 "DELETE"
req resetget "${auth[@]}" "$base/v1/reset/txt"
expect_status 405 "GET reset"

# ---- SIGHUP: an added arm keeps every count ---------------------------------
before=$(stats)
write_config '{"green": "#0f0", "red": "#f00", "blue": "#00f"}'
kill -HUP "$pid"
wait_log "reloaded"
after=$(stats)
export BEFORE="$before"
pycheck "reload keeps counts" "$after" '
before = json.loads(os.environ["BEFORE"])
for e, exp in before["experiments"].items():
    for arm, st in exp["arms"].items():
        # The counters; P(best) and the rest follow the new set of arms.
        now = d["experiments"][e]["arms"][arm]
        assert [now[k] for k in ("pulls", "rewards", "reward_sum", "mean")] == [
            st[k] for k in ("pulls", "rewards", "reward_sum", "mean")], (e, arm)
assert d["experiments"]["color"]["arms"]["blue"]["pulls"] == 0, d'
req sticky_after_reload -b "$jar" "$base/v1/choose/color"
export FIRST="$first"
pycheck "sticky across reload" "$body" '
first = json.loads(os.environ["FIRST"])
assert d["color"]["arm"] == first["color"]["arm"], (d, first)'

# ---- SIGHUP with a bad config: refused, the old one keeps serving -----------
cp "$tmp/mab.json" "$tmp/good.json"
echo '{"experiments": ' >"$tmp/mab.json"
kill -HUP "$pid"
wait_log "reload refused"
req after_bad -b "$jar" "$base/v1/choose/color,txt"
expect_status 200 "choose after a refused reload"
# A config that is valid, whose store passes the read-only check but cannot
# open (another process holds it): the previous one is reopened and keeps
# serving with its counts. (A store that cannot even be read, such as one in
# a missing directory, is refused by the check first: mabd_ops_test.)
exec {held}>"$tmp/held.json.lock"
flock -n "$held" || fail "cannot lock held.json.lock"
write_config '{"green": "#0f0", "red": "#f00", "blue": "#00f"}' "held.json"
kill -HUP "$pid"
wait_log "reopening the previous config"
exec {held}>&-
req after_storage -b "$jar" "$base/v1/choose/color"
expect_status 200 "choose after a storage failure on reload"
pycheck "counts kept after failed reloads" "$(stats)" '
before = json.loads(os.environ["BEFORE"])
assert d["experiments"]["color"]["arms"]["green"]["pulls"] >= before["experiments"]["color"]["arms"]["green"]["pulls"]
assert "blue" in d["experiments"]["color"]["arms"], d'
cp "$tmp/good.json" "$tmp/mab.json"

# ---- the dashboard in headless Chromium -------------------------------------
for v in $(seq 1 40); do
    curl -s -o /dev/null -c "$tmp/v$v" -b "$tmp/v$v" "$base/v1/choose/color,txt"
    if ((v % 4 == 0)); then
        curl -s -o /dev/null -b "$tmp/v$v" "$base/r/color,txt?to=/thanks"
    fi
    rm -f "$tmp/v$v"
    ((v % 20 == 0)) && sleep 1.2
done
sleep 1.2
chromium_bin=$(command -v chromium || command -v chromium-browser || true)
if [[ -z $chromium_bin ]]; then
    fail "chromium is not installed (scripts/deps installs Debian's chromium): the dashboard was NOT tested"
else
    profile=$(mktemp -d)
    chrome=("$chromium_bin" --headless --no-sandbox --disable-gpu --disable-background-networking
            --disable-component-update --disable-sync --no-first-run --user-data-dir="$profile")
    url="$base/?access_token=admin-token-0123456789abcdef"
    if ! timeout 90 "${chrome[@]}" --virtual-time-budget=10000 --dump-dom "$url" >"$tmp/dom.html" 2>"$tmp/chromium.err"; then
        fail "chromium --dump-dom failed: $(tail -5 "$tmp/chromium.err")"
    fi
    export STATS REPORTS
    STATS=$(stats)
    REPORTS=$(for e in color txt; do req "report_$e" "${auth[@]}" "$base/v1/report/$e"; echo "$body"; done)
    $py - "$tmp/dom.html" <<'EOF' || fail "dashboard DOM check (above)"
import html.parser, json, os, sys
stats = json.loads(os.environ["STATS"])
reports = {r["experiment"]: r for r in map(json.loads, os.environ["REPORTS"].splitlines())}
class Rows(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(); self.rows = {}; self.row = None; self.cell = None; self.paths = 0
        self.section = None; self.badges = {}; self.texts = {}; self.text = None; self.swatches = {}
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and "data-experiment" in a:
            self.section = a["data-experiment"]
        if tag == "span" and "data-leader" in a:
            self.badges[self.section] = a["data-leader"]; self.text = ("badge", self.section)
        elif tag == "p" and "recommendation" in a.get("class", ""):
            self.text = ("recommendation", self.section)
        elif tag == "div" and "policy" in a.get("class", "").split():
            self.text = ("policy", self.section)
        if tag == "tr" and "data-arm" in a:
            self.row = a["data-arm"]; self.rows[self.row] = {}
        elif tag == "td" and self.row:
            self.cell = a.get("class")
        elif tag == "span" and self.row and a.get("class") == "swatch":
            self.swatches[self.row] = (a.get("data-color"), a.get("style", ""))
        elif tag == "path" and "data-arm" in a:
            self.paths += 1
    def handle_endtag(self, tag):
        if tag == "tr": self.row = None
        if tag == "td": self.cell = None
        if tag in ("span", "p", "div"): self.text = None
    def handle_data(self, data):
        if self.text:
            self.texts[self.text] = self.texts.get(self.text, "") + data
        if self.row and self.cell:
            self.rows[self.row][self.cell] = self.rows[self.row].get(self.cell, "") + data
p = Rows(); p.feed(open(sys.argv[1]).read())
ok = True
def problem(text):
    global ok
    print("dashboard: " + text, file=sys.stderr); ok = False
def prob(v):
    return ">0.999" if v >= 0.9995 else "<0.001" if v < 0.0005 else "%.3f" % v
# The leader badge, the recommendation and the policy with its parameters,
# as the core's report says; P(best) and expected loss per arm.
for e, r in reports.items():
    if p.badges.get(e) != r["leader"]:
        problem(f"{e}: leader badge {p.badges.get(e)!r}, the report says {r['leader']!r}")
    if p.texts.get(("recommendation", e)) != r["recommendation"]:
        problem(f"{e}: recommendation {p.texts.get(('recommendation', e))!r}, report {r['recommendation']!r}")
    policy = p.texts.get(("policy", e), "")
    if not policy.startswith(f"policy {r['policy']} (") or (e == "color" and "epsilon 0.3" not in policy):
        problem(f"{e}: policy line {policy!r}")
    for arm, a in r["arms"].items():
        row = p.rows.get(f"{e}/{arm}", {})
        if row.get("p_best") != prob(a["p_best"]):
            problem(f"{e}/{arm}: P(best) cell {row.get('p_best')!r}, report {a['p_best']}")
        if not row.get("expected_loss") or abs(float(row["expected_loss"]) - a["expected_loss"]) > 0.05 * a["expected_loss"] + 1e-12:
            problem(f"{e}/{arm}: expected loss cell {row.get('expected_loss')!r}, report {a['expected_loss']}")
# Colours: an arm valued "#0f0" is drawn green (whatever its position); an
# arm whose value is no colour gets the palette colour of its id's FNV-1a.
palette = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563", "#65a30d", "#9333ea"]
def fnv(s):
    h = 0x811c9dc5
    for b in s.encode():
        h = ((h ^ b) * 0x01000193) & 0xffffffff
    return h
for row, want, rgb in (("color/green", "#0f0", "rgb(0, 255, 0)"), ("color/red", "#f00", "rgb(255, 0, 0)"),
                       ("txt/casual", palette[fnv("casual") % 10], None), ("txt/neutral", palette[fnv("neutral") % 10], None)):
    color, style = p.swatches.get(row, (None, ""))
    if color != want or (rgb and rgb not in style):
        problem(f"{row}: swatch {color!r} {style!r}, expected {want} {rgb or ''}")
for e, exp in stats["experiments"].items():
    for arm, st in exp["arms"].items():
        row = p.rows.get(f"{e}/{arm}")
        if row is None:
            print(f"dashboard: no row for {e}/{arm}", file=sys.stderr); ok = False; continue
        if row.get("pulls") != str(st["pulls"]) or row.get("rewards") != str(st["rewards"]):
            print(f"dashboard: {e}/{arm} shows {row}, stats say {st}", file=sys.stderr); ok = False
        for cell in ("rate", "interval", "share"):
            if not row.get(cell):
                print(f"dashboard: {e}/{arm} has no {cell}", file=sys.stderr); ok = False
        if st["pulls"] and ("–" in row.get("rate", "–") or "%" not in row.get("share", "")):
            print(f"dashboard: {e}/{arm} lacks numbers: {row}", file=sys.stderr); ok = False
if p.paths < 2:
    print(f"dashboard: {p.paths} chart lines drawn", file=sys.stderr); ok = False
sys.exit(0 if ok else 1)
EOF
    shot=$build/tests/mabd-dashboard.png
    rm -f "$shot"
    timeout 90 "${chrome[@]}" --virtual-time-budget=10000 --window-size=1200,1400 --screenshot="$shot" "$url" \
        >/dev/null 2>>"$tmp/chromium.err" || true
    [[ -s $shot ]] || fail "no dashboard screenshot at $shot: $(tail -5 "$tmp/chromium.err")"
    rm -rf "$profile"
fi

# ---- SIGTERM: stop, write counters, exit 0 ---------------------------------
final=$(stats)
kill -TERM "$pid"
set +e
wait "$pid"
rc=$?
set -e
pid=""
[[ $rc == 0 ]] || fail "mabd exited $rc after SIGTERM; log: $(tail -5 "$tmp/log")"
grep -q "counters written to storage" "$tmp/log" || fail "no flush message in the log"
# sync interval is an hour: only the shutdown can have written these.
export FINAL="$final"
pycheck "storage holds the counts after SIGTERM" "$(cat "$tmp/state.json")" '
final = json.loads(os.environ["FINAL"])
for e, exp in final["experiments"].items():
    for arm, st in exp["arms"].items():
        stored = d["experiments"].get(e, {}).get(arm, {"pulls": 0, "rewards": 0})
        assert stored["pulls"] == st["pulls"] and stored["rewards"] == st["rewards"], (e, arm, stored, st)'

# ---- reward once across two mabd processes on one LMDB, and a restart ------
# Each mabd has its own adapter memory; the claim in the shared store is what
# refuses the second reward of one cookie.
start_lmdb_mabd() { # start_lmdb_mabd NAME: config lmdb.json, log NAME.log; sets started_pid, started_base
    (cd "$tmp" && exec "$mabd" --config lmdb.json --listen 127.0.0.1:0 2>"$tmp/$1.log") &
    started_pid=$!
    more_pids+=("$started_pid")
    for _ in $(seq 100); do
        grep -q "listening on" "$tmp/$1.log" && break
        sleep 0.1
    done
    local p
    p=$(grep -o 'http://127.0.0.1:[0-9]*' "$tmp/$1.log" | head -1 | cut -d: -f3)
    [[ -n $p ]] || { fail "mabd $1 did not start: $(cat "$tmp/$1.log")"; return 1; }
    started_base=http://127.0.0.1:$p
}
stop_pid() { # stop_pid PID: SIGTERM, wait, exit status 0
    kill -TERM "$1"
    set +e
    wait "$1"
    local rc=$?
    set -e
    [[ $rc == 0 ]] || fail "mabd $1 exited $rc after SIGTERM"
}
lmdb_rewards() { # lmdb_rewards: rewards of experiment color in the LMDB store
    "$mab" stats "$tmp/lmdb.json" --json | $py -c 'import json, sys
print(sum(a["rewards"] for a in json.load(sys.stdin)["experiments"]["color"]["arms"].values()))'
}
reward_once_across_mabds() {
    $py -c 'import json, sys
c = json.load(open(sys.argv[1]))
c["storage"] = {"plugin": "lmdb", "path": "shared.lmdb", "sync": "always"}
json.dump(c, open(sys.argv[2], "w"))' "$tmp/mab.json" "$tmp/lmdb.json"
    "$mab" check "$tmp/lmdb.json" | grep -q "reward once: per assignment across every process" ||
        fail "mab check does not say lmdb claims: $("$mab" check "$tmp/lmdb.json")"
    "$mab" check "$tmp/mab.json" | grep -q "reward once: per assignment across every process" ||
        fail "mab check does not say json_file claims: $("$mab" check "$tmp/mab.json")"
    start_lmdb_mabd one || return
    local a=$started_pid base_a=$started_base
    start_lmdb_mabd two || return
    local b=$started_pid base_b=$started_base
    req once_choose -c "$tmp/jar_once" "$base_a/v1/choose/color"
    expect_status 200 "choose on mabd one"
    local cookie
    cookie=$(awk '$6 == "mab" {print $7}' "$tmp/jar_once")
    # 2 x 10 parallel rewards of the one cookie, to both servers at once.
    for base in "$base_a" "$base_b"; do
        seq 10 | xargs -P 10 -I{} curl -s -X POST -H "Cookie: mab=$cookie" \
            -w '\n' "$base/v1/reward/color?n={}" >>"$tmp/once.out" &
    done
    wait_children=$(jobs -p | grep -vxF -e "$a" -e "$b" -e "$pid" || true)
    for j in $wait_children; do wait "$j"; done
    local counted answers
    answers=$(grep -c '"counted"' "$tmp/once.out" || true)
    counted=$(grep -c '"counted": *true' "$tmp/once.out" || true)
    [[ $answers == 20 ]] || fail "two mabds: $answers answers to 20 rewards: $(cat "$tmp/once.out")"
    [[ $counted == 1 ]] || fail "one cookie through two mabds on one LMDB counted $counted times"
    stop_pid "$a"
    stop_pid "$b"
    [[ $(lmdb_rewards) == 1 ]] || fail "LMDB holds $(lmdb_rewards) rewards for one cookie"
    # A restart: a new process, an empty adapter memory.
    start_lmdb_mabd three || return
    local c=$started_pid
    req once_again -X POST -H "Cookie: mab=$cookie" "$started_base/v1/reward/color"
    pycheck "the cookie after a restart" "$body" 'assert d["counted"] is False and d["reason"] == "replayed", d'
    stop_pid "$c"
    [[ $(lmdb_rewards) == 1 ]] || fail "after the restart LMDB holds $(lmdb_rewards) rewards"
    echo "mabd_test: one cookie rewarded 20 times through two mabds and once after a restart: counted $counted time(s)"
}
reward_once_across_mabds

if ((failures)); then
    echo "mabd_test: $failures failure(s); mabd log:" >&2
    cat "$tmp/log" >&2
    exit 1
fi
echo "mabd_test: all checks passed"
