#!/usr/bin/env bash
# policy_callgrind.sh BUILD_DIR [N] - instructions per choose of every case of
# mab-bench-policies, counted by callgrind inside the timed loop alone
# (--toggle-collect=timed_choices) over N choices (default 500): figures that
# do not depend on how loaded the machine is (docs/benchmarks.md).
set -euo pipefail
bench=$(cd "$1" && pwd)/bin/mab-bench-policies
n=${2:-500}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cases=$("$bench" --iterations 1 --repeat 1 | tail -n +2 | wc -l)
printf '%-30s %12s\n' "policy (K = 10)" "instr/choose"
for i in $(seq 1 "$cases"); do
    label=$("$bench" --iterations 1 --repeat 1 --case "$i" | tail -1 | sed 's/ *[0-9]*$//')
    collected=$(cd "$out" && valgrind --tool=callgrind --toggle-collect=timed_choices \
        --callgrind-out-file="$out/cg.$i" "$bench" --iterations "$n" --repeat 1 --case "$i" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
    printf '%-30s %12d\n' "$label" $((collected / n))
done
