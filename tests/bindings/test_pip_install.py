"""`pip install .` of the repository into a fresh virtual environment, then
docs/tutorial-pytorch.md's code run there: the package finds the library it
carries with no environment variable, and the walkthrough works as written.

The venv sees Debian's torch and numpy (--system-site-packages); pip uses the
installed meson-python (--no-build-isolation) and no package index."""

import os
import re
import subprocess
import sys
import venv

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TUTORIAL = os.path.join(ROOT, "docs", "tutorial-pytorch.md")
FASHION = os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist")


def python_blocks(markdown_path):
    """The ```python code blocks of a Markdown page, in order, as one script."""
    with open(markdown_path, encoding="utf-8") as fh:
        text = fh.read()
    blocks = re.findall(r"^```python\n(.*?)^```$", text, flags=re.M | re.S)
    return "\n".join(blocks)


def clean_env():
    """The environment without anything that points Python at this tree or
    at a library: what a user's shell has."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("FIBRATION_LIBRARY", "PYTHONPATH", "LD_LIBRARY_PATH", "PYTHONHOME")}
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A venv with the repository pip-installed; returns its python."""
    pytest.importorskip("mesonpy", reason="install python3-mesonpy")
    pytest.importorskip("torch")
    home = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(system_site_packages=True, with_pip=True).create(str(home))
    python = str(home / "bin" / "python")
    run = subprocess.run(
        [python, "-m", "pip", "install", "--no-build-isolation", "--no-index",
         "--no-cache-dir", "--quiet", ROOT],
        env=clean_env(), cwd=str(home), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, "pip install failed:\n" + run.stdout[-3000:] + run.stderr[-3000:]
    return home, python


def test_pip_install_carries_the_library_in_the_package(installed):
    home, python = installed
    run = subprocess.run(
        [python, "-c", "import fibration, fibration.torch; print(fibration.__file__); "
         "print(fibration.library_path); print(fibration.library_version())"],
        env=clean_env(), cwd=str(home), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    package_file, library, version = run.stdout.split("\n")[:3]
    package_dir = os.path.dirname(package_file)
    assert package_dir.startswith(str(home)), "imported %s, not the installed package" % package_file
    assert os.path.dirname(library) == package_dir, "loaded %s, not the library in the package" % library
    assert version.strip()
    # Only the package: no command, header or pkg-config file from the wheel.
    assert not (home / "bin" / "fibration").exists()
    assert not list(home.glob("**/fibration.h"))
    assert not list(home.glob("**/fibration.pc"))


def test_pytorch_tutorial_runs_in_the_installed_package(installed, tmp_path):
    if not os.path.exists(os.path.join(FASHION, "train-images-idx3-ubyte.gz")):
        pytest.skip("install the Debian package dataset-fashion-mnist")
    home, python = installed
    script = tmp_path / "tutorial_pytorch.py"
    code = python_blocks(TUTORIAL)
    assert "ft.compress" in code and "ft.lift" in code and "ft.save" in code
    script.write_text(code)
    run = subprocess.run([python, str(script)], env=clean_env(), cwd=str(tmp_path),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, "the tutorial failed:\n" + run.stdout[-3000:] + run.stderr[-3000:]
    assert "test accuracy" in run.stdout
    assert (tmp_path / "small.safetensors").stat().st_size > 0
