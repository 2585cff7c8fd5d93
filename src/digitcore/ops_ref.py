"""NumPy reference of every op in :mod:`digitcore.ops` (the oracle the kernels are tested against).

Same names and signatures as :mod:`digitcore.ops`. Each function computes in the dtype of
its floating inputs, so float64 inputs give a float64 oracle; gathers compute in float64.
The code is written for clarity, not speed: one line per formula, no fusion, no threads.
Validation is light (the compiled module is the one that guards the boundary), except the
data-dependent checks the kernels also make (labels, indices).

Conventions shared with the kernels (csrc/digitcore.h):

- ``weight`` is (out, in) like PyTorch ``nn.Linear``; ``dense_backward`` takes the gradient
  with respect to the PRE-activation output.
- Activation gradients are computed from the forward OUTPUT ``y = f(x)``: ReLU ``y > 0``
  (so f'(0) = 0), leaky ReLU ``1 if y > 0 else alpha`` (alpha >= 0), sigmoid ``y (1 - y)``,
  tanh ``1 - y**2``.
- Optimizers follow PyTorch (SGD with dampening 0, RMSprop uncentered without momentum,
  Adam/AdamW without amsgrad) and update their arrays in place.
- Dropout uniforms are ``(hash64(seed, stream, i) >> 40) * 2**-24``; element i is kept if its
  uniform is ``>= float32(p)``; kept values are scaled by ``1 / (1 - p)``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "gemm", "gemm_ref",
    "activation_forward", "activation_backward",
    "relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
    "sigmoid_forward", "sigmoid_backward", "tanh_forward", "tanh_backward",
    "dense_forward", "dense_backward",
    "softmax", "softmax_cross_entropy", "sigmoid_binary_cross_entropy",
    "gather_u8", "gather_f32",
    "sgd_update", "rmsprop_update", "adam_update",
    "sum_squares", "scale_inplace", "clip_grad_norm",
    "hash64", "dropout_forward", "dropout_backward",
    "elastic_bank", "augment",
]

_ACTS = {None: "identity", "identity": "identity", "linear": "identity", "relu": "relu",
         "leaky_relu": "leaky_relu", "sigmoid": "sigmoid", "logistic": "sigmoid",
         "tanh": "tanh"}


def _store(res, out):
    if out is None:
        return res
    out[...] = res
    return out


def _float(x):
    x = np.asarray(x)
    return x if x.dtype.kind == "f" else x.astype(np.float64)


# ---- GEMM ------------------------------------------------------------------------------------

def gemm(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out=None):
    """``alpha * op(a) @ op(b) + beta * out`` (``beta == 0`` ignores out's contents,
    ``alpha == 0`` a's and b's, as in BLAS)."""
    a = _float(a)
    b = _float(b)
    a, b = (a.T if trans_a else a), (b.T if trans_b else b)
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"gemm: inner dimensions differ: op(a) {a.shape}, op(b) {b.shape}")
    res = (np.zeros((a.shape[0], b.shape[1]), np.result_type(a, b)) if alpha == 0.0
           else alpha * (a @ b))
    if beta != 0.0:
        res = res + beta * out
    return _store(res, out)


gemm_ref = gemm


# ---- activations ----------------------------------------------------------------------------

def activation_forward(x, kind, alpha=0.01, out=None):
    """``f(x)`` elementwise for kind in None/identity, relu, leaky_relu, sigmoid, tanh."""
    x = _float(x)
    k = _ACTS[kind]
    if k == "identity":
        res = x.copy()
    elif k == "relu":
        # (NaN stays NaN, as in PyTorch: a broken weight must not read as a silent unit)
        res = np.where(x > 0, x, np.where(np.isnan(x), x, 0)).astype(x.dtype)
    elif k == "leaky_relu":
        res = np.where(x > 0, x, x.dtype.type(alpha) * x)
    elif k == "sigmoid":
        # split by sign so exp never overflows
        e = np.exp(-np.abs(x))
        res = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)
    else:
        res = np.tanh(x)
    return _store(res, out)


def activation_backward(dout, out_fwd, kind, alpha=0.01, out=None):
    """``dout * f'(x)`` written in terms of the forward output ``out_fwd = f(x)``."""
    dout = _float(dout)
    y = _float(out_fwd)
    k = _ACTS[kind]
    if k == "identity":
        res = dout.copy()
    elif k == "relu":
        res = np.where(y > 0, dout, 0).astype(dout.dtype)
    elif k == "leaky_relu":
        res = np.where(y > 0, dout, dout.dtype.type(alpha) * dout)
    elif k == "sigmoid":
        res = dout * (y * (1 - y))
    else:
        res = dout * (1 - y * y)
    return _store(res, out)


