"""Handle classes over the C API: Graph, Coloring, Base.

Each owns one C handle, freed by weakref.finalize (so also at interpreter
exit) or earlier by close(). Methods mirror the C functions one to one, with
Python types: group ids and unit indices are 0-based ints, arrays come back as
numpy arrays.
"""

import ctypes
import os
import weakref
from collections import namedtuple

from . import _ffi
from ._lib import check, lib
from ._arrays import float_buffer, int64_array

SYMMETRIES = {"fibers": _ffi.FIB_SYM_FIBERS, "opfibers": _ffi.FIB_SYM_OPFIBERS,
              "covers": _ffi.FIB_SYM_COVERS}
LEVELS = dict(SYMMETRIES, automorphisms=_ffi.FIB_SYM_AUTOMORPHISMS)
CHAIN_LINKS = {"orbits_in_covers": _ffi.FIB_CHAIN_ORBITS_IN_COVERS,
               "covers_in_fibers": _ffi.FIB_CHAIN_COVERS_IN_FIBERS,
               "covers_in_opfibers": _ffi.FIB_CHAIN_COVERS_IN_OPFIBERS}
# Every tolerance mode of the header ("exact", "abs", "rel", "cosine",
# "complete", "ward") and the "scaled" flag, combined as "scaled+ward".
TOLERANCES = {k[len("FIB_TOL_"):].lower(): v for k, v in _ffi.CONSTANTS.items()
              if k.startswith("FIB_TOL_")}


def _tolerance(value):
    """A tolerance code from a name, "scaled+NAME", or an int."""
    if isinstance(value, str):
        code = 0
        for part in value.lower().split("+"):
            code |= _kind(TOLERANCES, part.strip(), "tolerance")
        return code
    return int(value)


def _kinds(prefix):
    """{'relu': FIB_ACT_RELU, ...} for every generated constant with the prefix."""
    return {k[len(prefix):].lower(): v for k, v in _ffi.CONSTANTS.items()
            if k.startswith(prefix)}


ACTIVATIONS = _kinds("FIB_ACT_")
CONVENTIONS = _kinds("FIB_CONVENTION_")
OPS = {v: k for k, v in _kinds("FIB_OP_").items()}

GroupInfo = namedtuple("GroupInfo", "id op n_units activation parameter has_bias "
                                    "sources is_output name")


def _kind(table, value, what):
    if isinstance(value, str):
        try:
            return table[value.lower()]
        except KeyError:
            raise ValueError("unknown %s %r; one of %s" % (what, value, sorted(table)))
    return int(value)


def _name_of(table, code):
    return next((k for k, v in table.items() if v == code), str(code))


def _packed_rows(values, what):
    """A Buffer over a packed (rows, units) copy of values (the C builders
    that take one copy it)."""
    import numpy as np
    if _is_torch_tensor(values):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    return float_buffer(np.ascontiguousarray(arr), what, 2)


# dtype names of the calls that write or make weights in a chosen dtype
_DTYPE_CODES = {"float32": _ffi.FIB_DTYPE_F32, "float64": _ffi.FIB_DTYPE_F64}


def _is_torch_tensor(obj):
    return type(obj).__module__.split(".")[0] == "torch" and hasattr(obj, "detach")


