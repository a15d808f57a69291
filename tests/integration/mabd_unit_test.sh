#!/usr/bin/env bash
# mabd_unit_test.sh BUILD_DIR - the systemd unit the build made
# (BUILD_DIR/packaging/mabd.service, from packaging/mabd.service.in):
#  - `systemd-analyze verify` prints nothing and succeeds. It checks that
#    each Exec line's program exists, and these name the install's bindir,
#    which this build has not been installed to: the test verifies a copy
#    whose bindir is the build's bin/ (the real mab and mabd), with the man
#    pages of Documentation= on MANPATH. Nothing else in the copy differs.
#    The packages test verifies the installed unit itself, in its chroot;
#  - the directives the service relies on are there (user mab, the config
#    test before start and reload, SIGHUP, the store writable and nothing
#    else), and `systemd-analyze security --offline` rates its exposure at
#    most 3.0 (of 10; --threshold counts tenths).
set -euo pipefail

build=$(cd "$1" && pwd)
unit=$build/packaging/mabd.service
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
py=/usr/bin/python3
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -f $unit ]] || { echo "FAIL: no $unit (configure with MAB_WITH_MABD)" >&2; exit 1; }
bindir=$(sed -n 's|^ExecStart=\(/.*\)/mabd .*|\1|p' "$unit")
[[ -n $bindir ]] || { echo "FAIL: no ExecStart=BINDIR/mabd in $unit" >&2; exit 1; }
mkdir -p "$tmp/man/man5" "$tmp/man/man8"
cp "$build/packaging/man/mabd.8.gz" "$tmp/man/man8/"
cp "$build/packaging/man/mab-config.5.gz" "$tmp/man/man5/"
sed "s|$bindir/|$build/bin/|g" "$unit" >"$tmp/mabd.service"

if ! MANPATH=$tmp/man systemd-analyze verify "$tmp/mabd.service" >"$tmp/verify.txt" 2>&1 ||
   [[ -s $tmp/verify.txt ]]; then
    fail "systemd-analyze verify: $(cat "$tmp/verify.txt")"
fi

config=$(sed -n 's|^ExecStart=.* --config \(/[^ ]*\)$|\1|p' "$unit")
state_dir=$(sed -n 's|^ReadWritePaths=||p' "$unit")
expect() { # expect LINE: the unit holds LINE exactly
    grep -qxF -- "$1" "$unit" || fail "the unit has no line '$1'"
}
[[ -n $config ]] || fail "ExecStart does not name the config with --config"
expect "User=mab"
expect "Group=mab"
expect "ExecStartPre=$bindir/mabd -t --config $config"
expect "ExecReload=$bindir/mabd -t --config $config"
expect 'ExecReload=/bin/kill -HUP $MAINPID'
expect "ProtectSystem=strict"
expect "ProtectHome=yes"
expect "PrivateTmp=yes"
expect "NoNewPrivileges=yes"
[[ $state_dir == */lib/mab ]] || fail "ReadWritePaths is '$state_dir', expected the state directory .../lib/mab"
# The reload's config test comes before the signal: systemd runs ExecReload
# lines in order and stops at the first that fails.
[[ $(grep "^ExecReload=" "$unit" | head -1) == *"mabd -t"* ]] || fail "ExecReload does not test the config first"

if ! systemd-analyze security --offline=yes --threshold=30 "$tmp/mabd.service" >"$tmp/security.txt" 2>&1; then
    fail "systemd-analyze security: $(tail -3 "$tmp/security.txt")"
fi
grep 'Overall exposure' "$tmp/security.txt" || true
[[ $failures -eq 0 ]]
