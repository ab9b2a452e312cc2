#!/bin/bash
# The whole test suite: builds the library in build/ (if needed) and runs
# every suite — C (meson), Python (pytest), Rust (cargo) — then prints one
# line "N passed, N failed" totalling them. Exit status 0 only if all pass.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${FIBRATION_BUILD:-build}
passed=0
failed=0

note() { printf '\n== %s ==\n' "$*"; }

# Adds a suite's counts; a suite that could not run counts as one failure.
count() { passed=$((passed + $1)); failed=$((failed + $2)); }

note "build ($build)"
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" || { echo "0 passed, 1 failed"; exit 1; }
fi
ninja -C "$build" || { echo "0 passed, 1 failed"; exit 1; }

note "C suites (meson test)"
meson test -C "$build" --print-errorlogs --num-processes 2 >"$build/meson-test.out" 2>&1
cat "$build/meson-test.out" | tail -n 40
ok=$(awk '/^Ok:/ {print $2}' "$build/meson-test.out")
fail=$(awk '/^Fail:/ {print $2}' "$build/meson-test.out")
timeout=$(awk '/^Timeout:/ {print $2}' "$build/meson-test.out")
if [ -z "$ok" ]; then count 0 1; else count "$ok" $((fail + timeout)); fi

# Further suites (Python, Rust, sanitizers) are added below by their owners.
if [ -f tests/run_more.sh ]; then
    . tests/run_more.sh
fi

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
