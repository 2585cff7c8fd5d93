# Included by _ops.pyx: bindings of csrc/augment.c (random deformations of images).

cdef object _bank_size(object size):
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"size must be an integer, got {type(size).__name__}")
    size = int(size)
    if size < 1 or size > 4096 or (size & (size - 1)) != 0:
        raise ValueError(f"size must be a power of two in [1, 4096], got {size}")
    return size


def elastic_bank(size=128, sigma=4.0, seed=0, stream=0, out=None):
    """Two smoothed random displacement fields for elastic distortion (Simard et al. 2003).

    Each field is uniform in [-1, 1) (``hash64(seed, stream, i)``, i over both fields in
    order), smoothed by a normalized periodic Gaussian of standard deviation ``sigma``
    (radius ``int(4 * sigma + 0.5)``, as ``scipy.ndimage.gaussian_filter(mode="wrap")``).
    :func:`augment` reads random windows of it.

    Parameters
    ----------
    size : int, a power of two
    sigma : float in (0, 64]
    seed, stream : int in [0, 2**64)
    out : ndarray, float32, shape (2, size, size), optional

    Returns
    -------
    ndarray, float32, shape (2, size, size): the x and y fields
    """
    cdef int64_t S = _bank_size(size)
    cdef float sg = _finite(sigma, "sigma")
    if not (0.0 < sg <= 64.0):
        raise ValueError(f"sigma must be in (0, 64], got {sigma}")
    cdef uint64_t sd = _u64(seed, "seed"), sm = _u64(stream, "stream")
    o = _out(out, (2, S, S), np.float32, "out")
    cdef float[::1] ov = _flat(o)
    cdef int status
    with nogil:
        status = dc_elastic_bank(&ov[0], S, sg, sd, sm)
    _check(status, "elastic_bank")
    return o


cdef float _aug_param(object v, str name, double lo, double hi, bint hi_open) except? -1:
    cdef float f = _finite(v, name)
    if not (lo <= f and (f < hi if hi_open else f <= hi)):
        raise ValueError(f"{name} must be in [{lo:g}, {hi:g}{')' if hi_open else ']'}, "
                         f"got {v}")
    return f


cdef int _fill_augment(dc_augment *a, object rotate, object shear, object scale,
                       object translate, object alpha, object thickness,
                       object faint, object bank) except -1:
    """Validate the parameters into a (bank: checked by the caller, pointer set later)."""
    a.rotate = _aug_param(rotate, "rotate", 0.0, 180.0, False)
    a.shear = _aug_param(shear, "shear", 0.0, 80.0, False)
    a.scale = _aug_param(scale, "scale", 0.0, 1.0, True)
    a.translate = _aug_param(translate, "translate", 0.0, 1e6, False)
    a.alpha = _aug_param(alpha, "alpha", 0.0, 1e6, False)
    a.thickness = _aug_param(thickness, "thickness", 0.0, 1.0, True)
    a.faint = _aug_param(faint, "faint", 0.0, 1.0, True)
    a.bank = NULL
    a.bank_size = 0
    if a.alpha != 0.0 and bank is None:
        raise ValueError("alpha > 0 (elastic distortion) needs bank (see elastic_bank)")
    if bank is not None:
        _arr(bank, "bank", np.float32, 3)
        if bank.shape[0] != 2 or bank.shape[1] != bank.shape[2]:
            raise ValueError(f"bank must have shape (2, S, S), got {bank.shape}")
        _bank_size(bank.shape[1])
        a.bank_size = bank.shape[1]
    return 0


def _check_sides(int64_t height, int64_t width, what):
    """The kernel's bound on an image's sides (DC_AUG_MAX_SIDE), as a ValueError naming
    ``what``: ops.augment's and training's augmentation both check it."""
    if height > DC_AUG_MAX_SIDE or width > DC_AUG_MAX_SIDE:
        raise ValueError(f"{what} must be at most {DC_AUG_MAX_SIDE} pixels a side, got "
                         f"{height} x {width}")


