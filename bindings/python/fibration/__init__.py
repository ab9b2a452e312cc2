"""libfibration for Python: fibration symmetries (fibers, flavoured opfibers,
covers) of neural networks, and compression by them.

Layers:
  fibration.lib              the C library itself, every function declared from
                             the generated table fibration._ffi.FUNCTIONS
  fibration.Graph, Coloring, Base
                             handle classes over it (numpy / torch arrays in,
                             numpy arrays out; weights passed zero-copy)
  fibration.torch            analyse / compress / verify / lift / break symmetry
                             of torch.nn modules (imports torch when first used)

Constants are exported without their FIB_ prefix: fibration.ACT_RELU,
fibration.SYM_COVERS, fibration.E_SHAPE, ...
"""

from . import _ffi
from ._errors import FibrationError
from ._lib import check, lib, library_path

for _name, _value in _ffi.CONSTANTS.items():
    globals()[_name[len("FIB_"):]] = _value
del _name, _value

HEADER_VERSION = _ffi.HEADER_VERSION


def library_version():
    """The version of the loaded library as (major, minor, patch)."""
    number = lib.fib_version()
    return (number // 10000, number // 100 % 100, number % 100)


def _check_version():
    loaded = library_version()
    if loaded[0] != HEADER_VERSION[0] or loaded[:2] < HEADER_VERSION[:2]:
        raise ImportError(
            "libfibration %d.%d.%d at %s does not match the bindings, generated "
            "from fibration.h %d.%d.%d (need the same major version and at least "
            "the same minor)" % (loaded + (library_path,) + HEADER_VERSION))


_check_version()

__version__ = "%d.%d.%d" % HEADER_VERSION


def features():
    """The FIB_FEATURE_* names this build and CPU provide."""
    bits = lib.fib_features()
    return sorted(k[len("FIB_FEATURE_"):].lower() for k, v in _ffi.CONSTANTS.items()
                  if k.startswith("FIB_FEATURE_") and bits & v)


from ._core import Base, Coloring, Graph, GroupInfo  # noqa: E402


def __getattr__(name):
    # `fibration.torch` is imported on first use so that `import fibration`
    # needs neither torch nor numpy.
    if name == "torch":
        import importlib
        return importlib.import_module(".torch", __name__)
    raise AttributeError("module 'fibration' has no attribute %r" % name)


__all__ = ["lib", "check", "FibrationError", "Graph", "Coloring", "Base",
           "GroupInfo", "library_version", "features", "library_path"]