def relu_forward(x, out=None):
    return activation_forward(x, "relu", 0.0, out)


def relu_backward(dout, out_fwd, out=None):
    return activation_backward(dout, out_fwd, "relu", 0.0, out)


def leaky_relu_forward(x, alpha=0.01, out=None):
    return activation_forward(x, "leaky_relu", alpha, out)


def leaky_relu_backward(dout, out_fwd, alpha=0.01, out=None):
    return activation_backward(dout, out_fwd, "leaky_relu", alpha, out)


def sigmoid_forward(x, out=None):
    return activation_forward(x, "sigmoid", 0.0, out)


def sigmoid_backward(dout, out_fwd, out=None):
    return activation_backward(dout, out_fwd, "sigmoid", 0.0, out)


def tanh_forward(x, out=None):
    return activation_forward(x, "tanh", 0.0, out)


def tanh_backward(dout, out_fwd, out=None):
    return activation_backward(dout, out_fwd, "tanh", 0.0, out)


# ---- dense layer ----------------------------------------------------------------------------

def dense_forward(x, weight, bias=None, activation=None, alpha=0.01, out=None):
    """``act(x @ weight.T + bias)``; x (B, I), weight (O, I), bias (O,)."""
    x = _float(x)
    weight = _float(weight)
    z = x @ weight.T
    if bias is not None:
        z = z + _float(bias)
    return _store(activation_forward(z, activation, alpha), out)


def dense_backward(dout, x, weight, *, compute_dinp=True, compute_dbias=True,
                   accumulate=False, dinp=None, dweight=None, dbias=None):
    """(dout @ weight, dout.T @ x, dout.sum(0)) for dout w.r.t. the pre-activation."""
    dout = _float(dout)
    x = _float(x)
    weight = _float(weight)
    gi = _store(dout @ weight, dinp) if compute_dinp else None
    gw = dout.T @ x
    gb = dout.sum(axis=0) if compute_dbias else None
    if accumulate:
        dweight[...] += gw
        gw = dweight
        if gb is not None:
            dbias[...] += gb
            gb = dbias
    else:
        gw = _store(gw, dweight)
        if gb is not None:
            gb = _store(gb, dbias)
    return gi, gw, gb


# ---- softmax and loss -----------------------------------------------------------------------

def softmax(logits, out=None):
    """Row-wise softmax, max-subtracted."""
    x = _float(logits)
    if x.size == 0:
        return _store(x.copy(), out)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return _store(e / e.sum(axis=1, keepdims=True), out)


def _flush_subnormal(a):
    """Values below float32's smallest normal magnitude become 0, in place (common.h's
    dc_flush_subnormal): optimizer states and loss gradients."""
    a[np.abs(a) < np.finfo(np.float32).tiny] = 0.0


