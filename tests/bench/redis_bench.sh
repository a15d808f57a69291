#!/usr/bin/env bash
# redis_bench.sh BUILD_DIR - rewards/s through the redis storage plugin
# (sync "always" and interval_ms 100; 1, 4 and 16 threads) beside
# redis-benchmark's INCR rate on the same server in the same run, once with
# appendfsync always and once with everysec. Each server is Debian's
# redis-server on a free loopback port in a temporary directory, stopped by
# its pid. Prints markdown (scripts/bench appends it to docs/benchmarks.md).
set -euo pipefail
build=$(cd "$1" && pwd)
tmp=$(mktemp -d)
server=""
cleanup() {
    if [[ -n $server ]] && kill -0 "$server" 2>/dev/null; then kill -KILL "$server"; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

for fsync in always everysec; do
    port=$(free_port)
    mkdir -p "$tmp/$fsync"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$tmp/$fsync" --save '' \
        --appendonly yes --appendfsync "$fsync" >"$tmp/$fsync.log" 2>&1 &
    server=$!
    for _ in $(seq 100); do
        redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG && break
        sleep 0.1
    done
    echo "### redis-server --appendonly yes --appendfsync $fsync"
    echo
    TMPDIR=$tmp "$build/bin/mab-bench-storage" --redis "redis://127.0.0.1:$port/0"
    echo
    kill -TERM "$server"
    wait "$server" || true
    server=""
done
