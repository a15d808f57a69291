#!/usr/bin/env bash
# bench_sections_test.sh SOURCE_DIR - scripts/bench keeps the hand-written
# parts of docs/benchmarks.md: tests/bench/bench_sections.py, which it writes
# the page with, replaces only what lies between its markers (run on a copy
# of the page with a fake section, and on hostile pages that it must refuse
# without changing them).
set -euo pipefail
src=$(cd "$1" && pwd)
tool=$src/tests/bench/bench_sections.py
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# 1. A copy of the real page with a fake generated section between two
#    hand-written paragraphs: the section is replaced, the rest is kept byte
#    for byte.
cp "$src/docs/benchmarks.md" head.md
printf '\nHand-written before the fake section.\n\n' >>head.md
printf '<!-- bench:fake begin -->\nold figure 1\nold figure 2\n<!-- bench:fake end -->\n' >old.md
printf '\nHand-written after it: keep me.\n' >tail.md
cat head.md old.md tail.md >page.md
printf 'new figure\n' >fake.txt
python3 "$tool" page.md fake=fake.txt || fail "fake section: the tool failed"
printf '<!-- bench:fake begin -->\nnew figure\n<!-- bench:fake end -->\n' >new.md
cat head.md new.md tail.md >want.md
cmp -s page.md want.md || { fail "fake section: page differs from the expected one"; diff want.md page.md | head || true; }
grep -q 'old figure' page.md && fail "fake section: the old figures are still there"

# 2. Every section the real page marks, replaced: what lies outside the
#    markers is unchanged.
cp "$src/docs/benchmarks.md" real.md
names=$(sed -n 's/^<!-- bench:\([A-Za-z0-9_.-]*\) begin -->$/\1/p' real.md)
[[ -n "$names" ]] || fail "docs/benchmarks.md marks no generated section"
args=()
for name in $names; do
    printf 'replaced %s\n' "$name" >"sec-$name.txt"
    args+=("$name=sec-$name.txt")
done
cp real.md replaced.md
python3 "$tool" replaced.md "${args[@]}" || fail "real page: the tool failed"
outside() { awk '/^<!-- bench:[A-Za-z0-9_.-]* begin -->$/ { skip = 1 } !skip { print }
                 /^<!-- bench:[A-Za-z0-9_.-]* end -->$/ { skip = 0; print "(section)" }' "$1"; }
cmp -s <(outside real.md) <(outside replaced.md) || fail "real page: hand-written text changed"
for name in $names; do
    grep -qx "replaced $name" replaced.md || fail "real page: section $name not replaced"
done
# The same text again changes nothing.
cp replaced.md again.md
python3 "$tool" again.md "${args[@]}" && cmp -s replaced.md again.md || fail "not idempotent"

# 3. A name the page has no markers for is appended, markers and all.
cp want.md appended.md
printf 'brand new\n' >brand.txt
python3 "$tool" appended.md brand=brand.txt || fail "new section: the tool failed"
{ cat want.md; printf '\n<!-- bench:brand begin -->\nbrand new\n<!-- bench:brand end -->\n'; } >want2.md
cmp -s appended.md want2.md || fail "new section: not appended at the end as expected"

# 4. Hostile pages and arguments: refused with a message naming the line or
#    argument, the page left as it was.
refuse() { # refuse WHAT PAGE-TEXT ARG... : the tool must fail and keep the page
    local what=$1 text=$2
    shift 2
    printf '%s' "$text" >bad.md
    cp bad.md bad.before
    if python3 "$tool" bad.md "$@" 2>err.txt; then
        fail "$what: accepted"
    elif ! cmp -s bad.md bad.before; then
        fail "$what: the page was changed"
    fi
}
refuse_says() { # refuse_says WHAT WORDS PAGE-TEXT ARG...
    local what=$1 words=$2
    shift 2
    refuse "$what" "$@"
    grep -q -- "$words" err.txt || fail "$what: message lacks '$words': $(cat err.txt)"
}
refuse_says "begin without end" "bad.md:2: section 'fake' has no end" \
    $'hand\n<!-- bench:fake begin -->\nold\n' fake=fake.txt
refuse_says "end without begin" "bad.md:2: end of section 'fake' without its begin" \
    $'hand\n<!-- bench:fake end -->\n' fake=fake.txt
refuse_says "nested sections" "bad.md:2: section 'b' begins inside section 'a'" \
    $'<!-- bench:a begin -->\n<!-- bench:b begin -->\n<!-- bench:b end -->\n<!-- bench:a end -->\n' a=fake.txt
refuse_says "marked twice" "section 'a' is marked twice" \
    $'<!-- bench:a begin -->\n<!-- bench:a end -->\n<!-- bench:a begin -->\n<!-- bench:a end -->\n' a=fake.txt
refuse_says "malformed marker" "bad.md:1: malformed marker" \
    $'<!-- bench:a start -->\n' a=fake.txt
refuse_says "unreadable file" "cannot read no-such-file" \
    $'<!-- bench:a begin -->\n<!-- bench:a end -->\n' a=no-such-file
refuse_says "name given twice" "given twice" \
    $'<!-- bench:a begin -->\n<!-- bench:a end -->\n' a=fake.txt a=fake.txt
printf '<!-- bench:x begin -->\n' >marker.txt
refuse_says "marker inside the new text" "holds a bench marker" \
    $'<!-- bench:a begin -->\n<!-- bench:a end -->\n' a=marker.txt

if ((failures)); then
    echo "$failures failure(s)"
    exit 1
fi
echo "bench_sections: all checks passed"
