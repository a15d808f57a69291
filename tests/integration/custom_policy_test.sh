#!/usr/bin/env bash
# custom_policy_test.sh BUILD_DIR SOURCE_DIR
#
# The data scientist's path, end to end, against an install in a temporary
# prefix: install mab, build examples/custom-policy out of tree twice, with
# pkg-config (its Makefile) and with CMake (its CMakeLists.txt:
# find_package(mab), mab_add_policy()), and drive each with the installed
# `mab` command line tool: the Makefile's .so named by path, the CMake one
# installed into the plugin dir and named by name, both in configs without
# plugin_path. Explore-then-commit with explore_pulls 20 and two arms must
# hand out exactly 20 of each arm in the first 40 choices. Then the ABI 2
# example, threshold_greedy (statistics of its own: hits per arm), the same
# two ways: its choice must follow the hit counts kept in the store, which
# the four counters cannot give (the arm of the better mean loses).
set -euo pipefail

fail() {
    echo "custom_policy_test: FAIL: $*" >&2
    exit 1
}

note() {
    echo "custom_policy_test: $*"
}

[[ $# -eq 2 ]] || fail "usage: $0 BUILD_DIR SOURCE_DIR"
BUILD_DIR=$(cd "$1" && pwd) || fail "build dir '$1' does not exist"
SOURCE_DIR=$(cd "$2" && pwd) || fail "source dir '$2' does not exist"
EXAMPLE_DIR="$SOURCE_DIR/examples/custom-policy"
[[ -f "$EXAMPLE_DIR/explore_then_commit.c" ]] || fail "$EXAMPLE_DIR/explore_then_commit.c is missing"

for tool in cmake make cc pkg-config nm python3; do
    command -v "$tool" >/dev/null || fail "'$tool' is not installed"
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/mab-custom-policy.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
PREFIX="$TMP/prefix"

# 1. Install into the temporary prefix.
cmake --install "$BUILD_DIR" --prefix "$PREFIX" >"$TMP/install.log" 2>&1 \
    || { cat "$TMP/install.log" >&2; fail "cmake --install $BUILD_DIR --prefix $PREFIX failed"; }

# GNUInstallDirs may have chosen lib, lib64 or lib/<multiarch>: ask the install.
PC_FILE=$(find "$PREFIX" -name mab.pc -path '*/pkgconfig/*' | head -n 1)
[[ -n "$PC_FILE" ]] || fail "no mab.pc under $PREFIX after install"
PC_DIR=$(dirname "$PC_FILE")
LIB_DIR=$(dirname "$PC_DIR")
[[ -e "$LIB_DIR/libmab.so" ]] || fail "libmab.so is not installed next to pkgconfig/ in $LIB_DIR"
PLUGIN_DIR="$LIB_DIR/mab/plugins"
note "installed to $PREFIX (libdir $LIB_DIR)"

# 2. Build a copy of the example against the install, and only the install.
WORK="$TMP/custom-policy"
cp -R "$EXAMPLE_DIR" "$WORK"
rm -f "$WORK"/*.so "$WORK"/etc-state.json
# mab.pc must describe this prefix, not the one chosen at configure time.
PKG_CONFIG_PATH="$PC_DIR" pkg-config --cflags mab | grep -q -- "-I$PREFIX/" \
    || fail "pkg-config --cflags mab gives '$(PKG_CONFIG_PATH="$PC_DIR" pkg-config --cflags mab)', not a directory in $PREFIX"
PKG_CONFIG_PATH="$PC_DIR" make -C "$WORK" >"$TMP/make.log" 2>&1 \
    || { cat "$TMP/make.log" >&2; fail "make -C $WORK with PKG_CONFIG_PATH=$PC_DIR failed"; }
SO="$WORK/explore_then_commit.so"
[[ -f "$SO" ]] || fail "make did not produce $SO"
TG_SO="$WORK/threshold_greedy.so"
[[ -f "$TG_SO" ]] || fail "make did not produce $TG_SO"

# A plugin exports exactly one symbol: the entry point.
EXPORTED=$(nm -D --defined-only "$SO" | awk '{ print $NF }' | grep -v '^_' | sort)
[[ "$EXPORTED" == "mab_policy_entry" ]] \
    || fail "$SO must export only mab_policy_entry, it exports: $(echo $EXPORTED)"
note "built $SO against the install; exports only mab_policy_entry"

# 3. The same example with CMake: find_package(mab) must find the install in
# the temporary prefix (checked through mab_DIR: a mab in /usr/local would
# also be found), then mab_add_policy() installs it into the install's
# plugin directory.
CWORK="$TMP/custom-policy-cmake"
cp -R "$EXAMPLE_DIR" "$CWORK"
rm -f "$CWORK"/*.so
cmake -S "$CWORK" -B "$CWORK/build" -DCMAKE_PREFIX_PATH="$PREFIX" >"$TMP/cmake.log" 2>&1 \
    || { cat "$TMP/cmake.log" >&2; fail "configuring $CWORK with find_package(mab) in $PREFIX failed"; }
grep -q "mab_DIR:PATH=$LIB_DIR/cmake/mab" "$CWORK/build/CMakeCache.txt" \
    || fail "find_package(mab) did not use $LIB_DIR/cmake/mab: $(grep mab_DIR "$CWORK/build/CMakeCache.txt")"
cmake --build "$CWORK/build" >"$TMP/cmake-build.log" 2>&1 \
    || { cat "$TMP/cmake-build.log" >&2; fail "cmake --build $CWORK/build failed"; }
CSO="$CWORK/build/explore_then_commit.so"
[[ -f "$CSO" ]] || fail "mab_add_policy did not produce $CSO (no lib prefix, .so suffix): $(ls "$CWORK/build")"
EXPORTED=$(nm -D --defined-only "$CSO" | awk '{ print $NF }' | grep -v '^_' | sort)
[[ "$EXPORTED" == "mab_policy_entry" ]] \
    || fail "$CSO must export only mab_policy_entry, it exports: $(echo $EXPORTED)"
cmake --install "$CWORK/build" >"$TMP/cmake-install.log" 2>&1 \
    || { cat "$TMP/cmake-install.log" >&2; fail "cmake --install $CWORK/build failed"; }
[[ -f "$PLUGIN_DIR/explore_then_commit.so" && -f "$PLUGIN_DIR/threshold_greedy.so" ]] \
    || fail "mab_add_policy did not install both examples into $PLUGIN_DIR: $(cat "$TMP/cmake-install.log")"
note "built $CSO with find_package(mab) + mab_add_policy; installed into $PLUGIN_DIR"

# mab_add_policy's visibility, not the example's care: a policy of two files
# with a non-static helper still exports only its entry point. And the
# version file refuses a mab of another major version.
PROBE="$TMP/probe"
mkdir -p "$PROBE"
cat >"$PROBE/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.16)
project(probe LANGUAGES C)
find_package(mab ${WANT} REQUIRED)
mab_add_policy(probe_policy SOURCES entry.c helper.c NO_INSTALL)
CMAKE
cat >"$PROBE/helper.c" <<'C'
int probe_helper(int x);
int probe_helper(int x) { return x + 1; }
C
cp "$EXAMPLE_DIR/explore_then_commit.c" "$PROBE/entry.c"
echo 'int probe_use(void); int probe_use(void) { int probe_helper(int); return probe_helper(1); }' \
    >>"$PROBE/entry.c"
cmake -S "$PROBE" -B "$PROBE/build" -DWANT=0.2 -DCMAKE_PREFIX_PATH="$PREFIX" >"$TMP/probe.log" 2>&1 \
    && cmake --build "$PROBE/build" >>"$TMP/probe.log" 2>&1 \
    || { cat "$TMP/probe.log" >&2; fail "the two-file probe policy did not build"; }
EXPORTED=$(nm -D --defined-only "$PROBE/build/probe_policy.so" | awk '{ print $NF }' | grep -v '^_' | sort)
[[ "$EXPORTED" == "mab_policy_entry" ]] \
    || fail "mab_add_policy must build with hidden visibility; probe_policy.so exports: $(echo $EXPORTED)"
if cmake -S "$PROBE" -B "$PROBE/build-v99" -DWANT=99.0 -DCMAKE_PREFIX_PATH="$PREFIX" \
    >"$TMP/probe-v99.log" 2>&1; then
    fail "find_package(mab 99.0) accepted the installed mab $(grep -o 'PACKAGE_VERSION "[^"]*"' "$LIB_DIR/cmake/mab/mabConfigVersion.cmake")"
fi
note "mab_add_policy: hidden visibility (helpers not exported); find_package(mab 99.0) refused"

# 4. Everything below needs the installed command line tool and json_file.
MAB="$PREFIX/bin/mab"
[[ -x "$MAB" ]] || fail "$MAB is not installed: the mab_cli target (OUTPUT_NAME mab) must be built and installed to bin"
[[ -f "$PLUGIN_DIR/json_file.so" ]] || fail "$PLUGIN_DIR/json_file.so is not installed: the json_file storage plugin is missing"

# mab_exits STATUS ARGS...: run the installed CLI, which must exit with STATUS
# (0 success, 1 user error, 2 usage error); stdout lands in $OUT, stderr in $ERR.
OUT="$TMP/out"
ERR="$TMP/err"
mab_exits() {
    local expected=$1 rc=0
    shift
    LD_LIBRARY_PATH="$LIB_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$MAB" "$@" \
        >"$OUT" 2>"$ERR" || rc=$?
    if [[ $rc -ne $expected ]]; then
        cat "$OUT" "$ERR" >&2
        fail "'mab $*' exited with $rc, expected $expected"
    fi
}

mab() {
    mab_exits 0 "$@"
}

# scenario NAME PLUGIN POLICY_FILE: a config without plugin_path naming the
# policy as PLUGIN (a path or a name), which must load from POLICY_FILE.
scenario() {
local name=$1 plugin=$2 policy_file=$3
RUN="$TMP/run-$name"
mkdir "$RUN"
CONFIG="$RUN/config.json"
cat >"$CONFIG" <<JSON
{
  "seed": 42,
  "storage": {"plugin": "json_file", "path": "state.json", "sync": "always"},
  "experiments": {
    "headline": {
      "policy": {"plugin": "$plugin", "explore_pulls": 20},
      "reward": {"min": 0, "max": 1},
      "arms": {"short": "Buy now", "long": "Our best prices of the year"}
    }
  }
}
JSON
note "== $name: policy \"$plugin\""
mab check "$CONFIG"
grep -qE "^headline +explore_then_commit +2 .* $policy_file\$" "$OUT" \
    || { cat "$OUT" >&2; fail "'mab check' does not show explore_then_commit loaded from $policy_file"; }
grep -qxF "storage:     json_file ($PLUGIN_DIR/json_file.so)" "$OUT" \
    || { cat "$OUT" >&2; fail "'mab check' does not show json_file loaded from $PLUGIN_DIR"; }
note "mab check: ok"

# Errors are told apart by exit status, and say what is wrong on stderr.
mab_exits 1 choose "$CONFIG" no_such_experiment
grep -q no_such_experiment "$ERR" || fail "the error for an unknown experiment does not name it: $(cat "$ERR")"
mab_exits 2 choose "$CONFIG"
note "exit statuses: unknown experiment 1, missing argument 2"

# Forty choices: explore-then-commit explores each arm exactly 20 times.
n_short=0
n_long=0
for i in $(seq 1 40); do
    mab choose "$CONFIG" headline
    IFS=$'\t' read -r arm value probability extra <"$OUT" || true
    [[ -z "${extra:-}" && -n "${probability:-}" ]] \
        || fail "choice $i: expected ARM_ID<TAB>VALUE_JSON<TAB>PROBABILITY, got '$(cat "$OUT")'"
    case "$arm" in
    short) [[ "$value" == '"Buy now"' ]] || fail "choice $i: arm short came with value $value"
           n_short=$((n_short + 1)) ;;
    long)  [[ "$value" == '"Our best prices of the year"' ]] || fail "choice $i: arm long came with value $value"
           n_long=$((n_long + 1)) ;;
    *)     fail "choice $i: unknown arm '$arm'" ;;
    esac
    # Uniform among the arms still exploring: 1/2 while both are, then 1.
    awk -v p="$probability" 'BEGIN { exit !(p + 0 == 0.5 || p + 0 == 1) }' \
        || fail "choice $i: probability '$probability' is neither 0.5 nor 1"
done
[[ $n_short -eq 20 && $n_long -eq 20 ]] \
    || fail "the first 40 choices gave short $n_short times and long $n_long times, expected 20 and 20"
note "40 choices: 20 short, 20 long"

# Rewards reach the stats.
for i in 1 2 3; do
    mab reward "$CONFIG" headline long 1
done
mab stats "$CONFIG" --json
cp "$OUT" "$TMP/stats.json"
python3 - "$TMP/stats.json" <<'PY' || fail "mab stats --json does not show 20 pulls and 3 rewards (sum 3) for arm long: $(cat "$TMP/stats.json")"
import json, sys

stats = json.load(open(sys.argv[1]))

# The stats layout is the CLI's; accept an arm record found either under the
# key "long" or as an object whose id field is "long".
def arm_records(node, key=None):
    if isinstance(node, dict):
        if "pulls" in node and (key == "long" or "long" in
                                (node.get("id"), node.get("arm"), node.get("arm_id"))):
            yield node
        for k, v in node.items():
            yield from arm_records(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from arm_records(v)

records = list(arm_records(stats))
ok = any(r.get("pulls") == 20 and r.get("rewards") == 3
         and abs(r.get("reward_sum", 3) - 3) < 1e-9 for r in records)
sys.exit(0 if ok else 1)
PY
note "mab stats --json: long has 20 pulls and 3 rewards"

# Exploration is over and long has the best mean: commit to it.
mab choose "$CONFIG" headline
IFS=$'\t' read -r arm value probability <"$OUT" || true
[[ "$arm" == long ]] || fail "after exploring, the policy must commit to long (best mean), chose '$arm'"
awk -v p="$probability" 'BEGIN { exit !(p + 0 == 1) }' \
    || fail "committed choice must have probability 1, got '$probability'"
note "commit: long with probability 1"

}

scenario pkg-config "$SO" "$SO"
scenario cmake explore_then_commit "$PLUGIN_DIR/explore_then_commit.so"

# threshold_scenario NAME PLUGIN POLICY_FILE: the ABI 2 example. epsilon 0
# makes its choice the greedy one, so the test reads it directly.
threshold_scenario() {
local name=$1 plugin=$2 policy_file=$3
RUN="$TMP/run-tg-$name"
mkdir "$RUN"
CONFIG="$RUN/config.json"
cat >"$CONFIG" <<JSON
{
  "seed": 42,
  "storage": {"plugin": "json_file", "path": "state.json", "sync": "always"},
  "experiments": {
    "basket": {
      "policy": {"plugin": "$plugin", "threshold": 0.8, "epsilon": 0},
      "reward": {"min": 0, "max": 1},
      "arms": {"bundle": "Bundle offer", "discount": "10% off"}
    }
  }
}
JSON
note "== threshold_greedy, $name: policy \"$plugin\""
mab check "$CONFIG"
grep -qE "^basket +threshold_greedy +2 .* $policy_file\$" "$OUT" \
    || { cat "$OUT" >&2; fail "'mab check' does not show threshold_greedy (ABI 2) loaded from $policy_file"; }
sed 's/"threshold": 0.8/"threshold": 2/' "$CONFIG" >"$RUN/bad.json"
mab_exits 1 check "$RUN/bad.json"
grep -q threshold "$ERR" || fail "threshold 2 is refused without naming the key: $(cat "$ERR")"

# No rewards yet: the first arm without rewards, with probability 1.
mab choose "$CONFIG" basket
IFS=$'\t' read -r arm value probability <"$OUT" || true
[[ "$arm" == bundle ]] && awk -v p="$probability" 'BEGIN { exit !(p + 0 == 1) }' \
    || fail "with no rewards threshold_greedy must choose bundle with probability 1, got '$(cat "$OUT")'"

# bundle: 0.6, 0.6 (mean 0.6, no hit); discount: 1, 0 (mean 0.5, one hit
# of two). Each `mab` run reopens the store: the hits must come back from it.
mab reward "$CONFIG" basket bundle 0.6
mab reward "$CONFIG" basket bundle 0.6
mab reward "$CONFIG" basket discount 1
mab reward "$CONFIG" basket discount 0
grep -q 'threshold_greedy/1' "$RUN/state.json" \
    || fail "the store $RUN/state.json holds no threshold_greedy/1 statistics: $(cat "$RUN/state.json")"
mab choose "$CONFIG" basket
IFS=$'\t' read -r arm value probability <"$OUT" || true
[[ "$arm" == discount ]] \
    || fail "threshold_greedy must follow its stored hits (discount 1/2, bundle 0/2) and choose discount; chose '$arm' (bundle: the hits were not kept, or the mean was used)"
awk -v p="$probability" 'BEGIN { exit !(p + 0 == 1) }' \
    || fail "a greedy choice at epsilon 0 must have probability 1, got '$probability'"
note "threshold_greedy: hits kept in the store, choice follows them (discount)"
}

threshold_scenario pkg-config "$TG_SO" "$TG_SO"
threshold_scenario cmake threshold_greedy "$PLUGIN_DIR/threshold_greedy.so"

note "PASS"
