#!/usr/bin/env bash
# cli_test.sh BUILD_DIR SOURCE_DIR - end-to-end test of the `mab` tool:
# exit codes, messages and exact values, against real plugins and a real
# json_file store in a scratch directory.
set -euo pipefail

build=$(cd "$1" && pwd)
mab=$build/bin/mab
py=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
commands=0
# run CMD...: run it, keeping stdout in $out, stderr in $err, status in $rc.
run() {
    commands=$((commands + 1))
    set +e
    "$@" >"$tmp/stdout" 2>"$tmp/stderr"
    rc=$?
    set -e
    out=$(cat "$tmp/stdout")
    err=$(cat "$tmp/stderr")
}

# expect STATUS CMD...: run and compare the exit status.
expect() {
    local want=$1
    shift
    run "$@"
    if [[ $rc != "$want" ]]; then
        fail "'$*' exited $rc, expected $want; stderr: $err"
    fi
}

# contains TEXT NEEDLE WHAT: TEXT must contain NEEDLE.
contains() {
    [[ $1 == *"$2"* ]] || fail "$3: expected '$2' in: $1"
}

cfg=$tmp/mab.json
state=$tmp/state.json
cat >"$cfg" <<EOF
{
  "plugin_path": ["$build/plugins"],
  "seed": 7,
  "storage": {"plugin": "json_file", "path": "$state"},
  "experiments": {
    "btn": {
      "policy": {"plugin": "ucb1"},
      "arms": {"green": "#00FF00", "red": {"hex": "#FF0000"}, "blue": 3}
    },
    "say-hi_2": {
      "policy": {"plugin": "epsilon_greedy", "epsilon": 0.1},
      "arms": {"with-dash": "a \\"quoted\\" value", "plain": null}
    },
    "revenue": {
      "policy": {"plugin": "thompson"},
      "reward": {"min": 0, "max": 10},
      "arms": {"cheap": 1, "dear": 2}
    }
  }
}
EOF
# Ids are restricted to letters, digits, '_' and '-' by the engine.
weird=say-hi_2
export WEIRD=$weird

stats_json() {
    "$mab" stats "$cfg" --json
}

# ---- usage: --help, --version, unknown commands and options, missing args

expect 0 "$mab" --help
contains "$out" "simulate" "mab --help lists commands"
expect 0 "$mab" --version
contains "$out" "0.2.0" "mab --version"
for sub in check choose reward stats report simulate reset export import; do
    expect 0 "$mab" "$sub" --help
    [[ $out == "usage: mab $sub"* ]] || fail "mab $sub --help: no usage on stdout: $out"
    [[ -z $err ]] || fail "mab $sub --help wrote to stderr: $err"
done
expect 2 "$mab"
contains "$err" "usage:" "mab without a command"
expect 2 "$mab" frobnicate "$cfg"
contains "$err" "unknown command 'frobnicate'" "unknown command"
contains "$err" "usage:" "unknown command"
expect 2 "$mab" stats "$cfg" --bogus
contains "$err" "--bogus" "unknown option"
expect 2 "$mab" check
contains "$err" "missing argument CONFIG" "check without CONFIG"
expect 2 "$mab" choose "$cfg"
contains "$err" "missing argument EXP" "choose without EXP"
expect 2 "$mab" reward "$cfg" btn green
contains "$err" "missing argument VALUE" "reward without VALUE"
expect 2 "$mab" choose "$cfg" btn extra
contains "$err" "unexpected argument 'extra'" "choose with an extra argument"
expect 2 "$mab" simulate "$cfg" btn
contains "$err" "--probs" "simulate without --probs"

# ---- check

expect 0 "$mab" check "$cfg"
contains "$out" "json_file" "check names the storage plugin"
line=$(grep '^btn ' <<<"$out" || true)
[[ $line =~ ^btn\ +ucb1\ +3\ +\[0,\ 1\]\ +/.*ucb1 ]] || fail "check: bad line for btn: '$line'"
line=$(grep '^revenue ' <<<"$out" || true)
[[ $line =~ ^revenue\ +thompson\ +2\ +\[0,\ 10\] ]] || fail "check: bad line for revenue: '$line'"
expect 1 "$mab" check "$tmp/missing.json"
contains "$err" "mab: " "check of a missing file"
contains "$err" "missing.json" "check of a missing file names it"

# check and policy statistics (policy ABI 2): the layout in use, and a policy
# change that starts afresh while storage keeps the old layout's statistics.
pcfg=$tmp/policy2.json
write_policy2() {
    cat >"$pcfg" <<EOF
{"plugin_path": ["$build/plugins"], "seed": 7,
 "storage": {"plugin": "json_file", "path": "$tmp/policy2-state.json"},
 "experiments": {"e": {"policy": $1, "arms": {"a": 1, "b": 2}}}}
EOF
}
write_policy2 '{"plugin": "'"$build"'/tests/fixtures/policy_stats.so"}'
expect 0 "$mab" choose "$pcfg" e
expect 0 "$mab" check "$pcfg"
contains "$out" "experiments.e: policy statistics stats/1:2,1 (2 per arm, 1 per experiment)" \
    "check names the layout"
[[ $out != *"starts afresh"* ]] || fail "check: no layout change yet: $out"
write_policy2 '{"plugin": "exp3"}'
expect 0 "$mab" check "$pcfg"
contains "$out" "experiments.e: storage holds policy statistics of layout stats/1:2,1, not the policy's exp3/1:1,0: it starts afresh" \
    "check says a policy change starts afresh"

# ---- choose: three tab-separated fields, the arm's own value

expect 0 "$mab" choose "$cfg" btn
IFS=$'\t' read -r -a fields <<<"$out"
[[ ${#fields[@]} == 3 ]] || fail "choose: expected 3 tab-separated fields: '$out'"
chosen=${fields[0]-}
case "$chosen" in
    green) want_value='"#00FF00"' ;;
    red) want_value='{"hex":"#FF0000"}' ;;
    blue) want_value='3' ;;
    *) fail "choose: arm '$chosen' is not an arm of btn"; want_value= ;;
esac
[[ ${fields[1]-} == "$want_value" ]] || fail "choose: value '${fields[1]}', expected '$want_value'"
probability=${fields[2]-}
pycheck "choose probability" "${probability/nan/NaN}" "
import math
assert math.isnan(d) or 0 < d <= 1, d"
CHOSEN=$chosen pycheck "one pull counted" "$(stats_json)" "
arms = d['experiments']['btn']['arms']
assert sorted(arms) == ['blue', 'green', 'red'], arms
assert arms[os.environ['CHOSEN']]['pulls'] == 1, arms
assert sum(a['pulls'] for a in arms.values()) == 1, arms"
expect 1 "$mab" choose "$cfg" nosuch
contains "$err" '"nosuch"' "choose of an unknown experiment names it"
contains "$err" "mab: " "choose error prefix"
[[ -z $out ]] || fail "choose of an unknown experiment printed: $out"

