# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Cython bindings of digitcore's C kernels (csrc/digitcore.h).

Two layers, as in cython-blis: every public function here validates its
arguments (shape, dtype, contiguity, aliasing of ``out``) with messages that
print the shapes, takes pointers only into non-empty views, releases the GIL
around the C call, and turns the returned status into an exception in one
place (:func:`_check`). The C side trusts what arrives.
"""

import operator

import numpy as np
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, uint64_t, uint8_t
from libc.string cimport memset

from digitcore._kernels cimport *
from digitcore.errors import KernelError

cnp.import_array()

_STATUS_MESSAGES = {
    DC_ERR_NOMEM: (MemoryError, "out of memory in a digitcore kernel"),
    DC_ERR_ARG: (ValueError, "invalid argument reached a digitcore kernel"),
    DC_ERR_LABEL: (ValueError, "a label is outside [0, n_classes)"),
    DC_ERR_UNSUPPORTED: (RuntimeError, "this CPU or build does not support that kernel path"),
    DC_ERR_NONFINITE: (FloatingPointError, "a value became NaN or infinite"),
    DC_ERR_CAPACITY: (KernelError, "a kernel's output buffer was too small (internal bug)"),
}


cdef int _check(int status, str where) except -1:
    """Map a C status code to an exception (the one place this happens)."""
    if status == DC_OK:
        return 0
    exc, msg = _STATUS_MESSAGES.get(status, (KernelError, f"unknown status {status}"))
    raise exc(f"{where}: {msg}")


# ---- configuration ---------------------------------------------------------------------

KERNEL_GENERIC = DC_KERNEL_GENERIC
KERNEL_AVX2 = DC_KERNEL_AVX2


def cpu_has_avx2():
    return bool(dc_cpu_has_avx2())


def kernel_path():
    return "avx2" if dc_kernel_path() == DC_KERNEL_AVX2 else "generic"


def select_kernel(str name):
    cdef int path
    if name == "generic":
        path = DC_KERNEL_GENERIC
    elif name == "avx2":
        path = DC_KERNEL_AVX2
        if not dc_cpu_has_avx2():
            raise RuntimeError("DIGITCORE_KERNEL=avx2 asked for the AVX2 path, but this CPU "
                               "lacks AVX2/FMA (or this build has no AVX2 code); "
                               "use 'generic'")
    else:
        raise ValueError(f"unknown kernel path {name!r}; expected 'generic' or 'avx2'")
    _check(dc_select_kernel(path), "select_kernel")


def set_num_threads(int n):
    dc_set_num_threads(n)


def get_num_threads():
    return dc_get_num_threads()


def have_openmp():
    return bool(dc_have_openmp())


# ---- validation helpers --------------------------------------------------------------------

cdef object _as_f32(object x, str name, int ndim):
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise TypeError(f"{name} must have dtype float32, got {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape}")
    if not x.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use numpy.ascontiguousarray)")
    return x


cdef object _check_out(object out, tuple shape, str name, tuple inputs):
    """Validate a caller-supplied output array, or allocate one."""
    if out is None:
        return np.empty(shape, dtype=np.float32)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray or None, got {type(out).__name__}")
    if out.dtype != np.float32:
        raise TypeError(f"{name} must have dtype float32, got {out.dtype}")
    if out.shape != shape:
        raise ValueError(f"{name} has shape {out.shape}, expected {shape}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"{name} must be C-contiguous and writeable")
    for arr in inputs:
        if arr is not None and np.shares_memory(out, arr):
            raise ValueError(f"{name} must not overlap an input array")
    return out


cdef inline const float* _fptr(const float[::1] v) noexcept nogil:
    return &v[0] if v.shape[0] > 0 else NULL


# ---- GEMM ----------------------------------------------------------------------------------

cdef inline bint _is_f32c2(object x) noexcept:
    """x is an ndarray of native float32, 2-D, C-contiguous (the fast path's checks;
    anything else goes through _as_f32 / _check_out for the error message)."""
    if not cnp.PyArray_Check(x):
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>x
    return (cnp.PyArray_NDIM(arr) == 2 and cnp.PyArray_TYPE(arr) == cnp.NPY_FLOAT32
            and cnp.PyArray_ISNOTSWAPPED(arr) and cnp.PyArray_IS_C_CONTIGUOUS(arr))


cdef inline bint _ranges_overlap(cnp.ndarray x, cnp.ndarray y) noexcept:
    """Memory of x and y intersects: exact for C-contiguous arrays (each one byte range),
    what np.shares_memory answers, in O(1)."""
    cdef size_t nx = <size_t>cnp.PyArray_NBYTES(x), ny = <size_t>cnp.PyArray_NBYTES(y)
    if nx == 0 or ny == 0:
        return False
    cdef size_t x0 = <size_t>cnp.PyArray_DATA(x), y0 = <size_t>cnp.PyArray_DATA(y)
    return x0 < y0 + ny and y0 < x0 + nx


cdef object _gemm_impl(object a, object b, bint trans_a, bint trans_b, float alpha,
                       float beta, object out, bint ref):
    # per-call cost matters (the 128 x 128 x 10 output layer is ~5 us of work): C-API
    # checks and raw pointers, the Python-level validators only to word an error
    if not _is_f32c2(a):
        _as_f32(a, "a", 2)
    if not _is_f32c2(b):
        _as_f32(b, "b", 2)
    cdef cnp.ndarray A = <cnp.ndarray>a, B = <cnp.ndarray>b, C
    cdef cnp.npy_intp *da = cnp.PyArray_DIMS(A)
    cdef cnp.npy_intp *db = cnp.PyArray_DIMS(B)
    cdef int64_t m = da[1] if trans_a else da[0]
    cdef int64_t k = da[0] if trans_a else da[1]
    cdef int64_t kb = db[1] if trans_b else db[0]
    cdef int64_t n = db[0] if trans_b else db[1]
    cdef cnp.npy_intp dc[2]
    if k != kb:
        raise ValueError(
            f"gemm: inner dimensions differ: op(a) is ({m}, {k}) from a{a.shape}"
            f"{'.T' if trans_a else ''}, op(b) is ({kb}, {n}) from b{b.shape}"
            f"{'.T' if trans_b else ''}")
    if out is None:
        if beta != 0.0:
            raise ValueError("gemm: beta != 0 needs an out= array to accumulate into")
        dc[0] = m
        dc[1] = n
        C = cnp.PyArray_EMPTY(2, dc, cnp.NPY_FLOAT32, 0)
    elif (_is_f32c2(out) and cnp.PyArray_ISWRITEABLE(<cnp.ndarray>out)
          and cnp.PyArray_DIMS(<cnp.ndarray>out)[0] == m
          and cnp.PyArray_DIMS(<cnp.ndarray>out)[1] == n):
        C = <cnp.ndarray>out
        if _ranges_overlap(C, A) or _ranges_overlap(C, B):
            raise ValueError("out must not overlap an input array")
    else:
        C = _check_out(out, (m, n), "out", (a, b))  # raises: says what is wrong
    if m == 0 or n == 0:
        return C
    cdef const float *ap = <const float *>cnp.PyArray_DATA(A) if cnp.PyArray_SIZE(A) > 0 else NULL
    cdef const float *bp = <const float *>cnp.PyArray_DATA(B) if cnp.PyArray_SIZE(B) > 0 else NULL
    cdef float *cp = <float *>cnp.PyArray_DATA(C)
    cdef int64_t lda = da[1], ldb = db[1], ldc = n
    cdef int status
    with nogil:
        if ref:
            status = dc_sgemm_ref(trans_a, trans_b, m, n, k, alpha, ap, lda, bp, ldb, beta,
                                  cp, ldc)
        else:
            status = dc_sgemm(trans_a, trans_b, m, n, k, alpha, ap, lda, bp, ldb, beta, cp, ldc)
    if status != DC_OK:
        _check(status, "gemm")
    return C


def gemm(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out=None):
    """C = alpha * op(a) @ op(b) + beta * out (float32, C-contiguous 2-D arrays).

    Parameters
    ----------
    a : ndarray, float32, shape (m, k), or (k, m) if ``trans_a``
    b : ndarray, float32, shape (k, n), or (n, k) if ``trans_b``
    out : ndarray, float32, shape (m, n), optional
        Written in place; needed when ``beta != 0``. Must not overlap ``a`` or ``b``.

    Returns
    -------
    ndarray, float32, shape (m, n)
    """
    return _gemm_impl(a, b, trans_a, trans_b, alpha, beta, out, False)


def gemm_ref(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out=None):
    """Same as :func:`gemm` with the naive C reference kernel (the oracle)."""
    return _gemm_impl(a, b, trans_a, trans_b, alpha, beta, out, True)


# ---- layer-op validation helpers -------------------------------------------------------------
#
# Aliasing rules: an output named "may equal" an input in digitcore.h may be exactly that
# array (same buffer, same shape) -- the in-place case -- but never a partial overlap; every
# other output must not overlap any input or other output. np.may_share_memory compares
# memory bounds, which is exact for the C-contiguous arrays accepted here.

_ACT_CODES = {None: DC_ACT_IDENTITY, "identity": DC_ACT_IDENTITY, "linear": DC_ACT_IDENTITY,
              "relu": DC_ACT_RELU, "leaky_relu": DC_ACT_LEAKY_RELU,
              "sigmoid": DC_ACT_SIGMOID, "logistic": DC_ACT_SIGMOID, "tanh": DC_ACT_TANH}


cdef int _act_code(object kind, double alpha) except -1:
    try:
        code = _ACT_CODES[kind]
    except (KeyError, TypeError):
        raise ValueError(f"unknown activation {kind!r}; expected one of "
                         "None, 'identity', 'relu', 'leaky_relu', 'sigmoid', 'tanh'") from None
    if code == DC_ACT_LEAKY_RELU and not (alpha >= 0.0 and alpha < float("inf")):
        # the backward pass reads the sign of x from the output, which needs alpha >= 0
        raise ValueError(f"alpha (leaky ReLU slope) must be finite and >= 0, got {alpha}")
    return code


cdef object _arr(object x, str name, object dtype, int ndim=-1):
    """Check an input array: ndarray, exact dtype, rank (ndim < 0: any), C-contiguous."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got {x.dtype}")
    if ndim >= 0 and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape}")
    if not x.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use numpy.ascontiguousarray), "
                         f"got strides {x.strides} for shape {x.shape}")
    return x


