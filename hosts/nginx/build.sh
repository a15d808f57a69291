#!/usr/bin/env bash
# build.sh NGINX_SRC BUILD_DIR MAB_INCLUDE_DIR MAB_LIB_DIR OUT
#
# Build ngx_http_mab_module.so for Debian's installed nginx: copy the
# configure tree Debian ships in nginx-dev (NGINX_SRC, /usr/share/nginx/src)
# to BUILD_DIR, configure it with the flags Debian's nginx was built with
# (NGINX_SRC/conf_flags; --with-compat makes the module binary compatible)
# plus --add-dynamic-module=hosts/nginx, run `make modules` and copy the
# module to OUT. The tree is configured again only when its inputs change.
# Called by the CMake target mab_nginx_module.
set -euo pipefail

if [[ $# -ne 5 ]]; then
    echo "usage: $0 NGINX_SRC BUILD_DIR MAB_INCLUDE_DIR MAB_LIB_DIR OUT" >&2
    exit 2
fi
ngx_src=$1 build=$2 mab_include=$3 mab_lib=$4 out=$5
mkdir -p "$build"
build=$(cd "$build" && pwd)
addon=$(cd "$(dirname "$0")" && pwd)

if [[ ! -x $ngx_src/configure || ! -f $ngx_src/conf_flags ]]; then
    echo "$0: $ngx_src has no nginx configure tree (install Debian's nginx-dev)" >&2
    exit 1
fi
# conf_flags is a bash array assignment: NGX_CONF_FLAGS=( ... ).
# shellcheck disable=SC1091
source "$ngx_src/conf_flags"

# Debian's own compiler and linker flags (`nginx -V`), less its build path.
cc_opt="-g -O2 -fstack-protector-strong -Wformat -Werror=format-security -fPIC -Wdate-time -D_FORTIFY_SOURCE=2"
ld_opt="-Wl,-z,relro -Wl,-z,now -fPIC"
args=("${NGX_CONF_FLAGS[@]}" --with-cc-opt="$cc_opt" --with-ld-opt="$ld_opt"
      --add-dynamic-module="$addon")

tree=$build/src
stamp=$tree/.mab-configured
want=$(printf '%s\n' "${args[@]}" "$mab_include" "$mab_lib" "$(cat "$addon/config")" \
       "$(cat "$ngx_src/conf_flags")" | md5sum | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    echo "-- configuring nginx $(sed -n 's/^#define NGINX_VERSION *"\(.*\)"/\1/p' \
        "$ngx_src/src/core/nginx.h") in $tree"
    rm -rf "$tree"
    cp -a "$ngx_src" "$tree"
    (cd "$tree" && MAB_INCLUDE_DIR=$mab_include MAB_LIB_DIR=$mab_lib \
        ./configure "${args[@]}" >"$build/configure.log" 2>&1) || {
        tail -30 "$build/configure.log" >&2
        echo "$0: nginx's configure failed; full log: $build/configure.log" >&2
        exit 1
    }
    echo "$want" >"$stamp"
fi

# nginx's make knows only the module's sources, not libmab: relink each time
# (a link only), or a module linked against an older libmab SONAME stays.
rm -f "$tree/objs/ngx_http_mab_module.so"
# MAKEFLAGS from an outer make would hand nginx's make a jobserver it cannot use.
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$tree" -f objs/Makefile modules
mkdir -p "$(dirname "$out")"
cp "$tree/objs/ngx_http_mab_module.so" "$out.tmp"
mv -f "$out.tmp" "$out"