# ---- reward then stats --json: exact values

expect 0 "$mab" reward "$cfg" btn green 1
expect 0 "$mab" reward "$cfg" btn green 0.5
expect 0 "$mab" reward "$cfg" btn red 0.25
expect 0 "$mab" reward "$cfg" "$weird" with-dash 1
expect 0 "$mab" reward "$cfg" revenue dear 7.5
expect 0 "$mab" reward "$cfg" revenue cheap 0
before=$(stats_json)
pycheck "stats after rewards" "$before" "
e = d['experiments']
assert list(e) == ['btn', os.environ['WEIRD'], 'revenue'], list(e)
assert e['btn']['policy'] == 'ucb1'
g, r, b = (e['btn']['arms'][k] for k in ('green', 'red', 'blue'))
assert (g['rewards'], g['reward_sum']) == (2, 1.5), g
assert (r['rewards'], r['reward_sum']) == (1, 0.25), r
assert (b['rewards'], b['reward_sum']) == (0, 0), b
for a in (g, r, b):
    assert a['mean'] == (a['reward_sum'] / a['pulls'] if a['pulls'] else 0), a
# Every arm carries the report's per-arm fields too (checked under report).
counters = lambda a: {k: a[k] for k in ('pulls', 'rewards', 'reward_sum', 'mean')}
for x in e.values():
    for a in x['arms'].values():
        assert list(a) == ['pulls', 'rewards', 'reward_sum', 'mean', 'ci_low', 'ci_high', 'p_best',
                           'expected_loss', 'share_last_bucket', 'late_rewards'], a
w = e[os.environ['WEIRD']]['arms']
assert list(w) == ['with-dash', 'plain'], w
assert counters(w['with-dash']) == {'pulls': 0, 'rewards': 1, 'reward_sum': 1, 'mean': 0}, w
v = e['revenue']['arms']
assert counters(v['dear']) == {'pulls': 0, 'rewards': 1, 'reward_sum': 7.5, 'mean': 0}, v
assert v['cheap']['rewards'] == 1 and v['cheap']['reward_sum'] == 0, v"

expect 0 "$mab" stats "$cfg"
contains "$out" "experiment btn (policy ucb1)" "stats text header"
line=$(grep -E '^ +green ' <<<"$out" || true)
[[ $line =~ green\ +[0-9]+\ +2\ +1.5\ + ]] || fail "stats text: bad green line '$line'"

# ---- rejected rewards: exit 1, a message, nothing stored

expect 1 "$mab" reward "$cfg" btn green nan
contains "$err" "NaN" "NaN reward message"
expect 1 "$mab" reward "$cfg" btn green -inf
contains "$err" "infinite" "infinite reward message"
expect 1 "$mab" reward "$cfg" btn green 2
contains "$err" "outside" "out of range reward message"
expect 1 "$mab" reward "$cfg" btn purple 1
contains "$err" '"purple"' "unknown arm is named"
expect 1 "$mab" reward "$cfg" nosuch green 1
contains "$err" '"nosuch"' "unknown experiment is named"
expect 2 "$mab" reward "$cfg" btn green 1x
contains "$err" "not a number" "malformed reward"
expect 2 "$mab" reward "$cfg" btn green ""
contains "$err" "not a number" "empty reward"
expect 2 "$mab" reward "$cfg" btn green " 1"
[[ $(stats_json) == "$before" ]] || fail "rejected rewards changed the stats"

# ---- simulate: reproducible, storage untouched unless --persist

sim=(simulate "$cfg" btn --probs 0.1,0.5,0.2 --steps 3000 --seed 42 --report-every 1000)
expect 0 "$mab" "${sim[@]}"
first=$out
contains "$first" "seed 42" "simulate prints its seed"
[[ $(grep -c '^steps ' <<<"$first") == 3 ]] || fail "simulate: expected 3 window lines: $first"
contains "$first" "best arm      red" "simulate names the best arm"
expect 0 "$mab" "${sim[@]}"
[[ $out == "$first" ]] || fail "simulate with the same seed differs"
expect 0 "$mab" simulate "$cfg" btn --probs 0.1,0.5,0.2 --steps 3000 --seed 43 --report-every 1000
[[ $(tail -n +2 <<<"$out") != "$(tail -n +2 <<<"$first")" ]] ||
    fail "simulate with another seed gives the same results"
# Without --seed the config's seed (7) is used: reproducible too.
expect 0 "$mab" simulate "$cfg" btn --probs 0.1,0.5,0.2 --steps 500
contains "$out" "seed 7" "simulate defaults to the config's seed"
first=$out
expect 0 "$mab" simulate "$cfg" btn --probs 0.1,0.5,0.2 --steps 500 --seed 7
[[ $out == "$first" ]] || fail "simulate without --seed differs from --seed 7"

expect 0 "$mab" simulate "$cfg" btn --probs 0.1,0.5,0.2 --steps 4000 --seed 5 --json --report-every 1000
sim_json=$out
pycheck "simulate --json" "$sim_json" "
arms = d['arms']
assert list(arms) == ['green', 'red', 'blue'], arms
assert d['steps'] == 4000 and d['seed'] == 5 and d['best_arm'] == 'red', d
assert sum(a['pulls'] for a in arms.values()) == 4000, arms
assert d['total_reward'] == sum(a['rewards'] for a in arms.values()), d
regret = sum((0.5 - a['click_rate']) * a['pulls'] for a in arms.values())
assert abs(d['regret'] - regret) < 1e-6, (d['regret'], regret)
assert arms['red']['pulls'] > arms['green']['pulls'], arms
assert len(d['windows']) == 4, d['windows']
for w in d['windows']:
    assert abs(sum(w['shares'].values()) - 1) < 1e-9, w
assert d['windows'][-1]['shares']['red'] > d['windows'][0]['shares']['red'], d['windows']"
[[ $(stats_json) == "$before" ]] || fail "simulate without --persist changed the stats"

# A click on a [0, 10] experiment is rewarded with 10, in storage too.
expect 0 "$mab" simulate "$cfg" revenue --probs 1,0 --steps 200 --json --persist
revenue_sim=$out
pycheck "simulate reward_max" "$revenue_sim" "
assert d['total_reward'] == 10 * d['arms']['cheap']['rewards'], d
assert d['arms']['cheap']['rewards'] == d['arms']['cheap']['pulls'] > 0, d
assert d['arms']['dear']['rewards'] == 0, d"
SIM=$revenue_sim pycheck "simulate reward_max stored" "$(stats_json)" "
sim = json.loads(os.environ['SIM'])['arms']
cheap = d['experiments']['revenue']['arms']['cheap']
assert cheap['rewards'] == 1 + sim['cheap']['rewards'], cheap
assert cheap['reward_sum'] == 10 * sim['cheap']['rewards'], cheap"
before=$(stats_json)

