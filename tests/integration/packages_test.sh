#!/usr/bin/env bash
# packages_test.sh BUILD_DIR SOURCE_DIR [CMAKE_ARGS...] - the Debian packages,
# end to end (docs/install.md):
#  0. the package target of BUILD_DIR refuses when it has another prefix;
#  1. configure a tree with -DCMAKE_INSTALL_PREFIX=/usr and Debian's build
#     flags under BUILD_DIR/tests/packages/build, build it and
#     `cmake --build --target package`; every expected .deb is there;
#  2. lintian on the .debs: any error or warning outside a short list of
#     accepted ones (each with its reason, below) fails;
#  3. a throwaway Debian 12 root: `debootstrap --variant=minbase bookworm`
#     (with systemd, man-db and pkg-config, for the checks below) made once and kept as a
#     tarball in BUILD_DIR/debootstrap-cache, unpacked afresh for every run;
#  4. in a chroot (/proc mounted): `apt-get install ./*.deb`, dependencies
#     from Debian's archive; the mab user, the key (0600, owned by mab), the
#     enabled unit, the nginx module enabled and loaded by `nginx -t`, the
#     Python package finding libmab, `systemd-analyze verify` of the unit,
#     the installed man pages rendered by man without warnings;
#  5. the unit's ExecStartPre and ExecStart lines run as the mab user
#     (systemd does not run in a chroot), choose and reward over HTTP on a
#     loopback port, the unit's ExecReload lines, SIGTERM; the counts read back
#     from the LMDB store on disk with `mab stats`;
#  6. `apt-get remove`: programs gone, config, key and counters kept, the nginx
#     link set aside; `apt-get purge`: every file of the packages gone, the key,
#     the store and the links too (the mab user stays, by design).
# Everything mounted is unmounted and mabd is stopped at the end, on failure
# too. Needs root (chroot, mount) and Debian's archive (deb.debian.org, or
# MAB_DEBIAN_MIRROR); exit 77 (skipped, loudly) only when not root.
set -euo pipefail

