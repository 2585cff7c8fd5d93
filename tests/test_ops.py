"""Every op in digitcore.ops against its NumPy reference (digitcore.ops_ref, run in float64).

Shapes are drawn by hypothesis from awkward sizes (0, 1, primes, just past tile sizes);
values come from a NumPy generator whose seed hypothesis also draws, so a failure prints
everything needed to reproduce it. Each comparison runs on both GEMM paths (generic and,
when the CPU has it, AVX2) and with 1 and 2 OpenMP threads.

Gradients: every backward of the reference is first checked against central differences in
float64 (test_fd_*), then every C backward is checked against the reference backward.
"""

from __future__ import annotations


import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digitcore import _ops, ops
from digitcore import ops_ref as ref
from kernel_config import PATHS, config

EPS = float(np.finfo(np.float32).eps)  # 2**-23, one float32 ulp at 1.0
TINY = 1e-30  # absorbs float32 denormal/underflow differences near 0 (exp(-100) etc.)

# ---- tolerance table ------------------------------------------------------------------------
# Each entry: (rtol, atol-factor, reason). A comparison passes when
#     |actual - expected| <= rtol * |expected| + atol
# where atol is the factor times an op-specific error SCALE (documented at the use site, e.g.
# |x| @ |w|.T for a GEMM), plus TINY. The reference is computed in float64 from the very
# float32 inputs the kernel saw, so every bound below is the kernel's own float32 rounding.
TOL = {
    # a select or a single product/sum in float32: at most one rounding (0.5 ulp)
    "elementwise": (EPS, 0.0, "one float32 rounding"),
    # expf/tanhf in glibc are < 1 ulp; plus 1 + e and a division: <= 3 roundings
    "transcendental": (4 * EPS, 0.0, "libm expf/tanhf (<1 ulp) + 2 more roundings"),
    # backward of sigmoid/tanh: y*(1-y), 1-y*y then * dout; 1 - y*y cancels near |y| = 1, so
    # the error is relative to dout * y*y (the scale), not to the result
    "act_backward": (4 * EPS, 4 * EPS, "3 roundings; 1-y*y cancels: scale |dout|*max(y*y,1)"),
    # a float32 GEMM with any blocking/FMA order obeys |err| <= gamma_k * (|A| @ |B|) with
    # gamma_k ~ k * u (u = EPS/2); the factor (k + 2) * EPS leaves 2x slack and covers the
    # bias add and the activation epilogue (both 1-Lipschitz or a single rounding)
    "gemm": (4 * EPS, None, "(k+2)*eps * |A|@|B| worst-case summation bound"),
    # dbias is summed in double then rounded once
    "dbias": (EPS, 1e-12, "double accumulation + one rounding; scale = sum |dout|"),
    # softmax: exp((double)x - max) in double, one final rounding to float32
    "softmax": (EPS, 0.0, "double exp, one rounding to float32"),
    # loss: log-sum-exp entirely in double (C terms, a log): ~C * 1e-16
    "xent_loss": (1e-12, 1e-12, "log-sum-exp in double"),
    # dlogits = (p - t) / B in double, one rounding; p - t cancels near 0: scale = 1 / B
    "dlogits": (EPS, 1e-14, "double (p - t) / B, one rounding; scale = 1 / B"),
    # gather: float(x) * scale + shift: two roundings, the first relative to |x * scale|
    "gather": (2 * EPS, 2 * EPS, "two roundings; scale = |x * scale|"),
    # optimizers: a handful of float32 roundings per element per step; the scale is the sum
    # of the magnitudes of the terms that enter (old value, new value, lr * update terms)
    "optim": (0.0, 16 * EPS, "<= ~10 roundings per element; scale = sum of |terms|"),
    # Adam divides by sqrt(v)+eps: relative error of the ratio m / sqrt(v) is a few ulps
    "adam": (0.0, 32 * EPS, "ratio m/(sqrt(v)+eps) adds a few ulps; scale = |terms|"),
    # double accumulation of exact float32 squares: n * 2**-53 relative at worst
    "sum_squares": (None, 0.0, "double sum of n exact squares: n * 2**-53"),
    # finite differences (float64, h = 1e-6): truncation O(h^2) + rounding O(1e-16 / h)
    "fd": (1e-6, 1e-8, "central differences in float64 with h = 1e-6"),
}


def assert_close(actual, expected, kind, scale=None, what=""):
    rtol, afac, _ = TOL[kind]
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    if actual.size == 0:
        return
    atol = TINY
    if scale is not None:
        atol = atol + afac * np.asarray(scale, dtype=np.float64)
    err = np.abs(actual - expected)
    bound = rtol * np.abs(expected) + atol
    bad = ~(err <= bound)
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err - bound, -np.inf)), err.shape)
        raise AssertionError(
            f"{what}: {bad.sum()} of {err.size} elements off ({kind}: {TOL[kind][2]}); "
            f"worst at {i}: actual {actual[i]!r}, expected {expected[i]!r}, "
            f"err {err[i]:.3g} > bound {bound[i]:.3g}")


# ---- configurations: kernel path x thread count ----------------------------------------------

CONFIGS = [(p, t) for p in PATHS for t in (1, 2)]

with_configs = pytest.mark.parametrize("path,threads", CONFIGS)