expect 2 "$mab" simulate "$cfg" btn --probs 0.1,0.5
contains "$err" "2 values but experiment 'btn' has 3 arms" "simulate with too few probs"
expect 2 "$mab" simulate "$cfg" btn --probs 0.1,1.5,0.2
contains "$err" "'1.5'" "simulate with a probability above 1"
expect 2 "$mab" simulate "$cfg" btn --probs 0.1,,0.2
expect 2 "$mab" simulate "$cfg" btn --probs 0.1,0.5,0.2 --steps 0
expect 2 "$mab" simulate "$cfg" btn --probs 0.1,0.5,0.2 --seed -1
expect 1 "$mab" simulate "$cfg" nosuch --probs 0.5,0.5
contains "$err" '"nosuch"' "simulate of an unknown experiment"

expect 0 "$mab" simulate "$cfg" btn --probs 0.1,0.5,0.2 --steps 1000 --seed 9 --json --persist
persisted=$out
SIM=$persisted BEFORE=$before pycheck "simulate --persist" "$(stats_json)" "
sim = json.loads(os.environ['SIM'])
old = json.loads(os.environ['BEFORE'])['experiments']['btn']['arms']
new = d['experiments']['btn']['arms']
for arm in ('green', 'red', 'blue'):
    assert new[arm]['pulls'] == old[arm]['pulls'] + sim['arms'][arm]['pulls'], arm
    assert new[arm]['rewards'] == old[arm]['rewards'] + sim['arms'][arm]['rewards'], arm"

# ---- simulate: comparing policies over runs, CSV and SVG output

before=$(stats_json)
cmp=(simulate "$cfg" btn --probs 0.1,0.5,0.2 --steps 2000 --runs 4 --seed 3
     --policies "epsilon_greedy:epsilon=0.1,ucb1,thompson,softmax:tau=0.1")
expect 0 "$mab" "${cmp[@]}" --json --threads 2 --csv "$tmp/curves.csv" --plot "$tmp/plot.svg"
cmp_json=$out
pycheck "simulate --policies --json" "$cmp_json" "
assert d['steps'] == 2000 and d['runs'] == 4 and d['seed'] == 3, d
assert d['best_arm'] == 'red', d
labels = [p['policy'] for p in d['policies']]
assert labels == ['epsilon_greedy:epsilon=0.1', 'ucb1', 'thompson', 'softmax:tau=0.1'], labels
for p in d['policies']:
    assert sum(p['pulls'].values()) == 4 * 2000, p
    regret = sum((0.5 - d['arms'][a]['click_rate']) * n for a, n in p['pulls'].items()) / 4
    assert abs(p['regret'] - regret) < 1e-6, (p['regret'], regret)
    lo, hi = p['regret_ci95']
    assert lo <= p['regret'] <= hi, p
    assert abs(p['best_arm_share'] - p['pulls']['red'] / 8000) < 1e-12, p
    assert 0 < p['reward_per_visitor'] < 0.6, p
assert abs(d['lai_robbins_bound'] - d['lai_robbins_rate'] * math.log(2000)) < 1e-9, d" 
# Same seed, one thread: the same output; another seed: other results.
expect 0 "$mab" "${cmp[@]}" --json --threads 1
[[ $out == "$cmp_json" ]] || fail "simulate --policies depends on the number of threads"
expect 0 "$mab" simulate "$cfg" btn --probs 0.1,0.5,0.2 --steps 2000 --runs 4 --seed 4 \
    --policies "epsilon_greedy:epsilon=0.1,ucb1,thompson,softmax:tau=0.1" --json
[[ $out != "$cmp_json" ]] || fail "simulate --policies with another seed gives the same results"
CSV=$tmp/curves.csv pycheck "simulate --csv" "$cmp_json" "
import csv
rows = list(csv.DictReader(open(os.environ['CSV'])))
assert list(rows[0]) == ['policy', 'step', 'regret_mean', 'regret_ci95_low',
                         'regret_ci95_high', 'lai_robbins_bound'], list(rows[0])
assert len(rows) == 4 * 200, len(rows)
for p in d['policies']:
    mine = [r for r in rows if r['policy'] == p['policy']]
    assert [int(r['step']) for r in mine] == list(range(10, 2001, 10)), p['policy']
    assert abs(float(mine[-1]['regret_mean']) - p['regret']) < 1e-6 * max(1, p['regret'])
    assert all(float(r['regret_ci95_low']) <= float(r['regret_mean'])
               <= float(r['regret_ci95_high']) for r in mine)"
SVG=$tmp/plot.svg pycheck "simulate --plot" "$cmp_json" "
import xml.etree.ElementTree as ET
root = ET.parse(os.environ['SVG']).getroot()
assert root.tag.endswith('svg'), root.tag
text = ' '.join(t.text or '' for t in root.iter() if t.tag.endswith('text'))
for needle in ['regret', 'Lai', 'visitors', 'softmax:tau=0.1', 'thompson', '95%',
               'Traffic share', 'arm red']:
    assert needle in text, needle
# 4 regret curves, the bound, and 4 share panels of 3 arms each.
lines = [e for e in root.iter() if e.tag.endswith('polyline')]
assert len(lines) == 5 + 4 * 3, len(lines)
# A panel's shares add up to 1 at every point: the sum of the arms' heights
# is the same everywhere (coordinates are printed to 0.1 pixel).
ys = [[float(p.split(',')[1]) for p in l.get('points').split()] for l in lines[5:8]]
sums = [sum(y[i] for y in ys) for i in range(len(ys[0]))]
assert len(sums) == 200 and max(sums) - min(sums) < 0.3, sums"
expect 0 "$mab" "${cmp[@]}"
contains "$out" "95% interval" "simulate --policies text table"
contains "$out" "Lai-Robbins" "simulate --policies text names the bound"
line=$(grep '^thompson ' <<<"$out" || true)
[[ $line =~ ^thompson\ +[0-9.]+\ +\[[0-9.]+,\ [0-9.]+\]\ +[0-9.]+%\ +[0-9.]+$ ]] ||
    fail "simulate --policies: bad thompson line '$line'"
# Scenarios: a delay in seconds is the delay in visitors at --rate; they
# need Bernoulli arms where the means move; --workers needs --refresh.
scen=(simulate "$cfg" btn --probs 0.1,0.5,0.2 --steps 1500 --runs 3 --seed 3 --json
      --policies thompson,ucb1 --change-at 700 --probs-after 0.5,0.1,0.2)