def softmax_cross_entropy(logits, labels, label_smoothing=0.0, *, probs=None, dlogits=None,
                          return_n_correct=False):
    """(mean loss, probs, (probs - target) / B) with target = (1-s) one_hot + s / C."""
    x = _float(logits)
    labels = np.asarray(labels)
    B, C = x.shape
    if B and (labels.min() < 0 or labels.max() >= C):
        raise ValueError(f"labels must be in [0, {C})")
    labels = labels.astype(np.int64)
    s = float(label_smoothing)
    if B == 0:
        p = x.copy()
        res = (0.0, _store(p, probs), _store(p.copy(), dlogits))
        return res + (0,) if return_n_correct else res
    x64 = x.astype(np.float64)
    m = x64.max(axis=1, keepdims=True)
    logp = (x64 - m) - np.log(np.exp(x64 - m).sum(axis=1, keepdims=True))
    target = np.full((B, C), s / C)
    target[np.arange(B), labels] += 1.0 - s
    # a class whose target is 0 adds nothing, even at logp = -inf (a masked logit)
    with np.errstate(invalid="ignore"):
        loss = float(-np.where(target > 0, target * logp, 0.0).sum() / B)
    p = np.exp(logp).astype(x.dtype)
    grad = ((np.exp(logp) - target) / B).astype(x.dtype)
    _flush_subnormal(grad)
    res = (loss, _store(p, probs), _store(grad, dlogits))
    if return_n_correct:
        return res + (int((x.argmax(axis=1) == labels).sum()),)
    return res


def sigmoid_binary_cross_entropy(logits, targets, *, probs=None, dlogits=None,
                                 return_n_correct=False):
    """(mean over rows of the summed -(t log p + (1-t) log(1-p)), p = sigmoid(logits),
    (p - t) / B)."""
    x = _float(logits)
    t = np.asarray(targets, dtype=np.float64)
    if t.size and not ((t >= 0) & (t <= 1)).all():
        raise ValueError("targets must be in [0, 1]")
    B = x.shape[0]
    x64 = x.astype(np.float64)
    log_p = -np.logaddexp(0.0, -x64)  # log sigmoid(x), finite for any x
    log_1mp = -np.logaddexp(0.0, x64)  # log(1 - sigmoid(x))
    p = np.exp(log_p)
    loss = float(-(t * log_p + (1 - t) * log_1mp).sum() / B) if B else 0.0
    grad = ((p - t) / max(B, 1)).astype(x.dtype)
    _flush_subnormal(grad)
    res = (loss, _store(p.astype(x.dtype), probs), _store(grad, dlogits))
    if return_n_correct:
        return res + (int(((x64 > 0) == (t > 0.5)).all(axis=1).sum()),)
    return res


# ---- input conversion -----------------------------------------------------------------------

def gather_u8(x, idx=None, scale=1.0 / 255.0, shift=0.0, out=None):
    """``x[idx].reshape(B, F) * scale + shift`` in float64."""
    x = np.asarray(x)
    rows = x if idx is None else x[np.asarray(idx, dtype=np.int64)]
    if idx is not None and len(idx) and (np.min(idx) < 0 or np.max(idx) >= x.shape[0]):
        raise ValueError(f"idx has values outside [0, {x.shape[0]})")
    F = int(np.prod(x.shape[1:]))
    res = rows.reshape(rows.shape[0], F).astype(np.float64) * float(scale) + float(shift)
    return _store(res, out)


def gather_f32(x, idx=None, scale=1.0, shift=0.0, out=None):
    return gather_u8(x, idx, scale, shift, out)


# ---- optimizers (in place) ------------------------------------------------------------------

def _l1_term(param, l1):
    """The L1 penalty's subgradient ``l1 * sign(param)``, 0 where ``param == 0``."""
    return l1 * np.sign(param)


def sgd_update(param, grad, velocity=None, lr=0.01, momentum=0.0, nesterov=False, l2=0.0,
               l1=0.0):
    """PyTorch SGD step (dampening 0) in place; velocity starts at zeros. ``l1`` adds
    ``l1 * sign(param)`` to the gradient, like ``l2`` adds ``l2 * param``."""
    g = grad + l2 * param
    if l1:
        g = g + _l1_term(param, l1)
    if momentum != 0.0:
        velocity *= momentum
        velocity += g
        _flush_subnormal(velocity)
        g = g + momentum * velocity if nesterov else velocity
    param -= lr * g