build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
shift 2
cmake_args=("$@")
py=/usr/bin/python3
mirror=${MAB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm

if [[ $(id -u) -ne 0 ]]; then
    echo "SKIPPED: packages_test needs root (debootstrap, chroot, mount /proc); run it as root" >&2
    exit 77
fi

work=$build/tests/packages
root=$work/root
tmp=$work/tmp
cache=$build/debootstrap-cache
arch=$(dpkg --print-architecture)
base_extra=systemd,man-db,pkg-config
tarball=$cache/$suite-minbase-$arch-${base_extra//,/-}.tar.gz
pid=""
started=$SECONDS

unmount_all() {
    local m
    for m in "$root/proc"; do
        if mountpoint -q "$m" 2>/dev/null; then umount -l "$m" || true; fi
    done
}
cleanup() {
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" || true; fi
    unmount_all
}
trap cleanup EXIT
trap 'exit 143' TERM  # so that the EXIT trap runs on CTest's timeout or ^C too
trap 'exit 130' INT

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
phase() { echo "== packages_test: $* (at $((SECONDS - started)) s)"; }
in_root() { # in_root CMD...: run CMD as root in the chroot
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
        chroot "$root" "$@"
}
as_mab() { # as_mab CMD...: run CMD as the mab user in the chroot
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
        chroot --userspec="$mab_uid:$mab_gid" --groups="$mab_gid" "$root" "$@"
}
unmount_all  # a run killed outright (SIGKILL) left its mount behind
rm -rf --one-file-system "$root" "$tmp"
mkdir -p "$work" "$tmp" "$cache"

# 0. The package target of a tree with another prefix refuses, naming it
#    (CPack would otherwise ship a /usr/local unit in a /usr package).
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
if [[ -n $prefix && $prefix != /usr ]]; then
    if cmake --build "$build" --target package >"$tmp/refused.log" 2>&1; then
        fail "the package target of $build (prefix $prefix) built packages"
    elif ! grep -q "CMAKE_INSTALL_PREFIX=$prefix" "$tmp/refused.log"; then
        fail "the package target of $build failed without naming the prefix: $(tail -5 "$tmp/refused.log")"
    fi
    rm -rf "$build/packages"
fi

# 1. The packages, from a tree of their own (prefix /usr, Debian's flags).
phase "building the packages"
pkgbuild=$work/build
export DEB_BUILD_MAINT_OPTIONS=hardening=+all
CFLAGS="$(dpkg-buildflags --get CFLAGS) $(dpkg-buildflags --get CPPFLAGS)" \
LDFLAGS="$(dpkg-buildflags --get LDFLAGS)" \
    cmake -S "$src" -B "$pkgbuild" -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=RelWithDebInfo \
          -DMAB_TESTS=OFF -DMAB_WITH_MABD=ON -DMAB_WITH_LMDB=ON "${cmake_args[@]}" \
          >"$tmp/configure.log" 2>&1 || { cat "$tmp/configure.log" >&2; exit 1; }
cmake --build "$pkgbuild" -j2 >"$tmp/build.log" 2>&1 || { tail -50 "$tmp/build.log" >&2; exit 1; }
rm -rf "$pkgbuild/packages"
cmake --build "$pkgbuild" --target package >"$tmp/package.log" 2>&1 ||
    { cat "$tmp/package.log" >&2; exit 1; }
packages=(libmab1 libmab-dev mab-tools mabd)
grep -q "MAB_WITH_NGINX:STRING=ON" "$pkgbuild/CMakeCache.txt" && packages+=(libnginx-mod-http-mab)
grep -q "MAB_WITH_PYTHON:STRING=ON" "$pkgbuild/CMakeCache.txt" && packages+=(python3-mab)
debs=()
for p in "${packages[@]}"; do
    f=$(ls "$pkgbuild/packages/${p}_"*.deb 2>/dev/null | head -1 || true)
    if [[ -z $f ]]; then
        fail "no ${p}_*.deb in $pkgbuild/packages: $(ls "$pkgbuild/packages")"
        continue
    fi
    debs+=("$f")
done
[[ $failures -eq 0 ]] || exit 1
echo "packages: ${debs[*]##*/}"

# No installed binary searches the build tree for libraries (the nginx
# module is linked by nginx's build with a runpath to it).
mkdir -p "$tmp/unpacked"
for f in "${debs[@]}"; do dpkg-deb -x "$f" "$tmp/unpacked"; done
while read -r elf; do
    runpath=$(readelf -d "$elf" | sed -n 's/.*(\(RPATH\|RUNPATH\)).*\[\(.*\)\]/\2/p')
    case ":$runpath:" in
    *"$build"* | *"$src"*) fail "${elf#"$tmp/unpacked"} has the runpath $runpath" ;;
    esac
done < <(find "$tmp/unpacked" -type f \( -name '*.so*' -o -path '*/bin/*' \))

# 2. lintian. Accepted, and why:
#  - initial-upload-closes-no-bugs: the changelog closes no Debian bug, as
#    these packages are not uploaded to Debian;
#  - maintscript-calls-ldconfig: CPack adds ldconfig to libmab1's postinst
#    and postrm by itself (no setting turns it off); the package also has the
#    ldconfig trigger, so the call is redundant, not harmful.
phase "lintian"
lintian --no-tag-display-limit "${debs[@]}" >"$tmp/lintian.txt" 2>&1 || true
grep -E '^[EW]: ' "$tmp/lintian.txt" |
    grep -vE ' (initial-upload-closes-no-bugs|maintscript-calls-ldconfig)( |$)' >"$tmp/lintian-bad.txt" || true
if [[ -s $tmp/lintian-bad.txt ]]; then
    fail "lintian reports: $(cat "$tmp/lintian-bad.txt")"
fi
grep -E '^[EWI]: ' "$tmp/lintian.txt" | sed 's/^/  lintian: /' || true

# 3. The base tree, made once per build directory.
if [[ ! -s $tarball ]]; then
    phase "debootstrap --variant=minbase $suite (first run; cached as ${tarball#"$build"/})"
    exec 9>"$cache/lock"
    flock 9
    if [[ ! -s $tarball ]]; then
        base=$cache/tree.partial
        rm -rf --one-file-system "$base"
        debootstrap --variant=minbase --include="$base_extra" "$suite" "$base" "$mirror" \
            >"$tmp/debootstrap.log" 2>&1 || { tail -30 "$tmp/debootstrap.log" >&2; exit 1; }
        rm -rf "$base"/var/cache/apt/archives/*.deb "$base"/var/lib/apt/lists/*
        rm -f "$cache"/*.tar.gz  # trees made with another list of packages
        tar -C "$base" --numeric-owner -czf "$tarball.partial" .
        mv "$tarball.partial" "$tarball"
        rm -rf --one-file-system "$base"
    fi
    exec 9>&-
fi
phase "unpacking the base tree"
mkdir -p "$root"
tar -C "$root" --numeric-owner -xzf "$tarball"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# Services are not started in the chroot (nginx's postinst would start one
# on the host's network): policy-rc.d refuses, as in any build chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
mount -t proc proc "$root/proc"

# 4. Install from inside, dependencies from the archive.
phase "apt-get install ./*.deb in the chroot"
mkdir -p "$root/tmp/debs"
cp "${debs[@]}" "$root/tmp/debs/"
in_root apt-get update -q >"$tmp/apt-update.log" 2>&1 || { cat "$tmp/apt-update.log" >&2; exit 1; }
(cd "$root/tmp/debs" && ls) >"$tmp/debs.txt"
deb_args=()
while read -r f; do deb_args+=("/tmp/debs/$f"); done <"$tmp/debs.txt"
in_root apt-get install -y -q --no-install-recommends "${deb_args[@]}" >"$tmp/apt-install.log" 2>&1 ||
    { cat "$tmp/apt-install.log" >&2; exit 1; }
for p in "${packages[@]}"; do
    status=$(in_root dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || fail "$p: dpkg status '$status' after apt-get install"
done
grep -E 'newly installed|^Need to get' "$tmp/apt-install.log" | sed 's/^/  apt-get: /' || true

phase "checking the installed files"
passwd=$(in_root getent passwd mab || true)
[[ -n $passwd ]] || fail "postinst made no mab user"
IFS=: read -r _ _ mab_uid mab_gid _ mab_home mab_shell <<<"$passwd"
[[ ${mab_uid:-1000} -lt 1000 ]] || fail "mab is not a system user (uid $mab_uid)"
[[ $mab_shell == */nologin || $mab_shell == /bin/false ]] || fail "mab has a login shell: $mab_shell"
[[ $mab_home == /var/lib/mab ]] || fail "mab's home is $mab_home, expected /var/lib/mab"
key=$root/etc/mab/mab.key
if [[ -f $key ]]; then
    perms=$(stat -c '%a %u' "$key")
    [[ $perms == "600 $mab_uid" ]] ||
        fail "the key /etc/mab/mab.key has mode and owner uid $perms, expected 600 $mab_uid (mab)"
    [[ $(grep -c . "$key") -eq 1 ]] || fail "the key file does not hold one key"
