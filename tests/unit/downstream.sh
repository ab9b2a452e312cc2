#!/bin/sh
# Downstream use of libfibration, as a user outside this tree gets it.
# Usage: downstream.sh SOURCE_ROOT MODE, MODE one of
#   pkg-config         a C program built only with `pkg-config --cflags --libs
#                      fibration` against an installed copy; only fib_* exported
#   installed-command  the installed `fibration` runs from its prefix with no
#                      LD_LIBRARY_PATH (rpath), also after the prefix is moved,
#                      and its man page is installed
#   subproject-static  a meson project embedding libfibration as a subproject
#                      with default_library=static: no tests, benchmarks or
#                      command of ours in it, only fib_* global symbols, and
#                      the program needs no libfibration.so
set -eu
src_root=$1
mode=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
unset LD_LIBRARY_PATH

run_logged() {  # run_logged LOG COMMAND...: quiet unless it fails
    log=$1; shift
    "$@" >"$log" 2>&1 || { cat "$log"; exit 1; }
}

# A program that needs the library to work: two identical hidden units
# merge into one.
write_app() {
    cat >"$1" <<'APP'
#include <fibration.h>
#include <stdio.h>
int main(void)
{
    const float w1[] = {1, 2, 1, 2}, w2[] = {1, 1};
    fib_graph *g;
    fib_coloring *c;
    fib_base *b;
    int32_t in, h, out;
    int64_t k;
    if (fib_graph_create(&g) || fib_graph_add_input(g, 2, &in) ||
        fib_graph_add_dense(g, in, 2, FIB_DTYPE_F32, w1, 2, NULL, 0, &h) ||
        fib_graph_set_activation(g, h, FIB_ACT_RELU, 0) ||
        fib_graph_add_dense(g, h, 1, FIB_DTYPE_F32, w2, 2, NULL, 0, &out) ||
        fib_color(g, NULL, &c) || fib_compress(g, c, &b) ||
        fib_graph_group_info(fib_base_graph(b), h, NULL, &k, NULL, NULL, NULL, NULL, NULL)) {
        fprintf(stderr, "failed: %s\n", fib_last_error());
        return 1;
    }
    printf("libfibration %s: hidden units 2 -> %lld\n", fib_version_string(), (long long)k);
    fib_base_free(b);
    fib_coloring_free(c);
    fib_graph_free(g);
    return k == 1 ? 0 : 1;
}
APP
}

case $mode in
pkg-config)
    run_logged "$work/setup.log" meson setup "$work/build" "$src_root" \
        --prefix="$work/prefix" --libdir=lib -Dtests=false -Dcli=false
    run_logged "$work/install.log" ninja -C "$work/build" install
    export PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig"
    # The .pc file names no invented home page.
    if grep -E '^URL:.*(example\.|\.invalid)' "$work/prefix/lib/pkgconfig/fibration.pc"; then
        echo "fibration.pc has a placeholder URL" >&2
        exit 1
    fi
    write_app "$work/app.c"
    cc -std=c11 -Wall -Werror -o "$work/app" "$work/app.c" $(pkg-config --cflags --libs fibration)
    LD_LIBRARY_PATH="$work/prefix/lib" "$work/app"
    # Only fib_* symbols are exported.
    if nm -D --defined-only "$work/prefix/lib/libfibration.so" | awk '$2 ~ /^[TDBRW]$/ {print $3}' | grep -v '^fib_'; then
        echo "symbols outside fib_* are exported" >&2
        exit 1
    fi
    ;;
installed-command)
    # The default libdir (lib/<triplet> on Debian): the rpath must follow it.
    run_logged "$work/setup.log" meson setup "$work/build" "$src_root" \
        --prefix="$work/prefix" -Dtests=false -Dcli=true
    run_logged "$work/install.log" ninja -C "$work/build" install
    model="$src_root/docs/examples/fashion_mlp.safetensors"
    for prefix in "$work/prefix" "$work/moved"; do
        [ "$prefix" = "$work/prefix" ] || mv "$work/prefix" "$prefix"
        "$prefix/bin/fibration" --version
        "$prefix/bin/fibration" analyze "$model" >"$work/analyze.out"
        grep -q 'Params' "$work/analyze.out" || { cat "$work/analyze.out"; exit 1; }
    done
    page="$work/moved/share/man/man1/fibration.1"
    [ -s "$page" ] || { echo "no man page at share/man/man1/fibration.1" >&2; exit 1; }
    for verb in analyze compress lift break graph; do
        grep -q "^\.SS fibration $verb\$" "$page" || { echo "man page lacks $verb" >&2; exit 1; }
    done
    if command -v man >/dev/null 2>&1; then
        warnings=$(MANWIDTH=80 man -l "$page" 2>&1 >/dev/null)
        if [ -n "$warnings" ]; then
            printf 'man page warnings:\n%s\n' "$warnings" >&2
            exit 1
        fi
    fi
    ;;
subproject-static)
    mkdir -p "$work/app/subprojects"
    ln -s "$src_root" "$work/app/subprojects/libfibration"
    write_app "$work/app/app.c"
    cat >"$work/app/meson.build" <<'BUILD'
project('app', 'c', default_options : ['default_library=static', 'c_std=c11'])
subproject('libfibration')
fibration = dependency('fibration')  # libfibration's meson.override_dependency
app = executable('app', 'app.c', dependencies : fibration)
test('app', app)
BUILD
    run_logged "$work/setup.log" meson setup "$work/build" "$work/app"
    run_logged "$work/build.log" ninja -C "$work/build"
    # Only the library was built: no tests, benchmarks or command.
    sub="$work/build/subprojects/libfibration"
    if [ -e "$sub/src/cli/fibration" ] || find "$sub/tests" -type f | grep .; then
        echo "the subproject built more than the library" >&2
        exit 1
    fi
    # Every global symbol of the static library is ours: fib_*.
    if nm -g --defined-only "$sub/src/libfibration.a" | awk 'NF == 3 {print $3}' | grep -v '^fib_'; then
        echo "libfibration.a defines global symbols outside fib_*" >&2
        exit 1
    fi
    meson test -C "$work/build" --no-rebuild --list >"$work/tests.list" 2>&1
    if [ "$(grep -c . "$work/tests.list")" -ne 1 ] || ! grep -qx 'app' "$work/tests.list"; then
        echo "the parent's meson test lists more than its own test:" >&2
        cat "$work/tests.list" >&2
        exit 1
    fi
    # Static: the program runs with no libfibration.so to find.
    if readelf -d "$work/build/app" | grep -q 'libfibration'; then
        echo "app is linked with the shared libfibration" >&2
        exit 1
    fi
    "$work/build/app"
    ;;
*)
    echo "usage: downstream.sh SOURCE_ROOT pkg-config|installed-command|subproject-static" >&2
    exit 2
    ;;
esac
