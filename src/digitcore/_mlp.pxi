# Whole-network kernels (csrc/mlp_*.c). Included by _ops.pyx; owned by network/trainer.
#
# The Python layer (network.py, trainer.py) keeps every parameter in one flat float32
# array; these functions check that array, the optimizer state and the data against the
# layer sizes, then run many batches (or a whole inference pass) in one nogil C call.

_ACTIVATIONS = {"identity": DC_ACT_IDENTITY, "relu": DC_ACT_RELU,
                "leaky_relu": DC_ACT_LEAKY_RELU, "sigmoid": DC_ACT_SIGMOID,
                "tanh": DC_ACT_TANH}
_SPARSE_MODES = {"auto": DC_SPARSE_AUTO, "never": DC_SPARSE_NEVER,
                 "always": DC_SPARSE_ALWAYS}
_SPARSE_NAMES = {v: k for k, v in _SPARSE_MODES.items()}
_OPTIMIZERS = {"sgd": DC_OPT_SGD, "rmsprop": DC_OPT_RMSPROP, "adam": DC_OPT_ADAM}


cdef object _check_1d(object a, object dtype, str name, int64_t n):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got {a.dtype}")
    if a.ndim != 1 or (n >= 0 and a.shape[0] != n):
        raise ValueError(f"{name} has shape {a.shape}, expected ({n},)")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    return _aligned(a, name)


cdef inline bint _argmax_rows(int64_t *lab, const float *z, int64_t n, int64_t c) noexcept nogil:
    """lab[i]: the first largest of row i of z (n, c) (numpy.argmax's rule, NaN counting
    as largest). Whether no value of z is NaN."""
    cdef int64_t i, j, best
    cdef float v, b
    cdef bint bad = False
    for i in range(n):
        best = 0
        b = z[i * c]
        bad |= b != b
        for j in range(1, c):
            v = z[i * c + j]
            bad |= v != v
            if v > b or (v != v and b == b):
                best = j
                b = v
        lab[i] = best
    return not bad


cdef class _Keep:
    """Where _Net.train keeps layer 0's sparse input between calls (dc_mlp_keep): a
    batch of every row of x (full-batch descent) then reads it from here instead of
    gathering it anew each step. Tied to one x array: call clear() after changing x's
    contents in place. Freed with this object."""
    cdef dc_mlp_keep *keep
    cdef bint busy

    def __cinit__(self):
        self.keep = dc_mlp_keep_new()
        if self.keep == NULL:
            raise MemoryError("dc_mlp_keep_new")

    def __dealloc__(self):
        dc_mlp_keep_free(self.keep)

    def clear(self):
        """Forget the kept input (the next full batch builds it again from x)."""
        if self.busy:
            raise RuntimeError("this keep is in use by a train call")
        dc_mlp_keep_clear(self.keep)

    @property
    def nnz(self):
        """Entries of the sparse input held, or -1 when none is held."""
        return dc_mlp_keep_nnz(self.keep)