else
    fail "postinst made no key /etc/mab/mab.key"
fi
[[ $(stat -c '%u' "$root/var/lib/mab" 2>/dev/null) == "$mab_uid" ]] ||
    fail "/var/lib/mab is missing or not owned by mab"
unit=$root/usr/lib/systemd/system/mabd.service
[[ -f $unit ]] || fail "no unit /usr/lib/systemd/system/mabd.service"
[[ -L $root/etc/systemd/system/multi-user.target.wants/mabd.service ]] ||
    fail "postinst did not enable mabd.service (no multi-user.target.wants link)"
for f in usr/bin/mab usr/bin/mabd usr/lib/x86_64-linux-gnu/libmab.so.1 \
         usr/lib/x86_64-linux-gnu/mab/plugins/lmdb.so usr/lib/x86_64-linux-gnu/pkgconfig/mab.pc \
         usr/lib/x86_64-linux-gnu/cmake/mab/mabConfig.cmake usr/include/mab/mab.h \
         usr/share/man/man1/mab.1.gz usr/share/man/man5/mab-config.5.gz \
         usr/share/man/man8/mabd.8.gz etc/mab/mabd.json; do
    [[ $arch == amd64 || $f != *x86_64-linux-gnu* ]] || continue
    [[ -e $root/$f ]] || fail "/$f is not installed"
done
in_root pkg-config --modversion mab >"$tmp/pc.txt" 2>&1 || fail "pkg-config mab: $(cat "$tmp/pc.txt")"

# The man pages, as installed, through the chroot's man-db.
for page in 1/mab 5/mab-config 8/mabd; do
    warnings=$(in_root env MANWIDTH=80 man --warnings "${page%/*}" "${page#*/}" 2>&1 >/dev/null || true)
    [[ -z $warnings ]] || fail "man ${page%/*} ${page#*/} in the chroot warns: $warnings"
done

# The unit, with its binaries and man pages installed: systemd-analyze in the
# chroot (the host has neither the binaries nor the pages at these paths).
if ! in_root systemd-analyze verify mabd.service >"$tmp/verify.txt" 2>&1 || [[ -s $tmp/verify.txt ]]; then
    fail "systemd-analyze verify mabd.service: $(cat "$tmp/verify.txt")"
fi
grep -q '^User=mab$' "$unit" || fail "the unit does not run mabd as mab"

