#!/usr/bin/env bash
# mabd_context_test.sh BUILD_DIR - context features through the real mabd on
# a free loopback port, with the echo fixture policy
# (tests/fixtures/policy_echo.c: it plays the arm its first feature names
# and its update() sums that feature at pulls (per arm) and at rewards,
# counts missing ones and sums the reward times). Features come from the
# query (?f.NAME=X) and from a POST body ("features"); a reward's update
# sees the choice's features from the cookie, whatever the reward request
# sends; a value that is not a number is answered 400 naming the feature;
# JSON null is a missing feature. The sums are read from storage after
# SIGTERM.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mabd_test_begin "$1"

$mab keygen "$tmp/mab.key" >/dev/null
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
mabd_start
json=(-H "Content-Type: application/json")

arm_of() { # arm_of WHAT: the arm of "ctx" in $body
    printf '%s' "$body" | $py -c 'import json, sys; print(json.load(sys.stdin)["ctx"]["arm"])' 2>/dev/null ||
        echo "?"
}

# 1. Query features reach choose: slot 2 plays arm c; unused names are ignored.
req q1 -c "$tmp/jar1" "$base/v1/choose/ctx?f.slot=2&f.hour=5&f.other=9&token_not=1"
expect_status 200 "choose with query features"
[[ $(arm_of) == c ]] || fail "query f.slot=2 did not reach choose: $body"
# The reward sends other features (body and query): update must see slot 2.
req r1 -b "$tmp/jar1" "${json[@]}" -d '{"value": 1, "features": {"slot": 0, "hour": 7}}' \
    "$base/v1/reward/ctx?f.slot=0"
expect_status 200 "reward with other features"
pycheck "reward counted" "$body" 'assert d["counted"] is True, d'

# 2. A POST body's features reach choose: slot 1 plays arm b.
req q2 -c "$tmp/jar2" "${json[@]}" -d '{"features": {"slot": 1, "hour": 3.5}}' "$base/v1/choose/ctx"
expect_status 200 "POST choose with body features"
[[ $(arm_of) == b ]] || fail "body features did not reach choose: $body"
req r2 -b "$tmp/jar2" "${json[@]}" -d '{"value": 1}' "$base/v1/reward/ctx"
pycheck "second reward counted" "$body" 'assert d["counted"] is True, d'

# 3. JSON null is a missing feature (NAN: arm a, counted missing at the
#    pull and, from the cookie, at the reward).
req q3 -c "$tmp/jar3" "${json[@]}" -d '{"features": {"slot": null}}' "$base/v1/choose/ctx"
expect_status 200 "null feature"
[[ $(arm_of) == a ]] || fail "a null feature was not missing: $body"
req r3 -b "$tmp/jar3" "${json[@]}" -d '{"value": 1, "features": {"slot": 2}}' "$base/v1/reward/ctx"
pycheck "third reward counted" "$body" 'assert d["counted"] is True, d'

# 4. Not a number: 400 naming the feature, nothing counted.
for bad in "f.slot=abc" "f.slot=" "f.slot" "f.slot=inf" "f.slot=nan" "f.slot=1&f.slot=2" "f.bad%20name=1"; do
    req bad -c "$tmp/jarbad" "$base/v1/choose/ctx?$bad"
    expect_status 400 "query $bad"
    [[ $body == *'"error"'* ]] || fail "query $bad: no error: $body"
done
req bad "$base/v1/choose/ctx?f.slot=abc"
[[ $body == *'feature slot: \"abc\" is not a finite number'* ]] || fail "400 does not name the feature: $body"
for bad in '{"features": {"slot": "2"}}' '{"features": [1]}' '{"feature": {}}' '[]'; do
    req bad "${json[@]}" -d "$bad" "$base/v1/choose/ctx"
    expect_status 400 "body $bad"
done
req bad "${json[@]}" -d '{"value": 1, "features": {"slot": true}}' "$base/v1/reward/ctx"
expect_status 400 "reward body with a bad feature"

# ---- the statistics, from storage after SIGTERM -------------------------
mabd_stop
state=$(cat "$tmp/state.json")
pycheck "update saw the choices' features" "$state" '
pulls = {a: s["pulls"] for a, s in d["experiments"]["ctx"].items()}
assert pulls == {"a": 1, "b": 1, "c": 1}, pulls
ps = {(s.get("arm"), s["layout"]): s["values"] for s in d["policy_stats"] if s["experiment"] == "ctx"}
ex = ps[(None, "echo/1:1,3")]
# rewards: slot 2 (cookie of choice 1) + slot 1 (choice 2) + missing (choice 3)
assert ex[0] == 3.0, ("reward feature sum", ex)
# missing: the null pull and its reward
assert ex[1] == 2.0, ("missing", ex)
arms = {a: v for (a, l), v in ps.items() if a}
assert arms.get("c") == [2.0] and arms.get("b") == [1.0], arms'

if ((failures > 0)); then
    echo "mabd_context_test: $failures failure(s)" >&2
    exit 1
fi
echo "mabd_context_test: ok"
