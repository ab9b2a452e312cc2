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
