#!/usr/bin/env bash
# man_pages_test.sh BUILD_DIR SOURCE_DIR - the man pages of docs/man:
#  - man renders each without a warning (`man --warnings -l`), and groff's
#    own checks (-ww -z) find nothing;
#  - they are true to the programs and the docs: every command and option of
#    `mab --help` and `mab COMMAND --help` is in mab(1), every option of
#    `mabd --help` and every key of docs/hosts.md's "mabd settings" in
#    mabd(8), every top-level key and policy parameter of docs/config.md in
#    mab-config(5);
#  - the build made the gzipped copies that `cmake --install` installs.
set -euo pipefail

build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
man_dir=$src/docs/man
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
py=/usr/bin/python3
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pages=(mab.1 mab-config.5)
[[ -x $build/bin/mabd ]] && pages+=(mabd.8)

for page in "${pages[@]}"; do
    file=$man_dir/$page
    warnings=$(MANWIDTH=80 man --warnings -l "$file" 2>&1 >/dev/null || true)
    [[ -z $warnings ]] || fail "man --warnings -l $page: $warnings"
    warnings=$(groff -ww -z -man "$file" 2>&1 || true)
    [[ -z $warnings ]] || fail "groff -ww -z -man $page: $warnings"
    # One line per paragraph, so that nothing below is split by line breaks.
    MANWIDTH=10000 man -l "$file" 2>/dev/null >"$tmp/$page.txt" || fail "man -l $page failed"
    for section in NAME SYNOPSIS DESCRIPTION "SEE ALSO"; do
        grep -q "^$section\$" "$tmp/$page.txt" || fail "$page has no $section section"
    done
    [[ -s $build/packaging/man/$page.gz ]] || fail "the build made no packaging/man/$page.gz"
    if [[ -s $build/packaging/man/$page.gz ]] && ! zcat "$build/packaging/man/$page.gz" | cmp -s - "$file"; then
        fail "packaging/man/$page.gz is not docs/man/$page"
    fi
done

# has PAGE TEXT WHERE: the rendered PAGE holds TEXT (as a whole word).
has() {
    grep -qE -- "(^|[^A-Za-z0-9_-])$(printf '%s' "$2" | sed 's/[.[\*^$]/\\&/g')([^A-Za-z0-9_-]|\$)" \
        "$tmp/$1.txt" || fail "$1 does not mention $2 ($3)"
}

# mab(1): the commands of `mab --help`, the options of each command's help.
commands=$("$build/bin/mab" --help | sed -n '/^Commands:/,/^$/s/^  \([a-z]\+\) .*/\1/p')
[[ -n $commands ]] || fail "no command list in mab --help"
for cmd in $commands; do
    # grep without -q reads to the end: with pipefail, -q's early exit can
    # kill sed with SIGPIPE and fail a command whose entry is there.
    sed -n '/^COMMANDS$/,/^[A-Z]/p' "$tmp/mab.1.txt" | grep -E "^ {7}mab $cmd( |\$)" >/dev/null ||
        fail "mab.1 COMMANDS has no entry for mab $cmd"
    "$build/bin/mab" "$cmd" --help >"$tmp/help.txt" 2>&1 || true
    for opt in $(grep -oE -- '--[a-z][a-z-]*' "$tmp/help.txt" | sort -u); do
        [[ $opt == --help ]] && continue
        has mab.1 "$opt" "an option of mab $cmd --help"
    done
done
for opt in --help --version; do has mab.1 "$opt" "mab --help"; done

if [[ " ${pages[*]} " == *" mabd.8 "* ]]; then
    for opt in $("$build/bin/mabd" --help | grep -oE -- '--[a-z][a-z-]*' | sort -u); do
        has mabd.8 "$opt" "an option of mabd --help"
    done
    # The routes of mabd --help.
    for route in $("$build/bin/mabd" --help | grep -oE '/(v1/[a-z]+|r|healthz|metrics)\b' | sort -u); do
        grep -qF -- "$route" "$tmp/mabd.8.txt" || fail "mabd.8 does not mention the route $route"
    done
    keys=$(sed -n '/^### mabd settings/,/^### /p' "$src/docs/hosts.md" | sed -n 's/^| `\([a-z_]*\)` |.*/\1/p')
    [[ -n $keys ]] || fail "no settings table under '### mabd settings' in docs/hosts.md"
    for key in $keys; do
        grep -qE "^ {7}$key( +.*)?\$" "$tmp/mabd.8.txt" || fail "mabd.8 SETTINGS has no entry for $key (docs/hosts.md)"
    done
fi

keys=$(sed -n '/^## Top level/,/^## /p' "$src/docs/config.md" | sed -n 's/^| `\([a-z_]*\)` |.*/\1/p')
[[ -n $keys ]] || fail "no key table under '## Top level' in docs/config.md"
for key in $keys; do
    grep -qE "^ {7}$key( +.*)?\$" "$tmp/mab-config.5.txt" || fail "mab-config.5 has no entry for the key $key (docs/config.md)"
done
params=$(sed -n '/^## Policy parameters/,/^## /p' "$src/docs/config.md" |
         sed -n 's/^| `\([a-z_0-9]*\)` | `\([a-z_0-9]*\)` |.*/\1 \2/p')
[[ -n $params ]] || fail "no parameter table under '## Policy parameters' in docs/config.md"
while read -r plugin param; do
    has mab-config.5 "$plugin" "a policy of docs/config.md"
    has mab-config.5 "$param" "a parameter of $plugin in docs/config.md"
done <<<"$params"
for key in plugin sync refresh_ms path; do has mab-config.5 "$key" "a storage key of docs/config.md"; done

[[ $failures -eq 0 ]] && echo "man pages: ${pages[*]} render without warnings and match --help and docs/"
[[ $failures -eq 0 ]]