if [[ " ${packages[*]} " == *" libnginx-mod-http-mab "* ]]; then
    link=$root/etc/nginx/modules-enabled/50-mod-http-mab.conf
    [[ $(readlink "$link" 2>/dev/null) == /usr/share/nginx/modules-available/mod-http-mab.conf ]] ||
        fail "the nginx module is not enabled: $link -> $(readlink "$link" 2>/dev/null)"
    # nginx -t loads every enabled module: ours, linked against libmab1.
    in_root nginx -t >"$tmp/nginx-t.txt" 2>&1 || fail "nginx -t with the module: $(cat "$tmp/nginx-t.txt")"
    in_root nginx -T >"$tmp/nginx-T.txt" 2>&1 || true
    grep -q 'load_module modules/ngx_http_mab_module.so;' "$tmp/nginx-T.txt" ||
        fail "nginx -T does not show the module's load_module line"
fi
if [[ " ${packages[*]} " == *" python3-mab "* ]]; then
    in_root python3 -c 'import mab; print(mab.library_path()); print(mab.version())' \
        >"$tmp/python.txt" 2>&1 || fail "python3 -c 'import mab': $(cat "$tmp/python.txt")"
    grep -qx '/usr/lib/[a-z0-9_-]*/libmab.so.1.*' "$tmp/python.txt" ||
        fail "the Python package did not load the packaged libmab: $(cat "$tmp/python.txt")"
fi

