#!/usr/bin/env bash
# mabd_metrics_oom_test.sh BUILD_DIR PRELOAD - /metrics out of memory for
# an experiment's arms (hosts/mabd/metrics.c, arms_room), on a real mabd
# whose realloc fails once when asked (PRELOAD, fail_arms_realloc.c: the
# realloc that grows a buffer of mab_arm_stats to 37 of them):
# - in the per-arm counters the scrape fails as a whole (no answer), rather
#   than answering without the experiment's counters; the next scrape is
#   whole again;
# - in the report gauges' comparison the experiment is taken as changed:
#   its kept report, within report_interval_s, counts in
#   mabd_metrics_reports_stale; the counters are all there.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mabd_test_begin "$1"
preload=$2

$mab keygen "$tmp/mab.key" >/dev/null
$py - "$tmp/mab.json" "$build/plugins" <<'PY'
import json, sys
path, plugins = sys.argv[1], sys.argv[2]
json.dump({"plugin_path": [plugins], "secret_file": "mab.key",
           "storage": {"plugin": "json_file", "path": "state.json"},
           "mabd": {"metrics": {"report_interval_s": 3600}},
           "experiments": {
               "big": {"policy": {"plugin": "thompson"},
                       "arms": {"a%02d" % i: i for i in range(37)}},
               "small": {"policy": {"plugin": "thompson"}, "arms": {"x": 1, "y": 2}}}},
          open(path, "w"))
PY

export MAB_TEST_FAIL_ARMS=37 MAB_TEST_FAIL_FILE=$tmp/fail
LD_PRELOAD=$preload mabd_start
unset MAB_TEST_FAIL_ARMS MAB_TEST_FAIL_FILE

# whole: a 200 with big's 37 arms and small's 2 in each counter family, and
# the stale gauge equal to $1
whole() {
    expect_status 200 "$2"
    local n
    n=$(grep -c '^mab_pulls_total{experiment="big"' "$tmp/metrics.b" || true)
    [[ $n == 37 ]] || fail "$2: $n of big's 37 arms in mab_pulls_total"
    grep -q '^mab_reward_sum{experiment="small",arm="y"} ' "$tmp/metrics.b" ||
        fail "$2: small's counters missing"
    grep -q "^mabd_metrics_reports_stale $1\$" "$tmp/metrics.b" ||
        fail "$2: $(grep '^mabd_metrics_reports_stale' "$tmp/metrics.b"), expected $1"
}

req metrics "$base/metrics"
whole 0 "first scrape"
grep -q '^mabd_metrics_reports_missing 0$' "$tmp/metrics.b" ||
    fail "first scrape: a report is missing"

# The first such realloc of the next scrape: the per-arm counters'.
echo 1 >"$tmp/fail"
req metrics "$base/metrics"
[[ ! -e $tmp/fail ]] || fail "per-arm counters: the realloc was not asked for"
[[ $status == 000 ]] || fail "per-arm counters out of memory: status $status, expected no answer"
req metrics "$base/metrics"
whole 0 "the scrape after"

# The second: the report gauges' comparison.
echo 2 >"$tmp/fail"
req metrics "$base/metrics"
[[ ! -e $tmp/fail ]] || fail "report gauges: the realloc was not asked for"
whole 1 "report gauges out of memory"
req metrics "$base/metrics"
whole 0 "the scrape after"

mabd_stop
if ((failures > 0)); then
    echo "mabd_metrics_oom: $failures failure(s); mabd log:" >&2
    cat "$tmp/log" >&2
    exit 1
fi
echo "mabd metrics out of memory: all checks passed"