expect 0 "$mab" "${scen[@]}" --delay 2s --rate 50 --workers 3 --refresh 500
in_seconds=$out
pycheck "simulate scenarios --json" "$in_seconds" "
s = d['scenario']
assert s['change_at'] == 700 and s['probs_after'] == [0.5, 0.1, 0.2], s
assert s['delay_visitors'] == 100 and s['rate'] == 50, s
assert s['workers'] == 3 and s['refresh_ms'] == 500 and s['dynamic_regret'], s
assert d['lai_robbins_bound'] is None, d
for p in d['policies']:
    assert sum(p['pulls'].values()) == 3 * 1500 and p['late_per_run'] >= 0, p"
expect 0 "$mab" "${scen[@]}" --delay 100 --rate 50 --workers 3 --refresh 500
[[ $out == "$in_seconds" ]] || fail "simulate --delay 2s at 50/s differs from --delay 100"
expect 0 "$mab" "${scen[@]}" --delay 100 --rate 50 --workers 3 --refresh 500 --threads 1
[[ $out == "$in_seconds" ]] || fail "simulate scenarios depend on the number of threads"
expect 0 "$mab" simulate "$cfg" btn --probs 0.1,0.5,0.2 --steps 600 --runs 2 --seed 3 \
    --context linear:3 --drift 0.05 --drift-period 2
contains "$out" "linear context: 3 features" "simulate --context says so"
contains "$out" "daily drift: amplitude 0.05, period 2 s" "simulate --drift says so"
expect 2 "$mab" simulate "$cfg" btn --probs 0.1,0.5,0.2 --workers 4
contains "$err" "--workers and --refresh go together" "simulate --workers without --refresh"
expect 2 "$mab" simulate "$cfg" btn --probs 0.1,0.5,0.2 --change-at 10 --probs-after 0.1,2,0
contains "$err" "--probs-after value 2" "simulate --probs-after out of range"
expect 2 "$mab" simulate "$cfg" btn --means 1,2,3 --sd 1 --drift 0.1
contains "$err" "need Bernoulli arms" "simulate --drift with Gaussian arms"
expect 2 "$mab" simulate "$cfg" btn --probs 0.1,0.5,0.2 --delay 5m
contains "$err" "--delay '5m'" "simulate --delay with a bad unit"
expect 2 "$mab" simulate "$cfg" btn --probs 0.1,0.5,0.2 --context quadratic:2
contains "$err" "linear:D" "simulate --context of an unknown model"
# Without --policies: the experiment's own policy, over several runs.
expect 0 "$mab" simulate "$cfg" btn --probs 0.1,0.5,0.2 --steps 500 --runs 3 --seed 1
contains "$out" "ucb1" "simulate --runs uses the experiment's policy"
[[ $(stats_json) == "$before" ]] || fail "simulate comparisons changed the stats"

expect 1 "$mab" simulate "$cfg" btn --probs 0.1,0.5,0.2 --policies "epsilon_greedy:epslion=0.1"
contains "$err" "--policies 'epsilon_greedy:epslion=0.1'" "a bad policy parameter names the item"
contains "$err" "epslion" "a bad policy parameter is named"
expect 1 "$mab" simulate "$cfg" btn --probs 0.1,0.5,0.2 --policies nosuch_policy
contains "$err" "nosuch_policy" "an unknown policy plugin is named"
expect 2 "$mab" simulate "$cfg" btn --probs 0.1,0.5,0.2 --policies "ucb1,,thompson"
expect 2 "$mab" simulate "$cfg" btn --probs 0.1,0.5,0.2 --runs 2 --persist
contains "$err" "--persist" "simulate --runs with --persist"
expect 2 "$mab" simulate "$cfg" btn --probs 0.1,0.5,0.2 --runs 0
expect 2 "$mab" simulate "$cfg" --probs 0.1,0.5,0.2
contains "$err" "name one as EXP" "simulate without EXP on a config of several experiments"

# ---- simulate: Gaussian arms, clamped to the reward range

expect 0 "$mab" simulate "$cfg" revenue --means 3,6 --sd 4 --steps 3000 --seed 2 --json
pycheck "simulate --means" "$out" "
a = d['arms']
assert a['dear']['mean'] == 6 and a['dear']['sd'] == 4, a
assert d['best_arm'] == 'dear', d
for arm in a.values():
    assert arm['rewards'] == arm['pulls'], arm
    assert 0 <= arm['reward_sum'] <= 10 * arm['pulls'], arm
assert a['dear']['pulls'] > a['cheap']['pulls'], a"
expect 0 "$mab" simulate "$cfg" revenue --means 3,6 --sd 4,1 --steps 1000 --runs 3 --seed 2 --json
pycheck "simulate --means --runs" "$out" "
assert d['arms']['cheap']['sd'] == 4 and d['arms']['dear']['sd'] == 1, d
assert d['arms']['cheap']['expected'] < d['arms']['dear']['expected'] < 0.6, d"
expect 2 "$mab" simulate "$cfg" revenue --means 3,11 --sd 1
contains "$err" "outside the reward range" "simulate --means outside the range"
expect 2 "$mab" simulate "$cfg" revenue --means 3,6
contains "$err" "--sd" "simulate --means without --sd"
expect 2 "$mab" simulate "$cfg" revenue --means 3,6 --sd 0
expect 2 "$mab" simulate "$cfg" revenue --means 3,6 --sd 1,2,3
expect 2 "$mab" simulate "$cfg" revenue --probs 0.1,0.2 --sd 1

# ---- reset zeroes one experiment and nothing else

expect 0 "$mab" reset "$cfg" btn
contains "$out" "btn" "reset says what it reset"
pycheck "reset" "$(stats_json)" "
e = d['experiments']
for a in e['btn']['arms'].values():
    assert {k: a[k] for k in ('pulls', 'rewards', 'reward_sum', 'mean')} == {
        'pulls': 0, 'rewards': 0, 'reward_sum': 0, 'mean': 0}, a
assert e['revenue']['arms']['dear']['reward_sum'] == 7.5, e['revenue']"
expect 1 "$mab" reset "$cfg" nosuch
contains "$err" '"nosuch"' "reset of an unknown experiment"

# ---- export / import: json_file <-> lmdb, exact; bad input imports nothing