def rmsprop_update(param, grad, sq_avg, lr=0.01, rho=0.99, eps=1e-8, l2=0.0, l1=0.0):
    """PyTorch RMSprop step (uncentered, no momentum) in place."""
    g = grad + l2 * param
    if l1:
        g = g + _l1_term(param, l1)
    sq_avg *= rho
    sq_avg += (1.0 - rho) * g * g
    _flush_subnormal(sq_avg)
    param -= lr * g / (np.sqrt(sq_avg) + eps)


def adam_update(param, grad, m, v, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, l2=0.0,
                weight_decay=0.0, l1=0.0):
    """PyTorch Adam (``l2``, and ``l1`` the same way) / AdamW (``weight_decay``) step in
    place; step counts from 1."""
    g = grad + l2 * param
    if l1:
        g = g + _l1_term(param, l1)
    param *= 1.0 - lr * weight_decay
    m *= beta1
    m += (1.0 - beta1) * g
    v *= beta2
    v += (1.0 - beta2) * g * g
    _flush_subnormal(m)
    _flush_subnormal(v)
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    param -= (lr / bc1) * m / (np.sqrt(v) / np.sqrt(bc2) + eps)


def sum_squares(x):
    return float(np.sum(np.square(np.asarray(x, dtype=np.float64))))


def scale_inplace(x, s):
    x *= s


def clip_grad_norm(grads, max_norm, eps=1e-12):
    """Scale grads in place so the global L2 norm is <= max_norm; returns the norm before."""
    if isinstance(grads, np.ndarray):
        grads = [grads]
    norm = float(np.sqrt(sum(sum_squares(g) for g in grads)))
    if np.isfinite(norm) and norm > max_norm:
        coef = max_norm / (norm + eps)
        for g in grads:
            g *= coef
    return norm


# ---- randomness, dropout --------------------------------------------------------------------

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SEED_SALT = np.uint64(0x6A09E667F3BCC909)


def _mix64(z):
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _u64(v):
    return np.asarray(v, dtype=np.uint64).reshape(-1)


def hash64(seed, stream, i):
    """splitmix64 value i of the key mix64(mix64(seed ^ salt) + stream * golden).

    ``i`` may be an integer (returns int) or an integer array (returns uint64 array).
    """
    with np.errstate(over="ignore"):
        key = _mix64(_mix64(_u64(seed) ^ _SEED_SALT) + _u64(stream) * _GOLDEN)
        ii = np.asarray(i, dtype=np.uint64)
        h = _mix64(key + (ii + np.uint64(1)) * _GOLDEN)
    return int(h[0]) if np.ndim(i) == 0 else h


def _uniform(n, seed, stream):
    return (hash64(seed, stream, np.arange(n, dtype=np.uint64)) >> np.uint64(40)).astype(
        np.float64) * 2.0 ** -24


def dropout_forward(x, p, seed, stream=0, out=None, mask=None):
    """(x * keep / (1 - p), keep as uint8); float32 x is computed exactly as the kernel does."""
    x = _float(x)
    keep = (_uniform(x.size, seed, stream) >= float(np.float32(p))).reshape(x.shape)
    if x.dtype == np.float32:
        scale = np.float32(1.0) / (np.float32(1.0) - np.float32(p))
    else:
        scale = x.dtype.type(1.0 / (1.0 - p))
    res = np.where(keep, x * scale, x.dtype.type(0))
    return _store(res, out), _store(keep.astype(np.uint8), mask)


def dropout_backward(dout, mask, p, out=None):
    dout = _float(dout)
    if dout.dtype == np.float32:
        scale = np.float32(1.0) / (np.float32(1.0) - np.float32(p))
    else:
        scale = dout.dtype.type(1.0 / (1.0 - p))
    return _store(np.where(np.asarray(mask) != 0, dout * scale, dout.dtype.type(0)), out)


# ---- augmentation ----------------------------------------------------------------------------

_AUG_DRAWS = 8


