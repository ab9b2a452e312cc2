"""Status codes become exceptions."""

from . import _ffi

STATUS_NAMES = {v: k for k, v in _ffi.CONSTANTS.items()
                if k == "FIB_OK" or k.startswith("FIB_E_")}


class FibrationError(Exception):
    """A libfibration call failed.

    code     the negative FIB_E_* status (fibration.E_SHAPE, ...)
    name     its name ("FIB_E_SHAPE")
    message  fib_last_error(): what failed, naming the group, block or index
    function the C function that failed
    """

    def __init__(self, code, name, message, function=""):
        self.code = code
        self.name = name
        self.message = message
        self.function = function
        where = "%s: " % function if function else ""
        super().__init__("%s%s (%s)" % (where, message or name, name))

    def __reduce__(self):
        return (FibrationError, (self.code, self.name, self.message, self.function))


def make_checker(lib):
    def check(status, function=""):
        if status == 0:
            return
        message = lib.fib_last_error()
        message = message.decode("utf-8", "replace") if message else ""
        name = lib.fib_status_name(status)
        name = name.decode() if name else STATUS_NAMES.get(status, "FIB_E_UNKNOWN")
        raise FibrationError(status, name, message, function)
    return check