# Counters with sums that need all 17 digits to come back bit for bit.
expect 0 "$mab" reward "$cfg" revenue cheap 0.1
expect 0 "$mab" reward "$cfg" revenue cheap 3.3333333333333335
expect 0 "$mab" reward "$cfg" btn red 0.7
expect 0 "$mab" export "$cfg"
json_export=$out
pycheck "export format" "$json_export" "
assert d['format'] == 'mab-export' and d['version'] == 1, d
e = d['experiments']
cheap = e['revenue']['cheap']
assert abs(cheap['reward_sum'] - (3.4333333333333336 + 10 * (cheap['rewards'] - 3))) < 1e-9, cheap
assert set(cheap) == {'pulls', 'rewards', 'reward_sum', 'reward_sum_sq'}, cheap
assert e['btn']['red']['reward_sum'] == 0.7, e['btn']"
# Exactly the doubles the engine summed, although every command above
# reloaded them from the json_file store's text.
pycheck "export sums bit for bit" "$json_export" "
cheap = d['experiments']['revenue']['cheap']
k = cheap['rewards'] - 3  # the rewards of 10 that simulate --persist sent
assert cheap['reward_sum'] == ((0.0 + 10 * k) + 0.1) + 3.3333333333333335, cheap
assert cheap['reward_sum_sq'] == ((0.0 + 100 * k) + 0.1 * 0.1) + 3.3333333333333335 ** 2, cheap
red = d['experiments']['btn']['red']
assert red['reward_sum'] == 0.7 and red['reward_sum_sq'] == 0.7 * 0.7, red"
expect 0 "$mab" export "$cfg" --out "$tmp/export.json"
[[ $(cat "$tmp/export.json") == "$json_export" ]] || fail "export --out differs from stdout"
[[ ! -e $tmp/export.json.tmp ]] || fail "export --out left its temporary file"

cfg_lmdb=$tmp/mab-lmdb.json
sed 's|"storage": {[^}]*}|"storage": {"plugin": "lmdb", "path": "lmdb-store", "sync": "always"}|' \
    "$cfg" >"$cfg_lmdb"
expect 0 "$mab" import "$cfg_lmdb" "$tmp/export.json"
contains "$out" "imported" "import says what it did"
expect 0 "$mab" export "$cfg_lmdb"
[[ $out == "$json_export" ]] || fail "json_file -> lmdb export differs: $out"
# Sums travel bit for bit: stats --json prints them with 17 significant
# digits, which name one double exactly (Python's float repr keeps that).
# An import carries totals, not time buckets: the share of the last bucket
# is the json_file store's only, so it is left out of the comparison.
without_share() {
    python3 -c 'import json, sys
d = json.load(sys.stdin)
for x in d["experiments"].values():
    for a in x["arms"].values():
        del a["share_last_bucket"]
print(json.dumps(d))'
}
[[ $("$mab" stats "$cfg_lmdb" --json | without_share) == "$(stats_json | without_share)" ]] ||
    fail "json_file -> lmdb: sums are not bit for bit the same"
# And back, into a fresh json_file store.
cfg_back=$tmp/mab-back.json
sed "s|$state|$tmp/back.json|" "$cfg" >"$cfg_back"
expect 0 "$mab" export "$cfg_lmdb" --out "$tmp/export-lmdb.json"
expect 0 "$mab" import "$cfg_back" "$tmp/export-lmdb.json"
expect 0 "$mab" export "$cfg_back"
[[ $out == "$json_export" ]] || fail "lmdb -> json_file export differs: $out"
# Importing again adds; --replace makes it exact again.
expect 0 "$mab" import "$cfg_lmdb" "$tmp/export.json"
expect 0 "$mab" export "$cfg_lmdb"
[[ $out != "$json_export" ]] || fail "a second import did not add"
expect 0 "$mab" import "$cfg_lmdb" "$tmp/export.json" --replace
expect 0 "$mab" export "$cfg_lmdb"
[[ $out == "$json_export" ]] || fail "import --replace is not exact: $out"

lmdb_before=$out
bad_import() { # bad_import WHAT FILE_CONTENT EXPECTED_MESSAGE
    printf '%s' "$2" >"$tmp/bad.json"
    expect 1 "$mab" import "$cfg_lmdb" "$tmp/bad.json"
    contains "$err" "$3" "bad import ($1)"
    contains "$err" "nothing was imported" "bad import ($1)"
    run "$mab" export "$cfg_lmdb"
    [[ $out == "$lmdb_before" ]] || fail "bad import ($1) changed the store"
}
bad_import "unparseable" '{"format": "mab-export", "version": 1,' "invalid JSON at line 1"
bad_import "unknown version" '{"format": "mab-export", "version": 2, "experiments": {}}' \
    "unsupported export version 2"
bad_import "other format" '{"format": "mab-json-storage", "version": 1, "experiments": {}}' \
    "format"
bad_import "unknown experiment" '{"format": "mab-export", "version": 1, "experiments": {
  "btn": {"green": {"pulls": 5, "rewards": 1, "reward_sum": 1, "reward_sum_sq": 1}},
  "nosuch": {"x": {"pulls": 1, "rewards": 0, "reward_sum": 0, "reward_sum_sq": 0}}}}' \
    '"nosuch"'
bad_import "unknown arm" '{"format": "mab-export", "version": 1, "experiments": {
  "btn": {"green": {"pulls": 5, "rewards": 1, "reward_sum": 1, "reward_sum_sq": 1},
          "purple": {"pulls": 1, "rewards": 0, "reward_sum": 0, "reward_sum_sq": 0}}}}' \
    '"purple"'
bad_import "bad field" '{"format": "mab-export", "version": 1, "experiments": {
  "btn": {"green": {"pulls": -5, "rewards": 1, "reward_sum": 1, "reward_sum_sq": 1}}}}' \
    "experiments.btn.green.pulls"
bad_import "duplicate record" '{"format": "mab-export", "version": 1, "experiments": {
  "btn": {"green": {"pulls": 5, "rewards": 1, "reward_sum": 1, "reward_sum_sq": 1},
          "green": {"pulls": 1, "rewards": 0, "reward_sum": 0, "reward_sum_sq": 0}}}}' \
    "experiments.btn.green: duplicate record"
bad_import "infinite sum" '{"format": "mab-export", "version": 1, "experiments": {
  "btn": {"green": {"pulls": 5, "rewards": 1, "reward_sum": 1e999, "reward_sum_sq": 1}}}}' \
    "experiments.btn.green.reward_sum: expected a finite number"
# An export in the layout older versions wrote (two-space indents, one arm
# per line) still imports.
cfg_old=$tmp/mab-old-layout.json
sed 's|"storage": {[^}]*}|"storage": {"plugin": "lmdb", "path": "old-layout-store"}|' \
    "$cfg" >"$cfg_old"
cat >"$tmp/old-layout.json" <<'EOF2'
{
  "format": "mab-export",
  "version": 1,
  "experiments": {
    "btn": {
      "green": {"pulls": 5, "rewards": 2, "reward_sum": 1.5, "reward_sum_sq": 1.25},
      "red": {"pulls": 3, "rewards": 1, "reward_sum": 0.69999999999999996, "reward_sum_sq": 0.49}
    }
  }
}
EOF2
expect 0 "$mab" import "$cfg_old" "$tmp/old-layout.json"
contains "$out" "imported 2 records" "import of the older export layout"
pycheck "older export layout imported" "$("$mab" stats "$cfg_old" --json)" "
a = d['experiments']['btn']['arms']
assert (a['green']['pulls'], a['green']['rewards'], a['green']['reward_sum']) == (5, 2, 1.5), a
assert (a['red']['pulls'], a['red']['rewards'], a['red']['reward_sum']) == (3, 1, 0.7), a"

