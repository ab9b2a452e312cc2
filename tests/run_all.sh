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

# pytest suites: counts from its closing line ("3 passed, 1 failed, ...").
run_pytest() {
    local name=$1; shift
    note "Python: $name (pytest)"
    local out="$build/pytest-$name.out"
    FIBRATION_LIBRARY="$root/$build/src/libfibration.so" \
        /usr/bin/python3 -m pytest -q -p no:cacheprovider "$@" >"$out" 2>&1
    local rc=$?
    tail -n 15 "$out"
    local p f e
    p=$(tail -n 1 "$out" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+')
    f=$(tail -n 1 "$out" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+')
    e=$(tail -n 1 "$out" | grep -oE '[0-9]+ error' | grep -oE '[0-9]+')
    p=${p:-0}; f=${f:-0}; e=${e:-0}
    # pytest exits 5 when it collected nothing: that is a failure here.
    if [ "$rc" -ne 0 ] && [ $((f + e)) -eq 0 ]; then f=1; fi
    count "$p" $((f + e))
}

for suite in blocks graphs bindings; do  # io runs its pytest under meson
    if ls tests/$suite/test_*.py >/dev/null 2>&1; then
        run_pytest "$suite" tests/$suite
    fi
done

# One check whose success is its exit status.
run_check() {
    local name=$1; shift
    note "$name"
    if "$@"; then count 1 0; else count 0 1; fi
}

run_check "generated bindings are current" /usr/bin/python3 bindings/generate.py --check

note "Rust: cargo test"
command -v cargo >/dev/null 2>&1 || export PATH="$HOME/.cargo/bin:$PATH"
if command -v cargo >/dev/null 2>&1; then
    out="$build/cargo-test.out"
    (cd bindings/rust && FIBRATION_LIB_DIR="$root/$build/src" \
        LD_LIBRARY_PATH="$root/$build/src" cargo test --offline) >"$out" 2>&1
    rc=$?
    grep -E '^test result:' "$out"
    p=$(grep -E '^test result:' "$out" | grep -oE '[0-9]+ passed' | awk '{s += $1} END {print s + 0}')
    f=$(grep -E '^test result:' "$out" | grep -oE '[0-9]+ failed' | awk '{s += $1} END {print s + 0}')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then tail -n 20 "$out"; f=1; fi
    count "$p" "$f"
else
    echo "cargo not found: Rust bindings not tested"; count 0 1
fi

note "Julia: parse check (no Julia runtime on Debian 12; see bindings/julia/README.md)"
out="$build/julia-parse.out"
(cd bindings/julia/parsecheck &&
    npm ci --ignore-scripts --legacy-peer-deps --no-audit --no-fund >/dev/null 2>&1 &&
    node parse_check.mjs) >"$out" 2>&1
tail -n 5 "$out"
line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
if [ -n "$line" ]; then
    count "$(echo "$line" | awk '{print $1}')" "$(echo "$line" | awk '{print $3}')"
else
    count 0 1
fi

# Sanitizers, valgrind, ThreadSanitizer, fuzzing and abidiff, each in its
# own build directory (about 10 minutes on 2 cores); FIBRATION_QUICK=1 skips.
if [ "${FIBRATION_QUICK:-0}" != 1 ]; then
    note "reliability: sanitizers, valgrind, fuzzing, ABI (tests/ci_checks.sh)"
    out="$build/ci-checks.out"
    FIBRATION_BUILD="$build" bash tests/ci_checks.sh >"$out" 2>&1
    tail -n 30 "$out"
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
    if [ -n "$line" ]; then
        count "$(echo "$line" | awk '{print $1}')" "$(echo "$line" | awk '{print $3}')"
    else
        count 0 1
    fi
fi

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