cdef class _Net:
    """A dc_mlp view over Python-owned arrays (kept alive by this object)."""
    cdef dc_mlp net
    cdef object sizes_arr
    cdef object params_arr
    cdef object offset_arr
    cdef int64_t n_params
    cdef int64_t n_in, n_out

    def __init__(self, sizes, params, str activation, float act_alpha, float dropout):
        cdef int64_t[::1] sv
        cdef float[::1] pv
        # (a copy of its own: C keeps a pointer to it, and a caller's array may change)
        sizes = np.array(sizes, dtype=np.int64, order="C")
        if sizes.ndim != 1 or sizes.shape[0] < 2 or (sizes <= 0).any():
            raise ValueError(f"layer sizes must be >= 2 positive integers, got {sizes.tolist()}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}")
        if not (0.0 <= dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        # counted in Python's integers first: dc_mlp_n_params's int64 sum wraps for layers
        # of 2**62 units, and the kernels then ran past a buffer sized by the wrapped count
        counts = [int(sizes[l + 1]) * (int(sizes[l]) + 1) for l in range(sizes.shape[0] - 1)]
        if sum(counts) > 2**62 or max(int(v) for v in sizes) > 2**31 - 1:
            raise ValueError(f"layer sizes {sizes.tolist()} are too large (at most 2**31 - 1 "
                             f"units a layer and 2**62 parameters)")
        sv = sizes
        self.n_params = dc_mlp_n_params(sizes.shape[0] - 1, &sv[0])
        _check_1d(params, np.float32, "params", self.n_params)
        if not params.flags.writeable:
            raise ValueError("params must be writeable")
        pv = params
        self.sizes_arr = sizes
        self.params_arr = params
        self.net.n_layers = sizes.shape[0] - 1
        self.n_in = sizes[0]
        self.n_out = sizes[sizes.shape[0] - 1]
        self.net.sizes = &sv[0]
        self.net.params = &pv[0]
        self.net.act = _ACTIVATIONS[activation]
        self.net.act_alpha = act_alpha
        self.net.dropout = dropout
        self.net.sparse_input = DC_SPARSE_AUTO
        self.net.sparse_split = 0

    @property
    def sparse_input(self):
        """First layer on sparse input (training, and inference of >= 256 rows): 'auto',
        'never' or 'always'."""
        return _SPARSE_NAMES[self.net.sparse_input]

    @sparse_input.setter
    def sparse_input(self, str mode):
        if mode not in _SPARSE_MODES:
            raise ValueError(f"sparse_input must be one of {sorted(_SPARSE_MODES)}, got {mode!r}")
        self.net.sparse_input = _SPARSE_MODES[mode]

    @property
    def sparse_split(self):
        """Training on sparse input: the first input column of the second of the two
        column groups the first layer's sparse products work in (0: half the inputs,
        rounded down to a multiple of 32)."""
        return self.net.sparse_split

    @sparse_split.setter
    def sparse_split(self, split):
        split = operator.index(split)
        if not 0 <= split <= self.sizes_arr[0]:
            raise ValueError(f"sparse_split must be in [0, {self.sizes_arr[0]}], got {split}")
        self.net.sparse_split = split

    @property
    def sparse_offset(self):
        """Training on float input: None, or the per-input background c (float32, one
        finite value per input) the sparse first layer skips: each input x is taken as
        c + s and only s's non-zero entries are gathered (csrc/mlp_layer0.c). None: the
        background is zero, as is an all-zero array (it is stored as None). Inference
        does not use it."""
        return self.offset_arr

    @sparse_offset.setter
    def sparse_offset(self, offset):
        cdef const float[::1] ov
        if offset is not None:
            _check_1d(offset, np.float32, "sparse_offset", self.n_in)
            if not np.isfinite(offset).all():
                raise ValueError("sparse_offset must be finite")
        if offset is None or not offset.any():  # (zeros: the path of no background)
            self.net.sparse_offset = NULL
            self.offset_arr = None
            return
        offset = offset.copy()  # (the caller's array may change while a call runs)
        ov = offset
        self.offset_arr = offset
        self.net.sparse_offset = &ov[0]

    cdef cnp.ndarray _input(self, x, str name):
        # checked on the array struct: one image's predict spent microseconds in
        # attribute lookups and dtype comparisons here
        if not cnp.PyArray_Check(x):
            raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
        cdef cnp.ndarray a = <cnp.ndarray>x
        cdef int t = cnp.PyArray_TYPE(a)
        if (t != cnp.NPY_UINT8 and t != cnp.NPY_FLOAT32) or not cnp.PyArray_ISNOTSWAPPED(a):
            raise TypeError(f"{name} must be uint8 or float32, got {x.dtype}")
        if cnp.PyArray_NDIM(a) != 2 or cnp.PyArray_DIM(a, 1) != self.n_in:
            raise ValueError(f"{name} has shape {x.shape}, expected (n, {self.n_in})")
        if not cnp.PyArray_IS_C_CONTIGUOUS(a):
            raise ValueError(f"{name} must be C-contiguous")
        if not cnp.PyArray_ISALIGNED(a):
            _aligned(x, name)
        return a

    cdef cnp.ndarray _logits(self, cnp.ndarray a, float scale, float shift, bint softmax):
        """dc_mlp_forward on rows of a checked input: (n, n_classes) float32."""
        cdef cnp.npy_intp dims[2]
        cdef int status
        dims[0] = cnp.PyArray_DIM(a, 0)
        dims[1] = self.n_out
        cdef cnp.ndarray out = cnp.PyArray_EMPTY(2, dims, cnp.NPY_FLOAT32, 0)
        if dims[0] == 0:
            return out
        cdef const uint8_t *pu = NULL
        cdef const float *pf = NULL
        if cnp.PyArray_TYPE(a) == cnp.NPY_UINT8:
            pu = <const uint8_t *>cnp.PyArray_DATA(a)
        else:
            pf = <const float *>cnp.PyArray_DATA(a)
        cdef float *po = <float *>cnp.PyArray_DATA(out)
        with nogil:
            status = dc_mlp_forward(po, &self.net, pu, pf, dims[0], scale, shift, softmax)
        if status == DC_ERR_NONFINITE and softmax:
            raise FloatingPointError(
                "predict_proba: the network's output overflowed float32 for this input (a "
                "logit is infinite or NaN), so it has no probabilities to give: its weights "
                "or its input scaling (input_mean, input_std) are far too large; logits() "
                "shows the values")
        _check(status, "forward")
        return out

    def forward(self, x, float scale, float shift, bint softmax):
        """Logits or probabilities (n, n_classes) float32 for rows of x (n, features)."""
        return self._logits(self._input(x, "x"), scale, shift, softmax)

    def predict(self, x, float scale, float shift):
        """Labels (n,) int64: the first largest logit of each row (an infinite one too);
        FloatingPointError when a logit is NaN."""
        return self._labels(self._logits(self._input(x, "x"), scale, shift, False))

    def infer_pixels(self, x, double mean, double std, int what, object summary):
        """Network.predict_proba / logits / predict on what one drawn digit, or a batch
        of them, usually is: a C-contiguous uint8 ndarray (n, features) or (n, h, w) with
        h * w == features. what: 0 logits, 1 probabilities, 2 labels. None for any other
        x, which the caller then validates in full (prepared_input: its own messages).
        The same conversion as prepared_input's (x / 255 - mean) / std, so the same
        bits; one image spent a third of its predict_proba in that validation.
        ``summary``, the network's training_summary: when it records dark-background
        digits, the first image's verdict (first_image_hint) is returned as an int
        instead of an answer when it is not 0, and when it records float_max, -1 (the
        caller raises: network.check_pixel_images); asked here, the check costs no
        Python call."""
        if not cnp.PyArray_Check(x) or std == 0.0:  # (std 0: prepared_input's error)
            return None
        cdef cnp.ndarray a = <cnp.ndarray>x
        cdef int nd = cnp.PyArray_NDIM(a)
        if cnp.PyArray_TYPE(a) != cnp.NPY_UINT8 or not cnp.PyArray_IS_C_CONTIGUOUS(a):
            return None
        if nd == 2:
            if cnp.PyArray_DIM(a, 1) != self.n_in:
                return None
        elif nd != 3 or cnp.PyArray_DIM(a, 1) * cnp.PyArray_DIM(a, 2) != self.n_in:
            return None
        cdef int hint
        if summary is not None and type(summary) is dict and cnp.PyArray_DIM(a, 0) > 0:
            if (<dict>summary).get("float_max"):
                return -1
            if (<dict>summary).get("background") == "dark":
                hint = _first_image_hint(a)
                if hint:
                    return hint
        cdef float scale = (1.0 / 255.0) / std
        cdef float shift = -mean / std
        cdef cnp.ndarray out = self._logits(a, scale, shift, what == 1)
        return self._labels(out) if what == 2 else out

    cdef cnp.ndarray _labels(self, cnp.ndarray logits):
        """The first largest logit of each row of (n, n_classes) logits, int64 (n,)."""
        cdef cnp.npy_intp n = cnp.PyArray_DIM(logits, 0)
        cdef cnp.ndarray labels = cnp.PyArray_EMPTY(1, &n, cnp.NPY_INT64, 0)
        cdef const float *z = <const float *>cnp.PyArray_DATA(logits)
        cdef int64_t *lab = <int64_t *>cnp.PyArray_DATA(labels)
        cdef bint finite
        if n < 4096:  # (releasing the GIL costs more than a few rows' loop)
            finite = _argmax_rows(lab, z, n, self.n_out)
        else:
            with nogil:
                finite = _argmax_rows(lab, z, n, self.n_out)
        if not finite:  # (a NaN row's "largest" would be a confident-looking guess)
            raise FloatingPointError(
                "predict: the network's output is NaN for this input, so it has no answer "
                "to give: its parameters are NaN or infinite, or they or its input scaling "
                "(input_mean, input_std) are far too large; logits() shows the values")
        return labels

    def evaluate(self, x, labels, float scale, float shift):
        """(mean loss, n_correct) over rows of x with int64 labels."""
        cdef const uint8_t[:, ::1] xu
        cdef const float[:, ::1] xf
        cdef const int64_t[::1] lv
        cdef const uint8_t *pu = NULL
        cdef const float *pf = NULL
        cdef double loss = 0.0
        cdef int64_t correct = 0, n
        cdef int status
        self._input(x, "x")
        n = x.shape[0]
        _check_1d(labels, np.int64, "labels", n)
        if n == 0:
            return float("nan"), 0
        lv = labels
        if x.dtype == np.uint8:
            xu = x
            pu = &xu[0, 0]
        else:
            xf = x
            pf = &xf[0, 0]
        with nogil:
            status = dc_mlp_evaluate(&loss, &correct, &self.net, pu, pf, &lv[0], n, scale, shift)
        _check(status, "evaluate")
        return loss, correct

    def train(self, x, labels, order, int64_t batch_size, lrs, float scale, float shift,
              uint64_t seed, dict opt, grads, grad_avg, sq_avg, augment=None,
              _Keep keep=None, double loss_sum=0.0):
        """Run len(lrs) mini-batches in C. ``opt['step']`` is updated in place.

        ``opt``: the optimizer's kind and hyperparameters (``Optimizer.kernel_config``:
        momentum, nesterov, rho, beta1, beta2, eps, l2, l1, weight_decay, clip_norm, step).
        ``grad_avg`` (SGD with momentum, Adam) and ``sq_avg`` (RMSprop, Adam): the
        optimizer's state, float32 (n_params), updated in place; None where it has none.

        ``keep``: None, or a _Keep for x, from which a batch of all of x's rows takes
        its sparse input (same bits as gathering it).

        ``augment``: None, or (params, bank, (height, width)) with params a dict of
        ops.augment's rotate/shear/scale/translate/alpha/thickness/faint and bank its elastic
        fields (or None): each batch's images are deformed before they are loaded.

        Returns (loss_sum, n_correct, n_seen): ``loss_sum`` is the one given with each
        batch's mean loss times its size added to it in turn (so a sum carried from call
        to call does not depend on how an epoch is cut into calls). Raises
        FloatingPointError naming the batch (within this call) where the loss became
        non-finite.
        """
        cdef const uint8_t[:, ::1] xu
        cdef const float[:, ::1] xf
        cdef const uint8_t *pu = NULL
        cdef const float *pf = NULL
        cdef const int64_t[::1] lv, ov
        cdef const float[::1] lrv
        cdef float[::1] gv, s1v, s2v
        cdef dc_optim o
        cdef dc_train_stats st
        cdef int64_t n, m, nb
        cdef int status
        cdef dc_augment aug
        cdef dc_augment *augp = NULL
        cdef const float[::1] bankv
        cdef dc_mlp_keep *kp = NULL
        self._input(x, "x")
        n = x.shape[0]
        if augment is not None:
            params, bank, (height, width) = augment
            _fill_augment(&aug, params.get("rotate", 0.0), params.get("shear", 0.0),
                          params.get("scale", 0.0), params.get("translate", 0.0),
                          params.get("alpha", 0.0), params.get("thickness", 0.0),
                          params.get("faint", 0.0), bank)
            if height < 1 or width < 1 or height * width != x.shape[1]:
                raise ValueError(f"augment: images of {height} x {width} pixels do not "
                                 f"match x's {x.shape[1]} features")
            _check_sides(height, width, "augment: images")
            aug.height = height
            aug.width = width
            if bank is not None:
                bankv = _flat(bank)
                aug.bank = &bankv[0]
            augp = &aug
        _check_1d(labels, np.int64, "labels", n)
        _check_1d(order, np.int64, "order", -1)
        order = order.copy()  # (checked below, read by C: out of other threads' reach)
        m = order.shape[0]
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        nb = m // batch_size + (m % batch_size != 0)  # (m + batch_size - 1 could overflow)
        _check_1d(lrs, np.float32, "lrs", nb)
        if nb and not (np.isfinite(lrs).all() and lrs.min() >= 0):
            raise ValueError("lrs must be finite and >= 0")
        if m and (order.min() < 0 or order.max() >= n):
            raise ValueError(f"order has indices outside [0, {n})")
        _check_1d(grads, np.float32, "grads", self.n_params)
        kind = opt["kind"]
        if kind not in _OPTIMIZERS:
            raise ValueError(f"unknown optimizer kind {kind!r}")
        memset(&o, 0, sizeof(o))
        o.kind = _OPTIMIZERS[kind]
        o.momentum = _finite(opt.get("momentum", 0.0), "momentum")
        o.nesterov = opt.get("nesterov", False)
        o.rho = _finite(opt.get("rho", 0.99), "rho")
        o.beta1 = _finite(opt.get("beta1", 0.9), "beta1")
        o.beta2 = _finite(opt.get("beta2", 0.999), "beta2")
        o.eps = _finite(opt.get("eps", 1e-8), "eps")
        o.l2 = _nonneg(opt.get("l2", 0.0), "l2")
        o.l1 = _l1(opt.get("l1", 0.0))
        o.weight_decay = _nonneg(opt.get("weight_decay", 0.0), "weight_decay")
        o.clip_norm = _nonneg(opt.get("clip_norm", 0.0) or 0.0, "clip_norm")
        # (checked as digitcore.optim checks them: the one caller, Trainer, has already,
        # but C must never see values that climb the loss or divide 0 by 0)
        for v, nm in ((o.momentum, "momentum"), (o.rho, "rho"), (o.beta1, "beta1"),
                      (o.beta2, "beta2")):
            if not 0.0 <= v < 1.0:
                raise ValueError(f"{nm} must be in [0, 1), got {v}")
        if o.kind != DC_OPT_SGD:
            _eps_normal(o.eps, opt.get("eps", 1e-8))
        o.step = opt.get("step", 0)
        o.grad_avg = NULL
        o.sq_avg = NULL
        if o.kind == DC_OPT_ADAM or (o.kind == DC_OPT_SGD and o.momentum != 0.0):
            _check_1d(grad_avg, np.float32, "grad_avg", self.n_params)
            s1v = grad_avg
            o.grad_avg = &s1v[0]
        if o.kind != DC_OPT_SGD:
            _check_1d(sq_avg, np.float32, "sq_avg", self.n_params)
            s2v = sq_avg
            o.sq_avg = &s2v[0]
        for arr, nm in ((grads, "grads"), (grad_avg, "grad_avg"), (sq_avg, "sq_avg")):
            if arr is not None and np.shares_memory(arr, self.params_arr):
                raise ValueError(f"{nm} must not overlap params")
        if o.step < 0:
            raise ValueError(f"opt['step'] must be >= 0, got {o.step}")
        if m == 0:
            return loss_sum, 0, 0
        if keep is not None:
            if keep.busy:
                raise RuntimeError("keep is in use by another train call")
            kp = keep.keep
        lv = labels
        ov = order
        lrv = lrs
        gv = grads
        if x.dtype == np.uint8:
            xu = x
            pu = &xu[0, 0]
        else:
            xf = x
            pf = &xf[0, 0]
        st.loss_sum = loss_sum
        # The call reads its own copy of the view, and holds the background it points to:
        # setting sparse_offset from another thread meanwhile frees the old array
        cdef dc_mlp net = self.net
        offset = self.offset_arr
        if keep is not None:
            keep.busy = True
        try:
            with nogil:
                status = dc_mlp_train(&st, &net, &o, &gv[0], pu, pf, &lv[0], &ov[0], m,
                                      batch_size, &lrv[0], scale, shift, seed, augp, n, kp)
        finally:
            if keep is not None:
                keep.busy = False
        opt["step"] = o.step
        if status == DC_ERR_NONFINITE:
            err = FloatingPointError(
                f"loss became NaN or infinite at batch {st.failed_batch} of this call")
            err.batch = st.failed_batch
            raise err
        _check(status, "train")
        return st.loss_sum, st.n_correct, st.n_seen