expect 1 "$mab" import "$cfg_lmdb" "$tmp/no-such-file.json"
contains "$err" "no-such-file.json" "import of a missing file"
expect 2 "$mab" import "$cfg_lmdb"
contains "$err" "missing argument FILE" "import without FILE"

# ---- import --from-flask-mab: a file in Flask-MAB's own shape

cfg_flask=$tmp/mab-flask.json
sed 's|"storage": {[^}]*}|"storage": {"plugin": "lmdb", "path": "flask-store"}|' \
    "$cfg" >"$cfg_flask"
cat >"$tmp/flask.json" <<'EOF'
{
    "btn": {
        "arms": ["green", "red", "blue"],
        "pulls": [120, 80, 40],
        "reward": [12.0, 20.0, 2.0],
        "values": ["#00FF00", "#FF0000", "#0000FF"],
        "confidence": [0.1, 0.25, 0.05],
        "epsilon": 0.1,
        "bandit_type": "EpsilonGreedyBandit"
    },
    "old_test": {
        "arms": ["a", "b"], "pulls": [1, 2], "reward": [0.0, 1.0], "values": [null, null],
        "confidence": [0.0, 0.5], "bandit_type": "Bandit"
    },
    "revenue": {
        "arms": ["cheap", "gone"], "pulls": [5, 5], "reward": [3.0, 1.0],
        "values": [1, 2], "confidence": [0.6, 0.2], "bandit_type": "ThompsonBandit"
    }
}
EOF
expect 0 "$mab" import "$cfg_flask" --from-flask-mab "$tmp/flask.json"
contains "$out" "btn: matched 3 of 3 arms" "flask import: matched arms"
contains "$out" "old_test: no experiment" "flask import: unmatched bandit"
contains "$out" "revenue.gone: no arm" "flask import: unmatched arm"
contains "$out" "imported 4 arms of 2 experiments (245 pulls, 37 rewards)" "flask import summary"
pycheck "flask import stored" "$("$mab" stats "$cfg_flask" --json)" "
a = d['experiments']['btn']['arms']
assert (a['green']['pulls'], a['green']['rewards'], a['green']['reward_sum']) == (120, 12, 12), a
assert (a['red']['pulls'], a['red']['rewards'], a['red']['reward_sum']) == (80, 20, 20), a
assert (a['blue']['pulls'], a['blue']['rewards'], a['blue']['reward_sum']) == (40, 2, 2), a
c = d['experiments']['revenue']['arms']['cheap']
assert (c['pulls'], c['rewards'], c['reward_sum']) == (5, 3, 3), c"
flask_before=$("$mab" export "$cfg_flask")
printf '{"btn": {"arms": ["green"], "pulls": [1, 2], "reward": [0.0]}}' >"$tmp/flask-bad.json"
expect 1 "$mab" import "$cfg_flask" --from-flask-mab "$tmp/flask-bad.json"
contains "$err" "nothing was imported" "bad flask import"
printf '{"nothing": {"arms": ["x"], "pulls": [1], "reward": [0.0]}}' >"$tmp/flask-none.json"
expect 1 "$mab" import "$cfg_flask" --from-flask-mab "$tmp/flask-none.json"
contains "$err" "no bandit matched" "flask import matching nothing"
[[ $("$mab" export "$cfg_flask") == "$flask_before" ]] || fail "bad flask imports changed the store"

# ---- report: a fixture store, checked field by field (text and --json)

src=$(cd "$2" && pwd)
cfg_report=$tmp/report.json
cat >"$cfg_report" <<EOF
{
  "plugin_path": ["$build/plugins"],
  "storage": {"plugin": "json_file", "path": "$tmp/report-state.json"},
  "experiments": {
    "color": {"policy": {"plugin": "epsilon_greedy", "epsilon": 0.2},
              "arms": {"green": "#00FF00", "blue": "#0000FF", "red": "#FF0000"}},
    "txt": {"policy": {"plugin": "thompson"}, "winner": {"p_best": 0.99},
            "arms": {"casual": "Hey", "neutral": "Add to cart"}},
    "spend": {"policy": {"plugin": "ucb1"}, "reward": {"min": 0, "max": 20},
              "winner": {"expected_loss": 0.5}, "arms": {"a": 1, "b": 2}}
  }
}
EOF
expect 0 "$mab" import "$cfg_report" "$src/tests/fixtures/report_store.json"
expect 0 "$mab" report "$cfg_report" --json
report_all=$out
expect 0 "$mab" report "$cfg_report"
report_text=$out
expect 0 "$mab" stats "$cfg_report" --json
report_stats=$out
export REPORT_TEXT=$report_text REPORT_STATS=$report_stats
pycheck "mab report --json and text, field by field" "$report_all" '
from math import exp, lgamma, log, log1p, sqrt, isclose
e = d["experiments"]
assert list(e) == ["color", "txt", "spend"], list(e)
def cdf(a, b, x):  # Beta(a, b) CDF, integer a and b: P(Binomial(a+b-1, x) >= a)
    n = a + b - 1
    return sum(exp(lgamma(n + 1) - lgamma(j + 1) - lgamma(n - j + 1) + j * log(x) + (n - j) * log1p(-x))
               for j in range(a, n + 1))
def lbeta(a, b):
    return lgamma(a) + lgamma(b) - lgamma(a + b)
def miller(aA, bA, aB, bB):  # P(B > A), Evan Miller
    return sum(exp(lbeta(aA + i, bA + bB) - log(bB + i) - lbeta(1 + i, bB) - lbeta(aA, bA)) for i in range(aB))
counts = {"color": {"green": (3000, 150), "blue": (3000, 240), "red": (2900, 140)},
          "txt": {"casual": (200, 20), "neutral": (200, 22)}}
for x, arms in counts.items():
    r = e[x]
    assert r["model"] == "beta" and r["draws"] == 10000 and r["reward_min"] == 0 and r["reward_max"] == 1, r
    assert r["pulls"] == sum(n for n, s in arms.values()), r
    for arm, (n, s) in arms.items():
        a = r["arms"][arm]
        assert (a["pulls"], a["rewards"], a["reward_sum"]) == (n, s, s), a
        assert a["mean"] == s / n, a
        assert abs(cdf(1 + s, 1 + n - s, a["ci_low"]) - 0.025) < 1e-8, (arm, a)
        assert abs(cdf(1 + s, 1 + n - s, a["ci_high"]) - 0.975) < 1e-8, (arm, a)
        assert a["share_last_bucket"] is None and a["late_rewards"] == 0, a
    assert isclose(sum(a["p_best"] for a in r["arms"].values()), 1.0), r
    assert r["holdout"] is None and r["srm_p_value"] is None and r["late_rewards"] == 0, r
    assert r["not_available"] == ["share_last_bucket", "holdout", "srm_p_value"], r