cdef object _shape_is(object x, str name, tuple shape, str what):
    if x.shape != shape:
        raise ValueError(f"{name} has shape {x.shape}, expected {what} = {shape}")
    return x


cdef bint _same_buffer(object a, object b):
    return (cnp.PyArray_DATA(<cnp.ndarray>a) == cnp.PyArray_DATA(<cnp.ndarray>b)
            and a.nbytes == b.nbytes)


cdef object _no_overlap(object a, str aname, tuple others):
    """others: (name, array or None) pairs that must not share memory with a."""
    for name, b in others:
        if b is a:
            raise ValueError(f"{aname} must not be the same array as {name}")
        if b is not None and a.size and b.size and np.may_share_memory(a, b):
            raise ValueError(f"{aname} must not overlap {name}")
    return a


cdef object _may_equal(object a, str aname, object b, str bname):
    """a may be exactly b (in place) but must not partially overlap it."""
    if a.size and b.size and np.may_share_memory(a, b) and not _same_buffer(a, b):
        raise ValueError(f"{aname} must be either {bname} itself (in place) or not overlap it")
    return a


cdef object _out(object out, tuple shape, object dtype, str name):
    """Allocate an output, or check a caller-supplied one (type, dtype, shape, layout)."""
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray or None, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got {out.dtype}")
    if out.shape != shape:
        raise ValueError(f"{name} has shape {out.shape}, expected {shape}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    return out


cdef object _inplace(object x, str name):
    """An array updated in place: float32, C-contiguous, writeable, any shape."""
    _arr(x, name, np.float32)
    if not x.flags.writeable:
        raise ValueError(f"{name} is updated in place and must be writeable")
    return x


cdef inline float* _wptr(float[::1] v) noexcept nogil:
    return &v[0] if v.shape[0] > 0 else NULL


cdef inline const uint8_t* _u8ptr(const uint8_t[::1] v) noexcept nogil:
    return &v[0] if v.shape[0] > 0 else NULL


cdef inline const int64_t* _i64ptr(const int64_t[::1] v) noexcept nogil:
    return &v[0] if v.shape[0] > 0 else NULL


cdef object _flat(object a):
    return a.reshape(-1)


cdef float _finite(object v, str name) except? -1:
    cdef double d = float(v)
    if not (d == d and abs(d) < float("inf")):
        raise ValueError(f"{name} must be finite, got {v}")
    return <float>d


cdef uint64_t _u64(object v, str name) except? 0:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(v).__name__}")
    v = int(v)
    if v < 0 or v >= 2**64:
        raise ValueError(f"{name} must be in [0, 2**64), got {v}")
    return <uint64_t>v