def _sym(h):
    """Uniform in [-1, 1) from 24 bits of each hash, exactly as the kernel's float32."""
    return (h >> np.uint64(40)).astype(np.float64) * 2.0 ** -23 - 1.0


def elastic_bank(size=128, sigma=4.0, seed=0, stream=0, out=None):
    """Two uniform [-1, 1) fields smoothed by a normalized periodic Gaussian (float64 sums)."""
    n = size * size
    u = _sym(hash64(seed, stream, np.arange(2 * n, dtype=np.uint64))).reshape(2, size, size)
    s2 = float(np.float32(sigma)) ** 2
    radius = int(4.0 * float(np.float32(sigma)) + 0.5)
    ks = np.arange(-radius, radius + 1)
    kern = np.exp(-0.5 * ks.astype(np.float64) ** 2 / s2)
    kern = kern / kern.sum()
    res = np.empty((2, size, size), np.float32)
    for c in range(2):
        t = np.zeros((size, size))
        for k, w in zip(ks, kern):
            t += w * np.roll(u[c], -k, axis=1)
        f = np.zeros((size, size))
        for k, w in zip(ks, kern):
            f += w * np.roll(t, -k, axis=0)
        res[c] = f
    return _store(res, out)


def _augment_draws(b, rotate, shear, scale, translate, alpha, thickness, bank, seed, stream,
                   height, width):
    """Per image: the inverse map M (b,2,2), offsets (b,2), elastic terms and stroke curve,
    as the kernel draws them (parameters as float32, trigonometry in float64, then
    rounded to float32 once)."""
    f32 = lambda v: float(np.float32(v))  # noqa: E731
    r = np.arange(b, dtype=np.uint64)
    h = [hash64(seed, stream, r * np.uint64(_AUG_DRAWS) + np.uint64(k))
         for k in range(_AUG_DRAWS)]
    deg = 0.017453292519943295
    th = f32(rotate) * deg * _sym(h[0])
    sh = np.tan(f32(shear) * deg * _sym(h[1]))
    sx = 1.0 + f32(scale) * _sym(h[2])
    sy = 1.0 + f32(scale) * _sym(h[3])
    tx = f32(translate) * _sym(h[4])
    ty = f32(translate) * _sym(h[5])
    c, s = np.cos(th), np.sin(th)
    n00, n01, n10, n11 = c + sh * s, s - sh * c, -s, c
    m00, m01, m10, m11 = n00 / sx, n01 / sx, n10 / sy, n11 / sy
    cx, cy = 0.5 * (width - 1), 0.5 * (height - 1)
    d = {"m00": m00, "m01": m01, "m10": m10, "m11": m11,
         "bx": cx - m00 * (cx + tx) - m01 * (cy + ty),
         "by": cy - m10 * (cx + tx) - m11 * (cy + ty)}
    d = {k: v.astype(np.float32) for k, v in d.items()}
    d["elastic"] = None
    if f32(alpha) != 0.0 and bank is not None:
        size = bank.shape[1]
        e = h[6]
        ox = (e & np.uint64(0xFFFF)).astype(np.int64) & (size - 1)
        oy = ((e >> np.uint64(16)) & np.uint64(0xFFFF)).astype(np.int64) & (size - 1)
        a = np.float32(alpha)
        ax = np.where((e >> np.uint64(32)) & np.uint64(1), -a, a).astype(np.float32)
        ay = np.where((e >> np.uint64(33)) & np.uint64(1), -a, a).astype(np.float32)
        swap = ((e >> np.uint64(34)) & np.uint64(1)).astype(bool)
        d["elastic"] = (ox, oy, ax, ay, swap)
    gain = np.ones(b, np.float32)
    bias = np.zeros(b, np.float32)
    if f32(thickness) != 0.0:
        u = np.float32(thickness) * (np.float32(2.0) * (h[7] >> np.uint64(40)).astype(
            np.float32) * np.float32(2.0 ** -24) - np.float32(1.0))
        one = np.float32(1.0)
        gain = np.where(u >= 0, one / (one - u), one / (one + u)).astype(np.float32)
        bias = np.where(u >= 0, np.float32(0.0), u / (one + u)).astype(np.float32)
    d["gain"], d["bias"] = gain, bias
    return d