DIMS = st.one_of(st.sampled_from([0, 1, 2, 3, 5, 7, 13, 17, 31, 37]), st.integers(0, 70))
SEEDS = st.integers(0, 2**32 - 1)
SETTINGS = settings(max_examples=15, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def randn(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def f64(a):
    return np.asarray(a, dtype=np.float64)


# ---- a tiny worked example with hand-computed numbers ----------------------------------------

def test_worked_example():
    x = np.array([[1.0, -2.0]], dtype=np.float32)
    w = np.array([[1.0, 1.0], [0.5, -1.0]], dtype=np.float32)
    b = np.array([0.5, 0.0], dtype=np.float32)
    # z = [1 - 2 + 0.5, 0.5 + 2] = [-0.5, 2.5]; relu -> [0, 2.5]
    np.testing.assert_array_equal(ops.dense_forward(x, w, b, "relu"), [[0.0, 2.5]])
    # logits [0, ln 3] -> probs [1/4, 3/4]; label 1 -> loss -ln(3/4); dlogits [1/4, -1/4]
    logits = np.array([[0.0, np.log(3.0)]], dtype=np.float32)
    loss, p, d = ops.softmax_cross_entropy(logits, np.array([1]))
    assert loss == pytest.approx(-np.log(0.75), rel=1e-6)
    np.testing.assert_allclose(p, [[0.25, 0.75]], rtol=1e-6)
    np.testing.assert_allclose(d, [[0.25, -0.25]], rtol=1e-6)
    # label smoothing 0.5 over 2 classes: target [0.25, 0.75] == probs -> zero gradient
    loss, p, d = ops.softmax_cross_entropy(logits, np.array([1]), 0.5)
    np.testing.assert_allclose(d, [[0.0, 0.0]], atol=1e-7)
    assert loss == pytest.approx(-(0.25 * np.log(0.25) + 0.75 * np.log(0.75)), rel=1e-6)
    # Adam's first step moves every coordinate by ~lr against the gradient sign
    p = np.array([1.0, 1.0], dtype=np.float32)
    g = np.array([3.0, -0.5], dtype=np.float32)
    m, v = np.zeros(2, np.float32), np.zeros(2, np.float32)
    ops.adam_update(p, g, m, v, 1, lr=0.1)
    np.testing.assert_allclose(p, [0.9, 1.1], rtol=1e-6)
    # SGD Nesterov, momentum 0.5, lr 1, grad 1 twice: v1 = 1, step 1 + .5 = 1.5;
    # v2 = 1.5, step 1 + .75 = 1.75 -> p = -3.25
    p = np.zeros(1, np.float32)
    vel = np.zeros(1, np.float32)
    for _ in range(2):
        ops.sgd_update(p, np.ones(1, np.float32), vel, lr=1.0, momentum=0.5, nesterov=True)
    assert p[0] == -3.25 and vel[0] == 1.5


# ---- activations -----------------------------------------------------------------------------

ACTS = [("identity", "elementwise"), ("relu", "elementwise"), ("leaky_relu", "elementwise"),
        ("sigmoid", "transcendental"), ("tanh", "transcendental")]


@with_configs
@pytest.mark.parametrize("kind,tol", ACTS)
@SETTINGS
@given(n=DIMS, m=DIMS, seed=SEEDS, scale=st.sampled_from([1.0, 30.0]),
       alpha=st.sampled_from([0.0, 0.01, 0.2]))
def test_activation(path, threads, kind, tol, n, m, seed, scale, alpha):
    rng = np.random.default_rng(seed)
    x = randn(rng, n, m, scale=scale)
    dout = randn(rng, n, m)
    with config(path, threads):
        y = ops.activation_forward(x, kind, alpha)
        d = ops.activation_backward(dout, y, kind, alpha)
        y2 = ops.activation_forward(x.copy(), kind, alpha)
        inplace = x.copy()
        assert ops.activation_forward(inplace, kind, alpha, out=inplace) is inplace
    assert y.dtype == np.float32 and y.shape == x.shape
    assert_close(y, ref.activation_forward(f64(x), kind, alpha), tol, what="forward")
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(inplace, y)
    scale_b = np.abs(f64(dout)) * np.maximum(f64(y) ** 2, 1.0)
    assert_close(d, ref.activation_backward(f64(dout), f64(y), kind, alpha), "act_backward",
                 scale=scale_b, what="backward")


def test_named_activation_wrappers():
    rng = np.random.default_rng(0)
    x = randn(rng, 4, 6)
    dout = randn(rng, 4, 6)
    for name in ("relu", "sigmoid", "tanh"):
        y = getattr(ops, f"{name}_forward")(x)
        np.testing.assert_array_equal(y, ops.activation_forward(x, name))
        np.testing.assert_array_equal(getattr(ops, f"{name}_backward")(dout, y),
                                      ops.activation_backward(dout, y, name))
    y = ops.leaky_relu_forward(x, 0.1)
    np.testing.assert_array_equal(y, ops.activation_forward(x, "leaky_relu", 0.1))
    np.testing.assert_array_equal(ops.leaky_relu_backward(dout, y, 0.1),
                                  ops.activation_backward(dout, y, "leaky_relu", 0.1))


def test_activation_extremes():
    x = np.array([-1e30, -100.0, -0.0, 0.0, 1e-40, 100.0, 1e30, np.inf, -np.inf], np.float32)
    np.testing.assert_array_equal(ops.sigmoid_forward(x)[[0, 6, 7, 8]], [0, 1, 1, 0])
    np.testing.assert_array_equal(ops.tanh_forward(x)[[0, 6, 7, 8]], [-1, 1, 1, -1])
    assert np.all(np.isfinite(ops.sigmoid_forward(x)))
    # f'(0) = 0 for ReLU, as PyTorch
    assert ops.relu_backward(np.ones(1, np.float32), np.zeros(1, np.float32))[0] == 0.0


# ---- dense layer -----------------------------------------------------------------------------

def gemm_scale(a, b, k):
    """(k + 2) * |a| @ |b|: the worst-case error scale of a float32 product over k terms."""
    return (k + 2) * (np.abs(f64(a)) @ np.abs(f64(b)))


@with_configs
@SETTINGS
@given(B=DIMS, I=DIMS, O=DIMS, seed=SEEDS, with_bias=st.booleans(),
       act=st.sampled_from([None, "relu", "leaky_relu", "sigmoid", "tanh"]))
def test_dense_forward(path, threads, B, I, O, seed, with_bias, act):
    rng = np.random.default_rng(seed)
    x, w = randn(rng, B, I), randn(rng, O, I)
    b = randn(rng, O) if with_bias else None
    with config(path, threads):
        y = ops.dense_forward(x, w, b, act, 0.05)
    expected = ref.dense_forward(f64(x), f64(w), None if b is None else f64(b), act, 0.05)
    scale = gemm_scale(x, w.T, I) * EPS + (0 if b is None else np.abs(f64(b)) * EPS)
    _assert_gemm(y, expected, scale)


def _assert_gemm(actual, expected, abs_bound):
    """GEMM results: the summation bound abs_bound (already in absolute units) plus the
    epilogue's relative rounding (TOL['gemm'][0])."""
    actual = f64(actual)
    if actual.size == 0:
        assert actual.shape == expected.shape
        return
    err = np.abs(actual - expected)
    bound = TOL["gemm"][0] * np.abs(expected) + abs_bound + TINY
    bad = ~(err <= bound)
    assert not bad.any(), (f"{bad.sum()} elements off; worst err "
                           f"{np.max(err - bound):.3g} beyond bound")


@with_configs
@SETTINGS
@given(B=DIMS, I=DIMS, O=DIMS, seed=SEEDS, accumulate=st.booleans(),
       compute_dinp=st.booleans(), compute_dbias=st.booleans())
def test_dense_backward(path, threads, B, I, O, seed, accumulate, compute_dinp,
                        compute_dbias):
    rng = np.random.default_rng(seed)
    x, w, dout = randn(rng, B, I), randn(rng, O, I), randn(rng, B, O)
    dw0, db0 = randn(rng, O, I), randn(rng, O)
    kw = dict(compute_dinp=compute_dinp, compute_dbias=compute_dbias, accumulate=accumulate)
    dw = dw0.copy() if accumulate else None
    db = db0.copy() if accumulate and compute_dbias else None
    with config(path, threads):
        gi, gw, gb = ops.dense_backward(dout, x, w, dweight=dw, dbias=db, **kw)
    ri, rw, rb = ref.dense_backward(f64(dout), f64(x), f64(w), **kw,
                                    dweight=f64(dw0).copy() if accumulate else None,
                                    dbias=f64(db0).copy() if accumulate else None)
    if accumulate:
        assert gw is dw and (gb is db)
    if compute_dinp:
        _assert_gemm(gi, ri, EPS * gemm_scale(dout, w, O))
    else:
        assert gi is None
    acc_scale = np.abs(f64(dw0)) if accumulate else 0.0
    _assert_gemm(gw, rw, EPS * (gemm_scale(dout.T, x, B + 1) + acc_scale))
    if compute_dbias:
        s = np.abs(f64(dout)).sum(axis=0) + (np.abs(f64(db0)) if accumulate else 0)
        assert_close(gb, rb, "dbias", scale=s, what="dbias")
    else:
        assert gb is None


@with_configs
def test_dense_chain_matches_reference(path, threads):
    """forward with activation -> activation_backward -> dense_backward, C vs reference."""
    rng = np.random.default_rng(7)
    x, w, b = randn(rng, 37, 29), randn(rng, 13, 29), randn(rng, 13)
    g = randn(rng, 37, 13)
    with config(path, threads):
        y = ops.dense_forward(x, w, b, "tanh")
        dz = ops.tanh_backward(g, y)
        gi, gw, gb = ops.dense_backward(dz, x, w)
    ry = ref.dense_forward(f64(x), f64(w), f64(b), "tanh")
    rdz = ref.tanh_backward(f64(g), ry)
    ri, rw, rb = ref.dense_backward(rdz, f64(x), f64(w))
    np.testing.assert_allclose(gi, ri, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gw, rw, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gb, rb, rtol=1e-4, atol=1e-5)


# ---- softmax and cross-entropy ---------------------------------------------------------------

def test_softmax_cross_entropy_counts_a_nan_row_as_numpy_argmax_does():
    """n_correct skipped NaN logits when it took the argmax, where predict and
    numpy.argmax take the first NaN as the largest: a row [1, nan, 1] with label 0 was
    counted correct."""
    logits = np.array([[1, np.nan, 1], [1, np.nan, 1], [np.nan, 5, 1], [2, 3, np.nan]],
                      np.float32)
    for labels, want in (([1, 1, 0, 2], 4), ([0, 2, 1, 1], 0)):
        labels = np.array(labels, np.int64)
        assert (np.argmax(logits, axis=1) == labels).sum() == want
        *_, nc = ops.softmax_cross_entropy(logits, labels, return_n_correct=True)
        assert nc == want


@with_configs
@SETTINGS
@given(B=DIMS, C=st.one_of(st.sampled_from([1, 2, 3, 10, 17]), st.integers(1, 70)),
       seed=SEEDS, scale=st.sampled_from([1.0, 10.0, 1e4]),
       smoothing=st.sampled_from([0.0, 0.1, 1.0]))
def test_softmax_cross_entropy(path, threads, B, C, seed, scale, smoothing):
    rng = np.random.default_rng(seed)
    logits = randn(rng, B, C, scale=scale)
    labels = rng.integers(0, C, size=B)
    with config(path, threads):
        loss, p, d, nc = ops.softmax_cross_entropy(logits, labels, smoothing,
                                                   return_n_correct=True)
        p2 = ops.softmax(logits)
    # the kernel takes label_smoothing as float32: give the reference the same value
    rloss, rp, rd, rnc = ref.softmax_cross_entropy(f64(logits), labels,
                                                   float(np.float32(smoothing)),
                                                   return_n_correct=True)
    assert np.isfinite(loss)
    assert_close(loss, rloss, "xent_loss", scale=1.0, what="loss")
    assert_close(p, rp, "softmax", what="probs")
    np.testing.assert_array_equal(p, p2)
    assert_close(d, rd, "dlogits", scale=1.0 / max(B, 1), what="dlogits")
    assert nc == rnc
    if B:
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=C * EPS)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_softmax_cross_entropy_with_masked_logits(path, smoothing):
    # -inf is how a class is masked out; its term's target is 0 without smoothing, and
    # 0 * log(0) gave a NaN loss (kernel and reference alike) where the probabilities and
    # gradient were right
    logits = np.array([[-np.inf, 0.0, 1.0, 2.0], [3.0, -np.inf, -np.inf, 0.0]], np.float32)
    labels = np.array([2, 0])
    lse = [np.log(1 + np.e + np.e ** 2), 3.0 + np.log(1 + np.exp(-3.0))]
    logp_y = np.array([1.0 - lse[0], 3.0 - lse[1]])
    with config(path, 1):
        loss, p, d = ops.softmax_cross_entropy(logits, labels, smoothing)
    rloss = ref.softmax_cross_entropy(logits, labels, smoothing)[0]
    if smoothing == 0.0:
        assert loss == pytest.approx(-logp_y.mean(), rel=1e-6)
        assert rloss == pytest.approx(-logp_y.mean(), rel=1e-12)
    else:  # smoothing puts mass on a class of probability 0: the loss is infinite
        assert loss == np.inf and rloss == np.inf
    assert p[0, 0] == 0 and p[1, 1] == 0 and p[1, 2] == 0
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    assert np.isfinite(d).all()


def test_sigmoid_bce_worked_example():
    # logits [0, ln 3] -> sigmoid [1/2, 3/4]; targets [1, 0]:
    # loss = -ln(1/2) - ln(1 - 3/4) = ln 2 + ln 4 = ln 8; dlogits = [1/2 - 1, 3/4 - 0]
    logits = np.array([[0.0, np.log(3.0)]], dtype=np.float32)
    targets = np.array([[1.0, 0.0]], dtype=np.float32)
    loss, p, d, nc = ops.sigmoid_binary_cross_entropy(logits, targets, return_n_correct=True)
    assert loss == pytest.approx(np.log(8.0), rel=1e-6)
    np.testing.assert_allclose(p, [[0.5, 0.75]], rtol=1e-6)
    np.testing.assert_allclose(d, [[-0.5, 0.75]], rtol=1e-6)
    assert nc == 0  # logit 0 is not > 0 (column 0 misses), and column 1 is wrong
    # huge logits stay finite (softplus form), and the gradient saturates at p - t
    big = np.array([[1e4, -1e4]], dtype=np.float32)
    loss, p, d = ops.sigmoid_binary_cross_entropy(big, np.array([[0.0, 1.0]], np.float32))
    assert loss == pytest.approx(2e4) and np.isfinite(p).all()
    np.testing.assert_array_equal(d, [[1.0, -1.0]])
    with pytest.raises(ValueError, match="targets"):
        ops.sigmoid_binary_cross_entropy(logits, np.array([[2.0, 0.0]], np.float32))
    with pytest.raises(ValueError, match="targets has shape"):
        ops.sigmoid_binary_cross_entropy(logits, np.zeros((2, 2), np.float32))


@with_configs
@SETTINGS
@given(B=DIMS, C=st.one_of(st.sampled_from([1, 2, 3, 10]), st.integers(1, 70)), seed=SEEDS,
       scale=st.sampled_from([1.0, 10.0, 1e4]))
def test_sigmoid_binary_cross_entropy(path, threads, B, C, seed, scale):
    rng = np.random.default_rng(seed)
    logits = randn(rng, B, C, scale=scale)
    targets = (rng.random((B, C)) < 0.4).astype(np.float32)
    with config(path, threads):
        loss, p, d, nc = ops.sigmoid_binary_cross_entropy(logits, targets,
                                                          return_n_correct=True)
    rloss, rp, rd, rnc = ref.sigmoid_binary_cross_entropy(f64(logits), targets,
                                                          return_n_correct=True)
    assert np.isfinite(loss)
    assert_close(loss, rloss, "xent_loss", scale=1.0, what="loss")
    assert_close(p, rp, "softmax", what="probs")
    assert_close(d, rd, "dlogits", scale=1.0 / max(B, 1), what="dlogits")
    assert nc == rnc


@pytest.mark.parametrize("C", [10, 300])  # 300: rows too wide for the on-stack exp buffer
def test_softmax_in_place_and_aliases(C):
    rng = np.random.default_rng(3)
    logits = randn(rng, 9, C, scale=5)
    labels = rng.integers(0, C, size=9)
    loss, p, d = ops.softmax_cross_entropy(logits, labels)
    buf = logits.copy()
    loss2, p2, d2 = ops.softmax_cross_entropy(buf, labels, dlogits=buf)
    assert d2 is buf and loss2 == loss
    np.testing.assert_array_equal(p2, p)
    np.testing.assert_array_equal(d2, d)
    buf = logits.copy()
    _, p3, _ = ops.softmax_cross_entropy(buf, labels, probs=buf)
    assert p3 is buf
    np.testing.assert_array_equal(p3, p)
    buf = logits.copy()
    assert ops.softmax(buf, out=buf) is buf
    np.testing.assert_array_equal(buf, p)
    rloss, rp, rd = ref.softmax_cross_entropy(f64(logits), labels)
    assert_close(loss, rloss, "xent_loss", scale=1.0, what="loss")
    assert_close(p, rp, "softmax", what="probs")
    assert_close(d, rd, "dlogits", scale=1.0 / 9, what="dlogits")


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 7, 8, 200_003])
def test_softmax_exp_is_exp_to_one_unit_with_the_same_bits_on_every_path(n):
    """The softmaxes' exponential (exp_internal.h, loss_avx2.c 4 lanes at a time): the
    same bits on every path, within one unit in the last place of NumPy's exp (usually
    equal), 1 at 0, 0 below -708 (and for -inf), NaN for NaN; positive input is refused."""
    rng = np.random.default_rng(n)
    d = -rng.uniform(0.0, 708.0, n) * rng.choice([1.0, 1e-3, 1e-9], n)
    special = np.array([0.0, -0.0, -708.0, -707.9999, -708.0001, -745.2, -1e300, -np.inf,
                        np.nan, -np.log(2) / 2, -np.log(2) * 1.5, -5e-324])[:n]
    d[:len(special)] = special
    ys = {}
    for path in PATHS:
        with config(path, 1):
            ys[path] = _ops.softmax_exp(d)
    y = ys[PATHS[0]]
    for path, got in ys.items():
        np.testing.assert_array_equal(got.view(np.uint64), y.view(np.uint64), err_msg=path)
    ok = d >= -708.0
    np.testing.assert_array_max_ulp(y[ok], np.exp(d[ok]), maxulp=1)
    assert (y[~ok & ~np.isnan(d)] == 0).all() and np.isnan(y[np.isnan(d)]).all()
    if n >= 4:
        assert y[0] == 1.0 and y[1] == 1.0
    if n > 1000:  # mostly correctly rounded, as libm's
        assert np.mean(y[ok] == np.exp(d[ok])) > 0.8
    with pytest.raises(ValueError, match="<= 0"):
        _ops.softmax_exp(np.array([-1.0, 1e-300]))