cdef float _prob(object p, str name) except? -1:
    cdef double d = float(p)
    cdef float f = <float>d
    if not (0.0 <= d < 1.0 and f < 1.0):  # also as float32: 0.99999999 rounds to 1
        raise ValueError(f"{name} must be in [0, 1) (as float32), got {p}")
    return f


# ---- activations ---------------------------------------------------------------------------

def activation_forward(x, kind, alpha=0.01, out=None):
    """Elementwise activation ``out = f(x)`` (float32, any shape, C-contiguous).

    Parameters
    ----------
    x : ndarray, float32, any shape
    kind : {None, 'identity', 'relu', 'leaky_relu', 'sigmoid', 'tanh'}
    alpha : float
        Slope of leaky ReLU for x < 0 (must be >= 0); ignored otherwise.
    out : ndarray, float32, same shape as x, optional
        May be ``x`` itself (in place); must not partially overlap it.

    Returns
    -------
    ndarray, float32, same shape as x
    """
    cdef int act = _act_code(kind, alpha)
    cdef float a = _finite(alpha, "alpha")
    _arr(x, "x", np.float32)
    o = _out(out, x.shape, np.float32, "out")
    _may_equal(o, "out", x, "x")
    cdef const float[::1] xv = _flat(x)
    cdef float[::1] ov = _flat(o)
    cdef int64_t n = xv.shape[0]
    cdef int status
    if n == 0:
        return o
    with nogil:
        status = dc_activation_forward(&ov[0], &xv[0], n, act, a)
    _check(status, "activation_forward")
    return o


def activation_backward(dout, out_fwd, kind, alpha=0.01, out=None):
    """Gradient through an activation: ``dinp = dout * f'(x)``, from the forward OUTPUT.

    Parameters
    ----------
    dout : ndarray, float32, any shape
        Gradient of the loss w.r.t. the activation's output.
    out_fwd : ndarray, float32, same shape
        The forward output ``f(x)`` (every supported f has f' expressible in it).
    kind, alpha : as in :func:`activation_forward`
    out : ndarray, float32, same shape, optional
        May be ``dout`` or ``out_fwd`` itself (in place); no partial overlap.

    Returns
    -------
    ndarray, float32, same shape as dout
    """
    cdef int act = _act_code(kind, alpha)
    cdef float a = _finite(alpha, "alpha")
    _arr(dout, "dout", np.float32)
    _arr(out_fwd, "out_fwd", np.float32)
    _shape_is(out_fwd, "out_fwd", dout.shape, "dout.shape")
    o = _out(out, dout.shape, np.float32, "out")
    _may_equal(o, "out", dout, "dout")
    _may_equal(o, "out", out_fwd, "out_fwd")
    cdef const float[::1] dv = _flat(dout)
    cdef const float[::1] fv = _flat(out_fwd)
    cdef float[::1] ov = _flat(o)
    cdef int64_t n = dv.shape[0]
    cdef int status
    if n == 0:
        return o
    with nogil:
        status = dc_activation_backward(&ov[0], &dv[0], &fv[0], n, act, a)
    _check(status, "activation_backward")
    return o


def relu_forward(x, out=None):
    """``max(x, 0)`` elementwise; see :func:`activation_forward`."""
    return activation_forward(x, "relu", 0.0, out)


def relu_backward(dout, out_fwd, out=None):
    """``dout * (out_fwd > 0)``; see :func:`activation_backward`."""
    return activation_backward(dout, out_fwd, "relu", 0.0, out)


def leaky_relu_forward(x, alpha=0.01, out=None):
    """``x if x > 0 else alpha * x`` (alpha >= 0); see :func:`activation_forward`."""
    return activation_forward(x, "leaky_relu", alpha, out)


