# Loss and gradient over a set of rows (csrc/mlp_grad.c). Included by _ops.pyx after
# _mlp.pxi; used by the scikit-learn estimator (L-BFGS, multilabel targets, scipy.sparse
# input). Every array is checked here against the network's sizes before C sees it.

_LOSSES = {"softmax": DC_LOSS_SOFTMAX_XENT, "sigmoid": DC_LOSS_SIGMOID_BCE}


cdef class Rows:
    """The rows of a data set, checked once, for :func:`mlp_loss_grad` /
    :func:`mlp_logits_rows` (which a training loop calls once per mini-batch).

    ``x`` is a uint8/float32 (n_rows, n_features) C-contiguous array, or a CSR tuple
    ``(indptr int64 (n_rows+1), indices int32, data float32, n_rows)``; rows are used as
    ``x * scale + shift`` (shift 0 for CSR). Optional ``labels`` int64 (n_rows,) for the
    softmax loss, ``targets`` float32 (n_rows, n_outputs) in [0, 1] for the sigmoid loss.
    """
    cdef dc_rows rows
    cdef object keep
    cdef readonly object labels
    cdef readonly object targets
    cdef int64_t label_max

    def __init__(self, x, int64_t n_features, float scale=1.0, float shift=0.0, labels=None,
                 targets=None):
        cdef const uint8_t[:, ::1] xu
        cdef const float[:, ::1] xf
        cdef const int64_t[::1] pv
        cdef const int32_t[::1] iv
        cdef const float[::1] vv
        self.rows.u8 = NULL
        self.rows.f32 = NULL
        self.rows.ptr = NULL
        self.rows.idx = NULL
        self.rows.val = NULL
        self.rows.scale = scale
        self.rows.shift = shift
        self.rows.cols = n_features
        if isinstance(x, tuple):
            if len(x) != 4:
                raise ValueError("CSR input must be (indptr, indices, data, n_rows)")
            indptr, indices, data, n_rows = x
            n_rows = operator.index(n_rows)
            if n_rows < 0:
                raise ValueError(f"CSR input's n_rows must be >= 0, got {n_rows}")
            _check_1d(indptr, np.int64, "indptr", n_rows + 1)
            _check_1d(indices, np.int32, "indices", -1)
            _check_1d(data, np.float32, "data", indices.shape[0])
            # the structure is checked once and then trusted by every call: copies of its
            # own, which no caller can change afterwards (the values may be shared)
            indptr, indices = indptr.copy(), indices.copy()
            if indptr[0] != 0 or indptr[n_rows] != indices.shape[0]:
                raise ValueError(f"indptr must run from 0 to len(indices) = "
                                 f"{indices.shape[0]}, got {indptr[0]} .. {indptr[n_rows]}")
            if n_rows and (np.diff(indptr) < 0).any():
                raise ValueError("indptr must be non-decreasing")
            if indices.shape[0] and (indices.min() < 0 or indices.max() >= n_features):
                raise ValueError(f"indices must be in [0, {n_features})")
            if shift != 0.0:
                raise ValueError("CSR input needs shift == 0 (the zeros must stay zero)")
            self.keep = (indptr, indices, data)
            self.rows.rows = n_rows
            pv = indptr
            self.rows.ptr = &pv[0]
            if indices.shape[0]:
                iv = indices
                vv = data
                self.rows.idx = &iv[0]
                self.rows.val = &vv[0]
            else:  # no entries: any valid pointer (never read)
                self.rows.idx = <const int32_t *>self.rows.ptr
                self.rows.val = <const float *>self.rows.ptr
        else:
            if not isinstance(x, np.ndarray):
                raise TypeError(f"x must be a numpy.ndarray or a CSR tuple, got "
                                f"{type(x).__name__}")
            if x.dtype != np.uint8 and x.dtype != np.float32:
                raise TypeError(f"x must be uint8 or float32, got {x.dtype}")
            if x.ndim != 2 or x.shape[1] != n_features:
                raise ValueError(f"x has shape {x.shape}, expected (n, {n_features})")
            if not x.flags.c_contiguous:
                raise ValueError("x must be C-contiguous")
            _aligned(x, "x")
            if x.shape[0] == 0 or n_features == 0:
                raise ValueError("x must have at least one row and one feature")
            self.keep = x
            self.rows.rows = x.shape[0]
            if x.dtype == np.uint8:
                xu = x
                self.rows.u8 = &xu[0, 0]
            else:
                xf = x
                self.rows.f32 = &xf[0, 0]
        self.label_max = -1
        if labels is not None:
            _check_1d(labels, np.int64, "labels", self.rows.rows)
            if self.rows.rows and labels.min() < 0:
                raise ValueError("labels must be >= 0")
            self.label_max = labels.max() if self.rows.rows else -1
        if targets is not None:
            _arr(targets, "targets", np.float32, 2)
            if targets.shape[0] != self.rows.rows:
                raise ValueError(f"targets has {targets.shape[0]} rows, x has "
                                 f"{self.rows.rows}")
            if not ((targets >= 0) & (targets <= 1)).all():
                raise ValueError("targets must be in [0, 1] (and not NaN)")
        self.labels = labels
        self.targets = targets

    @property
    def n_rows(self):
        return self.rows.rows