@pytest.mark.parametrize("C", [1, 2, 3, 5, 10, 17, 255, 256, 257, 300])
def test_softmax_exp_avx2_and_generic_paths_give_the_same_bits(C):
    """loss_avx2.c takes the softmax's exponentials 4 lanes at a time (the last 1-3 of a
    block through a padded vector), exp_internal.h one at a time with the same operations:
    probabilities, gradients and loss agree to the bit on every path and thread count, for
    class counts whose blocks end in each lane (256 and more: rows wider than the block
    buffer, one exponential at a time). Rows hold differences from their maximum beyond
    -708 (taken as exp = 0), -inf logits and a NaN row (NaN in that row only)."""
    rng = np.random.default_rng(C)
    B = 97
    logits = randn(rng, B, C, scale=30.0)
    logits[1] = np.linspace(0.0, -1000.0, C, dtype=np.float32)
    h = max(1, C // 2)  # (a row of -inf alone has no maximum to subtract)
    logits[2, h:] = -np.inf
    logits[3, 0] = np.nan
    labels = rng.integers(0, C, size=B)
    keep = np.ones(B, bool)
    keep[3] = False
    got = {}
    for path in PATHS:
        for threads in (1, 2):
            with config(path, threads):
                nan_loss, p, d = ops.softmax_cross_entropy(logits, labels, 0.1)
                p2 = ops.softmax(logits)
                # (the loss in double shows a last-bit difference of an exponential, which
                # a float32 probability mostly rounds away)
                loss = ops.softmax_cross_entropy(logits[keep], labels[keep], 0.1)[0]
            assert np.isnan(nan_loss)  # the NaN row's
            got[path, threads] = (loss, p, d, p2)
    loss0, p0, d0, q0 = got[PATHS[0], 1]
    for key, (loss, p, d, q) in got.items():
        assert np.float64(loss).view(np.uint64) == np.float64(loss0).view(np.uint64), key
        for a, b in ((p, p0), (d, d0), (q, q0)):
            np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32), err_msg=key)
    assert np.isnan(p0[3]).all() and np.isfinite(p0[keep]).all()
    # the finite rows against float64 NumPy rounded to float32: within one unit
    _, rp, _ = ref.softmax_cross_entropy(f64(logits[keep]), labels[keep],
                                         float(np.float32(0.1)))
    np.testing.assert_array_max_ulp(p0[keep], rp.astype(np.float32), maxulp=1)
    np.testing.assert_array_equal(q0[keep], p0[keep])
    assert (p0[2, h:] == 0).all() and (p0[1][np.linspace(0, -1000, C) < -104] == 0).all()


