#!/bin/bash
# The public header compiles on its own, warning-free, as C (gcc and clang,
# -std=c11 and -std=c99, -Wall -Wextra -pedantic) and as C++ (g++ and
# clang++, -std=c++11 -Wall -Wextra -pedantic).
# Usage: check_header.sh INCLUDE_DIR
set -u
inc=$1
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
checked=0
try() {
    local compiler=$1 source=$2; shift 2
    command -v "$compiler" >/dev/null 2>&1 || { echo "skip: $compiler not found"; return; }
    if "$compiler" "$@" -Wall -Wextra -pedantic -Werror -I "$inc" -c "$source" \
           -o "$tmp/out.o" 2>"$tmp/err"; then
        checked=$((checked + 1))
    else
        echo "FAIL: $compiler $*"; cat "$tmp/err"; status=1
    fi
}
for cc in gcc clang; do
    for std in c11 c99; do try $cc "$here/header_c.c" -std=$std; done
done
for cxx in g++ clang++; do
    try $cxx "$here/header_cxx.cpp" -std=c++11
done
echo "$checked compilations of fibration.h"
[ "$checked" -gt 0 ] && exit $status
