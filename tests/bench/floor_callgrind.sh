#!/usr/bin/env bash
# floor_callgrind.sh BUILD_DIR [N] [K] - instructions per decision of the
# library beside the floor (the least work the decision needs, written out in
# tests/bench/floor_bench.c), counted by callgrind over N calls (default
# 20000) at K arms (default 10), and printed as two markdown tables with the
# ratios and issue 18's targets (docs/benchmarks.md).
#
# Library: mab-bench-calls POLICY K N handle|string under
#   valgrind --tool=callgrind --toggle-collect=FUNCTION
# with FUNCTION mab_choose_h, mab_choose, mab_reward_h or mab_reward (exp3's
# rewards carry their probability: mab_reward_ctx), so that only the calls
# of the measured loop count, with all they call (the policy, libm).
# Floor: mab-bench-floor NAME K N under --toggle-collect=floor_NAME.
# thompson runs with "probability_draws": 0: its floor draws K Betas and
# estimates no choice probability, which the default 256 extra joint draws
# do (about 765,000 instructions a choose: policy_callgrind.sh).
set -euo pipefail
build=$(cd "$1" && pwd)
n=${2:-20000}
k=${3:-10}
calls=$build/bin/mab-bench-calls
floor=$build/bin/mab-bench-floor
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# count FUNCTION COMMAND...: instructions per call of FUNCTION over n calls.
count() {
    local fn=$1
    shift
    local collected
    collected=$(cd "$out" && valgrind --tool=callgrind --toggle-collect="$fn" \
        --callgrind-out-file="$out/cg.out" "$@" 2>&1 >/dev/null |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
    if [[ -z "$collected" || "$collected" -eq 0 ]]; then
        echo "floor_callgrind.sh: nothing collected for $fn in: $*" >&2
        exit 1
    fi
    echo $((collected / n))
}

# ratio A B: A / B to two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# mark VALUE LIMIT: "≤ LIMIT: met" or "≤ LIMIT: **MISSED**".
mark() {
    awk -v v="$1" -v t="$2" -v s="$3" 'BEGIN {
        if (v <= t) printf "≤ %s%s: met", t, s; else printf "≤ %s%s: **MISSED**", t, s }'
}

declare -A target=([epsilon_greedy]=2.5 [ucb1]=2.5 [softmax]=1.5 [thompson]=1.1)
policies="epsilon_greedy ucb1 softmax thompson exp3"

echo "Choose at K = $k, instructions per call (callgrind, $n calls; thompson with \`\"probability_draws\": 0\`):"
echo
echo "| policy | floor | handle | handle / floor | target | string | string / handle | target |"
echo "|---|---:|---:|---:|---|---:|---:|---|"
for p in $policies; do
    f=$(count "floor_$p" "$floor" "$p" "$k" "$n")
    extra=""
    [[ $p == thompson ]] && extra='"probability_draws": 0'
    h=$(MAB_BENCH_POLICY=$extra count mab_choose_h "$calls" "$p" "$k" "$n" handle)
    s=$(MAB_BENCH_POLICY=$extra count mab_choose "$calls" "$p" "$k" "$n" string)
    hf=$(ratio "$h" "$f")
    sh=$(ratio "$s" "$h")
    t="(none set)"
    [[ -n "${target[$p]:-}" ]] && t=$(mark "$hf" "${target[$p]}" x)
    echo "| $p | $f | $h | $hf | $t | $s | $sh | $(mark "$sh" 1.5 x) |"
done
echo
echo "Reward, instructions per call (same runs' programs; the floor adds to two counters):"
echo
echo "| policy | floor | handle | target | string | string / handle | target |"
echo "|---|---:|---:|---|---:|---:|---|"
fr=$(count floor_reward "$floor" reward "$k" "$n")
for p in $policies; do
    extra=""
    [[ $p == thompson ]] && extra='"probability_draws": 0'
    h=$(MAB_BENCH_POLICY=$extra count mab_reward_h "$calls" "$p" "$k" "$n" handle)
    fn=mab_reward
    [[ $p == exp3 ]] && fn=mab_reward_ctx
    s=$(MAB_BENCH_POLICY=$extra count "$fn" "$calls" "$p" "$k" "$n" string)
    sh=$(ratio "$s" "$h")
    echo "| $p | $fr | $h | $(mark "$h" 150 "") | $s | $sh | $(mark "$sh" 1.5 x) |"
done