def test_softmax_no_overflow():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [3e38, -3e38, 0]], np.float32)
    loss, p, d = ops.softmax_cross_entropy(logits, np.array([1, 0, 1]), 0.1)
    assert np.all(np.isfinite(p)) and np.all(np.isfinite(d)) and np.isfinite(loss)
    rloss, rp, _ = ref.softmax_cross_entropy(f64(logits), np.array([1, 0, 1]), 0.1)
    assert loss == pytest.approx(rloss, rel=1e-6)
    np.testing.assert_allclose(p, rp, atol=1e-7)


def test_loss_gradients_below_normal_are_written_as_zero():
    """A confidently classified image's other classes have probabilities under 1e-38;
    their gradients, subnormal as float32, would make every backward product they enter
    take a microcode assist on x86. loss.c writes them as 0 (ops_ref alike); the loss and
    the returned probabilities keep them. (Training on such rows keeps its weights' bits:
    tests/test_training_bits.py.)"""
    tiny = np.finfo(np.float32).tiny
    logits = np.array([[100.0, 0.0, 0.0, 95.0], [0.0, 1.0, 2.0, 3.0]], np.float32)
    labels = np.array([0, 3])
    loss, p, d = ops.softmax_cross_entropy(logits, labels)
    rloss, rp, rd = ref.softmax_cross_entropy(logits, labels)
    assert 0 < p[0, 1] < tiny and p[0, 1] == p[0, 2]  # e^-100, kept in the probabilities
    assert d[0, 1] == 0 and d[0, 2] == 0 and d[0, 3] > tiny  # e^-5 / 2 stays
    assert np.all(d[1] != 0) and loss == pytest.approx(rloss, rel=1e-6)
    np.testing.assert_array_equal(d == 0, rd == 0)
    np.testing.assert_allclose(d, rd, rtol=1e-6, atol=0)
    targets = np.array([[0.0, 1.0], [0.0, 0.0]], np.float32)
    zs = np.array([[-100.0, 100.0], [-80.0, -3.0]], np.float32)
    _, p, d = ops.sigmoid_binary_cross_entropy(zs, targets)
    _, rp, rd = ref.sigmoid_binary_cross_entropy(zs, targets)
    assert 0 < p[0, 0] < tiny and d[0, 0] == 0 and d[1, 0] > tiny  # e^-80 / 2 is normal
    np.testing.assert_array_equal(d == 0, rd == 0)
    np.testing.assert_allclose(d, rd, rtol=1e-6, atol=0)


