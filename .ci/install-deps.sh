#!/bin/bash
# Everything libfibration needs to build and test, from Debian 12 packages.
# Used by the README's first command and by CI.
set -eu
packages=(
  meson ninja-build gcc clang pkg-config            # build
  valgrind abigail-tools libclang-rt-14-dev         # memcheck, ABI check, fuzzing
  python3 python3-numpy python3-pytest python3-torch libopenblas0-pthread
  python3-torchvision                               # every torchvision builder (tests)
  python3-matplotlib                                # Python package and examples
  python3-networkx python3-scipy                    # the graph API's from_networkx / from_scipy (tests)
  python3-mesonpy python3-venv                      # pip install . (tests/bindings/test_pip_install.py)
  dataset-fashion-mnist                             # real data for tests and examples
  vim-runtime                                       # text corpus of docs/examples/exp_transformer.py
  graphviz                                          # DOT output check
  binutils                                          # nm, for the export checks
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js runs the Julia parse check and cargo the Rust crates; a machine
# may already have its own (rustup's ~/.cargo/bin counts).
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
command -v cargo >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/cargo" ] || missing+=(cargo)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
