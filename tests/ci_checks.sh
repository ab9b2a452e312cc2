#!/bin/bash
# Reliability jobs of issue 9, each in its own build directory under
# ${CI_CHECKS_DIR:-build-ci}: AddressSanitizer + UndefinedBehaviorSanitizer
# over the whole meson suite (with the allocation-failure test, and the
# kernels forced to each SIMD level), valgrind memcheck over the C unit and
# reliability suites, ThreadSanitizer over the concurrency test, every
# libFuzzer target for FUZZ_SECONDS (default 45) each, and abidiff against
# lib/libfibration.abi. Ends with ONE line "N passed, N failed" (meson tests
# count one each, every other job counts one). Exit status 0 only if all pass.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${CI_CHECKS_DIR:-build-ci}
build=${FIBRATION_BUILD:-build}
fuzz_seconds=${FUZZ_SECONDS:-45}
mkdir -p "$out"
passed=0
failed=0
start=$(date +%s)

note() { printf '\n== %s ==\n' "$*"; }
count() { passed=$((passed + $1)); failed=$((failed + $2)); }

# Sanitizers report to the test's exit status; leaks fail.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:allocator_may_return_null=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1

# setup DIR ARGS...: configures (once) and builds a directory.
setup() {
    local dir=$1; shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$@" >"$out/$(basename "$dir").setup.log" 2>&1 ||
            { tail -n 20 "$out/$(basename "$dir").setup.log"; return 1; }
    fi
    ninja -C "$dir" -j2 >"$out/$(basename "$dir").build.log" 2>&1 ||
        { grep -E "error|FAILED" "$out/$(basename "$dir").build.log" | head -n 20; return 1; }
}

# meson_suite NAME DIR MESON-TEST-ARGS...: adds the Ok / Fail counts.
meson_suite() {
    local name=$1 dir=$2; shift 2
    local log="$out/$name.log"
    meson test -C "$dir" --print-errorlogs --num-processes 2 "$@" >"$log" 2>&1
    grep -E '^ *[0-9]+/[0-9]+ ' "$log" | grep -vE ' OK | SKIP ' | head -n 20
    grep -E 'ERROR: (Address|Leak|Thread)Sanitizer|runtime error:|definitely lost' "$log" | sort | uniq -c | head -n 10
    local ok fail timeout
    ok=$(awk '/^Ok:/ {print $2}' "$log")
    fail=$(awk '/^Fail:/ {print $2}' "$log")
    timeout=$(awk '/^Timeout:/ {print $2}' "$log")
    # LeakSanitizer's own tracer can crash while it stops the threads of a
    # process at exit ("LeakSanitizer has encountered a fatal error", and no
    # leak report): after such a crash each failed test runs up to twice more
    # and counts by those runs. A leak report is deterministic and fails again.
    if [ -n "$ok" ] && grep -q 'LeakSanitizer has encountered a fatal error' "$log"; then
        local test_name
        for test_name in $(grep -E '^ *[0-9]+/[0-9]+ .* FAIL ' "$log" |
                           sed -E 's|^ *[0-9]+/[0-9]+ +[^ ]+ / ([^ ]+) .*|\1|' | sort -u); do
            if meson test -C "$dir" --print-errorlogs "$@" "$test_name" \
                    >"$log.again-$test_name" 2>&1 ||
               meson test -C "$dir" --print-errorlogs "$@" "$test_name" \
                    >"$log.again-$test_name" 2>&1; then
                echo "$name: $test_name passed when run again after LeakSanitizer's tracer crashed"
                ok=$((ok + 1))
                fail=$((fail - 1))
            fi
        done
    fi
    echo "$name: ${ok:-0} ok, ${fail:-?} failed, ${timeout:-?} timed out (log: $log)"
    if [ -z "$ok" ]; then count 0 1; else count "$ok" $((fail + timeout)); fi
}

