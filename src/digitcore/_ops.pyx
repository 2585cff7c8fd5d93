# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Cython bindings of digitcore's C kernels (csrc/digitcore.h).

Two layers, as in cython-blis: every public function here validates its
arguments (shape, dtype, contiguity, aliasing of ``out``) with messages that
print the shapes, takes pointers only into non-empty views, releases the GIL
around the C call, and turns the returned status into an exception in one
place (:func:`_check`). The C side trusts what arrives.

This file holds the status mapping, the configuration, the shared validation helpers and
the optimizers' bindings; each other kernel family is an include, one per C file:
_gemm.pxi (gemm.c), _layers.pxi (nn.c's layers, gather, dropout), _loss.pxi (loss.c),
_augment.pxi (augment.c), _mlp.pxi (mlp_*.c: _Net) and _mlp_grad.pxi (mlp_grad.c).
"""

import math
import operator

import numpy as np
cimport numpy as cnp
from libc.float cimport FLT_MIN
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
    DC_ERR_CHANGED: (RuntimeError, "the input array changed while digitcore read it: another "
                     "thread wrote to it during the call"),
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


def cpu_has_avx512():
    return bool(dc_cpu_has_avx512())


def gemm_tile():
    """The GEMM tile the current kernel path runs: "avx512" (6x32, on the AVX2 path of a
    CPU with AVX-512), "avx2" (6x16) or "generic"; the first two give the same bits."""
    if dc_avx512_active():
        return "avx512"
    return kernel_path()


def use_avx512(bint on):
    """Let the AVX2 path run its AVX-512 kernels (the GEMM tile, the sparse products' row
    kernel and full-batch sweep, the uint8 augmentation's pixel loop; the default where the
    CPU has them), or not
    (DIGITCORE_AVX512=0). Same bits either way."""
    if on and not dc_cpu_has_avx512():
        raise RuntimeError("use_avx512(True): this CPU lacks AVX-512 (F, CD, DQ, BW, VL) (or this build has no "
                           "AVX-512 code)")
    _check(dc_use_avx512(1 if on else 0), "use_avx512")


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


MAX_THREADS = DC_MAX_THREADS


def set_num_threads(int n):
    dc_set_num_threads(n)


def get_num_threads():
    return dc_get_num_threads()


def have_openmp():
    return bool(dc_have_openmp())


def team_started():
    """Whether a kernel has asked for more than one thread in this process."""
    return bool(dc_team_started())


_TEAM_POLICIES = {"fixed": DC_TEAM_FIXED, "adaptive": DC_TEAM_ADAPTIVE,
                  "alternate": DC_TEAM_ALTERNATE}


def set_team_policy(str name):
    """How training sizes its team batch by batch: 'adaptive', 'fixed' or 'alternate'."""
    if name not in _TEAM_POLICIES:
        raise ValueError(f"unknown team policy {name!r}; expected one of "
                         f"{', '.join(map(repr, _TEAM_POLICIES))}")
    _check(dc_set_team_policy(_TEAM_POLICIES[name]), "set_team_policy")


def get_team_policy():
    cdef int p = dc_get_team_policy()
    return next(k for k, v in _TEAM_POLICIES.items() if v == p)


def team_counts():
    """(batches on one thread, batches on the team, probes) since the process began."""
    cdef int64_t out[3]
    dc_team_counts(out)
    return int(out[0]), int(out[1]), int(out[2])


def team_simulate(secs_per_row, int64_t rows=128, double pause=0.0):
    """Which way the adaptive choice runs each batch, on a simulated clock (tests).

    secs_per_row: float64 (calls, batches, 2), the seconds a row takes on one thread
    ([..., 0]) and on the team ([..., 1]); each call of ``batches`` batches of ``rows``
    rows is ``pause`` seconds after the last. Returns a bool (calls, batches) array, True
    where the batch ran on one thread. Starts from a fresh state and leaves the policy and
    team_counts as they were; not for use while another thread trains."""
    cdef cnp.ndarray[cnp.float64_t, ndim=3] c = np.array(secs_per_row, dtype=np.float64,
                                                         order="C", copy=True)
    if c.shape[2] != 2:
        raise ValueError(f"secs_per_row must have shape (calls, batches, 2), got "
                         f"{np.shape(secs_per_row)}")
    cdef cnp.ndarray[cnp.uint8_t, ndim=2] out = np.zeros((c.shape[0], c.shape[1]), np.uint8)
    _check(dc_team_simulate(<uint8_t *>out.data, <const double *>c.data, c.shape[0],
                            c.shape[1], rows, pause), "team_simulate")
    return out.view(bool)


# ---- validation helpers (GEMM's own are in _gemm.pxi) ---------------------------------------
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
    if code == DC_ACT_LEAKY_RELU and not (alpha >= 0.0 and <float>alpha < float("inf")):
        # the backward pass reads the sign of x from the output, which needs alpha >= 0
        raise ValueError(f"alpha (leaky ReLU slope) must be >= 0 and finite in float32, "
                         f"got {alpha}")
    return code


cdef object _arr(object x, str name, object dtype, int ndim=-1):
    """Check an input array: ndarray, exact dtype, rank (ndim < 0: any), C-contiguous,
    aligned."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got {x.dtype}")
    if ndim >= 0 and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape}")
    if not x.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use numpy.ascontiguousarray), "
                         f"got strides {x.strides} for shape {x.shape}")
    _aligned(x, name)
    return x