class _Handle:
    """Owns a C pointer; `_free` is the C function that releases it."""

    _free = None

    def _own(self, ptr):
        self._ptr = ptr
        self._finalizer = weakref.finalize(self, type(self)._free, ptr)

    def close(self):
        """Frees the handle now (idempotent). Objects that borrow it (a base's
        graph, colourings of a graph) keep it alive, so close() only frees
        when nothing else refers to it."""
        self._finalizer()

    @property
    def closed(self):
        return not self._finalizer.alive

    def _p(self):
        if not self._finalizer.alive:
            raise ValueError("%s is closed" % type(self).__name__)
        return self._ptr

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Graph(_Handle):
    """A network of groups of units (fib_graph).

    Weights given to add_dense are borrowed by default: the graph keeps a
    reference to the array or tensor, which must not be modified while the
    graph lives (pass copy=True to have the library copy them)."""

    _free = staticmethod(lambda p: lib.fib_graph_free(p))

    def __init__(self):
        ptr = ctypes.POINTER(_ffi.fib_graph)()
        check(lib.fib_graph_create(ctypes.byref(ptr)), "fib_graph_create")
        self._own(ptr)
        self._borrowed = []   # arrays whose memory the C graph reads
        self._owner = None
        self._names = {}      # node group -> node names (when not the C library's)
        self._types = {}      # edge type name -> id, shared by all arc sets
        self._type_kinds = set()  # "named", "integer", "untyped", "file"

    @classmethod
    def _adopt(cls, ptr):
        g = cls.__new__(cls)
        g._own(ptr)
        g._borrowed, g._owner, g._names, g._types = [], None, {}, {}
        g._type_kinds = {"file"}  # arcs made by the library: ids unknown here
        return g

    @classmethod
    def _view(cls, ptr, owner):
        """A graph owned by another handle (a base's graph): never freed here;
        holds `owner` alive."""
        g = cls.__new__(cls)
        g._ptr, g._borrowed, g._owner, g._names, g._types = ptr, [], owner, {}, {}
        g._type_kinds = {"file"}
        g._finalizer = weakref.finalize(g, lambda: None)
        return g

    def _cp(self):
        return ctypes.cast(self._p(), ctypes.POINTER(_ffi.fib_graph))

    # -- building ----------------------------------------------------------
    def add_input(self, n_units):
        out = ctypes.c_int32()
        check(lib.fib_graph_add_input(self._p(), n_units, ctypes.byref(out)),
              "fib_graph_add_input")
        return out.value

    def add_dense(self, source, weights, bias=None, copy=False, activation=None,
                  parameter=0.0, name=None):
        """Adds z = W x + b over group `source`. weights: (n_out, n_in) float32 or
        float64, rows contiguous (numpy array or CPU torch tensor); bias the same
        dtype or None. Returns the new group id."""
        w = float_buffer(weights, "weights", 2)
        b = float_buffer(bias, "bias", 1, dtype=w.dtype) if bias is not None else None
        if b is not None and b.shape[0] != w.shape[0]:
            raise ValueError("bias has %d entries for %d rows of weights"
                             % (b.shape[0], w.shape[0]))
        out = ctypes.c_int32()
        flags = _ffi.FIB_COPY if copy else 0
        check(lib.fib_graph_add_dense(self._p(), source, w.shape[0], w.dtype, w.address,
                                      w.ld, b.address if b is not None else None,
                                      flags, ctypes.byref(out)), "fib_graph_add_dense")
        if not copy:
            self._borrowed.append(w.owner)
            if b is not None:
                self._borrowed.append(b.owner)
        if activation is not None:
            self.set_activation(out.value, activation, parameter)
        if name is not None:
            self.set_name(out.value, name)
        return out.value

    def add_sum(self, a, b):
        out = ctypes.c_int32()
        check(lib.fib_graph_add_sum(self._p(), a, b, ctypes.byref(out)), "fib_graph_add_sum")
        return out.value

    def add_product(self, a, b):
        """z = a * b per unit (a gate); b may have a single position, which
        then scales every position of a."""
        out = ctypes.c_int32()
        check(lib.fib_graph_add_product(self._p(), a, b, ctypes.byref(out)),
              "fib_graph_add_product")
        return out.value

    def add_input_positions(self, n_units, rows, cols):
        """An input group of n_units present at rows x cols positions (an image
        of n_units channels, or a sequence of length rows with cols = 1)."""
        out = ctypes.c_int32()
        check(lib.fib_graph_add_input_positions(self._p(), n_units, rows, cols,
                                                ctypes.byref(out)),
              "fib_graph_add_input_positions")
        return out.value

    def _borrow(self, copy, *buffers):
        if not copy:
            self._borrowed.extend(b.owner for b in buffers if b is not None)

    @staticmethod
    def _flat(obj, what, dtype=None):
        """A Buffer over a tensor of any rank, viewed as (rows, cols) without
        copying (it must be contiguous)."""
        if obj is None:
            return None
        if hasattr(obj, "reshape") and getattr(obj, "ndim", 2) != 2:
            obj = obj.reshape(obj.shape[0], -1) if obj.ndim > 1 else obj.reshape(1, -1)
        return float_buffer(obj, what, 2, dtype=dtype)

    def _vector(self, obj, what, dtype):
        return float_buffer(obj, what, 1, dtype=dtype) if obj is not None else None

    def _added(self, status, function, out, name=None, activation=None, parameter=0.0):
        check(status, function)
        if activation is not None:
            self.set_activation(out.value, activation, parameter)
        if name is not None:
            self.set_name(out.value, name)
        return out.value

    def add_conv(self, source, weights, bias=None, stride=(1, 1), padding=(0, 0), groups=1,
                 copy=False, name=None):
        """A 2-D convolution (fib_graph_add_conv). weights: OIHW, contiguous
        (Conv1d: O x I x 1 x K). stride, padding: (rows, cols)."""
        shape = tuple(weights.shape)
        if len(shape) != 4:
            raise ValueError("conv weights must be OIHW, not shape %s" % (shape,))
        w = self._flat(weights, "weights")
        b = self._vector(bias, "bias", w.dtype)
        out = ctypes.c_int32()
        status = lib.fib_graph_add_conv(self._p(), source, shape[0], shape[2], shape[3],
                                        stride[0], stride[1], padding[0], padding[1], groups,
                                        w.dtype, w.address, b.address if b else None,
                                        _ffi.FIB_COPY if copy else 0, ctypes.byref(out))
        self._borrow(copy, w, b)
        return self._added(status, "fib_graph_add_conv", out, name)

    def add_pool(self, source, kind, kernel, stride, padding=(0, 0), name=None):
        """Max or average pooling ('max' / 'avg' or FIB_POOL_*)."""
        code = {"max": _ffi.FIB_POOL_MAX, "avg": _ffi.FIB_POOL_AVG}.get(kind, kind)
        out = ctypes.c_int32()
        status = lib.fib_graph_add_pool(self._p(), source, int(code), kernel[0], kernel[1],
                                        stride[0], stride[1], padding[0], padding[1],
                                        ctypes.byref(out))
        return self._added(status, "fib_graph_add_pool", out, name)

    def add_flatten(self, source, name=None):
        out = ctypes.c_int32()
        return self._added(lib.fib_graph_add_flatten(self._p(), source, ctypes.byref(out)),
                           "fib_graph_add_flatten", out, name)

    def add_affine(self, source, scale, shift=None, copy=False, name=None):
        """z = scale * x + shift per unit (batch norm in eval mode)."""
        s = float_buffer(scale, "scale", 1)
        t = self._vector(shift, "shift", s.dtype)
        out = ctypes.c_int32()
        status = lib.fib_graph_add_affine(self._p(), source, s.dtype, s.address,
                                          t.address if t else None,
                                          _ffi.FIB_COPY if copy else 0, ctypes.byref(out))
        self._borrow(copy, s, t)
        return self._added(status, "fib_graph_add_affine", out, name)

    def _add_gated(self, function, source, hidden, w_ih, w_hh, b_ih, b_hh, copy, name):
        wi = float_buffer(w_ih, "weight_ih", 2)
        wh = float_buffer(w_hh, "weight_hh", 2, dtype=wi.dtype)
        bi = self._vector(b_ih, "bias_ih", wi.dtype)
        bh = self._vector(b_hh, "bias_hh", wi.dtype)
        for buf, what in ((wi, "weight_ih"), (wh, "weight_hh")):
            if buf.ld != buf.shape[1]:
                raise ValueError("%s must be contiguous" % what)
        out = ctypes.c_int32()
        status = getattr(lib, function)(self._p(), source, hidden, wi.dtype, wi.address,
                                        wh.address, bi.address if bi else None,
                                        bh.address if bh else None,
                                        _ffi.FIB_COPY if copy else 0, ctypes.byref(out))
        self._borrow(copy, wi, wh, bi, bh)
        return self._added(status, function, out, name)

    def add_lstm(self, source, hidden, w_ih, w_hh, b_ih=None, b_hh=None, copy=False,
                 name=None):
        """One LSTM layer (gates i, f, g, o) over the sequence `source`."""
        return self._add_gated("fib_graph_add_lstm", source, hidden, w_ih, w_hh, b_ih, b_hh,
                               copy, name)

    def add_gru(self, source, hidden, w_ih, w_hh, b_ih=None, b_hh=None, copy=False,
                name=None):
        """One GRU layer (gates r, z, n) over the sequence `source`."""
        return self._add_gated("fib_graph_add_gru", source, hidden, w_ih, w_hh, b_ih, b_hh,
                               copy, name)

    def add_last_step(self, source, name=None):
        out = ctypes.c_int32()
        return self._added(lib.fib_graph_add_last_step(self._p(), source, ctypes.byref(out)),
                           "fib_graph_add_last_step", out, name)

    def add_select_step(self, source, position, name=None):
        """Position `position` of a sequence (x[:, position]; negative counts
        from the end)."""
        out = ctypes.c_int32()
        return self._added(lib.fib_graph_add_select_step(self._p(), source, int(position),
                                                         ctypes.byref(out)),
                           "fib_graph_add_select_step", out, name)

    def add_prepend(self, source, values, name=None):
        """Constant positions before the positions of `source` (a class
        token): values is (k, units), k >= 0; the result is a sequence of k
        + rows x cols positions. The values are copied."""
        out = ctypes.c_int32()
        if len(values) == 0:  # no constants: an image's positions as a sequence
            status = lib.fib_graph_add_prepend(self._p(), source, 0, _ffi.FIB_DTYPE_F64,
                                               None, ctypes.byref(out))
        else:
            v = _packed_rows(values, "values")
            status = lib.fib_graph_add_prepend(self._p(), source, v.shape[0], v.dtype,
                                               v.address, ctypes.byref(out))
        return self._added(status, "fib_graph_add_prepend", out, name)

    def add_position_shift(self, source, shift, name=None):
        """x + shift, shift of shape (positions, units) (a learned position
        embedding). The shifts are copied."""
        v = _packed_rows(shift, "shift")
        out = ctypes.c_int32()
        status = lib.fib_graph_add_position_shift(self._p(), source, v.dtype, v.address,
                                                  ctypes.byref(out))
        return self._added(status, "fib_graph_add_position_shift", out, name)

    def add_attention(self, source, n_heads, in_weight, in_bias, out_weight, out_bias,
                      copy=False):
        """Multi-head self-attention: five groups q, k, v, core, out; returns
        the id of the output projection (the others are the four before)."""
        wi = float_buffer(in_weight, "in_weight", 2)
        bi = self._vector(in_bias, "in_bias", wi.dtype)
        wo = float_buffer(out_weight, "out_weight", 2, dtype=wi.dtype)
        bo = self._vector(out_bias, "out_bias", wi.dtype)
        for buf, what in ((wi, "in_weight"), (wo, "out_weight")):
            if buf.ld != buf.shape[1]:
                raise ValueError("%s must be contiguous" % what)
        out = ctypes.c_int32()
        status = lib.fib_graph_add_attention(self._p(), source, n_heads, wi.dtype,
                                             wi.address, bi.address if bi else None,
                                             wo.address, bo.address if bo else None,
                                             _ffi.FIB_COPY if copy else 0, ctypes.byref(out))
        self._borrow(copy, wi, bi, wo, bo)
        return self._added(status, "fib_graph_add_attention", out)

    def add_attention_ex(self, source, q_weight, k_weight, v_weight, out_weight, n_heads,
                         n_kv_heads=0, head_dim=0, causal=False, rotary=None,
                         rope_theta=10000.0, rotary_dim=0, scale=0.0, q_bias=None,
                         k_bias=None, v_bias=None, out_bias=None, copy=False):
        """Attention as language models hold it (fib_graph_add_attention_ex):
        separate q, k, v projections and the output projection in nn.Linear
        layout [out, in], grouped-query heads (n_kv_heads dividing n_heads),
        an optional causal mask and rotary position embeddings (rotary='half':
        Llama's rotate_half, at rope_theta). Five groups q, k, v, core, out;
        returns the id of the output projection."""
        rotary_codes = {None: _ffi.FIB_ROTARY_NONE, "half": _ffi.FIB_ROTARY_HALF}
        if rotary not in rotary_codes:
            raise ValueError("rotary must be None or 'half', not %r" % (rotary,))
        wq = float_buffer(q_weight, "q_weight", 2)
        weights = [wq] + [float_buffer(w, what, 2, dtype=wq.dtype) for w, what in
                          ((k_weight, "k_weight"), (v_weight, "v_weight"),
                           (out_weight, "out_weight"))]
        for buf, what in zip(weights, ("q_weight", "k_weight", "v_weight", "out_weight")):
            if buf.ld != buf.shape[1]:
                raise ValueError("%s must be contiguous" % what)
        biases = [self._vector(b, what, wq.dtype) for b, what in
                  ((q_bias, "q_bias"), (k_bias, "k_bias"), (v_bias, "v_bias"),
                   (out_bias, "out_bias"))]
        o = _ffi.fib_attention_options()
        check(lib.fib_attention_options_init(ctypes.byref(o), ctypes.sizeof(o)),
              "fib_attention_options_init")
        o.n_heads, o.n_kv_heads, o.head_dim = int(n_heads), int(n_kv_heads), int(head_dim)
        o.causal, o.rotary = int(bool(causal)), rotary_codes[rotary]
        o.rope_theta, o.rotary_dim, o.scale = float(rope_theta), int(rotary_dim), float(scale)
        pointers = []
        for w, b in zip(weights, biases):
            pointers += [w.address, b.address if b else None]
        out = ctypes.c_int32()
        status = lib.fib_graph_add_attention_ex(self._p(), source, ctypes.byref(o), wq.dtype,
                                                *pointers, _ffi.FIB_COPY if copy else 0,
                                                ctypes.byref(out))
        self._borrow(copy, *weights, *biases)
        return self._added(status, "fib_graph_add_attention_ex", out)

    def add_token_embedding(self, source, embedding, name=None):
        """A token embedding (fib_graph_add_token_embedding): `source` is a
        one-hot input of vocab units, `embedding` the matrix [vocab, hidden]
        as checkpoints store it; the library keeps its own transposed copy."""
        e = float_buffer(embedding, "embedding", 2)
        if e.ld != e.shape[1]:
            raise ValueError("embedding must be contiguous")
        out = ctypes.c_int32()
        status = lib.fib_graph_add_token_embedding(self._p(), source, e.shape[1], e.dtype,
                                                   e.address, ctypes.byref(out))
        return self._added(status, "fib_graph_add_token_embedding", out, name)

    def add_norm(self, source, kind="layer", weight=None, bias=None, epsilon=1e-5,
                 dtype=None, copy=False, name=None):
        """LayerNorm ('layer') or RMSNorm ('rms') over the units of `source`."""
        code = {"layer": _ffi.FIB_NORM_LAYER, "rms": _ffi.FIB_NORM_RMS}.get(kind, kind)
        w = self._vector(weight, "weight", None)
        dt = w.dtype if w else None
        bb = self._vector(bias, "bias", dt)
        if dt is None:
            dt = bb.dtype if bb else (dtype or _ffi.FIB_DTYPE_F64)
        out = ctypes.c_int32()
        status = lib.fib_graph_add_norm(self._p(), source, int(code), dt,
                                        w.address if w else None, bb.address if bb else None,
                                        float(epsilon), _ffi.FIB_COPY if copy else 0,
                                        ctypes.byref(out))
        self._borrow(copy, w, bb)
        return self._added(status, "fib_graph_add_norm", out, name)

    def set_activation(self, group, activation, parameter=0.0):
        """activation: a FIB_ACT_* code or one of 'linear', 'relu', 'leaky_relu',
        'tanh', 'sigmoid', 'gelu', 'silu', 'relu6', 'hardswish', 'hardsigmoid',
        'mish', 'softplus', 'gelu_tanh'."""
        check(lib.fib_graph_set_activation(self._p(), group,
                                           _kind(ACTIVATIONS, activation, "activation"),
                                           float(parameter)), "fib_graph_set_activation")

    def set_name(self, group, name):
        check(lib.fib_graph_set_group_name(self._p(), group, name.encode()),
              "fib_graph_set_group_name")

    def set_eps(self, group, eps):
        check(lib.fib_graph_set_group_eps(self._p(), group, float(eps)),
              "fib_graph_set_group_eps")

    def set_unit_statistics(self, group, mean, var):
        """Stored statistics of the group's units on the data: mean[u] and
        var[u] of unit u's output (after the group's activation), as the
        model stores them (a batch norm's running mean and variance of its
        input). Only budgets read them (data-free; docs/compression.md,
        "Removals from stored statistics"). mean and var both None remove
        them. FibrationError naming the group and unit for a length other
        than the group's units, a NaN or infinite value, a negative
        variance (fib_graph_set_unit_statistics)."""
        import numpy as np
        if mean is None and var is None:
            check(lib.fib_graph_set_unit_statistics(self._p(), int(group), None, None, 0),
                  "fib_graph_set_unit_statistics")
            return
        if mean is None or var is None:
            raise ValueError("set_unit_statistics: group %d: give both mean and var (both "
                             "None remove them)" % group)
        m = np.ascontiguousarray(np.asarray(mean, dtype=np.float64).reshape(-1))
        v = np.ascontiguousarray(np.asarray(var, dtype=np.float64).reshape(-1))
        if m.shape != v.shape:
            raise ValueError("set_unit_statistics: group %d: %d means but %d variances"
                             % (group, m.size, v.size))
        as_doubles = ctypes.POINTER(ctypes.c_double)
        check(lib.fib_graph_set_unit_statistics(self._p(), int(group), m.ctypes.data_as(as_doubles),
                                                v.ctypes.data_as(as_doubles), m.size),
              "fib_graph_set_unit_statistics")

    # -- reading -----------------------------------------------------------
    @property
    def num_groups(self):
        n = ctypes.c_int32()
        check(lib.fib_graph_num_groups(self._cp(), ctypes.byref(n)), "fib_graph_num_groups")
        return n.value

    def __len__(self):
        return self.num_groups

    def group(self, group):
        """A GroupInfo(id, op, n_units, activation, parameter, has_bias, sources,
        is_output, name); op and activation are names ('dense', 'relu')."""
        op, n, act = ctypes.c_int32(), ctypes.c_int64(), ctypes.c_int32()
        par, has_bias = ctypes.c_double(), ctypes.c_int32()
        n_src, is_out = ctypes.c_int32(), ctypes.c_int32()
        check(lib.fib_graph_group_info(self._cp(), group, ctypes.byref(op), ctypes.byref(n),
                                       ctypes.byref(act), ctypes.byref(par),
                                       ctypes.byref(has_bias), ctypes.byref(n_src),
                                       ctypes.byref(is_out)), "fib_graph_group_info")
        sources = []
        for i in range(n_src.value):
            s = ctypes.c_int32()
            check(lib.fib_graph_group_source(self._cp(), group, i, ctypes.byref(s)),
                  "fib_graph_group_source")
            sources.append(s.value)
        name = lib.fib_graph_group_name(self._cp(), group)
        return GroupInfo(group, OPS.get(op.value, op.value), n.value,
                         _name_of(ACTIVATIONS, act.value), par.value, bool(has_bias.value),
                         tuple(sources), bool(is_out.value),
                         name.decode() if name else "")

    def groups(self):
        return [self.group(g) for g in range(self.num_groups)]

    def read_dense(self, group, dtype="float64"):
        """(weights (n_units, n_in), bias (n_units,)) of a dense group, as copies."""
        import numpy as np
        info = self.group(group)
        n_in = self.group(info.sources[0]).n_units if info.sources else 0
        w = np.zeros((info.n_units, max(n_in, 1)), dtype=dtype)
        b = np.zeros(info.n_units, dtype=dtype)
        code = _ffi.FIB_DTYPE_F32 if w.dtype == np.float32 else _ffi.FIB_DTYPE_F64
        check(lib.fib_graph_read_dense(self._cp(), group, code, w.ctypes.data,
                                       max(n_in, 1), b.ctypes.data), "fib_graph_read_dense")
        return w[:, :n_in], b

    def read_sum(self, group):
        """(index_a, index_b): z[i] = a[index_a[i]] + b[index_b[i]]."""
        import numpy as np
        n = self.group(group).n_units
        ia, ib = np.zeros(n, np.int64), np.zeros(n, np.int64)
        p = ctypes.POINTER(ctypes.c_int64)
        check(lib.fib_graph_read_sum(self._cp(), group, ia.ctypes.data_as(p),
                                     ib.ctypes.data_as(p)), "fib_graph_read_sum")
        return ia, ib

    def positions(self, group):
        """(rows, cols) of a group ((1, 1) for plain vectors)."""
        r, c = ctypes.c_int64(), ctypes.c_int64()
        check(lib.fib_graph_group_positions(self._cp(), group, ctypes.byref(r),
                                            ctypes.byref(c)), "fib_graph_group_positions")
        return r.value, c.value

    def tensor_shapes(self, group):
        """[(name, shape)] of the parameter tensors of a group's block, in
        the numbering of fib_graph_tensor_info."""
        result = []
        while True:
            ndim, shape = ctypes.c_int32(), (ctypes.c_int64 * 4)()
            name = ctypes.c_char_p()
            status = lib.fib_graph_tensor_info(self._cp(), group, len(result),
                                               ctypes.byref(ndim), shape, ctypes.byref(name))
            if status == _ffi.FIB_E_RANGE:
                return result  # running off the end is how the count is found
            check(status, "fib_graph_tensor_info")
            result.append((name.value.decode(),
                           tuple(shape[i] for i in range(max(ndim.value, 1)))))

    def tensors(self, group, dtype="float64"):
        """{name: numpy array} of the parameter tensors of a group's block
        (fib_graph_tensor_info / fib_graph_read_tensor), as copies."""
        import numpy as np
        result = {}
        for index, (name, dims) in enumerate(self.tensor_shapes(group)):
            out = np.empty(dims, dtype=dtype)
            code = _ffi.FIB_DTYPE_F32 if out.dtype == np.float32 else _ffi.FIB_DTYPE_F64
            check(lib.fib_graph_read_tensor(self._cp(), group, index, code, out.ctypes.data,
                                            out.size), "fib_graph_read_tensor")
            result[name] = out
        return result

    def block_params(self, group):
        """The integer attributes of a group's block (fib_graph_block_params)."""
        import numpy as np
        count = ctypes.c_int64()
        p = ctypes.POINTER(ctypes.c_int64)
        check(lib.fib_graph_block_params(self._cp(), group, None, 0, ctypes.byref(count)),
              "fib_graph_block_params")
        out = np.zeros(max(count.value, 1), np.int64)
        check(lib.fib_graph_block_params(self._cp(), group, out.ctypes.data_as(p),
                                         out.shape[0], ctypes.byref(count)),
              "fib_graph_block_params")
        return out[:count.value]

    def block_scalar(self, group):
        """The norm's epsilon or the attention's softmax scale; 0 otherwise."""
        v = ctypes.c_double()
        check(lib.fib_graph_block_scalar(self._cp(), group, ctypes.byref(v)),
              "fib_graph_block_scalar")
        return v.value

    def save(self, path, dtype=0):
        """fib_model_save: safetensors with the structure metadata. dtype:
        'float32', 'float64' or 0 (each block's own)."""
        code = _DTYPE_CODES.get(dtype, dtype)
        check(lib.fib_model_save(self._cp(), os.fsencode(path), int(code)), "fib_model_save")

    def save_checkpoint(self, model, model_dir, path, dtype=0):
        """fib_graph_save_checkpoint: this graph, with the groups of `model`
        (a Graph loaded from the Hugging Face checkpoint directory
        `model_dir`) and other MLP widths (a lift), written as a checkpoint
        directory in that layout where it holds it, else as save() writes
        it. Returns (format, reason) as Base.save_checkpoint does."""
        code = _DTYPE_CODES.get(dtype, dtype)
        saved, reason = ctypes.c_int32(), ctypes.create_string_buffer(600)
        check(lib.fib_graph_save_checkpoint(self._cp(), model._cp(), os.fsencode(model_dir),
                                            os.fsencode(path), int(code), ctypes.byref(saved),
                                            reason, len(reason)), "fib_graph_save_checkpoint")
        kind = "checkpoint" if saved.value == _ffi.FIB_SAVED_CHECKPOINT else "fibration"
        return kind, reason.value.decode("utf-8", "replace")

    @classmethod
    def load(cls, path, copy=True):
        """fib_model_load: a Graph from a safetensors file (copy=False keeps a
        memory mapping of the file for the graph's lifetime)."""
        out = ctypes.POINTER(_ffi.fib_graph)()
        check(lib.fib_model_load(os.fsencode(path), _load_options(copy), ctypes.byref(out)),
              "fib_model_load")
        return cls._adopt(out)

    @property
    def num_parameters(self):
        n = ctypes.c_int64()
        check(lib.fib_graph_num_parameters(self._cp(), ctypes.byref(n)),
              "fib_graph_num_parameters")
        return n.value

    @property
    def io_width(self):
        a, b = ctypes.c_int64(), ctypes.c_int64()
        check(lib.fib_graph_io_width(self._cp(), ctypes.byref(a), ctypes.byref(b)),
              "fib_graph_io_width")
        return a.value, b.value

    def forward(self, inputs, group=None):
        """The reference forward pass (double precision inside). inputs:
        (batch, total input width), float32 or float64; returns an array of
        the same dtype: the outputs, or the activity of `group`."""
        import numpy as np
        x = float_buffer(inputs, "inputs", 2)
        n_in, n_out = self.io_width
        if x.shape[1] != n_in or x.ld != n_in:
            raise ValueError("inputs must be a contiguous (batch, %d) array, not %s"
                             % (n_in, x.shape))
        dtype = np.float32 if x.dtype == _ffi.FIB_DTYPE_F32 else np.float64
        if group is None:
            out = np.empty((x.shape[0], n_out), dtype=dtype)
            check(lib.fib_graph_forward(self._cp(), x.shape[0], x.dtype, x.address,
                                        out.ctypes.data), "fib_graph_forward")
        else:
            out = np.empty((x.shape[0], self.group(group).n_units), dtype=dtype)
            check(lib.fib_graph_forward_group(self._cp(), x.shape[0], x.dtype, x.address,
                                              group, out.ctypes.data),
                  "fib_graph_forward_group")
        return out

    # -- general directed graphs (docs/graphs.md) ---------------------------
    def add_nodes(self, n_nodes, names=None):
        """A group of n_nodes graph nodes (fib_graph_add_nodes); names, if
        given, are any Python objects, one per node, returned by node_names."""
        out = ctypes.c_int32()
        check(lib.fib_graph_add_nodes(self._p(), int(n_nodes), ctypes.byref(out)),
              "fib_graph_add_nodes")
        if names is not None:
            names = list(names)
            if len(names) != n_nodes:
                raise ValueError("%d names for %d nodes" % (len(names), n_nodes))
            self._names[out.value] = names
        return out.value

    def add_edges(self, source_group, target_group, sources, targets, weights=None,
                  types=None):
        """Arcs sources[i] -> targets[i] from node group source_group to
        target_group (fib_graph_add_edges; the library copies them).
        weights: one float per arc or None (each arc counts 1); types: one
        int per arc, or names (strings, any hashable values) numbered in order
        of first appearance over the whole graph (a name is one type in every
        arc set), or None. One graph takes either integer or named types."""
        from ._graphs import from_edges
        arcs = from_edges(sources, targets, weights, types, n_nodes=0)
        self._add_arcs(source_group, target_group, arcs)

    def _add_arcs(self, source_group, target_group, arcs):
        from ._graphs import is_named, type_ids
        p64 = ctypes.POINTER(ctypes.c_int64)
        w = arcs.weights
        t = arcs.types
        # Named types are numbered 0, 1, ... here, so they would silently
        # share ids with integer types, untyped arcs (type 0) or a file's types.
        kind = "untyped" if t is None else "named" if is_named(t) else "integer"
        others = self._type_kinds - {kind}
        if "named" in self._type_kinds | {kind} and others:
            raise ValueError("this graph has %s arcs; arcs with %s edge types would share "
                             "their type ids: give every arc set named types, or none"
                             % (" and ".join(sorted(others)), kind))
        if kind == "named":
            t = type_ids(t, self._types)
        check(lib.fib_graph_add_edges(
            self._p(), source_group, target_group, arcs.sources.shape[0],
            arcs.sources.ctypes.data_as(p64), arcs.targets.ctypes.data_as(p64),
            w.ctypes.data_as(ctypes.POINTER(ctypes.c_double)) if w is not None else None,
            t.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)) if t is not None else None,
            _ffi.FIB_COPY), "fib_graph_add_edges")
        self._type_kinds.add(kind)

    @classmethod
    def _from_arcs(cls, arcs, node_names=None):
        g = cls()
        group = g.add_nodes(arcs.n_nodes, node_names if node_names is not None
                            else arcs.node_names)
        g._add_arcs(group, group, arcs)
        return g

    @classmethod
    def from_edges(cls, sources, targets, weights=None, types=None, n_nodes=None,
                   node_names=None):
        """A graph of one node group (group 0) with arcs sources[i] -> targets[i]
        (integer node indices, numpy arrays or sequences). n_nodes defaults to
        the largest index + 1. weights and types as in add_edges; node_names
        (one per node) are returned by node_names(0)."""
        from ._graphs import from_edges
        return cls._from_arcs(from_edges(sources, targets, weights, types, n_nodes),
                              node_names)

    @classmethod
    def from_networkx(cls, graph, weight=None, edge_type=None):
        """A graph of one node group from a networkx DiGraph or MultiDiGraph:
        node i is the i-th node of graph.nodes (node_names(0) gives them
        back); weight and edge_type name edge attributes (every edge must
        have them). An undirected graph is refused (pass G.to_directed())."""
        from ._graphs import from_networkx
        return cls._from_arcs(from_networkx(graph, weight, edge_type))

    @classmethod
    def from_scipy(cls, matrix, node_names=None):
        """A graph of one node group from a square scipy.sparse adjacency
        matrix: every stored entry (i, j) is an arc i -> j weighted by the
        entry (explicit zeros included; duplicate entries summed)."""
        from ._graphs import from_scipy
        return cls._from_arcs(from_scipy(matrix), node_names)

    @classmethod
    def read_edgelist(cls, path, header=None, delimiter=None, third=None, flags=0):
        """A graph of one node group read from an edge-list file by the
        library (fib_graph_read_edgelist; formats in docs/graphs.md). Nodes
        are numbered in order of first appearance and keep their names.
        header: None (detect), True or False; delimiter: None (detect), ',',
        '\\t' or ' ' (runs of blanks); third: what a headerless file's third
        column is, 'type' or 'weight', or None: a type, but a column of
        numbers that are not all integers is refused as ambiguous;
        flags: further FIB_EDGELIST_* bits."""
        code = int(flags)
        if header is not None:
            code |= _ffi.FIB_EDGELIST_HEADER if header else _ffi.FIB_EDGELIST_NO_HEADER
        if delimiter is not None:
            code |= _kind({",": _ffi.FIB_EDGELIST_COMMA, "\t": _ffi.FIB_EDGELIST_TAB,
                           " ": _ffi.FIB_EDGELIST_WHITESPACE}, delimiter, "delimiter")
        if third is not None:
            code |= _kind({"type": _ffi.FIB_EDGELIST_THIRD_IS_TYPE,
                           "weight": _ffi.FIB_EDGELIST_THIRD_IS_WEIGHT}, third, "third column")
        g = cls()
        out = ctypes.c_int32()
        check(lib.fib_graph_read_edgelist(g._p(), os.fsencode(path), code,
                                          ctypes.byref(out)), "fib_graph_read_edgelist")
        g._type_kinds.add("file")
        return g

    def set_convention(self, convention):
        """How colouring node groups starts: 'pure' (the definition, default),
        'published' (FastFibration's, reproduces published counts) or
        'networkfibers' (fib_graph_set_convention; docs/graphs.md)."""
        check(lib.fib_graph_set_convention(self._p(),
                                           _kind(CONVENTIONS, convention, "convention")),
              "fib_graph_set_convention")

    def set_initial_classes(self, group, labels):
        """Nodes of `group` with different labels never share a class."""
        arr = int64_array(labels, "labels") if labels is not None else None
        check(lib.fib_graph_set_initial_classes(
            self._p(), group,
            arr.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)) if arr is not None else None,
            arr.shape[0] if arr is not None else 0), "fib_graph_set_initial_classes")

    def node_names(self, group):
        """The names of the nodes of a node group (a list: strings for a
        group read from a file, the networkx nodes for from_networkx, the
        names given to add_nodes), or None when it has none."""
        names = self._names.get(group)
        if names is not None:
            return list(names)
        n = self.group(group).n_units
        if lib.fib_graph_node_name(self._cp(), group, 0) is None:
            return None
        return [lib.fib_graph_node_name(self._cp(), group, i).decode("utf-8", "replace")
                for i in range(n)]

    def edge_type_names(self, group):
        """The edge-type names of node group `group`'s arcs, in type-id order
        (named types given to add_edges or the from_* constructors, or the
        file's for a group read from one), or None for integer (or no)
        types."""
        if self._types:
            return list(self._types)
        n = ctypes.c_int32()
        if lib.fib_graph_num_edge_types(self._cp(), group, ctypes.byref(n)) != 0 \
                or n.value == 0:
            return None
        return [lib.fib_graph_edge_type_name(self._cp(), group, t).decode("utf-8", "replace")
                for t in range(n.value)]

    def edge_type_name(self, group, type_id):
        """The name of edge type type_id of group's arcs, or the id itself."""
        if self._types:
            names = list(self._types)
            return names[type_id] if 0 <= type_id < len(names) else type_id
        name = lib.fib_graph_edge_type_name(self._cp(), group, type_id)
        return name.decode("utf-8", "replace") if name is not None else type_id

    # -- symmetry ----------------------------------------------------------
    def color(self, symmetry="fibers", tolerance="exact", eps=0.0, n_threads=0,
              progress=None):
        """Colours the graph (fib_color). progress(done, total) may return True
        to cancel (FibrationError E_CANCELLED)."""
        opts = _ffi.fib_color_options()
        check(lib.fib_color_options_init(ctypes.byref(opts), ctypes.sizeof(opts)),
              "fib_color_options_init")
        opts.symmetry = _kind(SYMMETRIES, symmetry, "symmetry")
        opts.tolerance = _tolerance(tolerance)
        opts.eps = float(eps)
        opts.n_threads = int(n_threads)
        raised = []
        if progress is not None:
            def trampoline(user, done, total):
                try:
                    return 1 if progress(done, total) else 0
                except BaseException as e:  # noqa: B902 - re-raised below
                    raised.append(e)
                    return 1
            callback = _ffi.fib_progress_fn(trampoline)
            opts.progress = callback
        out = ctypes.POINTER(_ffi.fib_coloring)()
        status = lib.fib_color(self._cp(), ctypes.byref(opts), ctypes.byref(out))
        if raised:
            raise raised[0]
        check(status, "fib_color")
        return Coloring._adopt(out, self)

    def color_fibers_opfibers(self, tolerance="exact", eps=0.0, n_threads=0):
        """(fibers, opfibers): what color('fibers') and color('opfibers') give
        with these options, the fibers coloured once (the opfibers flavoured
        by them through fib_color_from_fibers)."""
        fibers = self.color("fibers", tolerance, eps, n_threads)
        opts = self._color_options(tolerance, eps, n_threads)
        opts.symmetry = _kind(SYMMETRIES, "opfibers", "symmetry")
        opfibers = ctypes.POINTER(_ffi.fib_coloring)()
        check(lib.fib_color_from_fibers(self._cp(), ctypes.byref(opts), fibers._p(),
                                        ctypes.byref(opfibers)),
              "fib_color_from_fibers")
        return fibers, Coloring._adopt(opfibers, self)

    def color_nested(self, eps, symmetry="fibers", tolerance="abs", n_threads=0):
        """Colourings at the tolerances `eps` (sorted, smallest first) made
        to nest (fib_color_nested): a list of Colorings, one per level, each
        level the join of the colouring at its eps with the level before, so
        that a class never splits as eps grows."""
        eps = [float(e) for e in eps]
        opts = self._color_options(tolerance, 0.0, n_threads)
        opts.symmetry = _kind(SYMMETRIES, symmetry, "symmetry")
        n = len(eps)
        values = (ctypes.c_double * max(n, 1))(*eps)
        out = (ctypes.POINTER(_ffi.fib_coloring) * max(n, 1))()
        check(lib.fib_color_nested(self._cp(), ctypes.byref(opts), values, n, out),
              "fib_color_nested")
        return [Coloring._adopt(out[t], self) for t in range(n)]

    def _color_options(self, tolerance, eps, n_threads=0):
        opts = _ffi.fib_color_options()
        check(lib.fib_color_options_init(ctypes.byref(opts), ctypes.sizeof(opts)),
              "fib_color_options_init")
        opts.tolerance = _tolerance(tolerance)
        opts.eps = float(eps)
        opts.n_threads = int(n_threads)
        return opts

    def hierarchy(self, tolerance="exact", eps=0.0, n_threads=0):
        """All four levels (fibers, opfibers, covers, automorphism orbits) of
        the graph and the links of the refinement chain between them
        (fib_hierarchy_create): a Hierarchy."""
        opts = self._color_options(tolerance, eps, n_threads)
        out = ctypes.POINTER(_ffi.fib_hierarchy)()
        check(lib.fib_hierarchy_create(self._cp(), ctypes.byref(opts), ctypes.byref(out)),
              "fib_hierarchy_create")
        return Hierarchy._adopt(out, self)

    def coloring(self, symmetry="fibers"):
        """A colouring in which every unit is its own class (fib_coloring_create),
        to be filled with Coloring.set_group."""
        out = ctypes.POINTER(_ffi.fib_coloring)()
        check(lib.fib_coloring_create(self._cp(), _kind(SYMMETRIES, symmetry, "symmetry"),
                                      ctypes.byref(out)), "fib_coloring_create")
        return Coloring._adopt(out, self)

    def compress(self, coloring, dtype="float64"):
        """fib_compress: the base of this graph by `coloring`. A dense layer
        or convolution that merges nothing borrows this graph's weights
        (fib_compress_options.borrow) instead of copying them: the base
        keeps this graph alive, and close() on it waits for the base.
        dtype of the merged dense and convolution blocks: 'float64', or
        'float32' (each float64 merge rounded once as it is made, so that
        the base never holds float64 copies of them all)."""
        if dtype not in _DTYPE_CODES:
            raise ValueError("dtype must be 'float32' or 'float64', not %r" % (dtype,))
        opts = _ffi.fib_compress_options()
        check(lib.fib_compress_options_init(ctypes.byref(opts), ctypes.sizeof(opts)),
              "fib_compress_options_init")
        opts.borrow = 1
        opts.dtype = _DTYPE_CODES[dtype]
        out = ctypes.POINTER(_ffi.fib_base)()
        check(lib.fib_compress_ex(self._cp(), coloring._p(), ctypes.byref(opts),
                                  ctypes.byref(out)), "fib_compress")
        return Base._adopt(out, self, borrows=True)

    def close(self):
        """Closes the graph (idempotent): it is freed now, or, while a base
        made by compress borrows its weights, when the last such base is."""
        if getattr(self, "_lenders", 0) and self._finalizer.alive:
            _, free, args, _ = self._finalizer.detach()
            self._deferred_free = lambda: free(*args)
            return
        _Handle.close(self)

    def _base_freed(self):
        self._lenders -= 1
        deferred = getattr(self, "_deferred_free", None)
        if not self._lenders and deferred:
            self._deferred_free = None
            deferred()

    def break_symmetry(self, coloring=None, seed=0):
        out = ctypes.POINTER(_ffi.fib_graph)()
        check(lib.fib_break_symmetry(self._cp(), coloring._p() if coloring else None,
                                     int(seed), ctypes.byref(out)), "fib_break_symmetry")
        return Graph._adopt(out)

    def __repr__(self):
        if self.closed:
            return "<fibration.Graph closed>"
        return "<fibration.Graph %d groups, %d parameters>" % (self.num_groups,
                                                              self.num_parameters)