c = e["color"]
assert c["policy"] == "epsilon_greedy" and c["policy_params"] == {"plugin": "epsilon_greedy", "epsilon": 0.2}, c
assert c["winner_rule"] == {"p_best": 0.95, "expected_loss": 0.001}, c
assert c["leader"] == "blue" and c["winner"] is True, c
assert c["arms"]["blue"]["p_best"] > 0.999 and c["arms"]["blue"]["expected_loss"] < 0.001, c
assert c["recommendation"] == "winner: blue, P(best) >0.999, expected loss %.2g" % c["arms"]["blue"]["expected_loss"], c
t = e["txt"]
assert t["winner_rule"] == {"p_best": 0.99, "expected_loss": 0.001}, t
p = miller(21, 181, 23, 179)  # P(neutral > casual)
assert abs(t["arms"]["neutral"]["p_best"] - p) < 4 * sqrt(p * (1 - p) / 1e4), (p, t)
assert t["leader"] == "neutral" and t["winner"] is False, t
assert t["recommendation"] == "keep exploring: P(best) %.3f for neutral, expected loss %.2g" % (
    t["arms"]["neutral"]["p_best"], t["arms"]["neutral"]["expected_loss"]), t
s = e["spend"]
assert s["model"] == "normal" and s["winner_rule"] == {"p_best": 0.95, "expected_loss": 0.5}, s
for arm, (n, total, squares) in {"a": (50, 80, 900), "b": (50, 70, 600)}.items():
    a = s["arms"][arm]
    mean = total / n
    sd = sqrt((squares - total * total / n) / (n - 1) / n)
    assert a["mean"] == mean, a
    assert isclose(a["ci_low"], mean - 1.959963984540054 * sd, rel_tol=1e-12), (a, mean, sd)
    assert isclose(a["ci_high"], mean + 1.959963984540054 * sd, rel_tol=1e-12), (a, mean, sd)
assert s["leader"] == "a" and s["winner"] is False, s
# The text: one line per arm with the JSON values, the leader starred.
text = os.environ["REPORT_TEXT"].splitlines()
def prob(v):
    return ">0.999" if v >= 0.9995 else "<0.001" if v < 0.0005 else "%.3f" % v
for x, r in e.items():
    head = [i for i, l in enumerate(text) if l.startswith("experiment %s (policy %s, parameters " % (x, r["policy"]))]
    assert len(head) == 1, (x, text)
    i = head[0]
    digits = 4 if r["reward_max"] - r["reward_min"] <= 1 else 2
    assert text[i + 1].split() == ("%s posterior, 10000 draws; winner rule: P(best) >= %g and expected loss < %g" % (
        "Beta" if r["model"] == "beta" else "Normal", r["winner_rule"]["p_best"], r["winner_rule"]["expected_loss"])).split(), text[i + 1]
    assert r["rules"] == {"state": "running", "serve": None, "floor": 0, "burn_in": 0, "holdout": None,
                          "attribution_window": 0}, r["rules"]
    assert text[i + 2] == "  rules: state running, floor none, burn-in none, holdout none, attribution window none", text[i + 2]
    assert text[i + 3].split() == ["arm", "pulls", "mean", "95%", "interval", "P(best)", "expected", "loss", "share"], text[i + 3]
    for k, (arm, a) in enumerate(r["arms"].items()):
        want = [arm + (" *" if arm == r["leader"] else ""), str(a["pulls"]), "%.*f" % (digits, a["mean"]),
                "[%.*f, %.*f]" % (digits, a["ci_low"], digits, a["ci_high"]), prob(a["p_best"]), "%.2g" % a["expected_loss"], "-"]
        assert text[i + 4 + k].split() == " ".join(want).split(), (text[i + 4 + k], want)
    n = len(r["arms"])
    assert text[i + 4 + n] == "  " + r["recommendation"], (text[i + 4 + n], r["recommendation"])
    assert text[i + 5 + n] == "  late rewards (refused by the attribution window): 0", text[i + 5 + n]
    assert text[i + 6 + n] == "  not available: share of traffic in the last bucket, holdout comparison, sample-ratio check", text[i + 6 + n]
    assert text[i + 7 + n] == "  sample-ratio check: " + r["srm_status"], text[i + 7 + n]
    assert r["srm_status"].startswith("not available: "), r
    # json_file keeps time buckets; an imported store has none yet.
    assert r["bucket_seconds"] == 3600 and r["history"] == [] and r["last_bucket_start"] is None, r
    assert r["not_available_reasons"]["share_last_bucket"] == "no stored time bucket holds pulls yet", r
# mab stats --json: the same per-arm fields, the same values.
st = json.loads(os.environ["REPORT_STATS"])["experiments"]
for x, r in e.items():
    assert st[x]["arms"] == r["arms"] and st[x]["rules"] == r["rules"], (x, st[x], r)
'
# One experiment; the same answer as in the full report; errors.
expect 0 "$mab" report "$cfg_report" txt --json
ALL=$report_all pycheck "mab report EXP --json" "$out" '
assert list(d["experiments"]) == ["txt"], d
assert d["experiments"]["txt"] == json.loads(os.environ["ALL"])["experiments"]["txt"], d'
expect 0 "$mab" report "$cfg_report" spend
[[ $out == "experiment spend (policy ucb1, parameters {})"* ]] || fail "mab report EXP text: $out"
[[ $out != *"experiment color"* ]] || fail "mab report spend printed other experiments: $out"
expect 1 "$mab" report "$cfg_report" nosuch
contains "$err" 'no experiment "nosuch"' "report of an unknown experiment"
[[ -z $out ]] || fail "report of an unknown experiment printed: $out"
expect 2 "$mab" report "$cfg_report" txt extra
sed 's/"winner": {"p_best": 0.99}/"winner": {"p_bset": 0.99}/' "$cfg_report" >"$tmp/report-typo.json"
expect 1 "$mab" report "$tmp/report-typo.json"
contains "$err" 'experiments.txt.winner: unknown key "p_bset"' "winner typo"