# ---- gather ----------------------------------------------------------------------------------

@with_configs
@SETTINGS
@given(N=DIMS, F=DIMS, B=DIMS, seed=SEEDS, use_idx=st.booleans(),
       scale=st.sampled_from([1.0, 1.0 / 255.0, -3.5]), shift=st.sampled_from([0.0, -0.1307]))
def test_gather(path, threads, N, F, B, seed, use_idx, scale, shift):
    rng = np.random.default_rng(seed)
    xu = rng.integers(0, 256, size=(N, F), dtype=np.uint8)
    xf = randn(rng, N, F)
    idx = rng.integers(0, N, size=B) if (use_idx and N) else None
    with config(path, threads):
        gu = ops.gather_u8(xu, idx, scale, shift)
        gf = ops.gather_f32(xf, idx, scale, shift)
    s32, sh32 = float(np.float32(scale)), float(np.float32(shift))
    for got, x in ((gu, xu), (gf, xf)):
        expected = ref.gather_u8(x, idx, s32, sh32)
        rows = x if idx is None else x[idx]
        assert_close(got, expected, "gather", scale=np.abs(f64(rows) * s32) + abs(sh32),
                     what="gather")
    if N:  # (N, 28, 28)-style inputs are flattened per row
        x3 = rng.integers(0, 256, size=(N, 2, 3), dtype=np.uint8)
        np.testing.assert_array_equal(ops.gather_u8(x3, None, 1.0, 0.0),
                                      x3.reshape(N, 6).astype(np.float32))


@pytest.mark.parametrize("F", [1, 7, 8, 9, 15, 16, 17, 23, 24, 31, 784, 785])
def test_gather_avx2_and_generic_paths_give_the_same_bits(F):
    """gather_avx2.c converts a row 16 and 8 elements at a time and leaves the last few to
    nn.c's loop; every element on both paths is float32 x * scale, rounded, then + shift,
    rounded (never one fused multiply-add): NumPy's float32 arithmetic in that order gives
    the same bits. Widths ending in each loop, and NaN / inf / -0.0 float inputs."""
    rng = np.random.default_rng(F)
    xu = rng.integers(0, 256, size=(40, F), dtype=np.uint8)
    xf = randn(rng, 40, F)
    xf[0, :3] = [np.nan, np.inf, -0.0][:F]
    idx = rng.integers(0, 40, size=300)  # more rows than one chunk
    s, sh = np.float32(1 / 255), np.float32(-0.1307)
    for x in (xu, xf):
        want = x[idx].astype(np.float32) * s + sh
        for path in PATHS:
            for threads in (1, 2):
                with config(path, threads):
                    got = (ops.gather_u8 if x is xu else ops.gather_f32)(x, idx, float(s),
                                                                         float(sh))
                np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32),
                                              err_msg=f"{x.dtype} {path} {threads}")


# ---- optimizers ------------------------------------------------------------------------------

SHAPES = st.tuples(DIMS, st.sampled_from([1, 3, 10]))


@with_configs
@SETTINGS
@given(shape=SHAPES, seed=SEEDS, momentum=st.sampled_from([0.0, 0.9]),
       nesterov=st.booleans(), l2=st.sampled_from([0.0, 1e-2]))
def test_sgd(path, threads, shape, seed, momentum, nesterov, l2):
    nesterov = nesterov and momentum > 0
    rng = np.random.default_rng(seed)
    p, vel = randn(rng, *shape), np.zeros(shape, np.float32)
    for step in range(3):
        g = randn(rng, *shape)
        rp, rv = f64(p).copy(), f64(vel).copy()
        with config(path, threads):
            ops.sgd_update(p, g, vel if momentum else None, lr=0.1, momentum=momentum,
                           nesterov=nesterov, l2=l2)
        ref.sgd_update(rp, f64(g), rv if momentum else None, lr=0.1, momentum=momentum,
                       nesterov=nesterov, l2=l2)
        terms = np.abs(f64(g)) + l2 * np.abs(rp) + momentum * np.abs(rv)
        assert_close(vel, rv, "optim", scale=terms + np.abs(rv), what=f"velocity {step}")
        assert_close(p, rp, "optim", scale=np.abs(rp) + np.abs(p) + 0.1 * 3 * terms,
                     what=f"param {step}")


@with_configs
@SETTINGS
@given(shape=SHAPES, seed=SEEDS, l2=st.sampled_from([0.0, 1e-2]),
       rho=st.sampled_from([0.9, 0.99]))
def test_rmsprop(path, threads, shape, seed, l2, rho):
    rng = np.random.default_rng(seed)
    p, sq = randn(rng, *shape), np.zeros(shape, np.float32)
    for step in range(3):
        g = randn(rng, *shape)
        rp, rs = f64(p).copy(), f64(sq).copy()
        with config(path, threads):
            ops.rmsprop_update(p, g, sq, lr=0.01, rho=rho, eps=1e-8, l2=l2)
        ref.rmsprop_update(rp, f64(g), rs, lr=0.01, rho=rho, eps=1e-8, l2=l2)
        gg = np.abs(f64(g)) + l2 * np.abs(rp)
        assert_close(sq, rs, "optim", scale=np.abs(rs) + gg * gg, what=f"sq_avg {step}")
        delta = 0.01 * gg / (np.sqrt(rs) + 1e-8)
        assert_close(p, rp, "optim", scale=np.abs(rp) + 4 * delta, what=f"param {step}")