def leaky_relu_backward(dout, out_fwd, alpha=0.01, out=None):
    """``dout * (1 if out_fwd > 0 else alpha)``; see :func:`activation_backward`."""
    return activation_backward(dout, out_fwd, "leaky_relu", alpha, out)


def sigmoid_forward(x, out=None):
    """``1 / (1 + exp(-x))``; see :func:`activation_forward`."""
    return activation_forward(x, "sigmoid", 0.0, out)


def sigmoid_backward(dout, out_fwd, out=None):
    """``dout * y * (1 - y)`` with ``y = out_fwd``; see :func:`activation_backward`."""
    return activation_backward(dout, out_fwd, "sigmoid", 0.0, out)


def tanh_forward(x, out=None):
    """``tanh(x)``; see :func:`activation_forward`."""
    return activation_forward(x, "tanh", 0.0, out)


def tanh_backward(dout, out_fwd, out=None):
    """``dout * (1 - y**2)`` with ``y = out_fwd``; see :func:`activation_backward`."""
    return activation_backward(dout, out_fwd, "tanh", 0.0, out)


# ---- dense layer ---------------------------------------------------------------------------

def dense_forward(x, weight, bias=None, activation=None, alpha=0.01, out=None):
    """Fully connected layer ``out = act(x @ weight.T + bias)``.

    Parameters
    ----------
    x : ndarray, float32, shape (B, I)
    weight : ndarray, float32, shape (O, I)  (PyTorch ``nn.Linear`` layout)
    bias : ndarray, float32, shape (O,), optional
    activation : {None, 'identity', 'relu', 'leaky_relu', 'sigmoid', 'tanh'}
    alpha : float
        Leaky ReLU slope.
    out : ndarray, float32, shape (B, O), optional
        Must not overlap any input.

    Returns
    -------
    ndarray, float32, shape (B, O)
    """
    cdef int act = _act_code(activation, alpha)
    cdef float a = _finite(alpha, "alpha")
    _arr(x, "x", np.float32, 2)
    _arr(weight, "weight", np.float32, 2)
    cdef int64_t B = x.shape[0], I = x.shape[1], O = weight.shape[0]
    if weight.shape[1] != I:
        raise ValueError(f"weight has shape {weight.shape}, expected (O, I) with I = {I} "
                         f"to match x of shape {x.shape}")
    if bias is not None:
        _arr(bias, "bias", np.float32, 1)
        _shape_is(bias, "bias", (O,), "(O,) from weight")
    o = _out(out, (B, O), np.float32, "out")
    _no_overlap(o, "out", (("x", x), ("weight", weight), ("bias", bias)))
    if B == 0 or O == 0:
        return o
    cdef const float[::1] xv = _flat(x)
    cdef const float[::1] wv = _flat(weight)
    cdef const float[::1] bv
    cdef const float *bp = NULL
    cdef float[::1] ov = _flat(o)
    if bias is not None:
        bv = bias
        bp = &bv[0]
    cdef int status
    with nogil:
        status = dc_dense_forward(&ov[0], _fptr(xv), _fptr(wv), bp, B, I, O, act, a)
    _check(status, "dense_forward")
    return o


def dense_backward(dout, x, weight, *, compute_dinp=True, compute_dbias=True,
                   accumulate=False, dinp=None, dweight=None, dbias=None):
    """Gradients of a dense layer, given ``dout`` w.r.t. its PRE-activation output.

    (Run :func:`activation_backward` first when the layer has an activation.)

    Parameters
    ----------
    dout : ndarray, float32, shape (B, O)
    x : ndarray, float32, shape (B, I)
        The layer's forward input.
    weight : ndarray, float32, shape (O, I)
    compute_dinp, compute_dbias : bool
        Skip ``dinp`` (first layer) or ``dbias`` (no bias) when False; None is returned.
    accumulate : bool
        Add into the given ``dweight`` (and ``dbias``) instead of overwriting them; both must
        then be passed. ``dinp`` is always overwritten.
    dinp, dweight, dbias : ndarray, float32, shapes (B, I), (O, I), (O,), optional
        Output arrays (written in place); must not overlap each other or an input.

    Returns
    -------
    dinp : ndarray (B, I) or None
        ``dout @ weight``
    dweight : ndarray (O, I)
        ``dout.T @ x``
    dbias : ndarray (O,) or None
        ``dout.sum(axis=0)``
    """
    _arr(dout, "dout", np.float32, 2)
    _arr(x, "x", np.float32, 2)
    _arr(weight, "weight", np.float32, 2)
    cdef int64_t B = x.shape[0], I = x.shape[1], O = weight.shape[0]
    if weight.shape[1] != I:
        raise ValueError(f"weight has shape {weight.shape}, expected (O, I) with I = {I} "
                         f"to match x of shape {x.shape}")
    _shape_is(dout, "dout", (B, O), "(B, O) from x and weight")
    cdef bint acc = bool(accumulate)
    if acc and dweight is None:
        raise ValueError("accumulate=True needs dweight= (the array to add into)")
    if acc and compute_dbias and dbias is None:
        raise ValueError("accumulate=True needs dbias= (or compute_dbias=False)")
    if not compute_dinp and dinp is not None:
        raise ValueError("dinp= given with compute_dinp=False")
    if not compute_dbias and dbias is not None:
        raise ValueError("dbias= given with compute_dbias=False")
    gi = _out(dinp, (B, I), np.float32, "dinp") if compute_dinp else None
    gw = _out(dweight, (O, I), np.float32, "dweight")
    gb = _out(dbias, (O,), np.float32, "dbias") if compute_dbias else None
    inputs = (("dout", dout), ("x", x), ("weight", weight))
    if gi is not None:
        _no_overlap(gi, "dinp", inputs + (("dweight", gw), ("dbias", gb)))
    _no_overlap(gw, "dweight", inputs + (("dbias", gb),))
    if gb is not None:
        _no_overlap(gb, "dbias", inputs)
    cdef const float[::1] dv = _flat(dout)
    cdef const float[::1] xv = _flat(x)
    cdef const float[::1] wv = _flat(weight)
    cdef float[::1] giv
    cdef float[::1] gbv
    cdef float[::1] gwv = _flat(gw)
    cdef float *gip = NULL
    cdef float *gbp = NULL
    if gi is not None:
        giv = _flat(gi)
        gip = _wptr(giv)
    if gb is not None:
        gbv = gb
        gbp = _wptr(gbv)
    cdef float *gwp = _wptr(gwv)
    cdef int status
    with nogil:
        status = dc_dense_backward(gip, gwp, gbp, _fptr(dv), _fptr(xv), _fptr(wv), B, I, O,
                                   acc)
    _check(status, "dense_backward")
    return gi, gw, gb


