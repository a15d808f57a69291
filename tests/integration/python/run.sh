#!/usr/bin/env bash
# run.sh BUILD_DIR SOURCE_DIR [SANITIZE] - the Python binding and Flask
# extension tests, with Debian's /usr/bin/python3 (the only Python that sees
# Debian's python3-flask and python3-gunicorn), against BUILD_DIR's libmab.
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
py=/usr/bin/python3

[[ -x $py ]] || { echo "run.sh: FAIL: $py is missing (apt-get install python3)" >&2; exit 1; }
for module in flask gunicorn; do
    $py -c "import $module" 2>/dev/null ||
        { echo "run.sh: FAIL: $py cannot import $module (scripts/deps installs python3-$module)" >&2; exit 1; }
done

export MAB_BUILD_DIR=$build MAB_SOURCE_DIR=$src
export MAB_LIBRARY=$build/lib/libmab.so.0
export MAB_PLUGIN_PATH=$build/plugins
export PYTHONPATH=$src/hosts/python/src:$src/tests/integration/python
export PYTHONDONTWRITEBYTECODE=1

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

cd "$src/tests/integration/python"
if $py -c "import pytest" 2>/dev/null; then
    exec $py -m pytest -q -p no:cacheprovider "$src/tests/integration/python"
fi
exec $py -m unittest discover -s "$src/tests/integration/python" -p 'test_*.py' -v
