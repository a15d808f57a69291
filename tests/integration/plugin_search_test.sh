#!/usr/bin/env bash
# plugin_search_test.sh BUILD_DIR SOURCE_DIR - a config without plugin_path
# works from the build tree and from `cmake --install --prefix` of a fresh
# temporary directory (moved afterwards, too): the installed `mab check` and
# `mab choose` find the plugins next to the installed libmab, and say where
# (docs/config.md, "Where plugins are found"). MAB_PLUGIN_PATH adds
# directories before plugin_path.
set -euo pipefail

build=$(cd "$1" && pwd)
py=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Nothing from the caller's environment may help the loader.
unset MAB_PLUGIN_PATH LD_LIBRARY_PATH

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# run CMD...: run it, keeping stdout in $out, stderr in $err, status in $rc.
run() {
    set +e
    "$@" >"$tmp/stdout" 2>"$tmp/stderr"
    rc=$?
    set -e
    out=$(cat "$tmp/stdout")
    err=$(cat "$tmp/stderr")
}
expect_ok() {
    run "$@"
    [[ $rc == 0 ]] || fail "'$*' exited $rc; stderr: $err"
}

# A config with no plugin_path, in a directory of its own.
write_config() { # DIR
    mkdir -p "$1"
    cat >"$1/mab.json" <<EOF
{
  "seed": 3,
  "storage": {"plugin": "json_file", "path": "state.json", "sync": "always"},
  "experiments": {
    "btn": {"policy": {"plugin": "ucb1"}, "arms": {"green": 1, "red": 2}}
  }
}
EOF
}

# check_finds MAB PLUGIN_DIR WHAT: `MAB check` and `MAB choose` work on the
# config and load ucb1 and json_file from PLUGIN_DIR.
check_finds() {
    local mab=$1 dir=$2 what=$3 cfg=$tmp/$3/mab.json
    write_config "$tmp/$what"
    expect_ok "$mab" check "$cfg"
    [[ $rc == 0 ]] || return 0
    grep -qxF "storage:     json_file ($dir/json_file.so)" "$tmp/stdout" \
        || fail "$what: check does not show json_file loaded from $dir: $out"
    grep -qE "^btn +ucb1 +2 +\[0, 1\] +$dir/ucb1\.so$" "$tmp/stdout" \
        || fail "$what: check does not show ucb1 loaded from $dir: $out"
    expect_ok "$mab" choose "$cfg" btn
    [[ $rc == 0 ]] || return 0
    [[ $out =~ ^(green|red)$'\t'[12]$'\t' ]] || fail "$what: choose printed '$out'"
    [[ -f $tmp/$what/state.json ]] || fail "$what: choose left no state.json beside the config"
    echo "plugin_search_test: $what: check and choose load the plugins from $dir"
}

# ---- the build tree
check_finds "$build/bin/mab" "$build/plugins" build-tree

# ---- an install in a fresh prefix
prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 \
    || { cat "$tmp/install.log" >&2; echo "FAIL: cmake --install --prefix $prefix" >&2; exit 1; }
lib=$(dirname "$(find "$prefix" -name 'libmab.so.*' -type f | head -n 1)")
[[ -f $lib/mab/plugins/ucb1.so ]] || { echo "FAIL: no ucb1.so in $lib/mab/plugins" >&2; exit 1; }
check_finds "$prefix/bin/mab" "$lib/mab/plugins" installed

# ---- the same install, moved: nothing points at where it was installed
moved=$tmp/moved
mv "$prefix" "$moved"
check_finds "$moved/bin/mab" "$moved/${lib#"$prefix"/}/mab/plugins" moved-install

# ---- MAB_PLUGIN_PATH: a plugin of one's own, by name, without plugin_path
own=$tmp/own-plugins
mkdir -p "$own"
cp "$build/tests/fixtures/policy_uniform.so" "$own/my_uniform.so"
mkdir -p "$tmp/env"
cat >"$tmp/env/mab.json" <<EOF
{"storage": {"plugin": "json_file", "path": "state.json"},
 "experiments": {"btn": {"policy": {"plugin": "my_uniform"}, "arms": {"a": 1, "b": 2}}}}
EOF
run "$moved/bin/mab" check "$tmp/env/mab.json"
[[ $rc == 1 ]] || fail "without MAB_PLUGIN_PATH, my_uniform must not be found (exit $rc)"
contains_all() { for n in "${@:2}"; do [[ $1 == *"$n"* ]] || fail "missing '$n' in: $1"; done; }
contains_all "$err" "no plugin \"my_uniform\"" "$moved/${lib#"$prefix"/}/mab/plugins/my_uniform.so"
run env MAB_PLUGIN_PATH="$tmp/nowhere:$own" "$moved/bin/mab" check "$tmp/env/mab.json"
[[ $rc == 0 ]] || fail "with MAB_PLUGIN_PATH, check exited $rc: $err"
grep -qE "^btn +uniform +2 .* $own/my_uniform\.so$" "$tmp/stdout" \
    || fail "check does not show my_uniform loaded from $own: $out"

if ((failures > 0)); then
    echo "plugin_search_test: $failures failure(s)" >&2
    exit 1
fi
echo "plugin_search_test: PASS"
