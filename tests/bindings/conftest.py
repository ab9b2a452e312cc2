"""Shared setup of the bindings suites: the in-tree Python package, and the
library under test (FIBRATION_LIBRARY, else the newest build*/src of the
repository, as fibration's own lookup does)."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINDINGS = os.path.join(ROOT, "bindings")
sys.path.insert(0, os.path.join(BINDINGS, "python"))


@pytest.fixture(scope="session")
def library_dir():
    import fibration
    return os.path.dirname(os.path.abspath(fibration.library_path))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module's tests, restored after: a trained
    model's figures then do not depend on the machine's core count (the
    order of float sums does). Seeds are pinned by each test."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