# ---- softmax and loss ----------------------------------------------------------------------

def softmax(logits, out=None):
    """Row-wise softmax of ``logits`` (B, C) float32, max-subtracted (no overflow).

    ``out`` (B, C) may be ``logits`` itself (in place). Returns the probabilities.
    """
    _arr(logits, "logits", np.float32, 2)
    o = _out(out, logits.shape, np.float32, "out")
    _may_equal(o, "out", logits, "logits")
    cdef int64_t B = logits.shape[0], C = logits.shape[1]
    if B == 0 or C == 0:
        return o
    cdef const float[::1] lv = _flat(logits)
    cdef float[::1] ov = _flat(o)
    cdef int status
    with nogil:
        status = dc_softmax_forward(&ov[0], &lv[0], B, C)
    _check(status, "softmax")
    return o


cdef object _labels(object labels, int64_t B):
    if not isinstance(labels, np.ndarray):
        raise TypeError(f"labels must be a numpy.ndarray, got {type(labels).__name__}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must have an integer dtype, got {labels.dtype}")
    if labels.ndim != 1 or labels.shape[0] != B:
        raise ValueError(f"labels has shape {labels.shape}, expected (B,) = ({B},) "
                         "to match logits")
    if not labels.flags.c_contiguous:
        raise ValueError("labels must be C-contiguous")
    if labels.dtype != np.int64:
        if labels.dtype == np.uint64 and B and labels.max() > np.iinfo(np.int64).max:
            raise ValueError(f"labels has a value outside [0, n_classes): {labels.max()}")
        labels = labels.astype(np.int64)
    return labels


def softmax_cross_entropy(logits, labels, label_smoothing=0.0, *, probs=None, dlogits=None,
                          return_n_correct=False):
    """Fused softmax + mean cross-entropy with integer labels and its gradient.

    Targets are ``(1 - s) * one_hot(labels) + s / C`` for ``s = label_smoothing``.

    Parameters
    ----------
    logits : ndarray, float32, shape (B, C)
    labels : ndarray, integer, shape (B,)
        Values in [0, C); otherwise ValueError (and nothing is written).
    label_smoothing : float in [0, 1]
    probs, dlogits : ndarray, float32, shape (B, C), optional
        Outputs; each may be ``logits`` itself (in place) but not each other.
    return_n_correct : bool
        Also return how many rows have ``argmax == label``.

    Returns
    -------
    loss : float
        Mean over rows (computed in float64 via log-sum-exp; 0.0 for B == 0).
    probs : ndarray (B, C)
    dlogits : ndarray (B, C)
        ``(probs - target) / B``, the gradient of the mean loss.
    n_correct : int
        Only with ``return_n_correct=True``.
    """
    _arr(logits, "logits", np.float32, 2)
    cdef int64_t B = logits.shape[0], C = logits.shape[1]
    labels = _labels(labels, B)
    cdef double s = float(label_smoothing)
    if not (0.0 <= s <= 1.0):
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    po = _out(probs, (B, C), np.float32, "probs")
    do = _out(dlogits, (B, C), np.float32, "dlogits")
    _may_equal(po, "probs", logits, "logits")
    _may_equal(do, "dlogits", logits, "logits")
    _no_overlap(po, "probs", (("dlogits", do), ("labels", labels)))
    _no_overlap(do, "dlogits", (("labels", labels),))
    cdef const float[::1] lv = _flat(logits)
    cdef const int64_t[::1] yv = labels
    cdef float[::1] pv = _flat(po)
    cdef float[::1] dv = _flat(do)
    cdef double loss = 0.0
    cdef int64_t correct = 0
    cdef int status
    with nogil:
        status = dc_softmax_xent(_wptr(pv), _wptr(dv), &loss, &correct, _fptr(lv),
                                 _i64ptr(yv), B, C, <float>s)
    if status == DC_ERR_LABEL:
        bad = labels[(labels < 0) | (labels >= C)]
        raise ValueError(f"labels must be in [0, {C}) (C = logits.shape[1]), "
                         f"got {bad[:5].tolist()}")
    _check(status, "softmax_cross_entropy")
    if return_n_correct:
        return loss, po, do, int(correct)
    return loss, po, do


