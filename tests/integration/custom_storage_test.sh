#!/usr/bin/env bash
# custom_storage_test.sh BUILD_DIR SOURCE_DIR [SANITIZE]
#
# examples/custom-storage end to end, against an install in a temporary
# prefix: build append_log.so out of tree with pkg-config (its Makefile) and
# with CMake (find_package(mab), mab_add_storage(), installed into the
# install's plugin dir), then drive the installed `mab` with it: counts are
# exact across processes (every `mab` call opens and closes the store), an
# unfinished batch left by a crash is dropped, a corrupt log and a log held by
# another process are refused with errors naming them, and export, reset and
# import --replace round-trip. With SANITIZE=ON (an ASan+UBSan build) both
# builds of the plugin use the same sanitizers, so its own code is checked
# too; warnings are errors in either case.
set -euo pipefail

BUILD_DIR=$(cd "$1" && pwd)
SOURCE_DIR=$(cd "$2" && pwd)
EXAMPLE_DIR=$SOURCE_DIR/examples/custom-storage
cflags="-O2 -g -Wall -Wextra -Werror"
case ${3:-OFF} in
ON | on | 1 | TRUE | true) cflags="-O1 -g -Wall -Wextra -Werror -fsanitize=address,undefined -fno-sanitize-recover=undefined" ;;
esac
py=/usr/bin/python3
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mab-custom-storage.XXXXXX")
holder=
cleanup() {
    [[ -n $holder ]] && kill "$holder" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
unset MAB_PLUGIN_PATH LD_LIBRARY_PATH

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
note() { echo "custom_storage_test: $*"; }
die() { echo "custom_storage_test: FAIL: $*" >&2; exit 1; }
run() { # run CMD...: stdout in $out, stderr in $err, status in $rc
    set +e
    "$@" >"$tmp/stdout" 2>"$tmp/stderr"
    rc=$?
    set -e
    out=$(cat "$tmp/stdout")
    err=$(cat "$tmp/stderr")
}
expect() { # expect STATUS CMD...
    local want=$1
    shift
    run "$@"
    [[ $rc == "$want" ]] || fail "'$*' exited $rc, expected $want; stderr: $err"
}
exports_only() { # exports_only SO SYMBOL
    local got
    got=$(nm -D --defined-only "$1" | awk '{ print $NF }' | grep -v '^_' | sort)
    [[ $got == "$2" ]] || fail "$1 must export only $2, it exports: $(echo $got)"
}

# 1. Install into a fresh prefix.
prefix=$tmp/prefix
cmake --install "$BUILD_DIR" --prefix "$prefix" >"$tmp/install.log" 2>&1 \
    || { cat "$tmp/install.log" >&2; die "cmake --install --prefix $prefix failed"; }
pc=$(find "$prefix" -name mab.pc -path '*/pkgconfig/*' | head -n 1)
[[ -n $pc ]] || die "no mab.pc under $prefix"
libdir=$(dirname "$(dirname "$pc")")
plugins=$libdir/mab/plugins
mab=$prefix/bin/mab

# 2. The Makefile (pkg-config).
work=$tmp/make
cp -R "$EXAMPLE_DIR" "$work"
rm -f "$work"/*.so "$work"/counts.log
PKG_CONFIG_PATH=$(dirname "$pc") make -C "$work" CFLAGS="$cflags" >"$tmp/make.log" 2>&1 \
    || { cat "$tmp/make.log" >&2; die "make -C $work failed"; }
[[ -f $work/append_log.so ]] || die "make did not produce append_log.so"
exports_only "$work/append_log.so" mab_storage_entry
# The example's own config names ./append_log.so by path.
expect 0 "$mab" check "$work/config.json"
grep -qxF "storage:     append_log ($work/./append_log.so)" "$tmp/stdout" \
    || fail "check of the example's config does not show $work/./append_log.so: $out"
expect 0 "$mab" choose "$work/config.json" headline
[[ -f $work/counts.log ]] || fail "no counts.log beside the example's config after a choose"
note "Makefile: append_log.so built, exports only mab_storage_entry, loads by path"

# 3. CMake: find_package(mab) + mab_add_storage, installed into the plugin dir.
cwork=$tmp/cmake
cp -R "$EXAMPLE_DIR" "$cwork"
rm -f "$cwork"/*.so
{ cmake -S "$cwork" -B "$cwork/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_FLAGS="$cflags" \
        -DCMAKE_MODULE_LINKER_FLAGS="$([[ $cflags == *sanitize* ]] && echo -fsanitize=address,undefined)" &&
  cmake --build "$cwork/build" && cmake --install "$cwork/build"; } >"$tmp/cmake.log" 2>&1 \
    || { cat "$tmp/cmake.log" >&2; die "the CMake build of $cwork failed"; }
grep -q "mab_DIR:PATH=$libdir/cmake/mab" "$cwork/build/CMakeCache.txt" \
    || fail "find_package(mab) did not use the install in $prefix"
[[ -f $plugins/append_log.so ]] || die "mab_add_storage did not install append_log.so into $plugins"
exports_only "$plugins/append_log.so" mab_storage_entry
note "CMake: append_log.so installed into $plugins"

# 4. By name, no plugin_path.
run_dir=$tmp/run
mkdir "$run_dir"
cfg=$run_dir/mab.json
log=$run_dir/var/counts.log
mkdir "$run_dir/var"
cat >"$cfg" <<EOF
{
  "storage": {"plugin": "append_log", "path": "var/counts.log", "sync": "always"},
  "experiments": {
    "btn": {"policy": {"plugin": "epsilon_greedy", "epsilon": 0.3},
            "arms": {"green": 1, "red": 2, "blue": 3}},
    "other": {"policy": {"plugin": "ucb1"}, "arms": {"x": 1, "y": 2}}
  }
}
EOF
expect 0 "$mab" check "$cfg"
grep -qxF "storage:     append_log ($plugins/append_log.so)" "$tmp/stdout" \
    || fail "check does not show append_log loaded from $plugins: $out"
# `mab check` opens no store (MAB_OPEN_CHECK: it creates nothing), and this
# plugin has no check callback, so it says the store was not checked.
[[ ! -e $log ]] || fail "mab check created $log"
grep -q "^store: *not checked" "$tmp/stdout" || fail "check does not say the store was not checked: $out"
grep -q "^reward once: *per process only" "$tmp/stdout" || fail "check does not say a storage ABI 1.2 plugin guards rewards per process only: $out"
grep -q "^history: *this process only" "$tmp/stdout" || fail "check does not say a storage ABI 1.2 plugin keeps no time buckets: $out"
expect 0 "$mab" stats "$cfg"
[[ -f $log ]] || fail "opening the store did not create $log"
[[ $(head -n 1 "$log") == "mab-append-log 1" ]] || fail "$log has no header: $(head -n 1 "$log")"

# totals CONFIG: "EXP ARM PULLS REWARDS REWARD_SUM" lines, sorted, from stats --json.
totals() {
    expect 0 "$mab" stats "$1" --json
    printf '%s' "$out" | $py -c '
import json, sys
d = json.load(sys.stdin)
for exp, e in d["experiments"].items():
    for arm, a in e["arms"].items():
        print(exp, arm, a["pulls"], a["rewards"], "%g" % a["reward_sum"])
' | sort
}

# 5. Exact counts across processes: 30 choices and 7 rewards, one `mab` each.
declare -A pulls=([green]=0 [red]=0 [blue]=0)
for i in $(seq 1 30); do
    expect 0 "$mab" choose "$cfg" btn
    arm=${out%%$'\t'*}
    pulls[$arm]=$((pulls[$arm] + 1))
done
for arm in green green red blue blue blue green; do
    expect 0 "$mab" reward "$cfg" btn "$arm" 1
done
expect 0 "$mab" reward "$cfg" other y 0.5
want=$(printf '%s\n' "btn blue ${pulls[blue]} 3 3" "btn green ${pulls[green]} 3 3" \
       "btn red ${pulls[red]} 1 1" "other x 0 0 0" "other y 0 1 0.5" | sort)
got=$(totals "$cfg")
[[ $got == "$want" ]] || fail "totals after 30 choices and 8 rewards:
$got
expected:
$want"
note "exact totals across 39 processes: green ${pulls[green]}, red ${pulls[red]}, blue ${pulls[blue]} pulls"

# 6. A crash in the middle of a batch: the unfinished batch is dropped and
# the file cut back to the last committed one.
size=$(stat -c %s "$log")
printf 'B\nD btn red 1000 0 0x0p+0 0x0p+0\nD btn gr' >>"$log"
got=$(totals "$cfg")
[[ $got == "$want" ]] || fail "an unfinished batch was counted:
$got"
[[ $(stat -c %s "$log") == "$size" ]] || fail "the unfinished batch was not cut off ($(stat -c %s "$log") bytes, expected $size)"
printf 'B' >>"$log" # a crash right after the first byte
got=$(totals "$cfg")
[[ $got == "$want" && $(stat -c %s "$log") == "$size" ]] || fail "a lone torn B was not dropped"
note "unfinished batches dropped, file back to $size bytes"

# 7. Corruption is refused, named, and left as it is.
cp "$log" "$tmp/good.log"
$py - "$log" <<'PY'
import sys
path = sys.argv[1]
lines = open(path).read().split("\n")
lines[3] = "D btn red one 0 0x0p+0 0x0p+0"   # line 4: inside the first batch
open(path, "w").write("\n".join(lines))
PY
cp "$log" "$tmp/bad.log"
expect 1 "$mab" stats "$cfg"
[[ $err == *"$log: line 4: not a D or R record (the file was not modified)"* ]] \
    || fail "the error for a corrupt log does not name the file and line: $err"
cmp -s "$log" "$tmp/bad.log" || fail "opening a corrupt log modified it"
printf 'not a log\n' >"$tmp/other.log"
sed "s|var/counts.log|$tmp/other.log|" "$cfg" >"$tmp/other.json"
expect 1 "$mab" stats "$tmp/other.json"
[[ $err == *"$tmp/other.log: line 1: not an append_log file"* ]] \
    || fail "a file that is not a log is not refused by name: $err"
cp "$tmp/good.log" "$log"
note "corrupt log refused with its line, unmodified"

# 8. One process at a time: a store locked elsewhere is refused (MAB_EBUSY).
$py - "$log" "$tmp/locked" <<'PY' &
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
open(sys.argv[2], "w").close()
time.sleep(600)
PY
holder=$!
for _ in $(seq 1 600); do [[ -e $tmp/locked ]] && break; sleep 0.05; done
[[ -e $tmp/locked ]] || die "the lock holder did not start"
expect 1 "$mab" choose "$cfg" btn
[[ $err == *"$log: in use by another process"* ]] || fail "a locked store is not refused as busy: $err"
kill "$holder"
wait "$holder" 2>/dev/null || true
holder=
got=$(totals "$cfg")
[[ $got == "$want" ]] || fail "the refused choose changed the totals: $got"
note "a store locked by another process is refused"

# 9. export, reset, import --replace: the same records come back.
expect 0 "$mab" export "$cfg" --out "$tmp/export.json"
expect 0 "$mab" reset "$cfg" btn
got=$(totals "$cfg")
[[ $got == "$(printf '%s\n' "btn blue 0 0 0" "btn green 0 0 0" "btn red 0 0 0" "other x 0 0 0" "other y 0 1 0.5" | sort)" ]] \
    || fail "reset btn left: $got"
expect 0 "$mab" import "$cfg" "$tmp/export.json" --replace
got=$(totals "$cfg")
[[ $got == "$want" ]] || fail "export, reset, import --replace gave:
$got"
expect 0 "$mab" export "$cfg" --out "$tmp/export2.json"
cmp -s "$tmp/export.json" "$tmp/export2.json" || fail "the second export differs from the first"
note "export, reset, import --replace round-trip"

if ((failures > 0)); then
    echo "custom_storage_test: $failures failure(s)" >&2
    exit 1
fi
note "PASS"