class Coloring(_Handle):
    """A partition of every group's units into classes (fib_coloring)."""

    _free = staticmethod(lambda p: lib.fib_coloring_free(p))

    @classmethod
    def _adopt(cls, ptr, graph):
        c = cls.__new__(cls)
        c._own(ptr)
        c.graph = graph
        return c

    @property
    def symmetry(self):
        s = ctypes.c_int32()
        check(lib.fib_coloring_symmetry(self._p(), ctypes.byref(s)), "fib_coloring_symmetry")
        return _name_of(LEVELS, s.value)

    def num_classes(self, group):
        n = ctypes.c_int64()
        check(lib.fib_coloring_num_classes(self._p(), group, ctypes.byref(n)),
              "fib_coloring_num_classes")
        return n.value

    def colors(self, group):
        import numpy as np
        n = self.graph.group(group).n_units
        out = np.empty(n, np.int64)
        check(lib.fib_coloring_colors(self._p(), group,
                                      out.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)), n),
              "fib_coloring_colors")
        return out

    def class_sizes(self, group):
        import numpy as np
        n = self.num_classes(group)
        out = np.empty(n, np.int64)
        check(lib.fib_coloring_class_sizes(self._p(), group,
                                           out.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)),
                                           n), "fib_coloring_class_sizes")
        return out

    def set_group(self, group, colors):
        arr = int64_array(colors, "colors")
        check(lib.fib_coloring_set_group(self._p(), group,
                                         arr.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)),
                                         arr.shape[0]), "fib_coloring_set_group")

    def quotient_arcs(self):
        """The arcs of the quotient (base) graph of the node groups
        (fib_quotient_create / fib_quotient_arcs), as numpy arrays
        (src_group, src_class, dst_group, dst_class, type, weight,
        multiplicity): weight is the weight sum (the multiplicity for an
        unweighted graph), multiplicity the number of arcs merged."""
        import numpy as np
        q = ctypes.POINTER(_ffi.fib_quotient)()
        check(lib.fib_quotient_create(self.graph._cp(), self._p(), ctypes.byref(q)),
              "fib_quotient_create")
        try:
            n = ctypes.c_int64()
            check(lib.fib_quotient_num_arcs(q, ctypes.byref(n)), "fib_quotient_num_arcs")
            m = n.value
            cols = (np.empty(m, np.int32), np.empty(m, np.int64), np.empty(m, np.int32),
                    np.empty(m, np.int64), np.empty(m, np.int32), np.empty(m, np.float64),
                    np.empty(m, np.int64))
            ptrs = [c.ctypes.data_as(ctypes.POINTER(np.ctypeslib.as_ctypes_type(c.dtype)))
                    for c in cols]
            check(lib.fib_quotient_arcs(q, m, *ptrs), "fib_quotient_arcs")
        finally:
            lib.fib_quotient_free(q)
        return cols

    def quotient_networkx(self):
        """The quotient (base) graph as a networkx MultiDiGraph: one node per
        class (the class id; (group, class) pairs when the graph has several
        node groups) with attributes size, members (node names, or indices),
        label (the first member); one edge per (source class, target class,
        edge type), keyed by the type (its name when it has one), with
        attributes type, weight (weight sum, or multiplicity when
        unweighted) and multiplicity (the number of arcs merged)."""
        from ._graphs import quotient_networkx
        return quotient_networkx(self, self.quotient_arcs(), self.graph)

    def fiber_blocks(self, group):
        """The non-trivial classes of node group `group` in class order
        (fib_coloring_fiber_blocks): FiberBlock(class_id, size, n_on_cycle)
        with n_on_cycle the members on a directed cycle (0: acyclic)."""
        import numpy as np
        from ._graphs import FiberBlock
        p64 = ctypes.POINTER(ctypes.c_int64)
        count = ctypes.c_int64()
        check(lib.fib_coloring_fiber_blocks(self.graph._cp(), self._p(), group, 0, None,
                                            None, None, ctypes.byref(count)),
              "fib_coloring_fiber_blocks")
        n = count.value
        ids, sizes, cyc = (np.empty(max(n, 1), np.int64) for _ in range(3))
        check(lib.fib_coloring_fiber_blocks(self.graph._cp(), self._p(), group, n,
                                            ids.ctypes.data_as(p64), sizes.ctypes.data_as(p64),
                                            cyc.ctypes.data_as(p64), ctypes.byref(count)),
              "fib_coloring_fiber_blocks")
        return [FiberBlock(int(ids[i]), int(sizes[i]), int(cyc[i])) for i in range(n)]

    def is_balanced(self, eps=0.0):
        """(balanced, message): message describes the first violation."""
        out = ctypes.c_int32()
        check(lib.fib_coloring_is_balanced(self.graph._cp(), self._p(), float(eps),
                                           ctypes.byref(out)), "fib_coloring_is_balanced")
        if out.value:
            return True, ""
        return False, (lib.fib_last_error() or b"").decode("utf-8", "replace")

    def __repr__(self):
        if self.closed:
            return "<fibration.Coloring closed>"
        return "<fibration.Coloring %s>" % self.symmetry