cdef object _aligned(object x, str name):
    # (a float32 array at an odd address, e.g. numpy.frombuffer(..., offset=1): C may
    # assume its dtype's alignment, and vectorized code may then fault)
    if not x.flags.aligned:
        raise ValueError(f"{name} is not aligned to its dtype's {x.dtype.alignment} bytes "
                         f"(numpy.frombuffer at an odd offset?): pass a copy ({name}.copy())")
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
    _aligned(out, name)
    return out


cdef object _inplace(object x, str name):
    """An array updated in place: float32, C-contiguous, writeable, any shape."""
    _arr(x, name, np.float32)
    if not x.flags.writeable:
        raise ValueError(f"{name} is updated in place and must be writeable")
    return x


cdef inline const float* _fptr(const float[::1] v) noexcept nogil:
    return &v[0] if v.shape[0] > 0 else NULL


cdef inline float* _wptr(float[::1] v) noexcept nogil:
    return &v[0] if v.shape[0] > 0 else NULL


cdef inline const uint8_t* _u8ptr(const uint8_t[::1] v) noexcept nogil:
    return &v[0] if v.shape[0] > 0 else NULL


cdef inline const int64_t* _i64ptr(const int64_t[::1] v) noexcept nogil:
    return &v[0] if v.shape[0] > 0 else NULL


cdef object _flat(object a):
    return a.reshape(-1)


cdef float _finite(object v, str name) except? -1:
    """v as the float32 the kernels take: finite there too (a float64 past float32's range,
    about 3.4e38, would reach them as inf)."""
    cdef double d = float(v)
    cdef float f = <float>d
    if not (d == d and abs(d) < float("inf")):
        raise ValueError(f"{name} must be finite, got {v}")
    if not abs(f) < float("inf"):
        raise ValueError(f"{name} must be finite in float32 (|{name}| <= 3.4e38), got {v}")
    return f


cdef int _eps_normal(float feps, object eps) except -1:
    """An optimizer's eps: at least float32's smallest normal number (1.18e-38). The x86
    update loops flush subnormals to 0 (csrc/optim_internal.h), and an eps of 0 divides a
    zero gradient's 0 by 0: NaN parameters."""
    if not feps >= FLT_MIN:
        raise ValueError(f"eps must be at least 1.18e-38 (float32's smallest normal number; "
                         f"smaller values are read as 0, and 0 / 0 is NaN), got {eps}")
    return 0


cdef float _nonneg(object v, str name) except? -1:
    """A rate or penalty: finite and >= 0 (a negative rate climbs the loss; a negative
    penalty rewards large weights). PyTorch's optimizers refuse them too."""
    cdef float f = _finite(v, name)
    if not f >= 0.0:
        raise ValueError(f"{name} must be >= 0, got {v}")
    return f


cdef float _l1(object v) except? -1:
    """The L1 penalty: finite and >= 0 (a negative one would reward large weights)."""
    return _nonneg(v, "l1")


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


def sgd_update(param, grad, velocity=None, lr=0.01, momentum=0.0, nesterov=False, l2=0.0,
               l1=0.0):
    """SGD step, IN PLACE on ``param`` (and ``velocity``), PyTorch semantics.

    ``g = grad + l2 * param + l1 * sign(param)`` (the L1 term is 0 where ``param == 0``;
    ``l1 >= 0``); with momentum ``velocity = momentum * velocity + g`` and
    ``g = g + momentum * velocity`` (Nesterov) or ``g = velocity``; ``param -= lr * g``.
    Start ``velocity`` at zeros. Arrays are float32, C-contiguous, same shape, disjoint.
    ``velocity`` may be None only when ``momentum == 0``. Returns None.
    """
    cdef float flr = _nonneg(lr, "lr"), fm = _finite(momentum, "momentum")
    cdef float fl2 = _nonneg(l2, "l2"), fl1 = _l1(l1)
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
        status = dc_sgd_update(&pv[0], vp, &gv[0], n, flr, fm, nest, fl2, fl1)
    _check(status, "sgd_update")


