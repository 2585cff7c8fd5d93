# _layers.pxi -- included by _ops.pyx: the layer kernels of csrc/nn.c (activations, dense
# layer, input gather, dropout; the optimizers' bindings are in _ops.pyx).
# Uses the validation helpers defined there (_arr, _out, _flat, _check, ...).

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
    """``max(x, 0)`` elementwise, NaN kept NaN (as ``torch.relu``); see
    :func:`activation_forward`."""
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
    # C reads a copy, checked here (aligned, and out of reach of another thread that
    # writes the caller's array between the check and the kernel's reads)
    idx = np.array(idx, dtype=np.int64, copy=True)
    if idx.size and (idx.min() < 0 or idx.max() >= N):
        raise ValueError(f"idx has values outside [0, {N}) (N = x.shape[0]): "
                         f"min {idx.min()}, max {idx.max()}")
    return idx


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


cdef int _image_hint(const uint8_t *p, Py_ssize_t h, Py_ssize_t w) noexcept nogil:
    """first_image_hint's verdict on one h x w uint8 image at p (h, w >= 4)."""
    cdef Py_ssize_t ring = 0, i
    cdef bint one = False
    for i in range(w):
        ring += p[i] + p[(h - 1) * w + i]
    for i in range(1, h - 1):
        ring += p[i * w] + p[i * w + w - 1]
    if ring >= 128 * (2 * w + 2 * (h - 2)):
        return 2
    for i in range(h * w):  # (stops at the first pixel above 1: a 0-255 image's strokes)
        if p[i] > 1:
            return 0
        one = one or p[i] == 1
    return 1 if one else 0


cdef int _first_image_hint(cnp.ndarray a) except -1:
    """first_image_hint of ``a``, a C-contiguous uint8 ndarray (n, h, w) or (n, F)."""
    cdef Py_ssize_t h, w
    if cnp.PyArray_DIM(a, 0) == 0:
        return 0
    if cnp.PyArray_NDIM(a) == 3:
        h, w = cnp.PyArray_DIM(a, 1), cnp.PyArray_DIM(a, 2)
    else:
        h = <Py_ssize_t>math.isqrt(cnp.PyArray_DIM(a, 1))
        w = h
        if h * w != cnp.PyArray_DIM(a, 1):
            return 0
    if h < 4 or w < 4:
        return 0
    return _image_hint(<const uint8_t *>cnp.PyArray_DATA(a), h, w)


def first_image_hint(x):
    """What the first image of a batch of uint8 images says about how the batch was made,
    for a network trained on light strokes on a dark background: 1 when its pixels are
    only 0 and 1 (0/1 images given as uint8), 2 when its outer ring of pixels averages
    128 or more (a light background), else 0. x is a C-contiguous uint8 ndarray (n, h, w),
    or (n, F) with F a square; 0 for anything else (nothing to say). _Net.infer_pixels
    asks the same of the arrays it reads (network.check_pixel_images)."""
    if not cnp.PyArray_Check(x):
        return 0
    cdef cnp.ndarray a = <cnp.ndarray>x
    cdef int nd = cnp.PyArray_NDIM(a)
    if cnp.PyArray_TYPE(a) != cnp.NPY_UINT8 or not cnp.PyArray_IS_C_CONTIGUOUS(a) \
            or nd < 2 or nd > 3:
        return 0
    return _first_image_hint(a)
