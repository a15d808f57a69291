#!/usr/bin/env bash
# cookie_callgrind.sh - instructions per call of the cookie's primitives
# (core/adapter/crypto.c, cookie.c) under callgrind: HMAC-SHA-256 of 44
# bytes, base64url encode of 76 bytes, decode of 102 characters, a
# one-entry cookie encoded and decoded (tests/bench/cookie_bench.c, built
# here with gcc -O3 from the sources). Valgrind's CPU has no SHA
# extensions, so the SHA-256 counted is the portable one; the SHA-NI
# compression's count is printed from its disassembly (straight-line code,
# one pass a 64-byte block). Not timed; not part of the test suite.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gcc -O3 -DNDEBUG -I"$src/core/adapter" -I"$src/include" "$here/cookie_bench.c" \
    "$src/core/adapter/crypto.c" "$src/core/adapter/cookie.c" -lsodium -lm -o "$tmp/cookie_bench"
"$tmp/cookie_bench"
valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$tmp/cookie_bench" >/dev/null 2>&1
echo "Instructions per call (callgrind, portable SHA-256):"
callgrind_annotate --inclusive=yes --threshold=100 "$tmp/cg.out" 2>/dev/null |
    awk '/bench_(hmac|encode|decode|cookie_encode|cookie_decode)[ .]/ {
        gsub(",", "", $1); name = $0; sub(/.*bench_/, "bench_", name); sub(/[ .].*/, "", name)
        printf "%8.0f  %s\n", $1 / 1000, name }'
echo "SHA-NI compression (instructions in one pass of its block loop):"
objdump -d --no-show-raw-insn "$tmp/cookie_bench" | awk '
    /<compress_sha_ni>:/ { f = 1; next }
    f && /^$/ { exit }
    f { n++; line[n] = $0 }
    END {
        # the loop: from the backward jump target to the backward jump
        for (i = n; i > 0; i--) if (line[i] ~ /\tj(ne|nz|b|ae|a|be)  /) break
        target = line[i]; sub(/.*j[a-z]+ +/, "", target); sub(/ .*/, "", target)
        for (j = 1; j <= n; j++) if (line[j] ~ "^ *" target ":") break
        printf "%8d  compress_sha_ni per 64-byte block\n", i - j + 1 }'
