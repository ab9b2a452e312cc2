"""Finding, loading and declaring the shared library.

Lookup order (the first that exists wins):
  1. the FIBRATION_LIBRARY environment variable (a path to the library);
  2. the package's own folder (where `pip install .` puts it: the wheel
     carries the library);
  3. the meson build directories of the source tree this package sits in
     (<repo>/build*/src/libfibration.so, the newest first);
  4. `pkg-config --variable=libdir fibration`;
  5. ctypes.util.find_library("fibration") (the system's search path).
"""

import ctypes
import ctypes.util
import glob
import os
import subprocess
import sys

from . import _ffi

_NAMES = {
    "linux": ("libfibration.so", "libfibration.so.0"),
    "darwin": ("libfibration.dylib", "libfibration.0.dylib"),
    "win32": ("fibration.dll", "libfibration.dll"),
}.get(sys.platform, ("libfibration.so",))

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# bindings/python/fibration -> the repository root
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(PACKAGE_DIR)))


def candidate_paths():
    """Every place the library is looked for, in order, as (how, path)."""
    env = os.environ.get("FIBRATION_LIBRARY")
    if env:
        yield ("FIBRATION_LIBRARY", env)
    for name in _NAMES:
        yield ("package folder", os.path.join(PACKAGE_DIR, name))
    builds = []
    for name in _NAMES:
        builds += glob.glob(os.path.join(SOURCE_ROOT, "build*", "src", name))
    builds.sort(key=lambda p: os.path.getmtime(p), reverse=True)
    for path in builds:
        yield ("meson build directory", path)
    try:
        libdir = subprocess.run(
            ["pkg-config", "--variable=libdir", "fibration"], capture_output=True,
            text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        libdir = ""
    if libdir:
        for name in _NAMES:
            yield ("pkg-config", os.path.join(libdir, name))
    found = ctypes.util.find_library("fibration")
    if found:
        yield ("system", found)


def load():
    """Loads the library and declares every function of the generated table.
    Returns (CDLL, path)."""
    tried = []
    for how, path in candidate_paths():
        if how != "system" and not os.path.exists(path):
            tried.append("%s: %s (missing)" % (how, path))
            if how == "FIBRATION_LIBRARY":
                raise ImportError("FIBRATION_LIBRARY=%s does not exist" % path)
            continue
        try:
            cdll = ctypes.CDLL(path)
        except OSError as e:
            if how == "FIBRATION_LIBRARY":
                raise ImportError("cannot load FIBRATION_LIBRARY=%s: %s" % (path, e))
            tried.append("%s: %s (%s)" % (how, path, e))
            continue
        declare(cdll)
        return cdll, path
    raise ImportError("libfibration was not found. Set FIBRATION_LIBRARY to the "
                      "path of libfibration.so, or build it (meson setup build && "
                      "ninja -C build). Tried:\n  " + "\n  ".join(tried))


class _Missing:
    """Stands in for a function the loaded library does not export (an older
    library than the header the bindings were generated from)."""

    def __init__(self, name):
        self.__name__ = name

    def __call__(self, *args):
        raise NotImplementedError(
            "%s is not exported by the loaded libfibration (it is older than "
            "the bindings)" % self.__name__)


def declare(cdll):
    for name, argtypes, restype in _ffi.FUNCTIONS:
        try:
            fn = getattr(cdll, name)
        except AttributeError:
            setattr(cdll, name, _Missing(name))
            continue
        fn.argtypes = argtypes
        fn.restype = restype