def augment(x, idx=None, *, rotate=0.0, shear=0.0, scale=0.0, translate=0.0, alpha=0.0,
            thickness=0.0, faint=0.0, bank=None, seed=0, stream=0, out=None):
    """Images ``x[idx]``, each deformed at random: one inverse map, one bilinear pass.

    Image r (of the B returned) draws its own rotation (degrees, uniform in
    [-rotate, rotate]), horizontal shear (degrees), scale per axis (in [1 - scale,
    1 + scale]), translation per axis (pixels), elastic window of ``bank`` (scaled by
    ``alpha`` pixels, components randomly negated and swapped) and stroke curve (thicker
    or thinner, up to ``thickness``) from ``hash64(seed, stream, r * 8 + k)``: the same
    arguments give the same images for any thread count. Outside the image is 0. Values
    below ``faint`` times the value range (255 or 1), after the stroke curve, become 0.

    Parameters
    ----------
    x : ndarray, uint8 or float32, shape (N, H, W), H and W in [1, 16384]
        float32 images are taken to hold intensities in [0, 1] (the stroke curve clamps
        to that range); uint8 are resampled in [0, 255] and rounded half up. A NaN pixel
        makes the pixels that read it NaN, or 0 where the stroke curve runs (it maps NaN
        to 0); an infinite one makes its zero-weight neighbours NaN too (0 x inf).
        Training and ``Augment.apply`` refuse non-finite images.
    idx : ndarray, integer, shape (B,), optional
        Images to take, in [0, N); None: all of them in order.
    rotate : float in [0, 180]
    shear : float in [0, 80]
    scale : float in [0, 1)
    translate, alpha : float >= 0
    thickness : float in [0, 1)
    faint : float in [0, 1)
    bank : ndarray, float32, shape (2, S, S), S a power of two (from :func:`elastic_bank`)
        Needed when alpha > 0.
    seed, stream : int in [0, 2**64)
    out : ndarray, same dtype as x, shape (B, H, W), optional

    Returns
    -------
    ndarray, dtype of x, shape (B, H, W)
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype != np.uint8 and x.dtype != np.float32:
        raise TypeError(f"x must have dtype uint8 or float32, got {x.dtype}")
    _arr(x, "x", x.dtype, 3)
    cdef dc_augment a
    _fill_augment(&a, rotate, shear, scale, translate, alpha, thickness, faint, bank)
    cdef uint64_t sd = _u64(seed, "seed"), sm = _u64(stream, "stream")
    cdef int64_t N = x.shape[0]
    a.height = x.shape[1]
    a.width = x.shape[2]
    if a.height == 0 or a.width == 0:
        raise ValueError(f"x must hold images of at least 1 x 1 pixels, got shape {x.shape}")
    _check_sides(a.height, a.width, "x's images")
    ix = _gather_idx(idx, N)
    cdef int64_t B = N if ix is None else ix.shape[0]
    o = _out(out, (B, a.height, a.width), x.dtype, "out")
    _no_overlap(o, "out", (("x", x), ("idx", ix), ("bank", bank)))
    if B == 0:
        return o
    cdef const int64_t *ip = NULL
    cdef const int64_t[::1] iv
    if ix is not None:
        iv = ix
        ip = &iv[0]
    cdef const float[::1] bv
    if bank is not None:
        bv = _flat(bank)
        a.bank = &bv[0]
    cdef const uint8_t[::1] xu
    cdef uint8_t[::1] ou
    cdef const float[::1] xf
    cdef float[::1] of
    cdef int status
    if x.dtype == np.uint8:
        xu = _flat(x)
        ou = _flat(o)
        with nogil:
            status = dc_augment_u8(&ou[0], &xu[0], ip, B, &a, sd, sm)
    else:
        xf = _flat(x)
        of = _flat(o)
        with nogil:
            status = dc_augment_f32(&of[0], &xf[0], ip, B, &a, sd, sm)
    _check(status, "augment")
    return o