@with_configs
@SETTINGS
@given(shape=SHAPES, seed=SEEDS, l2=st.sampled_from([0.0, 1e-2]),
       wd=st.sampled_from([0.0, 0.1]))
def test_adam(path, threads, shape, seed, l2, wd):
    rng = np.random.default_rng(seed)
    p = randn(rng, *shape)
    m, v = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    for step in range(1, 5):
        g = randn(rng, *shape)
        rp, rm, rv = f64(p).copy(), f64(m).copy(), f64(v).copy()
        with config(path, threads):
            ops.adam_update(p, g, m, v, step, lr=1e-2, l2=l2, weight_decay=wd)
        ref.adam_update(rp, f64(g), rm, rv, step, lr=1e-2, l2=l2, weight_decay=wd)
        gg = np.abs(f64(g)) + l2 * np.abs(rp)
        assert_close(m, rm, "adam", scale=np.abs(rm) + gg, what=f"m {step}")
        assert_close(v, rv, "adam", scale=np.abs(rv) + gg * gg, what=f"v {step}")
        # the step is lr * m_hat / (sqrt(v_hat) + eps), bounded by ~lr / (1 - beta1)
        assert_close(p, rp, "adam", scale=np.abs(rp) + 1e-2 * 10, what=f"param {step}")


def _emulated_step(kind, p, g, state, step, lr, hyper):
    """One step of `kind` in NumPy float32, the kernels' operations in their order
    (optim_internal.h, nn.c), without flushing any state: NumPy keeps subnormals."""
    f = np.float32
    g = g + f(0.0) * p  # l2 = 0, as the kernels add it
    if kind == "sgd":
        (vel,) = state
        vel[:] = f(hyper) * vel + g
        p[:] = p - f(lr) * vel
    elif kind == "rmsprop":
        (sq,) = state
        sq[:] = f(hyper) * sq + (f(1.0) - f(hyper)) * (g * g)
        p[:] = p - f(lr) * g / (np.sqrt(sq) + f(1e-8))
    else:
        m, v = state
        b1, b2 = f(0.9), f(hyper)
        step_size = f(float(f(lr)) / (1.0 - float(b1) ** step))
        sqrt_bc2 = f(np.sqrt(1.0 - float(b2) ** step))
        m[:] = b1 * m + (f(1.0) - b1) * g
        v[:] = b2 * v + (f(1.0) - b2) * (g * g)
        p[:] = p - step_size * m / (np.sqrt(v) / sqrt_bc2 + f(1e-8))


@with_configs
@pytest.mark.parametrize("kind,hyper", [("adam", 0.999), ("adam", 0.9), ("sgd", 0.9),
                                        ("rmsprop", 0.9)])
def test_states_decayed_below_normal_are_flushed_and_weights_keep_their_bits(path, threads,
                                                                             kind, hyper):
    """A weight whose gradient stops (a pixel no image of the batch lights) has its state
    decay geometrically into float32's subnormal range, where x86 CPUs take a microcode
    assist per operation (over 40 epochs of the committee preset's network, epochs grew
    1.7x longer). The kernels store such a state as 0 (common.h's dc_flush_subnormal,
    and ops_ref's), and the weights are bit for bit those of float32
    arithmetic that keeps the subnormals. Adam with beta2 0.9 sends v there too. (Kept,
    they never leave: a few units of the last place times 0.9 round back to themselves.)"""
    rng = np.random.default_rng(7)
    n, lr, tiny = 64, 1e-2, np.finfo(np.float32).tiny
    p = randn(rng, n)
    state = [np.zeros(n, np.float32) for _ in range(2 if kind == "adam" else 1)]
    want_p, want_state = p.copy(), [s.copy() for s in state]
    ref_p, ref_state = f64(p).copy(), [f64(s).copy() for s in state]
    g_live = randn(rng, n)
    for step in range(1, 1001):  # 0.9 ** 997 < 2**-126 / 100: m, vel and sq go subnormal
        g = g_live if step <= 3 else np.zeros(n, np.float32)
        with config(path, threads):
            if kind == "sgd":
                ops.sgd_update(p, g, state[0], lr=lr, momentum=hyper)
            elif kind == "rmsprop":
                ops.rmsprop_update(p, g, state[0], lr=lr, rho=hyper)
            else:
                ops.adam_update(p, g, *state, step, lr=lr, beta2=hyper)
        _emulated_step(kind, want_p, g, want_state, step, lr, hyper)
        if kind == "sgd":
            ref.sgd_update(ref_p, f64(g), ref_state[0], lr=lr, momentum=hyper)
        elif kind == "rmsprop":
            ref.rmsprop_update(ref_p, f64(g), ref_state[0], lr=lr, rho=hyper)
        else:
            ref.adam_update(ref_p, f64(g), *ref_state, step, lr=lr, beta2=hyper)
    np.testing.assert_array_equal(p.view(np.uint32), want_p.view(np.uint32))
    for i, (got, kept, r) in enumerate(zip(state, want_state, ref_state)):
        if i == 1 and hyper == 0.999:  # Adam's v decays by 0.999 a step: still normal
            np.testing.assert_array_equal(got.view(np.uint32), kept.view(np.uint32))
            continue
        decayed = kept != 0  # float32 kept these, every one of them subnormal by now
        assert decayed.any() and np.all(np.abs(kept[decayed]) < tiny)
        np.testing.assert_array_equal(got.view(np.uint32), 0)
        np.testing.assert_array_equal(r, 0)


@with_configs
def test_optimizers_leave_the_callers_floating_point_mode_as_it_was(path, threads):
    """The optimizers switch x86's flush-to-zero and denormals-are-zero modes on around
    their loops and must put the caller's back: NumPy's subnormal arithmetic in the same
    thread afterwards still keeps its subnormals."""
    tiny = np.finfo(np.float32).tiny
    a = np.full(3, tiny, np.float32)
    for _ in range(2):
        p, g = np.ones(40000, np.float32), np.full(40000, 1e-20, np.float32)
        s1, s2 = np.zeros_like(p), np.zeros_like(p)
        with config(path, threads):
            ops.adam_update(p, g, s1, s2, 1)
            ops.sgd_update(p, g, s1, momentum=0.9)
            ops.rmsprop_update(p, g, s2)
        half = a * np.float32(0.5)  # subnormal, unless the mode leaked
        assert np.all(half > 0) and np.all(half < tiny)
        assert np.all(np.float32(1e-30) * np.float32(1e-10) > 0)


@pytest.mark.skipif(len(PATHS) < 2, reason="needs a CPU with AVX2")
@SETTINGS
@given(n=st.one_of(DIMS, st.sampled_from([7, 8, 9, 32775, 70001])), seed=SEEDS,
       l2=st.sampled_from([0.0, 1e-2]), l1=st.sampled_from([0.0, 1e-3]),
       wd=st.sampled_from([0.0, 0.1]))
