#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# mk/check-deb.sh: build the Debian packages (debian/) and check them. It
# builds them with dpkg-buildpackage -us -uc -b in a copy of the tree,
# checks that the build fails when the library and debian/libshmkit0.symbols
# disagree, runs lintian (an error fails, so does a warning docs/packaging.md
# does not name), then as root installs them with dpkg -i, builds the
# README's tour against them with pkg-config (mk/check-install.sh
# --installed), runs it as a master of 2 workers that shmkit stat sees,
# stops it with SIGQUIT and purges the packages (docs/packaging.md).
#   mk/check-deb.sh                  all of it (make check-deb)
#   mk/check-deb.sh --build-only DIR only build, the packages into DIR (make deb)
#   mk/check-deb.sh --symbols        build, then rewrite debian/libshmkit0.symbols
#                                    with dpkg-gensymbols from the library just built
set -eu
top=$(pwd)
mode=check out=
case "${1:-}" in
--build-only) mode=build out=${2:?usage: $0 --build-only DIR} ;;
--symbols) mode=symbols ;;
"") ;;
*) echo "usage: $0 [--build-only DIR | --symbols]" >&2; exit 2 ;;
esac
[ -f debian/control ] || { echo "check-deb: run from the top of the tree" >&2; exit 2; }
# It overrides dpkg-gensymbols's -c4 (debian/rules): only --symbols sets it.
unset DPKG_GENSYMBOLS_CHECK_LEVEL
t0=$SECONDS
pkgs=(libshmkit0 libshmkit-dev shmkit-tools)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
ver=$(dpkg-parsechangelog -S Version)
upver=${ver%-*}
mkver=$(sed -n 's/^VERSION *:= *//p' Makefile)
[ "$mkver" = "$upver" ] ||
    { echo "check-deb: the Makefile's VERSION $mkver is not debian/changelog's $upver" >&2; exit 1; }