def sigmoid_binary_cross_entropy(logits, targets, *, probs=None, dlogits=None,
                                 return_n_correct=False):
    """Fused sigmoid + binary cross-entropy (multilabel outputs).

    Parameters
    ----------
    logits : ndarray, float32, shape (B, C)
    targets : ndarray, float32, shape (B, C)
        Values in [0, 1] (0/1 for multilabel indicators); otherwise ValueError.
    probs, dlogits : ndarray, float32, shape (B, C), optional
        Outputs; each may be ``logits`` itself (in place) but not each other.
    return_n_correct : bool
        Also return how many rows have every column on the target's side of 0.5.

    Returns
    -------
    loss : float
        Mean over rows of the sum over columns of ``-(t log p + (1-t) log(1-p))``,
        computed in float64 from the logits (``softplus(z) - t z``); 0.0 for B == 0.
    probs : ndarray (B, C)
        ``sigmoid(logits)``.
    dlogits : ndarray (B, C)
        ``(probs - targets) / B``, the gradient of the mean loss.
    n_correct : int
        Only with ``return_n_correct=True``.
    """
    _arr(logits, "logits", np.float32, 2)
    _arr(targets, "targets", np.float32, 2)
    cdef int64_t B = logits.shape[0], C = logits.shape[1]
    _shape_is(targets, "targets", (B, C), "logits.shape")
    if targets.size and not ((targets >= 0) & (targets <= 1)).all():
        raise ValueError("targets must be in [0, 1] (and not NaN)")
    po = _out(probs, (B, C), np.float32, "probs")
    do = _out(dlogits, (B, C), np.float32, "dlogits")
    _may_equal(po, "probs", logits, "logits")
    _may_equal(do, "dlogits", logits, "logits")
    _no_overlap(po, "probs", (("dlogits", do), ("targets", targets)))
    _no_overlap(do, "dlogits", (("targets", targets),))
    cdef const float[::1] lv = _flat(logits)
    cdef const float[::1] tv = _flat(targets)
    cdef float[::1] pv = _flat(po)
    cdef float[::1] dv = _flat(do)
    cdef double loss = 0.0
    cdef int64_t correct = 0
    cdef int status
    with nogil:
        status = dc_sigmoid_bce(_wptr(pv), _wptr(dv), &loss, &correct, _fptr(lv), _fptr(tv),
                                B, C)
    _check(status, "sigmoid_binary_cross_entropy")
    if return_n_correct:
        return loss, po, do, int(correct)
    return loss, po, do


# ---- input conversion ----------------------------------------------------------------------