def test_adam_avx2_and_generic_paths_give_the_same_bits(n, seed, l2, l1, wd):
    """Adam's AVX2 build (optim_avx2.c, 8 lanes, remainder scalar) does the portable
    loop's float32 operations in order, so training bits do not depend on the path.
    Zeros, negative zeros, a NaN and huge gradients are in the mix."""
    rng = np.random.default_rng(seed)
    p0, g = randn(rng, n), randn(rng, n, scale=10.0)
    if n >= 4:
        p0[:2] = [0.0, -0.0]
        g[1:4] = [-0.0, 1e37, np.nan]
    state = {}
    for path in PATHS:
        p, m, v = p0.copy(), np.zeros(n, np.float32), np.zeros(n, np.float32)
        with config(path, 2):
            for step in range(1, 4):
                ops.adam_update(p, g * np.float32(step), m, v, step, lr=1e-2, l2=l2, l1=l1,
                                weight_decay=wd)
        state[path] = [a.view(np.uint32) for a in (p, m, v)]
    for a, b, name in zip(state["avx2"], state["generic"], ("param", "m", "v")):
        np.testing.assert_array_equal(a, b, err_msg=name)


@SETTINGS
@given(n=st.one_of(DIMS, st.sampled_from([16383, 16384, 16385, 70001])), seed=SEEDS)
def test_sum_squares_scale_clip(n, seed):
    rng = np.random.default_rng(seed)
    x = randn(rng, n, scale=3.0)
    s = ops.sum_squares(x)
    r = ref.sum_squares(f64(x))
    assert abs(s - r) <= (n + 1) * 2.0 ** -53 * r + 1e-300
    y = x.copy()
    ops.scale_inplace(y, 0.5)
    np.testing.assert_array_equal(y, x * np.float32(0.5))
    grads = [x.copy(), randn(rng, 3, 4)]
    rgrads = [f64(g).copy() for g in grads]
    norm = ops.clip_grad_norm(grads, 1.0)
    rnorm = ref.clip_grad_norm(rgrads, 1.0)
    assert norm == pytest.approx(rnorm, rel=1e-12, abs=1e-300)
    for g, rg in zip(grads, rgrads):
        assert_close(g, rg, "elementwise", scale=2 * EPS * np.abs(rg), what="clipped")
    if rnorm > 1.0:
        assert np.sqrt(sum(ref.sum_squares(g) for g in grads)) <= 1.0 + 1e-5


# ---- dropout, hash ---------------------------------------------------------------------------

@SETTINGS
@given(n=DIMS, m=DIMS, seed=st.integers(0, 2**64 - 1), stream=st.integers(0, 2**64 - 1),
       p=st.sampled_from([0.0, 0.1, 0.5, 0.9]))
def test_dropout_matches_reference_bitwise(n, m, seed, stream, p):
    rng = np.random.default_rng(seed % 2**32)
    x = randn(rng, n, m)
    dout = randn(rng, n, m)
    out, mask = ops.dropout_forward(x, p, seed, stream)
    rout, rmask = ref.dropout_forward(x, p, seed, stream)
    np.testing.assert_array_equal(mask, rmask)
    np.testing.assert_array_equal(out, rout)
    np.testing.assert_array_equal(ops.dropout_backward(dout, mask, p),
                                  ref.dropout_backward(dout, mask, p))
    np.testing.assert_array_equal(ops.dropout_backward(dout, mask.astype(bool), p),
                                  ref.dropout_backward(dout, mask, p))
    if n * m:
        assert ops.hash64(seed, stream, n * m - 1) == ref.hash64(seed, stream, n * m - 1)
    if p == 0.0:
        np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("p", [0.0, 2.0**-24, 1e-9, 0.1, 0.3, 0.5, 0.75, 0.99999994])
@pytest.mark.parametrize("n", [1, 7, 8, 9, 31, 32, 33, 100, 16384 + 77, 70001])
def test_dropout_avx2_and_generic_paths_give_the_same_bits(n, p):
    """dropout_avx2.c hashes 4 lanes at a time and keeps an element by an integer compare
    against ceil(p * 2^24); the portable loop and the NumPy reference compare u24 in
    float. All three agree on every element: p's whose p * 2^24 is a whole number (where
    the compare's boundary matters) and fractional ones, lengths that end in each of the
    kernel's loops (32 wide, 8 wide, scalar), more than one chunk, 1 and 2 threads,
    in place, and NaN / inf inputs (a dropped one gives +0.0)."""
    rng = np.random.default_rng(n)
    x = randn(rng, n)
    x[:3] = [np.nan, np.inf, -0.0][:n]
    dout = randn(rng, n)
    seed, stream = 2**64 - 1 - n, 12345
    rout, rmask = ref.dropout_forward(x, p, seed, stream)
    rback = ref.dropout_backward(dout, rmask, p)
    for path in PATHS:
        for threads in (1, 2):
            with config(path, threads):
                out, mask = ops.dropout_forward(x, p, seed, stream)
                buf = x.copy()
                ops.dropout_forward(buf, p, seed, stream, out=buf)
                back = ops.dropout_backward(dout, mask, p)
            np.testing.assert_array_equal(mask, rmask, err_msg=f"{path} mask")
            np.testing.assert_array_equal(out.view(np.uint32), rout.view(np.uint32),
                                          err_msg=f"{path} out")
            np.testing.assert_array_equal(buf.view(np.uint32), rout.view(np.uint32),
                                          err_msg=f"{path} in place")
            np.testing.assert_array_equal(back.view(np.uint32), rback.view(np.uint32),
                                          err_msg=f"{path} backward")
    if p >= 0.1 and n >= 16384:
        assert abs(rmask.mean() - (1 - p)) < 0.02  # the compare is not degenerate


# (p, stream, i, kept): element i of stream (seed 0, stream) has u24 * 2^24 (the 24 top
# bits of its hash) right at p's boundary. 0.1f * 2^24 = 1677721.625 and 0.3f * 2^24 and
# 0.5f * 2^24 are whole numbers; an element is kept when its bits are >= that.
DROPOUT_EDGES = [(0.1, 3141406, 2, 1677721, False), (0.1, 164618, 11, 1677722, True),
                 (0.3, 35592, 15, 5033164, False), (0.3, 2361475, 9, 5033165, True),
                 (0.5, 1904527, 6, 8388607, False), (0.5, 349976, 1, 8388608, True)]


