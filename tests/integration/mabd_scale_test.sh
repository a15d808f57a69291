#!/usr/bin/env bash
# mabd_scale_test.sh BUILD_DIR - what keeps mabd's admin routes cheap with
# many experiments (docs/operating-mabd.md, "Many experiments"), on a real
# mabd over 23 experiments:
# - /metrics keeps each experiment's report: a scrape with no change
#   computes none, a change recomputes that experiment's report only and
#   its gauges then equal /v1/report's (the cache is invalidated by the
#   change), a reload empties the cache;
# - mabd.metrics.report_interval_s holds a changed report back (counted in
#   mabd_metrics_reports_stale); mabd.metrics.reports_per_scrape bounds the
#   reports a scrape computes (the rest counted in
#   mabd_metrics_reports_missing), round-robin until every one is there;
# - /v1/dashboard?offset=&limit= pages: every experiment exactly once across
#   the pages, in config order, the page's series only; a bad offset or
#   limit is refused with 400 naming it; bad settings are refused naming
#   the key;
# - the page (headless Chromium) shows one page and links to the others.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mabd_test_begin "$1"

$mab keygen "$tmp/mab.key" >/dev/null
N=23
write_config() { # write_config METRICS_JSON
    $py - "$tmp/mab.json" "$build/plugins" "$1" "$N" <<'PY'
import json, sys
path, plugins, metrics, n = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
exps = {"e%02d" % i: {"policy": {"plugin": "thompson"}, "arms": {"a": 1, "b": 2}}
        for i in range(n)}
json.dump({"plugin_path": [plugins], "secret_file": "mab.key",
           "storage": {"plugin": "json_file", "path": "state.json"},
           "mabd": {"metrics": metrics, "series": {"interval_s": 1}},
           "experiments": exps}, open(path, "w"))
PY
}