cdef object _gather_idx(object idx, int64_t N):
    if idx is None:
        return None
    if not isinstance(idx, np.ndarray):
        raise TypeError(f"idx must be a numpy.ndarray or None, got {type(idx).__name__}")
    if idx.dtype.kind not in "iu":
        raise TypeError(f"idx must have an integer dtype, got {idx.dtype}")
    if idx.ndim != 1:
        raise ValueError(f"idx must be 1-D, got shape {idx.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= N):
        raise ValueError(f"idx has values outside [0, {N}) (N = x.shape[0]): "
                         f"min {idx.min()}, max {idx.max()}")
    return np.ascontiguousarray(idx, dtype=np.int64)


cdef object _gather(object x, object idx, object scale, object shift, object out, bint u8):
    _arr(x, "x", np.uint8 if u8 else np.float32)
    if x.ndim < 2:
        raise ValueError(f"x must be at least 2-D (N, features...), got shape {x.shape}")
    cdef int64_t N = x.shape[0]
    cdef int64_t F = 1
    for d in x.shape[1:]:
        F *= d
    cdef float sc = _finite(scale, "scale"), sh = _finite(shift, "shift")
    ix = _gather_idx(idx, N)
    cdef int64_t B = N if ix is None else ix.shape[0]
    o = _out(out, (B, F), np.float32, "out")
    _no_overlap(o, "out", (("x", x), ("idx", ix)))
    if B == 0 or F == 0:
        return o
    cdef const int64_t *ip = NULL
    cdef const int64_t[::1] iv
    if ix is not None:
        iv = ix
        ip = &iv[0]
    cdef float[::1] ov = _flat(o)
    cdef const uint8_t[::1] xu
    cdef const float[::1] xf
    cdef int status
    if u8:
        xu = _flat(x)
        with nogil:
            status = dc_gather_u8(&ov[0], &xu[0], ip, B, F, sc, sh)
    else:
        xf = _flat(x)
        with nogil:
            status = dc_gather_f32(&ov[0], &xf[0], ip, B, F, sc, sh)
    _check(status, "gather")
    return o


def gather_u8(x, idx=None, scale=1.0 / 255.0, shift=0.0, out=None):
    """Rows ``idx`` of uint8 ``x`` as float32: ``out = x[idx].reshape(B, F) * scale + shift``.

    Parameters
    ----------
    x : ndarray, uint8, shape (N, ...) ; F is the product of the trailing dimensions
    idx : ndarray, integer, shape (B,), optional
        Row indices in [0, N) (no negative indexing); None means all rows in order.
    scale, shift : float
    out : ndarray, float32, shape (B, F), optional

    Returns
    -------
    ndarray, float32, shape (B, F)
    """
    return _gather(x, idx, scale, shift, out, True)


def gather_f32(x, idx=None, scale=1.0, shift=0.0, out=None):
    """Same as :func:`gather_u8` for float32 ``x``."""
    return _gather(x, idx, scale, shift, out, False)


# ---- optimizers (in place) -----------------------------------------------------------------

cdef object _opt_arrays(object param, object grad, list states):
    """param and every state are updated in place; all share param's shape; none overlap."""
    _inplace(param, "param")
    _arr(grad, "grad", np.float32)
    _shape_is(grad, "grad", param.shape, "param.shape")
    named = [("param", param), ("grad", grad)]
    for name, st in states:
        _inplace(st, name)
        _shape_is(st, name, param.shape, "param.shape")
        named.append((name, st))
    for i in range(len(named)):
        _no_overlap(named[i][1], named[i][0], tuple(named[i + 1:]))


def sgd_update(param, grad, velocity=None, lr=0.01, momentum=0.0, nesterov=False, l2=0.0):
    """SGD step, IN PLACE on ``param`` (and ``velocity``), PyTorch semantics.

    ``g = grad + l2 * param``; with momentum ``velocity = momentum * velocity + g`` and
    ``g = g + momentum * velocity`` (Nesterov) or ``g = velocity``; ``param -= lr * g``.
    Start ``velocity`` at zeros. Arrays are float32, C-contiguous, same shape, disjoint.
    ``velocity`` may be None only when ``momentum == 0``. Returns None.
    """
    cdef float flr = _finite(lr, "lr"), fm = _finite(momentum, "momentum")
    cdef float fl2 = _finite(l2, "l2")
    cdef int nest = bool(nesterov)
    if fm < 0:
        raise ValueError(f"momentum must be >= 0, got {momentum}")
    if nest and fm == 0:
        raise ValueError("nesterov=True needs momentum > 0")
    if fm != 0 and velocity is None:
        raise ValueError("momentum != 0 needs a velocity array (start it at zeros)")
    _opt_arrays(param, grad, [("velocity", velocity)] if velocity is not None else [])
    cdef float[::1] pv = _flat(param)
    cdef const float[::1] gv = _flat(grad)
    cdef float[::1] vv
    cdef float *vp = NULL
    cdef int64_t n = pv.shape[0]
    cdef int status
    if n == 0:
        return None
    if velocity is not None:
        vv = _flat(velocity)
        vp = &vv[0]
    with nogil:
        status = dc_sgd_update(&pv[0], vp, &gv[0], n, flr, fm, nest, fl2)
    _check(status, "sgd_update")


def rmsprop_update(param, grad, sq_avg, lr=0.01, rho=0.99, eps=1e-8, l2=0.0):
    """RMSprop step, IN PLACE on ``param`` and ``sq_avg``, PyTorch semantics.

    ``g = grad + l2 * param``; ``sq_avg = rho * sq_avg + (1 - rho) * g**2``;
    ``param -= lr * g / (sqrt(sq_avg) + eps)``. Start ``sq_avg`` at zeros. Returns None.
    """
    cdef float flr = _finite(lr, "lr"), frho = _finite(rho, "rho"), feps = _finite(eps, "eps")
    cdef float fl2 = _finite(l2, "l2")
    if not (0.0 <= frho <= 1.0):
        raise ValueError(f"rho must be in [0, 1], got {rho}")
    if feps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    _opt_arrays(param, grad, [("sq_avg", sq_avg)])
    cdef float[::1] pv = _flat(param)
    cdef float[::1] sv = _flat(sq_avg)
    cdef const float[::1] gv = _flat(grad)
    cdef int64_t n = pv.shape[0]
    cdef int status
    if n == 0:
        return None
    with nogil:
        status = dc_rmsprop_update(&pv[0], &sv[0], &gv[0], n, flr, frho, feps, fl2)
    _check(status, "rmsprop_update")


def adam_update(param, grad, m, v, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, l2=0.0,
                weight_decay=0.0):
    """Adam / AdamW step, IN PLACE on ``param``, ``m`` and ``v``, PyTorch semantics.

    ``step`` counts from 1 (this update's number, used for bias correction).
    ``l2`` is Adam's coupled penalty (``g = grad + l2 * param``); ``weight_decay`` is
    AdamW's decoupled decay (``param *= 1 - lr * weight_decay`` before the step).
    ``m = beta1 * m + (1 - beta1) * g``; ``v = beta2 * v + (1 - beta2) * g**2``;
    ``param -= lr / (1 - beta1**step) * m / (sqrt(v) / sqrt(1 - beta2**step) + eps)``.
    Start ``m`` and ``v`` at zeros. Returns None.
    """
    cdef float flr = _finite(lr, "lr"), fb1 = _finite(beta1, "beta1")
    cdef float fb2 = _finite(beta2, "beta2"), feps = _finite(eps, "eps")
    cdef float fl2 = _finite(l2, "l2"), fwd = _finite(weight_decay, "weight_decay")
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"step must be an integer, got {type(step).__name__}")
    if step < 1:
        raise ValueError(f"step counts from 1, got {step}")
    cdef int64_t st = step
    if not (0.0 <= fb1 < 1.0) or not (0.0 <= fb2 < 1.0):
        raise ValueError(f"beta1 and beta2 must be in [0, 1), got {beta1}, {beta2}")
    if feps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    _opt_arrays(param, grad, [("m", m), ("v", v)])
    cdef float[::1] pv = _flat(param)
    cdef float[::1] mv = _flat(m)
    cdef float[::1] vv = _flat(v)
    cdef const float[::1] gv = _flat(grad)
    cdef int64_t n = pv.shape[0]
    cdef int status
    if n == 0:
        return None
    with nogil:
        status = dc_adam_update(&pv[0], &mv[0], &vv[0], &gv[0], n, flr, fb1, fb2, feps, fl2,
                                fwd, st)
    _check(status, "adam_update")


def sum_squares(x):
    """Sum of squares of float32 ``x`` (any shape), accumulated in float64.

    The summation order is fixed (chunks of 16384 added in order), so the result does not
    depend on the thread count.
    """
    _arr(x, "x", np.float32)
    cdef const float[::1] xv = _flat(x)
    cdef double r = 0.0
    cdef int64_t n = xv.shape[0]
    cdef int status
    if n == 0:
        return 0.0
    with nogil:
        status = dc_sum_squares(&r, &xv[0], n)
    _check(status, "sum_squares")
    return r


