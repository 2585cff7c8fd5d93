# _loss.pxi -- included by _ops.pyx: the output layer of csrc/loss.c (softmax and the
# fused losses).
# Uses the validation helpers defined there (_arr, _out, _flat, _check, ...).

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


def softmax_exp(d):
    """exp(d) for a 1-D float64 array ``d`` of values <= 0, as the softmaxes take it (the
    same bits on every kernel path; 0 below -708, NaN for NaN). For tests."""
    _arr(d, "d", np.float64, 1)
    if (d > 0).any():
        raise ValueError("softmax_exp takes values <= 0 (differences from a row's maximum)")
    o = np.empty_like(d)
    cdef int64_t n = d.shape[0]
    if n == 0:
        return o
    cdef const double[::1] dv = d
    cdef double[::1] ov = o
    cdef int status
    with nogil:
        status = dc_softmax_exp(&ov[0], &dv[0], n)
    _check(status, "softmax_exp")
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
        labels = labels.astype(np.int64)  # (a new array: aligned)
    return _aligned(labels, "labels")


cdef tuple _loss_outputs(object logits, object probs, object dlogits, object target,
                         str target_name):
    """The (B, C) outputs probs and dlogits of a fused loss: each may be logits itself (in
    place) but overlaps nothing else (each other, the labels or targets)."""
    shape = (logits.shape[0], logits.shape[1])
    po = _out(probs, shape, np.float32, "probs")
    do = _out(dlogits, shape, np.float32, "dlogits")
    _may_equal(po, "probs", logits, "logits")
    _may_equal(do, "dlogits", logits, "logits")
    _no_overlap(po, "probs", (("dlogits", do), (target_name, target)))
    _no_overlap(do, "dlogits", ((target_name, target),))
    return po, do


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
    po, do = _loss_outputs(logits, probs, dlogits, labels, "labels")
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
                         f"got {bad[:5].tolist()}" + ("" if bad.size else
                         " (a label changed while the call read it)"))
    _check(status, "softmax_cross_entropy")
    return (loss, po, do, int(correct)) if return_n_correct else (loss, po, do)


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
    po, do = _loss_outputs(logits, probs, dlogits, targets, "targets")
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
    return (loss, po, do, int(correct)) if return_n_correct else (loss, po, do)
