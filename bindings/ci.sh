#!/bin/sh
# Runs every bindings suite against a built library. Usage:
#   bindings/ci.sh [BUILD_DIR]          (default: build)
# Needs: python3-torch python3-numpy python3-pytest python3-matplotlib
# dataset-fashion-mnist (Debian), cargo, node + npm (for the Julia parse check).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
export FIBRATION_LIBRARY="$BUILD/src/libfibration.so"
export FIBRATION_LIB_DIR="$BUILD/src"
PY=/usr/bin/python3

echo "== generated bindings are current"
$PY "$ROOT/bindings/generate.py" --check

echo "== Julia parse check (tree-sitter-julia)"
(cd "$ROOT/bindings/julia/parsecheck" &&
 npm ci --ignore-scripts --legacy-peer-deps --no-audit --no-fund >/dev/null &&
 node parse_check.mjs)

echo "== Rust: cargo test"
(cd "$ROOT/bindings/rust" && cargo test --offline)

echo "== Python: pytest"
cd "$ROOT/tests/bindings" && $PY -m pytest -q -p no:cacheprovider .
