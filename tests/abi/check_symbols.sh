#!/bin/bash
# The version script, the header and `nm -D` agree: the shared library
# exports only fib_* functions, each under a version node of lib/fibration.map,
# and exactly the functions the header declares with FIB_API, which the map
# lists one by one.
# Usage: check_symbols.sh LIBRARY.so HEADER MAP
set -u
lib=$1 header=$2 map=$3
status=0
fail() { echo "FAIL: $*"; status=1; }

exported=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TtWwDdBbRrVvi]$/ {print $3}' | sed 's/@.*//' | sort -u)
# The header without comments and preprocessor lines, as one line.
declared=$(gcc -fpreprocessed -dD -E -P "$header" 2>/dev/null | grep -v '^ *#' | tr '\n' ' ' |
           grep -oE 'FIB_API [^;(]*\(' |
           sed -E 's/.*[^A-Za-z0-9_]([A-Za-z_][A-Za-z0-9_]*) *\($/\1/' | sort -u)
[ -n "$exported" ] || fail "no exported symbols in $lib"
[ -n "$declared" ] || fail "no FIB_API declarations in $header"

bad=$(echo "$exported" | grep -v '^fib_')
[ -z "$bad" ] || fail "exported symbols outside fib_*: $(echo $bad)"
missing=$(comm -13 <(echo "$exported") <(echo "$declared"))
[ -z "$missing" ] || fail "declared in the header but not exported: $(echo $missing)"
extra=$(comm -23 <(echo "$exported") <(echo "$declared"))
[ -z "$extra" ] || fail "exported but not in the header: $(echo $extra)"

# The map lists every exported symbol by name: no wildcard, and exactly the
# header's functions.
listed=$(sed 's#/\*.*\*/##' "$map" | sed -n '/global:/,/local:/p' | grep -v 'global:\|local:' |
         tr -d ' ;' | grep -v '^$' | sort -u)
wild=$(echo "$listed" | grep '[*?]')
[ -z "$wild" ] || fail "wildcards in the global list of $map: $(echo $wild)"
unlisted=$(comm -13 <(echo "$listed") <(echo "$declared"))
[ -z "$unlisted" ] || fail "declared in the header but not listed in $map: $(echo $unlisted)"
stale=$(comm -23 <(echo "$listed") <(echo "$declared"))
[ -z "$stale" ] || fail "listed in $map but not declared in the header: $(echo $stale)"

# Every exported symbol carries a version node named in the map.
nodes=$(grep -oE '^[A-Z_][A-Z0-9_.]* *\{' "$map" | tr -d ' {')
unversioned=$(objdump -T "$lib" | awk '$NF ~ /^fib_/ {print $(NF-1), $NF}' |
              while read -r version name; do
                  echo "$nodes" | grep -qx "$version" || echo "$name($version)"
              done)
[ -z "$unversioned" ] || fail "symbols without a node of $map: $(echo $unversioned)"

echo "$(echo "$exported" | wc -l) exported, $(echo "$declared" | wc -l) declared, nodes: $(echo $nodes)"
exit $status