tmp=$(mktemp -d /tmp/shmkit-deb.XXXXXX)
installed=() master= inst=
cleanup() {
    [ -z "$master" ] || kill -KILL "$master" 2>/dev/null || true
    [ -z "$inst" ] || rm -f /dev/shm/shmkit."$inst".*
    if [ ${#installed[@]} -ne 0 ]; then
        dpkg --purge "${installed[@]}" >"$tmp/purge.log" 2>&1 ||
            { cat "$tmp/purge.log" >&2; echo "check-deb: dpkg --purge ${installed[*]} failed" >&2; }
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "check-deb: $*" >&2; exit 1; }

# ---- the copy: the tree as git sees it (new files and uncommitted changes
# included, nothing ignored: no build/, no node_modules), so nothing the
# build leaves lands in the tree, and the .debs land beside the copy.
src=$tmp/src/shmkit-$upver
mkdir -p "$src"
git ls-files -z -co --exclude-standard |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    tar --null -T - -cf - | tar -xf - -C "$src"

# The source package first (lintian's source checks read it): the tree
# without debian/ is the upstream tarball.
if [ $mode = check ]; then
    tar -C "$tmp/src" --exclude="shmkit-$upver/debian" -czf "$tmp/src/shmkit_$upver.orig.tar.gz" \
        "shmkit-$upver"
    (cd "$src" && dpkg-source -b .) >"$tmp/source.log" 2>&1 ||
        { cat "$tmp/source.log" >&2; fail "dpkg-source -b failed"; }
fi

echo "check-deb: dpkg-buildpackage -us -uc -b in a copy of the tree"
[ $mode != symbols ] || export DPKG_GENSYMBOLS_CHECK_LEVEL=0
if ! (cd "$src" && DEB_BUILD_OPTIONS="parallel=2 ${DEB_BUILD_OPTIONS:-}" \
        dpkg-buildpackage -us -uc -b) >"$tmp/build.log" 2>&1; then
    if grep -q '^dpkg-gensymbols: ' "$tmp/build.log"; then
        sed -n '/^dpkg-gensymbols: /,$p' "$tmp/build.log" | head -n 40 >&2
        fail "the library's exports differ from debian/libshmkit0.symbols (a symbol gone:" \
            "an ABI break, restore it or raise the soname; a new symbol: mk/check-deb.sh --symbols" \
            "adds it; docs/packaging.md)"
    fi
    tail -n 40 "$tmp/build.log" >&2
    fail "dpkg-buildpackage failed"
fi
unset DPKG_GENSYMBOLS_CHECK_LEVEL
debs=()
for p in "${pkgs[@]}"; do
    d=$tmp/src/${p}_${ver}_$arch.deb
    [ -f "$d" ] || fail "no $(basename "$d") after the build"
    debs+=("$d")
done
for d in "${debs[@]}"; do
    echo "  $(basename "$d"): Depends: $(dpkg-deb -f "$d" Depends)"
    echo "   " $(dpkg-deb -c "$d" | awk '$1 !~ /^d/ {sub(/^\./, "", $6); print $6}' |
        grep -v '^/usr/share/doc/')
done

case $mode in
build)
    mkdir -p "$out"
    cp "$tmp"/src/*.deb "$tmp"/src/*.buildinfo "$tmp"/src/*.changes "$out"/
    echo "deb: packages in $out ($((SECONDS - t0)) s)"
    exit 0
    ;;
symbols)
    # dpkg-gensymbols on the library as packaged, from the file as it is
    # (its symbols keep their versions); a new symbol gets the upstream
    # version: the release that brings it.
    (cd "$src" && dpkg-gensymbols -plibshmkit0 -Pdebian/libshmkit0 -v"$upver" -c0 \
        -Idebian/libshmkit0.symbols -O"$tmp/gen.symbols") >"$tmp/gensym.log" 2>&1 ||
        { cat "$tmp/gensym.log" >&2; fail "dpkg-gensymbols failed"; }
    grep -q '^\* Build-Depends-Package: libshmkit-dev$' "$tmp/gen.symbols" ||
        fail "dpkg-gensymbols dropped the Build-Depends-Package field"
    gone=$(diff <(grep '^ ' debian/libshmkit0.symbols | cut -d' ' -f2) \
        <(grep '^ ' "$tmp/gen.symbols" | cut -d' ' -f2) | sed -n 's/^< //p' || true)
    added=$(diff <(grep '^ ' debian/libshmkit0.symbols | cut -d' ' -f2) \
        <(grep '^ ' "$tmp/gen.symbols" | cut -d' ' -f2) | sed -n 's/^> //p' || true)
    cp "$tmp/gen.symbols" debian/libshmkit0.symbols
    echo "check-deb: debian/libshmkit0.symbols written ($(grep -c '^ ' debian/libshmkit0.symbols)" \
        "symbols; added: ${added:-none})"
    if [ -n "$gone" ]; then
        echo "check-deb: warning: symbols gone from the library (an ABI break: a new soname," \
            "docs/packaging.md):" $gone >&2
    fi
    exit 0
    ;;
esac

# ---- the symbols file: the build above passed dpkg-gensymbols -c4; the same
# step of debian/rules must fail when the file lists a symbol the library
# lacks (what a removed function looks like) and when the library has one
# the file lacks.
echo "check-deb: symbols: the library's $(grep -c '^ shk_' debian/libshmkit0.symbols) shk_ symbols" \
    "(SHMKIT_0.1) match debian/libshmkit0.symbols"
cp "$src/debian/libshmkit0.symbols" "$tmp/symbols"
{ cat "$tmp/symbols"; echo " shk_check_deb_gone@SHMKIT_0.1 $upver"; } >"$src/debian/libshmkit0.symbols"
if (cd "$src" && DEB_RULES_REQUIRES_ROOT=no debian/rules override_dh_makeshlibs) >"$tmp/gensym.log" 2>&1; then
    fail "debian/rules built with a symbol of debian/libshmkit0.symbols missing from the library"
fi
grep -q '^-  *shk_check_deb_gone@SHMKIT_0.1' "$tmp/gensym.log" ||
    { cat "$tmp/gensym.log" >&2; fail "the failed dh_makeshlibs does not name the lost symbol"; }
one=$(grep -m1 '^ shk_' "$tmp/symbols" | cut -d' ' -f2)
grep -v "^ $one " "$tmp/symbols" >"$src/debian/libshmkit0.symbols"
if (cd "$src" && DEB_RULES_REQUIRES_ROOT=no debian/rules override_dh_makeshlibs) >"$tmp/gensym.log" 2>&1; then
    fail "debian/rules built with a symbol ($one) debian/libshmkit0.symbols lacks"
fi
grep -q "^+  *$one" "$tmp/gensym.log" ||
    { cat "$tmp/gensym.log" >&2; fail "the failed dh_makeshlibs does not name the new symbol"; }
cp "$tmp/symbols" "$src/debian/libshmkit0.symbols"
echo "check-deb: symbols: dh_makeshlibs fails on a symbol gone from the library and on one" \
    "the file lacks"

# ---- lintian on the binary packages and the source package
lintian --fail-on error "$tmp"/src/*_"$arch".changes "$tmp"/src/*.dsc >"$tmp/lintian.log" 2>&1 &&
    lint_rc=0 || lint_rc=$?
grep -v '^running with root privileges' "$tmp/lintian.log" >"$tmp/lintian.tags" || true
errors=$(grep -c '^E: ' "$tmp/lintian.tags" || true)
warnings=$(grep -c '^W: ' "$tmp/lintian.tags" || true)
echo "check-deb: lintian: $errors errors, $warnings warnings"
grep '^[EW]: ' "$tmp/lintian.tags" | sed 's/^/  /' || true
[ "$lint_rc" = 0 ] && [ "$errors" = 0 ] || { cat "$tmp/lintian.tags" >&2; fail "lintian found errors"; }
for tag in $(sed -n 's/^W: [^:]*: \([a-z0-9-]*\).*/\1/p' "$tmp/lintian.tags" | sort -u); do
    grep -q -- "\`$tag\`" docs/packaging.md ||
        fail "lintian warning $tag: fix it, or say in docs/packaging.md why it is accepted"
done

# ---- install, build the tour against the packages, run it, purge
if [ "$(id -u)" != 0 ]; then
    echo "check-deb: the install test skipped: dpkg -i needs root ($((SECONDS - t0)) s)"
    exit 0
fi
exec 9>/tmp/shmkit-check-deb.lock
flock -w 600 9 || fail "another check-deb holds /tmp/shmkit-check-deb.lock"
for p in "${pkgs[@]}"; do
    ! dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^.[^n]' ||
        fail "$p is installed: the check installs and purges its own (dpkg --purge $p first)"
done
# A `make install` into /usr/local would shadow the packages (the compiler,
# pkg-config and the loader look there first).
for f in /usr/local/include/shmkit /usr/local/lib/libshmkit.so.0 /usr/local/lib/pkgconfig/shmkit.pc; do
    [ ! -e "$f" ] || fail "$f would shadow the packages: make uninstall PREFIX=/usr/local first"
done
installed=("${pkgs[@]}")
dpkg -i "${debs[@]}" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log" >&2; fail "dpkg -i failed"; }
echo "check-deb: dpkg -i ${pkgs[*]}"

run=$tmp/run
env -u PKG_CONFIG_PATH -u PKG_CONFIG_LIBDIR "$top/mk/check-install.sh" --installed "$run"
pcdir=$(env -u PKG_CONFIG_PATH -u PKG_CONFIG_LIBDIR pkg-config --variable=pcfiledir shmkit)
[ "$pcdir" = "/usr/lib/$ma/pkgconfig" ] || fail "pkg-config found shmkit.pc in $pcdir, not libshmkit-dev's"
lib=$(ldd "$run/tour" | awk '$1 == "libshmkit.so.0" {print $3}')
[ "$(readlink -f "$lib")" = "/usr/lib/$ma/libshmkit.so.$upver" ] ||
    fail "the tour loads libshmkit.so.0 from '$lib', not libshmkit0's"
# libshmkit-dev's static library: the .a, and the rest from Libs.private
static_libs=$(env -u PKG_CONFIG_PATH -u PKG_CONFIG_LIBDIR pkg-config --static --libs shmkit |
    sed 's/\(^\| \)-lshmkit\( \|$\)/ /')
# shellcheck disable=SC2086
${CC:-cc} -std=c11 -Wall -Werror -o "$run/tour-static" "$run/tour.c" "/usr/lib/$ma/libshmkit.a" \
    $static_libs 2>"$run/cc.log" ||
    { cat "$run/cc.log" >&2; fail "the tour does not link with libshmkit.a and pkg-config --static"; }
! readelf -d "$run/tour-static" | grep -q 'libshmkit' || fail "tour-static still needs libshmkit.so"
echo "check-deb: the tour links $lib; the static build links libshmkit.a"

v=$(shmkit --version)
[ "$v" = "shmkit $upver" ] || fail "shmkit --version printed '$v', not 'shmkit $upver'"
[ -f /usr/share/man/man1/shmkit.1.gz ] || fail "shmkit-tools has no man page"
inst=debcheck$$
cat >"$run/myapp.conf" <<EOF
worker_processes 2;
shm_instance $inst;
shm_mapping named;
shm_zone cache:1m;
EOF
shmkit check -c "$run/myapp.conf" >"$run/check.log" 2>&1 ||
    { cat "$run/check.log" >&2; fail "shmkit check -c myapp.conf failed"; }
# the tour reads myapp.conf from its working directory
(cd "$run" && exec ./tour) >"$run/tour.log" 2>&1 &
master=$!
workers=
for _ in $(seq 100); do
    kill -0 "$master" 2>/dev/null || { cat "$run/tour.log" >&2; fail "the tour's master exited"; }
    workers=$(pgrep -P "$master" | tr '\n' ' ' || true)
    [ "$(echo $workers | wc -w)" = 2 ] && shmkit stat --instance "$inst" cache >"$run/stat.log" 2>&1 && break
    workers=
    sleep 0.1
done
[ -n "$workers" ] || { cat "$run/tour.log" "$run/stat.log" >&2; fail "no master with 2 workers and zone cache in 10 s"; }
grep -q 'cache' "$run/stat.log" || { cat "$run/stat.log" >&2; fail "shmkit stat does not show zone cache"; }
kill -QUIT "$master"
for _ in $(seq 100); do
    kill -0 "$master" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$master" 2>/dev/null && fail "the master did not stop within 10 s of SIGQUIT"
rc=0
wait "$master" || rc=$?
master=
[ $rc = 0 ] || { cat "$run/tour.log" >&2; fail "the tour's master exited with status $rc after SIGQUIT"; }
for w in $workers; do
    ! kill -0 "$w" 2>/dev/null || fail "worker $w outlived its master"
done
! ls /dev/shm/shmkit."$inst".* >/dev/null 2>&1 || fail "the stopped master left /dev/shm/shmkit.$inst.*"
inst=
echo "check-deb: the tour ran as a master of 2 workers (pids ${workers% }), shmkit stat saw zone" \
    "cache, SIGQUIT stopped it (status 0)"

files=$(dpkg -L "${pkgs[@]}" | sort -u)
dpkg --purge "${pkgs[@]}" >"$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log" >&2; fail "dpkg --purge failed"; }
installed=()
left=$(for f in $files; do [ -d "$f" ] || [ ! -e "$f" ] || echo "$f"; done)
[ -z "$left" ] || fail "dpkg --purge left" $left
echo "check-deb: dpkg --purge ${pkgs[*]}: none of their files is left"
echo "deb: ok (3 packages built, symbols checked, lintian: $errors errors, $warnings warnings;" \
    "installed, the tour built with pkg-config and ran, purged; $((SECONDS - t0)) s)"
