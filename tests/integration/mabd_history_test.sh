#!/usr/bin/env bash
# mabd_history_test.sh BUILD_DIR - the dashboard's history survives a
# restart: /v1/dashboard's per-bucket counts ("buckets"), the report's
# history ("report": {"history"}) and the seeded time series ("series")
# come from the store's time buckets (json_file, storage ABI 1.5), so after
# SIGTERM and a new start they still hold the pulls and rewards of the
# first run. Then the page in headless Chromium: the leader badge, the
# recommendation, the rules panel and the share-per-bucket chart with
# points from before the restart (screenshot BUILD_DIR/tests/
# mabd-history-dashboard.png).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mabd_test_begin "$1"

$mab keygen "$tmp/mab.key" >/dev/null
cat >"$tmp/mab.json" <<JSON
{
  "plugin_path": ["$build/plugins"],
  "storage": {"plugin": "json_file", "path": "state.json", "bucket_seconds": 2},
  "secret_file": "mab.key",
  "experiments": {
    "color": {"policy": {"plugin": "epsilon_greedy"}, "floor": 0.05, "burn_in": 2,
              "arms": {"green": "#00ff00", "red": 2}}
  }
}
JSON

summary() { # the dashboard's buckets of "color", summed per arm, and the series' latest sample
    req dash "$base/v1/dashboard"
    expect_status 200 "GET /v1/dashboard"
    printf '%s' "$body" | $py -c '
import json, sys
d = json.load(sys.stdin)
exp = [e for e in d["experiments"] if e["id"] == "color"][0]
assert d["bucket_seconds"] == 2, d["bucket_seconds"]
pulls = [sum(b["pulls"][a] for b in exp["buckets"]) for a in range(2)]
rewards = [sum(b["rewards"][a] for b in exp["buckets"]) for a in range(2)]
# The report (what every surface shows) has the same buckets, by arm id.
hist = exp["report"]["history"]
assert [h["start"] for h in hist] == [b["start"] for b in exp["buckets"]], (hist, exp["buckets"])
for h, b in zip(hist, exp["buckets"]):
    assert [h["arms"][a]["pulls"] for a in ("green", "red")] == b["pulls"], (h, b)
    assert [h["arms"][a]["rewards"] for a in ("green", "red")] == b["rewards"], (h, b)
assert exp["report"]["rules"]["floor"] == 0.05 and exp["report"]["rules"]["burn_in"] == 2, exp["report"]
for b in exp["buckets"]:
    assert b["start"] % 2 == 0, b
    for a in range(2):
        assert (b["rate"][a] is None) == (b["pulls"][a] == 0), b
last = d["series"][-1]["e"]["color"] if d["series"] else {}
print(json.dumps({"pulls": pulls, "rewards": rewards, "starts": [h["start"] for h in hist],
                  "series_pulls": sum(v[0] for v in last.values()), "samples": len(d["series"])}))'
}

mabd_start
jar=$tmp/jar
# Pulls in three buckets of 2 s (the sleeps only move the clock on: nothing
# here measures time).
for _ in $(seq 3); do curl -s -o /dev/null "$base/v1/choose/color"; done
sleep 2.1
for _ in $(seq 2); do curl -s -o /dev/null "$base/v1/choose/color"; done
sleep 2.1
for _ in $(seq 2); do curl -s -o /dev/null "$base/v1/choose/color"; done
curl -s -o /dev/null -c "$jar" -b "$jar" "$base/v1/choose/color"
req reward -c "$jar" -b "$jar" -X POST -H 'Content-Type: application/json' \
    -d '{"value": 1}' "$base/v1/reward/color"
expect_status 200 "reward"
first=$(summary)
pycheck "first run's buckets" "$first" '
assert sum(d["pulls"]) == 8, d
assert sum(d["rewards"]) == 1, d
assert len(d["starts"]) >= 3, d'
mabd_stop
restarted_at=$(date +%s)

mabd_start
second=$(summary)
export FIRST=$first
pycheck "buckets after the restart" "$second" '
first = json.loads(os.environ["FIRST"])
assert d["pulls"] == first["pulls"] and d["rewards"] == first["rewards"], (d, first)
# The series was seeded from the buckets: its newest sample holds the 8 pulls,
# and there is more than the one sample taken at start.
assert d["series_pulls"] == 8, d
assert d["samples"] >= 2, d
assert d["starts"] == first["starts"], (d, first)'
first_starts=$(printf '%s' "$first" | $py -c 'import json, sys; print(" ".join(map(str, json.load(sys.stdin)["starts"])))')

# ---- the page in headless Chromium, after the restart ------------------------
chromium_bin=$(command -v chromium || command -v chromium-browser || true)
if [[ -z $chromium_bin ]]; then
    fail "chromium is not installed (scripts/deps installs Debian's chromium): the dashboard was NOT tested"
