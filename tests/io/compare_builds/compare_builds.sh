#!/bin/bash
# Model files written by two builds, compared byte for byte: what a change
# of the model-file code (src/io/model_*.c, the blocks' build, tensor,
# params, scalar and gathers entries) must leave alone.
#
#   tests/io/compare_builds/compare_builds.sh BUILD_A BUILD_B [WORK_DIR]
#
# BUILD_A and BUILD_B are meson build directories (BUILD/src holds the
# library and the command) of the same tests. It runs the Python tests that
# save models once per build, capturing every saved file; the files must be
# the same bytes. Then each captured file and each file of the io corpora is
# loaded and saved again by each build (resave.c): the same status and
# message, the same bytes. Exit 1 on any difference. Takes ~4 minutes a build.
set -u
a=$(cd "$1" && pwd); b=$(cd "$2" && pwd)
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../../.." && pwd)
work=${3:-$(mktemp -d)}
tests="tests/bindings/test_budget.py tests/bindings/test_core.py tests/bindings/test_one_meaning.py
tests/bindings/test_torch.py tests/bindings/test_torch_architectures.py tests/bindings/test_torch_files.py
tests/bindings/test_torch_positions.py tests/bindings/test_torch_safety.py
tests/bindings/test_torchvision_planted.py tests/blocks/test_transformer_torch.py
tests/io/test_hf_compress.py tests/io/test_state_dict.py tests/io/test_strict_reading.py
tests/io/test_hf_gpt2.py tests/io/test_hf_llama.py tests/io/test_hf_bert.py"
bad=0
for side in a b; do
    build=${!side}
    mkdir -p "$work/$side/saved" "$work/$side/again"
    (cd "$root" && CAPTURE_DIR="$work/$side/saved" FIBRATION_QUICK=1 \
        FIBRATION_LIBRARY="$build/src/libfibration.so" PYTHONPATH="$here:$root/bindings/python" \
        /usr/bin/python3 -m pytest -q -p no:cacheprovider -p capture_saves $tests \
        > "$work/$side/pytest.log" 2>&1) || { echo "tests failed with $build: $work/$side/pytest.log"; bad=1; }
    cc -O1 -I"$root/include" "$here/resave.c" -L"$build/src" -lfibration \
        -Wl,-rpath,"$build/src" -o "$work/$side/resave" || exit 1
done
for f in "$work/a/saved"/*; do
    n=$(basename "$f")
    if ! cmp -s "$f" "$work/b/saved/$n"; then echo "saved differently: $n"; bad=1; fi
done
for f in "$work/a/saved"/* "$root"/tests/io/corpus/*.safetensors \
         "$root"/tests/fuzz/corpus/safetensors/*.safetensors; do
    n=$(basename "$f")
    ra=$("$work/a/resave" "$f" "$work/a/again/$n" 2>&1; echo "status $?")
    rb=$("$work/b/resave" "$f" "$work/b/again/$n" 2>&1; echo "status $?")
    if [ "$ra" != "$rb" ]; then echo "read differently: $n: [$ra] [$rb]"; bad=1; fi
    if [ -f "$work/a/again/$n" ] && ! cmp -s "$work/a/again/$n" "$work/b/again/$n"; then
        echo "saved again differently: $n"; bad=1
    fi
done
echo "$(ls "$work/a/saved" | wc -l) saved files, $(ls "$work/a/again" | wc -l) saved again; work in $work"
exit $bad
