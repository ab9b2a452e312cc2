#!/bin/sh
# A downstream C program built only with `pkg-config --cflags --libs
# fibration` against an installed copy of the library.
set -eu
src_root=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
meson setup "$work/build" "$src_root" --prefix="$work/prefix" --libdir=lib \
    -Dtests=false -Dcli=false >"$work/setup.log" 2>&1 || { cat "$work/setup.log"; exit 1; }
ninja -C "$work/build" install >"$work/install.log" 2>&1 || { cat "$work/install.log"; exit 1; }
export PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig"
cat >"$work/app.c" <<'APP'
#include <fibration.h>
#include <stdio.h>
int main(void)
{
    /* Two identical hidden units merge into one. */
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
cc -std=c11 -Wall -Werror -o "$work/app" "$work/app.c" $(pkg-config --cflags --libs fibration)
LD_LIBRARY_PATH="$work/prefix/lib" "$work/app"
# Only fib_* symbols are exported.
if nm -D --defined-only "$work/prefix/lib/libfibration.so" | awk '$2 ~ /^[TDBRW]$/ {print $3}' | grep -v '^fib_'; then
    echo "symbols outside fib_* are exported" >&2
    exit 1
fi