cdef object _sel(object sel, int64_t n_rows):
    if sel is None:
        return None
    _check_1d(sel, np.int64, "sel", -1)
    sel = sel.copy()  # (checked here, read by C: out of other threads' reach)
    if sel.shape[0] and (sel.min() < 0 or sel.max() >= n_rows):
        raise ValueError(f"sel has rows outside [0, {n_rows})")
    return sel


cdef object _same_features(_Net net, Rows rows):
    if rows.rows.cols != net.sizes_arr[0]:
        raise ValueError(f"rows have {rows.rows.cols} features, the network expects "
                         f"{net.sizes_arr[0]}")


def mlp_loss_grad(_Net net, Rows rows, sel, str loss, grads=None):
    """Loss and gradient over rows ``sel`` (int64 indices; None: all) in one nogil C call.

    ``loss`` is "softmax" (against ``rows.labels``) or "sigmoid" (against
    ``rows.targets``, one column per output). ``grads`` (float32, n_params), if given,
    receives the gradient of the mean loss. Returns (mean loss, n_correct).
    """
    cdef int64_t C = net.sizes_arr[net.sizes_arr.shape[0] - 1], n
    cdef const int64_t[::1] sv
    cdef const int64_t[::1] lv
    cdef const float[:, ::1] tv
    cdef float[::1] gv
    cdef const int64_t *sp = NULL
    cdef const int64_t *lp = NULL
    cdef const float *tp = NULL
    cdef float *gp = NULL
    cdef double value = 0.0
    cdef int64_t correct = 0
    cdef int kind, status
    if loss not in _LOSSES:
        raise ValueError(f"loss must be one of {sorted(_LOSSES)}, got {loss!r}")
    kind = _LOSSES[loss]
    _same_features(net, rows)
    sel = _sel(sel, rows.rows.rows)
    n = rows.rows.rows if sel is None else sel.shape[0]
    if sel is not None and n:
        sv = sel
        sp = &sv[0]
    if kind == DC_LOSS_SOFTMAX_XENT:
        if rows.labels is None:
            raise ValueError("the softmax loss needs rows with labels")
        if rows.label_max >= C:
            raise ValueError(f"labels must be in [0, {C}), got {rows.label_max}")
        lv = rows.labels
        lp = &lv[0]
    else:
        if rows.targets is None:
            raise ValueError("the sigmoid loss needs rows with targets")
        if rows.targets.shape[1] != C:
            raise ValueError(f"targets has {rows.targets.shape[1]} columns, the network "
                             f"has {C} outputs")
        tv = rows.targets
        tp = &tv[0, 0]
    if grads is not None:
        _check_1d(grads, np.float32, "grads", net.n_params)
        if np.shares_memory(grads, net.params_arr):
            raise ValueError("grads must not overlap params")
        gv = grads
        gp = &gv[0]
    with nogil:
        status = dc_mlp_loss_grad(&value, &correct, gp, &net.net, kind, &rows.rows, sp, n,
                                  lp, tp)
    _check(status, "mlp_loss_grad")
    return value, correct


def mlp_logits_rows(_Net net, Rows rows, sel=None):
    """Output-layer values (n, n_outputs) float32 for rows ``sel`` (None: all)."""
    cdef int64_t C = net.sizes_arr[net.sizes_arr.shape[0] - 1], n
    cdef const int64_t[::1] sv
    cdef const int64_t *sp = NULL
    cdef int status
    _same_features(net, rows)
    sel = _sel(sel, rows.rows.rows)
    n = rows.rows.rows if sel is None else sel.shape[0]
    out = np.empty((n, C), dtype=np.float32)
    if n == 0:
        return out
    if sel is not None:
        sv = sel
        sp = &sv[0]
    cdef float[:, ::1] ov = out
    with nogil:
        status = dc_mlp_logits_rows(&ov[0, 0], &net.net, &rows.rows, sp, n)
    _check(status, "mlp_logits_rows")
    return out
