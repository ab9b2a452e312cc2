"""The loaded library, for every module of the package: `lib` (each
function declared from fibration._ffi.FUNCTIONS), the path it was loaded
from, and `check`, which turns a status into FibrationError."""

from ._errors import make_checker
from ._library import load

lib, library_path = load()
check = make_checker(lib)
