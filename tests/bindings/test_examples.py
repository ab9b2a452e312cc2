"""The planted example prints the same text in C, Python and Rust; the Julia
bindings parse."""

import os
import shutil
import subprocess
import sys

import pytest

from conftest import BINDINGS, ROOT

EXAMPLES = os.path.join(BINDINGS, "examples")


@pytest.fixture(scope="module")
def c_output(library_dir, tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler")
    exe = str(tmp_path_factory.mktemp("c") / "planted")
    subprocess.run([cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic",
                    os.path.join(EXAMPLES, "planted.c"), "-I", os.path.join(ROOT, "include"),
                    "-L", library_dir, "-lfibration", "-lm", "-Wl,-rpath," + library_dir,
                    "-o", exe], check=True)
    return subprocess.run([exe], capture_output=True, text=True, check=True).stdout


def test_c_example_finds_the_planted_classes(c_output):
    assert "fibers per group: 4 3 2 2" in c_output
    assert "classes of h1: 0 1 2 0 1 2" in c_output
    assert "base equals original: yes" in c_output


def test_python_example_prints_what_c_prints(c_output):
    py = subprocess.run([sys.executable, os.path.join(EXAMPLES, "planted.py")],
                        capture_output=True, text=True, check=True).stdout
    assert py == c_output


@pytest.mark.skipif(not shutil.which("cargo"), reason="no cargo")
def test_rust_example_prints_what_c_prints(c_output, library_dir):
    env = dict(os.environ, FIBRATION_LIB_DIR=library_dir)
    result = subprocess.run(["cargo", "run", "--offline", "--quiet", "--example", "planted"],
                            cwd=os.path.join(BINDINGS, "rust", "fibration"), env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == c_output


PARSECHECK = os.path.join(BINDINGS, "julia", "parsecheck")


@pytest.mark.skipif(not shutil.which("node"), reason="no node")
def test_julia_bindings_parse():
    if not os.path.isdir(os.path.join(PARSECHECK, "node_modules", "web-tree-sitter")):
        pytest.skip("run: cd bindings/julia/parsecheck && npm ci --ignore-scripts "
                    "--legacy-peer-deps")
    result = subprocess.run(["node", "parse_check.mjs"], cwd=PARSECHECK,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "generated.jl" in result.stdout and " 0 failed" in result.stdout
