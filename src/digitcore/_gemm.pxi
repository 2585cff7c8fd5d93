# _gemm.pxi -- included by _ops.pyx: the GEMM bindings (gemm, gemm_ref), with their own
# validators: a fast path that checks a float32 C-contiguous 2-D array on its struct, and
# _as_f32 / _check_out for everything else.

# ---- GEMM validation --------------------------------------------------------------------

cdef object _as_f32(object x, str name, int ndim):
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise TypeError(f"{name} must have dtype float32, got {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape}")
    if not x.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use numpy.ascontiguousarray)")
    return _aligned(x, name)


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
    _aligned(out, name)
    for arr in inputs:
        if arr is not None and np.shares_memory(out, arr):
            raise ValueError(f"{name} must not overlap an input array")
    return out


# ---- GEMM ----------------------------------------------------------------------------------

cdef inline bint _is_f32c2(object x) noexcept:
    """x is an ndarray of native float32, 2-D, C-contiguous, aligned (the fast path's checks;
    anything else goes through _as_f32 / _check_out for the error message)."""
    if not cnp.PyArray_Check(x):
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>x
    return (cnp.PyArray_NDIM(arr) == 2 and cnp.PyArray_TYPE(arr) == cnp.NPY_FLOAT32
            and cnp.PyArray_ISNOTSWAPPED(arr) and cnp.PyArray_IS_C_CONTIGUOUS(arr)
            and cnp.PyArray_ISALIGNED(arr))


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

    As in BLAS, ``beta == 0`` does not read ``out``, and ``alpha == 0`` does not read ``a``
    or ``b`` (``C = beta * out``: a NaN in them does not reach C); :func:`gemm_ref` and
    ``ops_ref.gemm`` do the same.

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
    return _gemm_impl(a, b, _flag(trans_a, "trans_a"), _flag(trans_b, "trans_b"), alpha, beta,
                      out, False)


def gemm_ref(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out=None):
    """Same as :func:`gemm` with the naive C reference kernel (the oracle)."""
    return _gemm_impl(a, b, _flag(trans_a, "trans_a"), _flag(trans_b, "trans_b"), alpha, beta,
                      out, True)


cdef inline bint _flag(object v, str name) except -1:
    """A transpose flag: a bool, or 0 / 1 (a string such as "no" was true)."""
    if v is True or v is False:
        return v
    if isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "biu":
        v = v.item()  # (np.array(True))
    if isinstance(v, (bool, np.bool_, int, np.integer)) and v in (0, 1):
        return bool(v)
    raise TypeError(f"{name} must be a bool, got {v!r}")