# ---- report: the sample-ratio check (core/srm.c) after visitors persisted by
# simulate: a fixture that plays 1/2, 1/3, 1/6 but reports 1/3 each is
# flagged first thing in the recommendation; exp3 is not (fixed seeds).
cfg_srm=$tmp/srm.json
cat >"$cfg_srm" <<EOF
{
  "plugin_path": ["$build/plugins"],
  "storage": {"plugin": "json_file", "path": "$tmp/srm-state.json"},
  "experiments": {
    "liar": {"policy": {"plugin": "$build/tests/fixtures/policy_reporting.so", "lie": true},
             "arms": {"a": 1, "b": 2, "c": 3}},
    "fair": {"policy": {"plugin": "exp3"}, "arms": {"a": 1, "b": 2, "c": 3}}
  }
}
EOF
expect 0 "$mab" simulate "$cfg_srm" liar --probs 0.1,0.1,0.1 --steps 3000 --seed 7 --persist
expect 0 "$mab" simulate "$cfg_srm" fair --probs 0.1,0.1,0.1 --steps 3000 --seed 7 --persist
expect 0 "$mab" report "$cfg_srm"
export SRM_TEXT=$out
expect 0 "$mab" report "$cfg_srm" --json
pycheck "mab report: the sample-ratio check" "$out" '
text = os.environ["SRM_TEXT"].splitlines()
liar, fair = d["experiments"]["liar"], d["experiments"]["fair"]
assert liar["srm_p_value"] < 0.001 and liar["srm_status"].startswith("mismatch: p = "), liar
assert liar["srm_status"].endswith(" < 0.001") and "srm_p_value" not in liar["not_available"], liar
assert liar["recommendation"].startswith("sample-ratio mismatch: do not trust this report; "), liar
assert fair["srm_p_value"] >= 0.001 and fair["srm_status"].startswith("ok: p = "), fair
assert not fair["recommendation"].startswith("sample-ratio"), fair
assert "  sample-ratio check: " + liar["srm_status"] in text, text
assert "  sample-ratio check: " + fair["srm_status"] in text, text
assert "  " + liar["recommendation"] in text, text'

# ---- report: history, share of the last bucket and the rules in force,
# from a json_file store with time buckets (tests/fixtures/report_buckets_
# store.json), every number computed by hand:
#   bucket 1764547200: green 100 pulls 5 rewards, blue 100 / 8, red none
#   bucket 1764550800: green 50 / 2, blue 120 / 12, red 30 / 1 (200 pulls)
#   bucket 1764554400: blue 0 pulls, 1 reward (a late reward: no traffic)
# The share of the last bucket is of 1764550800, the latest with pulls:
# 50/200, 120/200, 30/200.
cfg_hist=$tmp/report-history.json
cat >"$cfg_hist" <<EOF
{
  "plugin_path": ["$build/plugins"],
  "storage": {"plugin": "json_file", "path": "$tmp/report-history-state.json",
              "retention_seconds": 315360000},
  "experiments": {
    "color": {"policy": {"plugin": "epsilon_greedy", "epsilon": 0.2}, "floor": 0.05,
              "burn_in": 20, "holdout": {"share": 0.1, "arm": "green"},
              "attribution_window": 86400,
              "arms": {"green": "#00FF00", "blue": "#0000FF", "red": "#FF0000"}}
  }
}
EOF
cp "$src/tests/fixtures/report_buckets_store.json" "$tmp/report-history-state.json"
expect 0 "$mab" report "$cfg_hist" --json
hist_all=$out
expect 0 "$mab" report "$cfg_hist" color --json --history 2
hist_two=$out
expect 0 "$mab" report "$cfg_hist"
export HIST_TEXT=$out HIST_TWO=$hist_two
expect 0 "$mab" stats "$cfg_hist" --json
export HIST_STATS=$out
pycheck "mab report: history, share of the last bucket, rules, field by field" "$hist_all" '
r = d["experiments"]["color"]
assert r["bucket_seconds"] == 3600 and r["last_bucket_start"] == 1764550800, r
share = {"green": 0.25, "blue": 0.6, "red": 0.15}
for arm, v in share.items():
    assert r["arms"][arm]["share_last_bucket"] == v, (arm, r["arms"][arm])
assert "share_last_bucket" not in r["not_available"] and "history" not in r["not_available"], r
want = [
    {"start": 1764547200, "pulls": 200, "arms": {
        "green": {"pulls": 100, "rewards": 5, "reward_sum": 5, "rate": 0.05, "share": 0.5},
        "blue": {"pulls": 100, "rewards": 8, "reward_sum": 8, "rate": 0.08, "share": 0.5},
        "red": {"pulls": 0, "rewards": 0, "reward_sum": 0, "rate": None, "share": 0}}},
    {"start": 1764550800, "pulls": 200, "arms": {
        "green": {"pulls": 50, "rewards": 2, "reward_sum": 2, "rate": 0.04, "share": 0.25},
        "blue": {"pulls": 120, "rewards": 12, "reward_sum": 12, "rate": 0.1, "share": 0.6},
        "red": {"pulls": 30, "rewards": 1, "reward_sum": 1, "rate": 1 / 30, "share": 0.15}}},
    {"start": 1764554400, "pulls": 0, "arms": {
        "green": {"pulls": 0, "rewards": 0, "reward_sum": 0, "rate": None, "share": None},
        "blue": {"pulls": 0, "rewards": 1, "reward_sum": 1, "rate": None, "share": None},
        "red": {"pulls": 0, "rewards": 0, "reward_sum": 0, "rate": None, "share": None}}}]
assert r["history"] == want, r["history"]
assert r["rules"] == {"state": "running", "serve": None, "floor": 0.05, "burn_in": 20,
                      "holdout": {"share": 0.1, "arm": "green"}, "attribution_window": 86400}, r["rules"]
# --history 2: the latest two buckets, the same numbers.
two = json.loads(os.environ["HIST_TWO"])["experiments"]["color"]
assert two["history"] == want[1:], two["history"]
assert {k: v for k, v in two.items() if k != "history"} == {k: v for k, v in r.items() if k != "history"}
text = os.environ["HIST_TEXT"].splitlines()
assert text[2] == "  rules: state running, floor 0.05, burn-in 20 pulls per arm, holdout 10% (arm green), attribution window 86400 s", text[2]
assert text[3].split()[-1] == "share", text[3]
for k, arm in enumerate(["green", "blue", "red"]):
    assert text[4 + k].split()[-1] == "%.1f%%" % (100 * share[arm]), (text[4 + k], arm)
assert text[7] == "  share: of the pulls of the bucket starting 2025-12-01T01:00:00Z (3600 s wide); history: 3 buckets", text[7]
st = json.loads(os.environ["HIST_STATS"])["experiments"]["color"]
assert st["arms"] == r["arms"] and st["rules"] == r["rules"], st
'
expect 2 "$mab" report "$cfg_hist" --history 0
contains "$err" "--history '0' is not an integer in [1, 8760]" "report --history 0"
expect 2 "$mab" report "$cfg_hist" --history 8761

if ((failures)); then
    echo "cli_test: $failures failed checks ($commands commands run)" >&2
    exit 1
fi
echo "cli_test: all checks passed ($commands commands run)"
