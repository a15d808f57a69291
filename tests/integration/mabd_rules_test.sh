#!/usr/bin/env bash
# mabd_rules_test.sh BUILD_DIR - the operating rules through a real mabd:
# holdout visitors tagged in the answer and their rewards counted in the
# ledger (not in the arms' totals), the floor's probability reported, and a
# SIGHUP reload that pauses the experiment: the named arm is served with
# "paused", nothing is counted, a paused visitor's reward is refused with
# reason "paused", and the counters survive the reload.
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
write_config() { # write_config RULES (extra keys of the experiment)
    cat >"$tmp/mab.json" <<EOF
{
  "plugin_path": ["$build/plugins"],
  "storage": {"plugin": "json_file", "path": "state.json", "sync": "always"},
  "secret_file": "mab.key",
  "experiments": {
    "color": {"policy": {"plugin": "ucb1"}, "arms": {"green": 1, "red": 2}, $1}
  }
}
EOF
}
stats() { # the experiment's stats as JSON, by mabd
    req stats "$base/v1/stats"
    printf '%s' "$body"
}

write_config '"holdout": 0.5, "floor": 0.1'
mabd_start

# ---- holdout and floor ------------------------------------------------------
held=0 bandit=0 held_rewarded=0
for v in $(seq 40); do
    jar=$tmp/jar.$v
    req c$v -c "$jar" "$base/v1/choose/color"
    expect_status 200 "choose $v"
    if printf '%s' "$body" | $py -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["color"].get("holdout") else 1)'; then
        held=$((held + 1))
        # Uniform within the holdout.
        pycheck "holdout probability" "$body" 'assert abs(d["color"]["probability"] - 0.5) < 1e-12, d'
        if ((held_rewarded == 0)); then
            req r$v -b "$jar" -X POST -d '{"value": 1}' "$base/v1/reward/color"
            pycheck "holdout reward counted" "$body" 'assert d["counted"] is True, d'
            held_rewarded=1
        fi
    else
        bandit=$((bandit + 1))
        # 0.1 + 0.8 p_ucb1: never below the floor, never above 1 - 0.1.
        pycheck "floor probability" "$body" \
            'p = d["color"]["probability"]; assert 0.1 - 1e-12 <= p <= 0.9 + 1e-12, d'
    fi
done
((held > 0 && bandit > 0)) || fail "40 visitors: $held in the holdout, $bandit not"
# The arms' totals hold the bandit's pulls only, and no reward (the only
# reward was a holdout visitor's: it went to the ledger).
BANDIT=$bandit pycheck "bandit totals" "$(stats)" "
arms = d['experiments']['color']['arms']
assert sum(a['pulls'] for a in arms.values()) == int(os.environ['BANDIT']), arms
assert sum(a['rewards'] for a in arms.values()) == 0, arms"
req metrics "$base/metrics"
grep -q '^mab_rewards_late_total{experiment="color"} 0$' "$tmp/metrics.b" ||
    fail "mab_rewards_late_total missing from /metrics"

# ---- reload: paused ---------------------------------------------------------
before=$(stats)
write_config '"state": "paused", "serve": "red"'
kill -HUP "$pid"
wait_log "reloaded"
for v in 1 2 3; do
    req p$v -c "$tmp/jar.q$v" "$base/v1/choose/color"
    pycheck "paused choice" "$body" \
        'assert d["color"]["arm"] == "red" and d["color"].get("paused") is True and d["color"]["probability"] == 1, d'
done
req q1 -b "$tmp/jar.q1" -X POST -d '{"value": 1}' "$base/v1/reward/color"
pycheck "paused visitor's reward" "$body" 'assert d["counted"] is False and d["reason"] == "paused", d'
# Nothing counted by the paused choices, and the counters survived the reload.
BEFORE=$before pycheck "paused counts nothing" "$(stats)" "
old = json.loads(os.environ['BEFORE'])['experiments']['color']['arms']
new = d['experiments']['color']['arms']
assert new == old, (old, new)
assert sum(a['pulls'] for a in new.values()) > 0, new"

kill -TERM "$pid"
wait "$pid" || true
pid=""
if ((failures)); then
    echo "mabd_rules_test: $failures failure(s)" >&2
    exit 1
fi
echo "mabd_rules_test: ok"