def rmsprop_update(param, grad, sq_avg, lr=0.01, rho=0.99, eps=1e-8, l2=0.0, l1=0.0):
    """RMSprop step, IN PLACE on ``param`` and ``sq_avg``, PyTorch semantics.

    ``g = grad + l2 * param + l1 * sign(param)``; ``sq_avg = rho * sq_avg + (1 - rho) * g**2``;
    ``param -= lr * g / (sqrt(sq_avg) + eps)``. Start ``sq_avg`` at zeros. Returns None.
    """
    cdef float flr = _nonneg(lr, "lr"), frho = _finite(rho, "rho"), feps = _finite(eps, "eps")
    cdef float fl2 = _nonneg(l2, "l2"), fl1 = _l1(l1)
    if not (0.0 <= frho <= 1.0):
        raise ValueError(f"rho must be in [0, 1], got {rho}")
    _eps_normal(feps, eps)
    _opt_arrays(param, grad, [("sq_avg", sq_avg)])
    cdef float[::1] pv = _flat(param)
    cdef float[::1] sv = _flat(sq_avg)
    cdef const float[::1] gv = _flat(grad)
    cdef int64_t n = pv.shape[0]
    cdef int status
    if n == 0:
        return None
    with nogil:
        status = dc_rmsprop_update(&pv[0], &sv[0], &gv[0], n, flr, frho, feps, fl2, fl1)
    _check(status, "rmsprop_update")


def adam_update(param, grad, m, v, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, l2=0.0,
                weight_decay=0.0, l1=0.0):
    """Adam / AdamW step, IN PLACE on ``param``, ``m`` and ``v``, PyTorch semantics.

    ``step`` counts from 1 (this update's number, used for bias correction).
    ``l2`` is Adam's coupled penalty (``g = grad + l2 * param``), ``l1`` the coupled L1
    penalty (``g += l1 * sign(param)``, 0 where ``param == 0``); ``weight_decay`` is
    AdamW's decoupled decay (``param *= 1 - lr * weight_decay`` before the step; what
    ``optim.AdamW``'s ``weight_decay`` does, while ``optim.Adam``'s is an L2 penalty,
    passed here as ``l2``).
    ``m = beta1 * m + (1 - beta1) * g``; ``v = beta2 * v + (1 - beta2) * g**2``;
    ``param -= lr / (1 - beta1**step) * m / (sqrt(v) / sqrt(1 - beta2**step) + eps)``.
    Start ``m`` and ``v`` at zeros. Returns None.
    """
    cdef float flr = _nonneg(lr, "lr"), fb1 = _finite(beta1, "beta1")
    cdef float fb2 = _finite(beta2, "beta2"), feps = _finite(eps, "eps")
    cdef float fl2 = _nonneg(l2, "l2"), fwd = _nonneg(weight_decay, "weight_decay")
    cdef float fl1 = _l1(l1)
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"step must be an integer, got {type(step).__name__}")
    if step < 1 or step > 2**62:
        raise ValueError(f"step counts from 1 (to 2**62), got {step}")
    cdef int64_t st = step
    if not (0.0 <= fb1 < 1.0) or not (0.0 <= fb2 < 1.0):
        raise ValueError(f"beta1 and beta2 must be in [0, 1), got {beta1}, {beta2}")
    _eps_normal(feps, eps)
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
                                fl1, fwd, st)
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
    eps : float >= 0, finite

    Returns
    -------
    float
        The total norm before clipping.
    """
    cdef double mx = float(max_norm)
    cdef double e = float(eps)
    if not (mx > 0.0):
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    if not (e >= 0.0 and e < float("inf")):
        # (a negative eps could flip the gradients' sign or divide by zero)
        raise ValueError(f"eps must be finite and >= 0, got {eps}")
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
        coef = mx / (norm + e)
        for g in grads:
            scale_inplace(g, coef)
    return norm


# ---- the kernel families, each in its own include ----------------------------------------

include "_gemm.pxi"
include "_layers.pxi"
include "_loss.pxi"
include "_augment.pxi"
include "_mlp.pxi"
include "_mlp_grad.pxi"