else
    profile=$(mktemp -d)
    chrome=("$chromium_bin" --headless --no-sandbox --disable-gpu --disable-background-networking
            --disable-component-update --disable-sync --no-first-run --user-data-dir="$profile")
    if ! timeout 90 "${chrome[@]}" --virtual-time-budget=10000 --dump-dom "$base/" >"$tmp/dom.html" 2>"$tmp/chromium.err"; then
        fail "chromium --dump-dom failed: $(tail -5 "$tmp/chromium.err")"
    fi
    req report "$base/v1/report/color"
    expect_status 200 "GET /v1/report/color"
    export REPORT=$body RESTARTED_AT=$restarted_at FIRST_STARTS=$first_starts
    $py - "$tmp/dom.html" <<'EOF' || fail "dashboard DOM after the restart (above)"
import html.parser, json, os, sys
report = json.loads(os.environ["REPORT"])
restarted_at = int(os.environ["RESTARTED_AT"])
first_starts = set(map(int, os.environ["FIRST_STARTS"].split()))
class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.chart = None; self.points = {}; self.rules = {}; self.rule = None
        self.badge = None; self.text = None; self.texts = {}; self.swatches = {}; self.row = None
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "div" and "data-chart" in a:
            self.chart = a["data-chart"]
        if tag == "circle" and self.chart and "data-t" in a:
            self.points.setdefault(self.chart, []).append((a["data-arm"], int(a["data-t"])))
        if tag == "dd" and "data-rule" in a:
            self.rule = a["data-rule"]; self.rules[self.rule] = ""
        if tag == "span" and "data-leader" in a:
            self.badge = a["data-leader"]
        if tag == "p" and "recommendation" in a.get("class", "").split():
            self.text = "recommendation"
        if tag == "tr" and "data-arm" in a:
            self.row = a["data-arm"]
        if tag == "span" and a.get("class") == "swatch" and self.row:
            self.swatches[self.row] = a.get("data-color")
    def handle_endtag(self, tag):
        if tag == "dd": self.rule = None
        if tag == "p": self.text = None
        if tag == "svg": self.chart = None
    def handle_data(self, data):
        if self.rule: self.rules[self.rule] += data
        if self.text: self.texts[self.text] = self.texts.get(self.text, "") + data
p = Page(); p.feed(open(sys.argv[1]).read())
problems = []
if p.badge != report["leader"]:
    problems.append(f"leader badge {p.badge!r}, the report says {report['leader']!r}")
if p.texts.get("recommendation") != report["recommendation"]:
    problems.append(f"recommendation {p.texts.get('recommendation')!r}, report {report['recommendation']!r}")
want_rules = {"state": "running", "floor": "0.05 per arm", "burn_in": "2 pulls per arm",
              "holdout": "none", "attribution_window": "none"}
for k, v in want_rules.items():
    if p.rules.get(k) != v:
        problems.append(f"rules panel {k}: {p.rules.get(k)!r}, expected {v!r}")
if not p.rules.get("winner", "").startswith("P(best) ≥ 0.95"):
    problems.append(f"rules panel winner rule: {p.rules.get('winner')!r}")
# The burn-in's choices carry every arm's probability (1/K), so the check
# has a p-value: the panel shows it with the core's status.
srm_text = p.rules.get("srm", "")
if report.get("srm_p_value") is None:
    if not srm_text.startswith("not available ("):
        problems.append(f"sample-ratio check not available in the report, panel: {srm_text!r}")
elif not (srm_text.startswith("p = ") and f"({report['srm_status']})" in srm_text):
    problems.append(f"sample-ratio panel {srm_text!r}, report {report['srm_status']!r}")
if not p.rules.get("holdout_comparison", "").startswith("not available (the experiment has no holdout"):
    problems.append(f"holdout comparison: {p.rules.get('holdout_comparison')!r}")
# The share-per-bucket chart: points at the first run's buckets, which all
# started before the restart (at or before its whole second), for both arms.
share = p.points.get("share-buckets", [])
for arm in ("green", "red"):
    before = {t for a, t in share if a == arm and t <= restarted_at and t in first_starts}
    if before != first_starts:
        problems.append(f"share-per-bucket chart: {arm} has points {sorted(t for a, t in share if a == arm)}, "
                        f"expected the first run's buckets {sorted(first_starts)} (before {restarted_at})")
if not p.points.get("rate-buckets"):
    problems.append("no reward-rate-per-bucket points")
if p.swatches.get("color/green") != "#00ff00":
    problems.append(f"arm valued #00ff00 drawn {p.swatches.get('color/green')!r}")
for text in problems:
    print("dashboard: " + text, file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
    shot=$build/tests/mabd-history-dashboard.png
    rm -f "$shot"
    timeout 90 "${chrome[@]}" --virtual-time-budget=10000 --window-size=1200,1600 --screenshot="$shot" "$base/" \
        >/dev/null 2>>"$tmp/chromium.err" || true
    [[ -s $shot ]] || fail "no dashboard screenshot at $shot: $(tail -5 "$tmp/chromium.err")"
    rm -rf "$profile"
fi
mabd_stop

((failures == 0)) || exit 1
echo "mabd_history: ok"