def _load_options(copy):
    """fib_load_options for fib_model_load and fib_base_load, by reference."""
    opts = _ffi.fib_load_options()
    check(lib.fib_load_options_init(ctypes.byref(opts), ctypes.sizeof(opts)),
          "fib_load_options_init")
    opts.copy = 1 if copy else 0
    return ctypes.byref(opts)


def _free_borrowing_base(ptr, original):
    lib.fib_base_free(ptr)
    original._base_freed()


class Base(_Handle):
    """A compressed network and the projection of original units onto it.
    `original` is the Graph it was made of (None for a base read by
    Base.load)."""

    _free = staticmethod(lambda p: lib.fib_base_free(p))

    @classmethod
    def _adopt(cls, ptr, original, borrows=False):
        b = cls.__new__(cls)
        if borrows:
            # the base reads the original's weights: freed before it, and
            # the original's deferred close() completed after
            original._lenders = getattr(original, "_lenders", 0) + 1
            b._ptr = ptr
            b._finalizer = weakref.finalize(b, _free_borrowing_base, ptr, original)
        else:
            b._own(ptr)
        b.original = original
        return b

    @classmethod
    def load(cls, path, copy=True):
        """fib_base_load: a base saved by Base.save (or `fibration compress`),
        or a checkpoint directory Base.save_checkpoint wrote, with its
        projection; lift() expands it without the original. copy=False
        keeps a memory mapping of the file(s) for the base's lifetime."""
        out = ctypes.POINTER(_ffi.fib_base)()
        check(lib.fib_base_load(os.fsencode(path), _load_options(copy), ctypes.byref(out)),
              "fib_base_load")
        return cls._adopt(out, None)

    @property
    def graph(self):
        """The base network (a Graph that keeps this Base alive)."""
        return Graph._view(lib.fib_base_graph(self._p()), self)

    def projection(self, group):
        import numpy as np
        n = ctypes.c_int64()
        check(lib.fib_base_original_units(self._p(), group, ctypes.byref(n)),
              "fib_base_original_units")
        out = np.empty(n.value, np.int64)
        check(lib.fib_base_projection(self._p(), group,
                                      out.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)),
                                      n.value), "fib_base_projection")
        return out

    def save(self, path, dtype=0):
        """fib_base_save: the base graph and its projection (safetensors with
        the structure metadata; `fibration lift` expands it). dtype:
        'float32', 'float64' or 0 (each block's own)."""
        code = _DTYPE_CODES.get(dtype, dtype)
        check(lib.fib_base_save(self._p(), os.fsencode(path), int(code)), "fib_base_save")

    def save_checkpoint(self, model_dir, path, dtype=0):
        """fib_base_save_checkpoint: the base of a model loaded from the
        Hugging Face checkpoint directory `model_dir`, written as a
        checkpoint directory in its layout where that layout holds it, else
        as save() writes it. Returns (format, reason): "checkpoint" or
        "fibration", and why the layout could not hold it ("" when it did).
        A base read by Base.load reads its model from `model_dir`."""
        code = _DTYPE_CODES.get(dtype, dtype)
        saved, reason = ctypes.c_int32(), ctypes.create_string_buffer(600)
        model = self.original if self.original is not None else \
            Graph.load(model_dir, copy=False)
        check(lib.fib_base_save_checkpoint(self._p(), model._cp(), os.fsencode(model_dir),
                                           os.fsencode(path), int(code), ctypes.byref(saved),
                                           reason, len(reason)), "fib_base_save_checkpoint")
        kind = "checkpoint" if saved.value == _ffi.FIB_SAVED_CHECKPOINT else "fibration"
        return kind, reason.value.decode("utf-8", "replace")

    def lift(self, weights=None, dtype=None):
        """Lifts the base (or `weights`, a graph shaped like the base graph)
        back to the original's shape: a new Graph. dtype of its dense and
        convolution blocks: None (each in the precision of the block it
        lifts: float32 for a float32, float16 or bfloat16 one, each weight
        made in float64 and rounded once), 'float32' or 'float64'
        (fib_lift_dtype)."""
        if dtype is not None and dtype not in _DTYPE_CODES:
            raise ValueError("dtype must be None, 'float32' or 'float64', not %r" % (dtype,))
        out = ctypes.POINTER(_ffi.fib_graph)()
        check(lib.fib_lift_dtype(self._p(), weights._cp() if weights is not None else None,
                                 _DTYPE_CODES.get(dtype, 0), ctypes.byref(out)),
              "fib_lift_dtype")
        return Graph._adopt(out)

    def __repr__(self):
        if self.closed:
            return "<fibration.Base closed>"
        return "<fibration.Base %d parameters>" % self.graph.num_parameters