# scrape: /metrics as JSON {"NAME{LABELS}": value} in $body
scrape() {
    req metrics "$base/metrics"
    expect_status 200 "GET /metrics"
    body=$(printf '%s' "$body" | $py -c '
import json, sys
out = {}
for line in sys.stdin:
    if line.startswith("#") or not line.strip():
        continue
    key, value = line.rsplit(" ", 1)
    out[key] = float(value)
print(json.dumps(out))')
}

# traffic EXP K: K visitors of EXP, each rewarded 1
traffic() {
    local i
    for i in $(seq "$2"); do
        curl -s -o /dev/null -c "$tmp/jar" "$base/v1/choose/$1"
        curl -s -o /dev/null -b "$tmp/jar" -X POST -d '{"value": 1}' "$base/v1/reward/$1"
        rm -f "$tmp/jar"
    done
}

# Compare e00's report gauges with /v1/report/e00 (python, $body = scrape).
SAME_AS_REPORT='
r = json.loads(os.environ["REPORT"])
for arm in ("a", "b"):
    for field, name in (("p_best", "mab_arm_p_best"), ("expected_loss", "mab_arm_expected_loss")):
        key = "%s{experiment=\"e00\",arm=\"%s\"}" % (name, arm)
        assert d[key] == r["arms"][arm][field], (key, d[key], r["arms"][arm][field])
srm = "mab_experiment_srm_p_value{experiment=\"e00\"}"
assert (srm in d) == (r["srm_p_value"] is not None), (srm in d, r["srm_p_value"])
if srm in d:
    assert d[srm] == r["srm_p_value"], (d[srm], r["srm_p_value"])
'

# ---- the default settings: a scrape recomputes only what changed -------------
write_config '{}'
mabd_start
scrape
first=$body
pycheck "first scrape" "$first" '
assert d["mabd_metrics_reports_computed_total"] == 23, d["mabd_metrics_reports_computed_total"]
assert d["mabd_metrics_reports_missing"] == 0 and d["mabd_metrics_reports_stale"] == 0, d
assert len([k for k in d if k.startswith("mab_arm_p_best{")]) == 46'
req report "$base/v1/report/e00"
REPORT=$body pycheck "first scrape's gauges = the report" "$first" "$SAME_AS_REPORT"
scrape
pycheck "no change: no report computed" "$body" '
assert d["mabd_metrics_reports_computed_total"] == 23, d["mabd_metrics_reports_computed_total"]'
traffic e00 12
scrape
after=$body
req report "$base/v1/report/e00"
export FIRST=$first
REPORT=$body pycheck "after a change: the gauges are the new report's" "$after" "$SAME_AS_REPORT"
pycheck "after a change: e00 recomputed, only it" "$after" '
first = json.loads(os.environ["FIRST"])
key = "mab_arm_p_best{experiment=\"e00\",arm=\"a\"}"
assert d[key] != first[key], ("the change did not move P(best): the test proves nothing", d[key])
assert d["mab_pulls_total{experiment=\"e00\",arm=\"a\"}"] + \
       d["mab_pulls_total{experiment=\"e00\",arm=\"b\"}"] == 12, d
assert d["mabd_metrics_reports_computed_total"] == 24, d["mabd_metrics_reports_computed_total"]
assert d["mabd_metrics_reports_stale"] == 0, d'
# A reload (SIGHUP) empties the cache: every report is computed again.
kill -HUP "$pid"
for _ in $(seq 100); do grep -q "reloaded" "$tmp/log" && break; sleep 0.1; done
grep -q "reloaded" "$tmp/log" || fail "no reload: $(tail -3 "$tmp/log")"
scrape
pycheck "after a reload" "$body" '
assert d["mabd_metrics_reports_computed_total"] == 24 + 23, d["mabd_metrics_reports_computed_total"]'

# ---- /v1/dashboard pages -------------------------------------------------------
ids=""
for offset in 0 5 10 15 20 25; do
    req page "$base/v1/dashboard?offset=$offset&limit=5"
    expect_status 200 "GET /v1/dashboard?offset=$offset&limit=5"
    OFFSET=$offset pycheck "page at offset $offset" "$body" '
off = int(os.environ["OFFSET"])
assert d["total"] == 23 and d["offset"] == off and d["limit"] == 5, d
page = [e["id"] for e in d["experiments"]]
assert len(page) == max(0, min(5, 23 - off)), page
in_series = set(x for s in d["series"] for x in s["e"])
assert in_series <= set(page), (in_series, page)
assert not page or in_series == set(page), (in_series, page)'
    ids+=$(printf '%s' "$body" | $py -c 'import json, sys; print(" ".join(e["id"] for e in json.load(sys.stdin)["experiments"]))')" "
done
IDS=$ids pycheck "every experiment exactly once across the pages, in order" '{}' '
ids = os.environ["IDS"].split()
assert ids == ["e%02d" % i for i in range(23)], ids'
req page "$base/v1/dashboard"
pycheck "the default page" "$body" '
assert d["offset"] == 0 and d["limit"] == 50 and len(d["experiments"]) == 23, d["limit"]'
for bad in "offset=-1" "offset=abc" "offset=" "offset=1.5" "offset=99999999999999" \
           "limit=0" "limit=1001" "limit=5x" "limit=" "limit=-3"; do
    req bad "$base/v1/dashboard?$bad"
    expect_status 400 "GET /v1/dashboard?$bad"
    name=${bad%%=*}
    NAME=$name pycheck "?$bad: the error names $name" "$body" '
assert d["error"].startswith(os.environ["NAME"] + ":"), d'
done

# ---- the page in headless Chromium: one page, links to the others --------------
chromium_bin=$(command -v chromium || command -v chromium-browser || true)
if [[ -z $chromium_bin ]]; then
    fail "chromium is not installed (scripts/deps installs Debian's chromium): the pages were NOT tested"
else
    profile=$(mktemp -d)
    if ! timeout 90 "$chromium_bin" --headless --no-sandbox --disable-gpu \
            --disable-background-networking --disable-component-update --disable-sync \
            --no-first-run --user-data-dir="$profile" --virtual-time-budget=10000 \
            --dump-dom "$base/?offset=5&limit=5" >"$tmp/dom.html" 2>"$tmp/chromium.err"; then
        fail "chromium --dump-dom failed: $(tail -5 "$tmp/chromium.err")"
    fi
    rm -rf "$profile"
    $py - "$tmp/dom.html" <<'EOF' || fail "the dashboard's second page (above)"
import re, sys
dom = open(sys.argv[1]).read()
shown = re.findall(r'<section class="experiment" data-experiment="([^"]+)"', dom)
assert shown == ["e05", "e06", "e07", "e08", "e09"], shown
prev = re.search(r'<a href="([^"]*)" rel="prev"', dom)
nxt = re.search(r'<a href="([^"]*)" rel="next"', dom)
assert prev and nxt, "no previous/next links"
assert "offset=0" in prev.group(1) and "limit=5" in prev.group(1), prev.group(1)
assert "offset=10" in nxt.group(1) and "limit=5" in nxt.group(1), nxt.group(1)
assert "experiments 6–10 of 23" in dom, "no page range"
EOF
fi
mabd_stop

# ---- report_interval_s: a changed report is held back --------------------------
write_config '{"report_interval_s": 3600}'
mabd_start
scrape
first=$body
traffic e00 12
scrape
held=$body
req report "$base/v1/report/e00"
export FIRST=$first REPORT=$body
pycheck "report_interval_s 3600: e00 stale" "$held" '
first = json.loads(os.environ["FIRST"])
key = "mab_arm_p_best{experiment=\"e00\",arm=\"a\"}"
assert d[key] == first[key], (d[key], first[key])
assert d["mabd_metrics_reports_stale"] == 1 and d["mabd_metrics_reports_missing"] == 0, d
assert d["mabd_metrics_reports_computed_total"] == 23, d["mabd_metrics_reports_computed_total"]
r = json.loads(os.environ["REPORT"])
assert r["arms"]["a"]["p_best"] != d[key], "the report did not move: the test proves nothing"'
mabd_stop

# ---- reports_per_scrape: at most 5 a scrape, round-robin ------------------------
write_config '{"reports_per_scrape": 5}'
mabd_start
for want in 18 13 8 3 0; do
    scrape
    WANT=$want pycheck "reports_per_scrape 5: $want missing" "$body" '
want = int(os.environ["WANT"])
assert d["mabd_metrics_reports_missing"] == want, (d["mabd_metrics_reports_missing"], want)
shown = {k.split("\"")[1] for k in d if k.startswith("mab_arm_p_best{")}
assert len(shown) == 23 - want, shown
assert d["mabd_metrics_reports_computed_total"] == 23 - want, d'
done
mabd_stop

# ---- bad settings are refused naming the key ------------------------------------
for bad in '{"report_interval_s": -1}' '{"reports_per_scrape": 0}' '{"report_interval_s": "x"}' \
           '{"reports_per_scrap": 5}'; do
    write_config "$bad"
    if (cd "$tmp" && "$mabd" --config mab.json --listen 127.0.0.1:0 >"$tmp/out" 2>&1); then
        fail "mabd started with mabd.metrics $bad"
    fi
    grep -q "mabd\.metrics.*report" "$tmp/out" ||
        fail "mabd.metrics $bad: the error does not name the key: $(cat "$tmp/out")"
done

if ((failures > 0)); then
    echo "mabd_scale: $failures failure(s); mabd log:" >&2
    cat "$tmp/log" >&2
    exit 1
fi
echo "mabd scale: all checks passed"