# 5. The service's command lines, as the mab user.
phase "running the unit's commands as mab"
mapfile -t pre < <(sed -n 's/^ExecStartPre=//p' "$unit")
mapfile -t reload < <(sed -n 's/^ExecReload=//p' "$unit")
start=$(sed -n 's/^ExecStart=//p' "$unit")
[[ ${#pre[@]} -ge 1 && -n $start && ${#reload[@]} -ge 2 ]] ||
    fail "the unit lacks ExecStartPre, ExecStart or the two ExecReload lines"
for line in "${pre[@]}"; do
    read -ra argv <<<"$line"
    as_mab "${argv[@]}" >"$tmp/pre.txt" 2>&1 || fail "ExecStartPre $line failed: $(cat "$tmp/pre.txt")"
done
port=$(free_port)
read -ra argv <<<"$start"
# A simple command (not the function as_mab), so that $! is mabd itself once
# env and chroot have exec'd it.
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    chroot --userspec="$mab_uid:$mab_gid" --groups="$mab_gid" "$root" \
    "${argv[@]}" --listen "127.0.0.1:$port" >"$tmp/mabd.log" 2>&1 &
pid=$!
up=""
for _ in $(seq 100); do
    if curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then up=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if [[ -z $up ]]; then
    fail "mabd from the package did not answer on 127.0.0.1:$port: $(cat "$tmp/mabd.log")"
    exit 1
fi
[[ $(stat -c '%u' "/proc/$pid") == "$mab_uid" ]] || fail "mabd does not run as the mab user"

req choose -c "$tmp/jar" "http://127.0.0.1:$port/v1/choose/example"
expect_status 200 "choose"
pycheck "choose answer" "$body" 'assert d["example"]["arm"] in ("a", "b"), d'
arm=$(printf '%s' "$body" | $py -c 'import json, sys; print(json.load(sys.stdin)["example"]["arm"])')
req reward -b "$tmp/jar" -X POST -H 'Content-Type: application/json' -d '{"value": 1}' \
    "http://127.0.0.1:$port/v1/reward/example"
expect_status 200 "reward"
ARM=$arm pycheck "reward answer" "$body" 'assert d["counted"] is True and d["arm"] == os.environ["ARM"], d'

# ExecReload: the config test, then SIGHUP to the main pid.
for line in "${reload[@]}"; do
    line=${line//\$MAINPID/$pid}
    line=${line//\$\{MAINPID\}/$pid}
    read -ra argv <<<"$line"
    if [[ ${argv[0]} == /bin/kill ]]; then
        "${argv[@]}" || fail "ExecReload $line failed"
    else
        as_mab "${argv[@]}" >"$tmp/reload.txt" 2>&1 || fail "ExecReload $line failed: $(cat "$tmp/reload.txt")"
    fi
done
reloaded=""
for _ in $(seq 100); do
    if grep -q "reloaded /etc/mab/mabd.json" "$tmp/mabd.log"; then reloaded=1; break; fi
    sleep 0.1
done
[[ -n $reloaded ]] || fail "mabd did not log a reload after ExecReload: $(cat "$tmp/mabd.log")"

kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=""
[[ $rc -eq 0 ]] || fail "mabd exited $rc after SIGTERM: $(cat "$tmp/mabd.log")"
sed 's/^/  mabd: /' "$tmp/mabd.log"

# The counts are in the LMDB store on disk, read by another process.
[[ -f $root/var/lib/mab/mabd.lmdb/data.mdb ]] || fail "no LMDB store in /var/lib/mab/mabd.lmdb"
[[ $(stat -c '%u' "$root/var/lib/mab/mabd.lmdb/data.mdb" 2>/dev/null) == "$mab_uid" ]] ||
    fail "the store is not owned by mab"
as_mab mab stats /etc/mab/mabd.json --json >"$tmp/stats.json" 2>&1 ||
    fail "mab stats on the store: $(cat "$tmp/stats.json")"
ARM=$arm pycheck "stats from disk" "$(cat "$tmp/stats.json")" '
arms = d["experiments"]["example"]["arms"]
mine = arms[os.environ["ARM"]]
assert mine["pulls"] == 1 and mine["rewards"] == 1 and mine["reward_sum"] == 1, arms
other = [a for a in arms if a != os.environ["ARM"]][0]
assert arms[other]["pulls"] == 0, arms'
echo "  chose $arm over HTTP, rewarded it; mab stats on the store: $(cat "$tmp/stats.json")"

# 6. Remove, then purge.
phase "apt-get remove"
in_root apt-get remove -y -q "${packages[@]}" >"$tmp/apt-remove.log" 2>&1 ||
    { cat "$tmp/apt-remove.log" >&2; exit 1; }
for f in usr/bin/mab usr/bin/mabd usr/lib/nginx/modules/ngx_http_mab_module.so; do
    [[ ! -e $root/$f ]] || fail "/$f is still there after apt-get remove"
done
for f in etc/mab/mabd.json etc/mab/mab.key var/lib/mab/mabd.lmdb/data.mdb; do
    [[ -e $root/$f ]] || fail "/$f is gone after apt-get remove (only purge removes it)"
done
if [[ " ${packages[*]} " == *" libnginx-mod-http-mab "* ]]; then
    [[ ! -e $root/etc/nginx/modules-enabled/50-mod-http-mab.conf ]] ||
        fail "the nginx module is still enabled after apt-get remove"
    [[ -L $root/etc/nginx/modules-enabled/50-mod-http-mab.conf.removed ]] ||
        fail "remove did not keep the nginx link as .removed"
    in_root nginx -t >"$tmp/nginx-t2.txt" 2>&1 ||
        fail "nginx -t after removing the module: $(cat "$tmp/nginx-t2.txt")"
fi

phase "apt-get purge"
# Packages with conffiles or a postrm are still known to dpkg ("rc");
# apt-get refuses to purge the others, which remove took away entirely.
purge=()
for p in "${packages[@]}"; do
    state=$(in_root dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    [[ $state == rc* ]] && purge+=("$p")
done
[[ " ${purge[*]} " == *" mabd "* ]] || fail "mabd is not in the config-files state after remove"
in_root apt-get purge -y -q "${purge[@]}" >"$tmp/apt-purge.log" 2>&1 ||
    { cat "$tmp/apt-purge.log" >&2; exit 1; }
for p in "${packages[@]}"; do
    status=$(in_root dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ -z $status || $status == "unknown ok not-installed" ]] || fail "$p: dpkg status '$status' after purge"
done
# Every file the packages shipped, from the .debs themselves.
for f in "${debs[@]}"; do
    dpkg-deb --fsys-tarfile "$f" | tar -t | sed 's|^\./||' | while read -r path; do
        [[ -n $path && $path != */ ]] || continue
        [[ ! -e $root/$path && ! -L $root/$path ]] || echo "$path"
    done
done >"$tmp/left.txt"
[[ ! -s $tmp/left.txt ]] || fail "files left after purge: $(cat "$tmp/left.txt")"
for f in etc/mab var/lib/mab etc/nginx/modules-enabled/50-mod-http-mab.conf \
         etc/nginx/modules-enabled/50-mod-http-mab.conf.removed \
         etc/systemd/system/multi-user.target.wants/mabd.service usr/lib/x86_64-linux-gnu/mab; do
    [[ ! -e $root/$f && ! -L $root/$f ]] || fail "/$f is left after purge"
done
# The mab user stays (postrm explains why).
in_root getent passwd mab >/dev/null || fail "purge removed the mab user (it is meant to stay)"

phase "done, $failures failure(s)"
if [[ $failures -eq 0 ]]; then
    # The root (~400 MB) is kept only after a failure, to look into.
    unmount_all
    rm -rf --one-file-system "$root"
else
    echo "the chroot is kept for inspection: $root" >&2
fi
[[ $failures -eq 0 ]]
