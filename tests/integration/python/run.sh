#!/usr/bin/env bash
# run.sh BUILD_DIR SOURCE_DIR [SANITIZE] - the Python binding and Flask
# extension tests against BUILD_DIR's libmab, under each Python of the
# machine: Debian's /usr/bin/python3 (Flask 2.2, gunicorn, pytest) and the
# python3 first on PATH when it is another one (e.g. pyenv's, Flask 3.x).
#
# For each Python: a fresh venv (--system-site-packages, so Debian's or that
# Python's Flask is seen), `pip install SOURCE_DIR/hosts/python` into it (no
# index, no flags: the build backend is in the tree), and the tests copied
# out of the source tree and run from there, so `import mab` is the
# installed package. What a Python lacks (gunicorn, pytest) is said loudly:
# its tests are skipped and reported as skipped, never as passed. A Python
# without Flask fails the run.
#
# With SANITIZE=ON the libmab under test is built with ASan+UBSan: the ASan
# runtime must be the first library of the process, so it is LD_PRELOADed
# into python3 (and inherited by gunicorn's workers). Leak detection is off
# there: the Python interpreter itself holds memory at exit that LeakSanitizer
# would report; the C suite checks libmab for leaks.
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
sanitize=${3:-OFF}
pythons=(/usr/bin/python3)
other=$(command -v python3 || true)
if [[ -n $other && $(readlink -f "$other") != $(readlink -f /usr/bin/python3) ]]; then
    # pyenv's shim: the interpreter it runs, so that the venv is of that Python
    real=$("$other" -c 'import sys; print(sys.executable)')
    [[ $(readlink -f "$real") != $(readlink -f /usr/bin/python3) ]] && pythons+=("$real")
fi

[[ -x /usr/bin/python3 ]] || { echo "run.sh: FAIL: /usr/bin/python3 is missing (apt-get install python3)" >&2; exit 1; }
for module in flask gunicorn venv; do
    /usr/bin/python3 -c "import $module" 2>/dev/null ||
        { echo "run.sh: FAIL: /usr/bin/python3 cannot import $module (scripts/deps installs python3-$module)" >&2; exit 1; }
done

export MAB_BUILD_DIR=$build MAB_SOURCE_DIR=$src
export MAB_LIBRARY=$build/lib/libmab.so.1
export MAB_PLUGIN_PATH=$build/plugins
export PYTHONDONTWRITEBYTECODE=1 MAB_TEST_INSTALLED=1
unset PYTHONPATH

case $sanitize in
ON | on | 1 | TRUE | true)
    asan=$(${CC:-cc} -print-file-name=libasan.so)
    ubsan=$(${CC:-cc} -print-file-name=libubsan.so)
    if [[ $asan != /* || ! -e $asan ]]; then
        echo "run.sh: FAIL: sanitized build, but the compiler does not know libasan.so;" \
             "cannot load an ASan libmab into python3" >&2
        exit 1
    fi
    export LD_PRELOAD="$asan${ubsan:+ $ubsan}"
    export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    echo "run.sh: ASan+UBSan libmab: LD_PRELOAD=$LD_PRELOAD; LEAK DETECTION OFF for python3" \
         "(the interpreter's own memory), leaks are checked by the C tests"
    ;;
esac

work=$(mktemp -d /tmp/mab-pytest.XXXXXX)
trap 'rm -rf "$work"' EXIT
failed=0
skipped=()
for py in "${pythons[@]}"; do
    version=$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
    flask=$("$py" -c 'import importlib.metadata as m; print(m.version("flask"))' 2>/dev/null) || {
        echo "run.sh: FAIL: $py (Python $version) cannot import flask" >&2; failed=1; continue; }
    echo "run.sh: ==== $py: Python $version, Flask $flask ===="
    venv=$work/venv-$version
    tests=$work/tests-$version
    "$py" -m venv --system-site-packages "$venv"
    # Offline on purpose: nothing may come from an index.
    if ! PIP_NO_INDEX=1 "$venv/bin/python" -m pip install -q --no-deps "$src/hosts/python"; then
        echo "run.sh: FAIL: pip install $src/hosts/python into a venv of $py" >&2
        failed=1
        continue
    fi
    rm -rf "$tests" && mkdir -p "$tests"
    cp "$src"/tests/integration/python/*.py "$tests/"
    if ! "$venv/bin/python" -c 'import gunicorn' 2>/dev/null; then
        echo "run.sh: SKIPPED under $py: test_gunicorn.py (gunicorn is not installed for it);" \
             "the gunicorn tests ran under /usr/bin/python3 only" >&2
        skipped+=("$py: test_gunicorn.py (no gunicorn)")
    fi
    (
        cd "$tests"
        export PYTHONPATH=$tests
        if "$venv/bin/python" -c 'import pytest' 2>/dev/null; then
            exec "$venv/bin/python" -m pytest -q -rs -p no:cacheprovider "$tests"
        fi
        echo "run.sh: $py has no pytest: running the same tests with unittest"
        exec "$venv/bin/python" -m unittest discover -s "$tests" -p 'test_*.py' -v
    ) || failed=1
done
for s in "${skipped[@]}"; do
    echo "run.sh: SKIPPED (not passed): $s" >&2
done
exit $failed