class Hierarchy(_Handle):
    """Fibers, opfibers, covers and automorphism orbits of one graph
    (fib_hierarchy), computed with the same options; Graph.hierarchy()."""

    _free = staticmethod(lambda p: lib.fib_hierarchy_free(p))

    @classmethod
    def _adopt(cls, ptr, graph):
        h = cls.__new__(cls)
        h._own(ptr)
        h.graph = graph
        return h

    def num_classes(self, group, symmetry="automorphisms"):
        """Classes of `group` at level 'fibers', 'opfibers', 'covers' or
        'automorphisms' (fib_hierarchy_num_classes)."""
        n = ctypes.c_int64()
        check(lib.fib_hierarchy_num_classes(self._p(), group,
                                            _kind(LEVELS, symmetry, "symmetry"),
                                            ctypes.byref(n)), "fib_hierarchy_num_classes")
        return n.value

    def chain(self, group=-1):
        """The links of the refinement chain that hold for `group` (-1: every
        group), as FIB_CHAIN_* bits (fib_hierarchy_chain)."""
        links = ctypes.c_int32()
        check(lib.fib_hierarchy_chain(self._p(), group, ctypes.byref(links)),
              "fib_hierarchy_chain")
        return links.value

    def chain_holds(self, group=-1):
        """True when orbits lie in covers and covers in fibers and opfibers."""
        return self.chain(group) == _ffi.FIB_CHAIN_ALL

    def broken_links(self, group=-1):
        """Names of the links that do not hold ('orbits_in_covers', ...)."""
        links = self.chain(group)
        return [name for name, bit in CHAIN_LINKS.items() if not links & bit]

    def coloring(self, symmetry="automorphisms"):
        """A copy of the colouring of one level (fib_hierarchy_coloring)."""
        out = ctypes.POINTER(_ffi.fib_coloring)()
        check(lib.fib_hierarchy_coloring(self._p(), _kind(LEVELS, symmetry, "symmetry"),
                                         ctypes.byref(out)), "fib_hierarchy_coloring")
        return Coloring._adopt(out, self.graph)

    def __repr__(self):
        if self.closed:
            return "<fibration.Hierarchy closed>"
        return "<fibration.Hierarchy chain=%d>" % self.chain()