def scale_inplace(x, s):
    """``x *= s`` IN PLACE (float32, any shape, C-contiguous, writeable). Returns None."""
    _inplace(x, "x")
    cdef float fs = <float>float(s)
    cdef float[::1] xv = _flat(x)
    cdef int64_t n = xv.shape[0]
    cdef int status
    if n == 0:
        return None
    with nogil:
        status = dc_scale(&xv[0], n, fs)
    _check(status, "scale_inplace")


def clip_grad_norm(grads, max_norm, eps=1e-12):
    """Scale a list of gradient arrays IN PLACE so their global L2 norm is <= max_norm.

    Like ``torch.nn.utils.clip_grad_norm_``: ``total = sqrt(sum of squares of all)``; if
    ``total > max_norm`` every array is multiplied by ``max_norm / (total + eps)``. A
    non-finite total leaves the arrays untouched (the caller decides what to do). eps is
    the training loop's (csrc/mlp_train.c), not torch's 1e-6, so clipping here and in
    Trainer(clip_norm=...) scale alike.

    Parameters
    ----------
    grads : sequence of ndarray, float32, C-contiguous, writeable, pairwise disjoint
    max_norm : float > 0

    Returns
    -------
    float
        The total norm before clipping.
    """
    cdef double mx = float(max_norm)
    if not (mx > 0.0):
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    if isinstance(grads, np.ndarray):
        grads = [grads]
    grads = list(grads)
    for i, g in enumerate(grads):
        _inplace(g, f"grads[{i}]")
    for i in range(len(grads)):
        for j in range(i + 1, len(grads)):
            if grads[i].size and grads[j].size and np.may_share_memory(grads[i], grads[j]):
                raise ValueError(f"grads[{i}] and grads[{j}] overlap")
    cdef double total = 0.0
    for g in grads:
        total += sum_squares(g)
    norm = float(np.sqrt(total))
    if norm == norm and norm != float("inf") and norm > mx:
        coef = mx / (norm + float(eps))
        for g in grads:
            scale_inplace(g, coef)
    return norm


# ---- randomness, dropout -------------------------------------------------------------------

def hash64(seed, stream, i):
    """Counter-based 64-bit hash: value ``i`` of stream ``stream`` under ``seed``.

    Depends only on the three integers (each in [0, 2**64)), never on threads.
    """
    cdef uint64_t a = _u64(seed, "seed"), b = _u64(stream, "stream"), c = _u64(i, "i")
    return dc_hash64(a, b, c)


def dropout_forward(x, p, seed, stream=0, out=None, mask=None):
    """Inverted dropout: ``out = x * keep / (1 - p)``, ``keep[i] = uniform(seed, stream, i) >= p``.

    The uniforms come from :func:`hash64` (24 bits each), so the mask depends only on
    (seed, stream, element index): identical for any thread count.

    Parameters
    ----------
    x : ndarray, float32, any shape
    p : float in [0, 1)
        Drop probability.
    seed, stream : int in [0, 2**64)
    out : ndarray, float32, same shape, optional
        May be ``x`` itself (in place).
    mask : ndarray, uint8, same shape, optional

    Returns
    -------
    out : ndarray, float32
    mask : ndarray, uint8 (1 = kept)
    """
    cdef float fp = _prob(p, "p")
    cdef uint64_t sd = _u64(seed, "seed"), sm = _u64(stream, "stream")
    _arr(x, "x", np.float32)
    o = _out(out, x.shape, np.float32, "out")
    mk = _out(mask, x.shape, np.uint8, "mask")
    _may_equal(o, "out", x, "x")
    _no_overlap(mk, "mask", (("x", x), ("out", o)))
    cdef const float[::1] xv = _flat(x)
    cdef float[::1] ov = _flat(o)
    cdef uint8_t[::1] mv = _flat(mk)
    cdef int64_t n = xv.shape[0]
    cdef int status
    if n == 0:
        return o, mk
    with nogil:
        status = dc_dropout_forward(&ov[0], &mv[0], &xv[0], n, fp, sd, sm)
    _check(status, "dropout_forward")
    return o, mk


def dropout_backward(dout, mask, p, out=None):
    """Gradient of :func:`dropout_forward`: ``dinp = dout * mask / (1 - p)``.

    ``mask`` is the uint8 (or bool) mask the forward returned; ``out`` may be ``dout``
    itself (in place).
    """
    cdef float fp = _prob(p, "p")
    _arr(dout, "dout", np.float32)
    if isinstance(mask, np.ndarray) and mask.dtype == np.bool_:
        mask = mask.view(np.uint8)
    _arr(mask, "mask", np.uint8)
    _shape_is(mask, "mask", dout.shape, "dout.shape")
    o = _out(out, dout.shape, np.float32, "out")
    _may_equal(o, "out", dout, "dout")
    _no_overlap(o, "out", (("mask", mask),))
    cdef const float[::1] dv = _flat(dout)
    cdef const uint8_t[::1] mv = _flat(mask)
    cdef float[::1] ov = _flat(o)
    cdef int64_t n = dv.shape[0]
    cdef int status
    if n == 0:
        return o
    with nogil:
        status = dc_dropout_backward(&ov[0], &dv[0], &mv[0], n, fp)
    _check(status, "dropout_backward")
    return o


include "_augment.pxi"
include "_mlp.pxi"
include "_mlp_grad.pxi"