@pytest.mark.parametrize("p, stream, i, bits, kept", DROPOUT_EDGES)
def test_dropout_keeps_exactly_at_the_boundary(p, stream, i, bits, kept):
    """Random hashes land on p's boundary once in 2^24 draws, so the comparisons above
    never meet it: these draws were searched for (with ops_ref.hash64) to sit on it."""
    assert ref.hash64(0, stream, i) >> 40 == bits  # the premise
    # lengths that put element i in the AVX2 kernel's 32-wide loop (64), its 8-wide
    # loop (a multiple of 8 below 32) and, where i + 1 is not one, its scalar tail
    for n in sorted({64, 8 * (i // 8 + 1), i + 1}):
        x = np.ones(n, np.float32)
        assert bool(ref.dropout_forward(x, p, 0, stream)[1][i]) == kept
        for path in PATHS:
            with config(path, 1):
                assert bool(ops.dropout_forward(x, p, 0, stream)[1][i]) == kept, (path, n)


@pytest.mark.parametrize("n", [7, 8, 40, 70001])
def test_dropout_backward_keeps_any_nonzero_mask_byte(n):
    """A mask from elsewhere (a bool array, or bytes other than 0 and 1) keeps every
    element whose byte is not 0, on both paths."""
    rng = np.random.default_rng(n)
    dout = randn(rng, n)
    mask = rng.integers(0, 256, n).astype(np.uint8)
    mask[: n // 3] = 0
    want = np.where(mask != 0, dout * np.float32(1 / np.float32(0.75)), np.float32(0))
    for path in PATHS:
        with config(path, 2):
            got = ops.dropout_backward(dout, mask, 0.25)
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32), err_msg=path)


def test_dropout_statistics_and_streams():
    x = np.ones(200_000, np.float32)
    out, mask = ops.dropout_forward(x, 0.3, seed=42, stream=0)
    keep = mask.mean()
    assert abs(keep - 0.7) < 5 * np.sqrt(0.21 / x.size)
    np.testing.assert_allclose(out.mean(), 1.0, atol=0.01)  # inverted dropout keeps E[x]
    _, mask1 = ops.dropout_forward(x, 0.3, seed=42, stream=1)
    _, mask2 = ops.dropout_forward(x, 0.3, seed=43, stream=0)
    assert 0.5 < (mask == mask1).mean() < 0.7 and 0.5 < (mask == mask2).mean() < 0.7
    # in place and a prefix property: element i depends only on (seed, stream, i)
    buf = x.copy()
    o2, m2 = ops.dropout_forward(buf, 0.3, 42, 0, out=buf)
    assert o2 is buf
    np.testing.assert_array_equal(buf, out)
    np.testing.assert_array_equal(ops.dropout_forward(x[:1000], 0.3, 42, 0)[1], mask[:1000])


# ---- finite-difference checks of every reference backward (float64) --------------------------

def numgrad(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(*x.shape):
        old = x[i]
        x[i] = old + h
        fp = f()
        x[i] = old - h
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * h)
    return g


@pytest.mark.parametrize("kind", ["identity", "relu", "leaky_relu", "sigmoid", "tanh"])
def test_fd_activation(kind):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5))
    x += np.sign(x) * 0.1  # keep away from the kink at 0
    r = rng.standard_normal((3, 5))
    loss = lambda: float((ref.activation_forward(x, kind, 0.1) * r).sum())  # noqa: E731
    g = ref.activation_backward(r, ref.activation_forward(x, kind, 0.1), kind, 0.1)
    assert_close(g, numgrad(loss, x), "fd", scale=1.0, what=kind)


@pytest.mark.parametrize("act", [None, "relu", "sigmoid", "tanh"])
def test_fd_dense(act):
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal((4, 3)), rng.standard_normal((5, 3)), rng.standard_normal(5)
    r = rng.standard_normal((4, 5))

    def loss():
        return float((ref.dense_forward(x, w, b, act, 0.1) * r).sum())

    y = ref.dense_forward(x, w, b, act, 0.1)
    dz = ref.activation_backward(r, y, act, 0.1)
    gi, gw, gb = ref.dense_backward(dz, x, w)
    assert_close(gi, numgrad(loss, x), "fd", scale=1.0, what="dinp")
    assert_close(gw, numgrad(loss, w), "fd", scale=1.0, what="dweight")
    assert_close(gb, numgrad(loss, b), "fd", scale=1.0, what="dbias")


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_fd_softmax_cross_entropy(smoothing):
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((4, 6)) * 3
    labels = rng.integers(0, 6, size=4)
    loss = lambda: ref.softmax_cross_entropy(logits, labels, smoothing)[0]  # noqa: E731
    _, _, d = ref.softmax_cross_entropy(logits, labels, smoothing)
    assert_close(d, numgrad(loss, logits), "fd", scale=1.0, what="dlogits")


def test_fd_sigmoid_binary_cross_entropy():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((4, 6)) * 3
    targets = (rng.random((4, 6)) < 0.5).astype(np.float64)
    targets[0, 0] = 0.3  # soft targets too
    loss = lambda: ref.sigmoid_binary_cross_entropy(logits, targets)[0]  # noqa: E731
    _, _, d = ref.sigmoid_binary_cross_entropy(logits, targets)
    assert_close(d, numgrad(loss, logits), "fd", scale=1.0, what="dlogits")


def test_fd_dropout():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 7))
    r = rng.standard_normal((3, 7))
    _, mask = ref.dropout_forward(x, 0.4, 5, 6)
    loss = lambda: float((ref.dropout_forward(x, 0.4, 5, 6)[0] * r).sum())  # noqa: E731
    assert_close(ref.dropout_backward(r, mask, 0.4), numgrad(loss, x), "fd", scale=1.0,
                 what="dropout")


def test_fd_optimizer_gradients_are_steps():
    """sum_squares' gradient 2x drives clip_grad_norm; check the reference norm by FD."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal(6)
    g = numgrad(lambda: ref.sum_squares(x), x)
    assert_close(2 * x, g, "fd", scale=1.0, what="sum_squares")


# ---- empty and read-only inputs --------------------------------------------------------------

def test_read_only_inputs_and_empty():
    rng = np.random.default_rng(6)
    x, w, b, g = randn(rng, 5, 4), randn(rng, 3, 4), randn(rng, 3), randn(rng, 5, 3)
    labels = np.array([0, 1, 2, 0, 1])
    for a in (x, w, b, g, labels):
        a.setflags(write=False)
    ops.dense_forward(x, w, b, "relu")
    ops.dense_backward(g, x, w)
    ops.softmax_cross_entropy(g, labels)
    ops.activation_backward(x, x, "tanh")
    ops.dropout_forward(x, 0.5, 1)
    ops.sum_squares(x)
    ops.gather_f32(x, np.array([4, 0]))
    p = randn(rng, 5, 3)
    ops.sgd_update(p, g)
    e = np.zeros((0, 4), np.float32)
    assert ops.dense_forward(e, w).shape == (0, 3)
    gi, gw, gb = ops.dense_backward(np.zeros((0, 3), np.float32), e, w)
    assert gi.shape == (0, 4)
    np.testing.assert_array_equal(gw, 0)
    np.testing.assert_array_equal(gb, 0)
    # I == 0: the product is empty, so dense_forward returns the bias alone
    y = ops.dense_forward(np.zeros((2, 0), np.float32), np.zeros((3, 0), np.float32), b)
    np.testing.assert_array_equal(y, np.broadcast_to(b, (2, 3)))
    assert ops.softmax_cross_entropy(np.zeros((0, 10), np.float32), np.zeros(0, int))[0] == 0
    assert ops.sum_squares(np.zeros(0, np.float32)) == 0.0
    assert ops.dropout_forward(np.zeros((0, 3), np.float32), 0.5, 1)[1].shape == (0, 3)