def augment(x, idx=None, *, rotate=0.0, shear=0.0, scale=0.0, translate=0.0, alpha=0.0,
            thickness=0.0, faint=0.0, bank=None, seed=0, stream=0, out=None):
    """Reference of ``ops.augment``: per image, source = M . p + b (+ elastic window of
    ``bank``), bilinear from the image padded with zeros, then the stroke curve, then values
    below ``faint`` times the range to 0; float32 arithmetic as the kernel does it, all
    images at once."""
    x = np.asarray(x)
    if idx is not None:
        x = x[np.asarray(idx, dtype=np.int64)]
    b, hh, ww = x.shape
    d = _augment_draws(b, rotate, shear, scale, translate, alpha, thickness, bank, seed,
                       stream, hh, ww)
    col = lambda v: v[:, None, None]  # noqa: E731
    ys, xs = np.meshgrid(np.arange(hh, dtype=np.float32), np.arange(ww, dtype=np.float32),
                         indexing="ij")
    sx = col(d["m00"]) * xs + (col(d["m01"]) * ys + col(d["bx"]))
    sy = col(d["m10"]) * xs + (col(d["m11"]) * ys + col(d["by"]))
    if d["elastic"] is not None:
        ox, oy, ax, ay, swap = d["elastic"]
        size = bank.shape[1]
        rows = (np.arange(hh)[None, :] + oy[:, None]) & (size - 1)      # (b, H)
        cols = (np.arange(ww)[None, :] + ox[:, None]) & (size - 1)      # (b, W)
        fx = bank[0][rows[:, :, None], cols[:, None, :]]
        fy = bank[1][rows[:, :, None], cols[:, None, :]]
        fx, fy = np.where(col(swap), fy, fx), np.where(col(swap), fx, fy)
        sx = sx + col(ax) * fx
        sy = sy + col(ay) * fy
    sx = np.nan_to_num(sx + np.float32(1.0), nan=0.0)
    sy = np.nan_to_num(sy + np.float32(1.0), nan=0.0)
    sx = np.clip(sx, np.float32(0.0), np.float32(ww + 1))
    sy = np.clip(sy, np.float32(0.0), np.float32(hh + 1))
    ix, iy = sx.astype(np.int64), sy.astype(np.int64)
    wx, wy = sx - ix.astype(np.float32), sy - iy.astype(np.float32)
    pad = np.zeros((b, hh + 3, ww + 3), np.float32)
    pad[:, 1:hh + 1, 1:ww + 1] = x
    bi = np.arange(b)[:, None, None]
    p00, p01 = pad[bi, iy, ix], pad[bi, iy, ix + 1]
    p10, p11 = pad[bi, iy + 1, ix], pad[bi, iy + 1, ix + 1]
    rng = np.float32(255.0 if x.dtype == np.uint8 else 1.0)
    stroke = (d["gain"] != 1) | (d["bias"] != 0)
    with np.errstate(invalid="ignore"):  # (an infinite pixel: NaN, silently, as in C)
        top = p00 + wx * (p01 - p00)
        bot = p10 + wx * (p11 - p10)
        v = top + wy * (bot - top)
        # v > 0 ? min(v, range) : 0, as the kernel clamps: NaN to 0 (np.clip would keep it)
        vs = v * col(d["gain"]) + col(d["bias"] * rng)
        vs = np.where(vs > 0, np.minimum(vs, rng), np.float32(0.0))
    v = np.where(col(stroke), vs, v)
    cut = np.float32(faint) * rng
    if cut > 0:
        v = np.where(v < cut, np.float32(0.0), v)
    if x.dtype == np.uint8:
        v = (np.clip(v, np.float32(0.0), np.float32(255.0)) + np.float32(0.5)).astype(np.uint8)
    else:
        v = v.astype(np.float32)
    return _store(v, out)