note "ASan + UBSan: whole suite, allocation failure on (clang)"
asan="$out/asan"
if CC=clang setup "$asan" -Db_sanitize=address,undefined -Db_lundef=false \
        -Dalloc_failure=true -Dbuildtype=debugoptimized; then
    # Sanitized code runs 2-3x slower, and the scalar kernels slower still;
    # on a shared host the default 30 s limit then stops tests that pass.
    # A hang is still stopped, after 4x the limit.
    meson_suite asan "$asan" --timeout-multiplier 4
    for level in avx2 scalar; do
        note "ASan + UBSan: unit and reliability suites, FIBRATION_SIMD=$level"
        FIBRATION_SIMD=$level meson_suite "asan-$level" "$asan" --timeout-multiplier 4 \
            --suite unit --suite reliability
    done
else
    count 0 1
fi

note "valgrind memcheck: unit and reliability suites"
if setup "$build"; then
    meson_suite valgrind "$build" --setup valgrind --suite unit --suite reliability
else
    count 0 1
fi

note "ThreadSanitizer: concurrent colouring (clang)"
tsan="$out/tsan"
# OpenMP off: LLVM's libomp is not built with TSan, so its own barriers would
# be reported; the threads the reliability suite starts itself are checked.
if CC=clang setup "$tsan" -Db_sanitize=thread -Db_lundef=false -Dcli=false -Dopenmp=disabled; then
    meson_suite tsan "$tsan" --timeout-multiplier 4 --suite reliability
else
    count 0 1
fi

note "libFuzzer: ${fuzz_seconds}s per target (scalar kernels; see docs/ERRORS.md)"
fuzz="$out/fuzz"
if CC=clang setup "$fuzz" -Dfuzzing=true -Db_sanitize=address,undefined \
        -Db_lundef=false -Dcli=false -Dbuildtype=debugoptimized; then
    for target in safetensors model edgelist api; do
        work="$out/fuzz-$target"
        rm -rf "$work"
        mkdir -p "$work/corpus" "$work/crashes"
        # New inputs go to the scratch corpus; the committed one is read only.
        ( cd "$work" && FIBRATION_SIMD=scalar \
          ASAN_OPTIONS=$ASAN_OPTIONS:max_allocation_size_mb=2048 \
          "$root/$fuzz/tests/fuzz/fuzz_$target" -max_total_time="$fuzz_seconds" \
            -timeout=20 -rss_limit_mb=3072 -malloc_limit_mb=3072 -print_final_stats=1 \
            -artifact_prefix="$root/$work/crashes/" \
            corpus "$root/tests/fuzz/corpus/$target" ) >"$work.log" 2>&1
        rc=$?
        runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$work.log" | grep -oE '[0-9]+$')
        cov=$(grep -E '^#[0-9]+' "$work.log" | tail -n 1 | grep -oE 'cov: [0-9]+')
        crashes=$(ls "$work/crashes" | wc -l)
        echo "fuzz_$target: ${runs:-0} executions, $cov, exit $rc, $crashes crash file(s)"
        if [ "$rc" -eq 0 ] && [ "$crashes" -eq 0 ]; then
            count 1 0
        else
            grep -E 'ERROR:|runtime error|broken promise' "$work.log" | head -n 5
            echo "  keep it: cp $work/crashes/* tests/fuzz/corpus/$target/ (as crash-*)"
            count 0 1
        fi
    done
else
    count 0 1
fi

note "ABI: abidiff against lib/libfibration.abi (added symbols allowed)"
if [ -f "$build/src/libfibration.so" ]; then
    abidiff --no-added-syms --headers-dir2 include lib/libfibration.abi \
        "$build/src/libfibration.so" >"$out/abidiff.log" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ]; then
        echo "no removed or changed symbols or types"; count 1 0
    else
        head -n 40 "$out/abidiff.log"; echo "abidiff exit $rc"; count 0 1
    fi
else
    echo "no $build/src/libfibration.so"; count 0 1
fi

echo
echo "ci_checks: $(( $(date +%s) - start )) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
