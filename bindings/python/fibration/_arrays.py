"""Passing numpy arrays and torch tensors to C without copying.

Every check is here: dtype (float32 / float64), device (cpu), layout
(rows contiguous, a leading dimension in whole elements). Anything that is
neither a numpy array nor a torch tensor is converted with numpy.asarray
(a copy, kept alive by the caller like any other borrowed buffer).
"""

from . import _ffi

DTYPE_CODES = {"float32": _ffi.FIB_DTYPE_F32, "float64": _ffi.FIB_DTYPE_F64}
DTYPE_NAMES = {v: k for k, v in DTYPE_CODES.items()}


def _is_torch(obj):
    return type(obj).__module__.split(".")[0] == "torch" and hasattr(obj, "data_ptr")


class Buffer:
    """A borrowed 1-D or 2-D floating buffer: address, dtype code, shape, ld.
    `owner` is the object that must stay alive while C uses the address."""

    __slots__ = ("address", "dtype", "shape", "ld", "owner")

    def __init__(self, address, dtype, shape, ld, owner):
        self.address, self.dtype, self.shape, self.ld, self.owner = \
            address, dtype, shape, ld, owner


def float_buffer(obj, what, ndim, dtype=None):
    """Checks obj and returns a Buffer over its memory. ndim is 1 or 2.
    dtype (a FIB_DTYPE_* code), when given, must match."""
    if _is_torch(obj):
        if obj.device.type != "cpu":
            raise ValueError("%s is on device %s; libfibration reads CPU memory "
                             "(call .cpu())" % (what, obj.device))
        name = str(obj.dtype).replace("torch.", "")
        shape, strides, address = tuple(obj.shape), tuple(obj.stride()), obj.data_ptr()
        itemsize = obj.element_size()
        strides = tuple(s * itemsize for s in strides)
    else:
        import numpy as np
        if not isinstance(obj, np.ndarray):
            obj = np.asarray(obj, dtype=np.float64)
        if not obj.dtype.isnative:
            raise ValueError("%s has non-native byte order" % what)
        name = obj.dtype.name
        shape, strides, address = obj.shape, obj.strides, obj.ctypes.data
        itemsize = obj.itemsize
    if name not in DTYPE_CODES:
        raise TypeError("%s has dtype %s; libfibration takes float32 or float64"
                        % (what, name))
    code = DTYPE_CODES[name]
    if dtype is not None and code != dtype:
        raise TypeError("%s has dtype %s but must have the dtype of the weights, %s"
                        % (what, name, DTYPE_NAMES[dtype]))
    if len(shape) != ndim:
        raise ValueError("%s must have %d dimension(s), not shape %s"
                         % (what, ndim, tuple(shape)))
    if ndim == 1:
        if shape[0] > 1 and strides[0] != itemsize:
            raise ValueError("%s is not contiguous (make it so with "
                             ".contiguous() or numpy.ascontiguousarray)" % what)
        return Buffer(address, code, tuple(shape), shape[0], obj)
    rows, cols = shape
    row_stride = strides[0] if rows > 1 else cols * itemsize
    if (cols > 1 and strides[1] != itemsize) or row_stride % itemsize \
            or row_stride // itemsize < cols:
        raise ValueError("%s is not row-major with contiguous rows (strides %s); "
                         "make it so with .contiguous() or numpy.ascontiguousarray"
                         % (what, tuple(strides)))
    return Buffer(address, code, (rows, cols), max(row_stride // itemsize, 1), obj)


def int64_array(values, what, length=None):
    """A C-contiguous numpy int64 copy of values (small label arrays)."""
    import numpy as np
    if _is_torch(values):
        values = values.detach().cpu().numpy()
    arr = np.ascontiguousarray(values, dtype=np.int64)
    if arr.ndim != 1:
        raise ValueError("%s must be 1-D" % what)
    if length is not None and arr.shape[0] != length:
        raise ValueError("%s has %d entries; the group has %d units"
                         % (what, arr.shape[0], length))
    return arr
