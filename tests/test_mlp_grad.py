"""The whole-network loss and gradient over a set of rows (csrc/mlp_grad.c, used by the
scikit-learn estimator for L-BFGS, multilabel targets and scipy.sparse input).

A float64 reference is composed from digitcore.ops_ref's layer ops and checked by central
differences over every parameter; then the C call is checked against it on dense uint8 /
float32 and CSR input, both output losses, row selections, and 1 or 2 threads (same bits).
"""

from __future__ import annotations

import numpy as np
import pytest

from digitcore import _ops
from digitcore import ops_ref as ref
from digitcore.network import LEAKY_SLOPE, Network

ACTS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "identity": None,
        "leaky_relu": "leaky_relu"}


def ref_loss_grad(weights, biases, act, x, labels=None, targets=None):
    """Mean loss and flat gradient (weights then bias, layer after layer), float64."""
    acts = [x]
    for i, (w, b) in enumerate(zip(weights, biases)):
        last = i == len(weights) - 1
        acts.append(ref.dense_forward(acts[-1], w, b, None if last else ACTS[act], LEAKY_SLOPE))
    if targets is None:
        loss, _, d = ref.softmax_cross_entropy(acts[-1], labels)
    else:
        loss, _, d = ref.sigmoid_binary_cross_entropy(acts[-1], targets)
    grads = []
    for i in range(len(weights) - 1, -1, -1):
        di, dw, db = ref.dense_backward(d, acts[i], weights[i])
        grads = [dw.ravel(), db] + grads
        if i:
            d = ref.activation_backward(di, acts[i], ACTS[act], LEAKY_SLOPE)
    return loss, np.concatenate(grads)


def make(rng, sizes, act, n, density=0.3):
    net = Network(sizes, activation=act if act != "identity" else "relu", seed=1)
    net.activation = act  # the C view takes "identity" too
    for b in net.biases:
        b[...] = rng.standard_normal(b.shape) * 0.3
    x = rng.random((n, sizes[0])).astype(np.float32)
    x[x > density] = 0
    labels = rng.integers(0, sizes[-1], n).astype(np.int64)
    targets = (rng.random((n, sizes[-1])) < 0.3).astype(np.float32)
    return net, x, labels, targets


def csr(x):
    sp = pytest.importorskip("scipy.sparse")
    c = sp.csr_matrix(x)
    return (c.indptr.astype(np.int64), c.indices.astype(np.int32), c.data.astype(np.float32),
            x.shape[0])


@pytest.mark.parametrize("loss", ["softmax", "sigmoid"])
@pytest.mark.parametrize("act", ["relu", "tanh", "identity"])
def test_reference_matches_finite_differences(loss, act):
    rng = np.random.default_rng(0)
    sizes = (5, 4, 3, 3)
    ws = [rng.standard_normal((o, i)) for i, o in zip(sizes[:-1], sizes[1:])]
    bs = [rng.standard_normal(o) for o in sizes[1:]]
    x = rng.standard_normal((6, 5))
    labels = rng.integers(0, 3, 6)
    targets = (rng.random((6, 3)) < 0.5).astype(np.float64)
    kw = dict(labels=labels) if loss == "softmax" else dict(targets=targets)
    _, g = ref_loss_grad(ws, bs, act, x, **kw)
    params = [p for pair in zip(ws, bs) for p in pair]
    num, h = [], 1e-6
    for p in params:
        gp = np.zeros_like(p)
        for i in np.ndindex(*p.shape):
            old = p[i]
            p[i] = old + h
            fp = ref_loss_grad(ws, bs, act, x, **kw)[0]
            p[i] = old - h
            fm = ref_loss_grad(ws, bs, act, x, **kw)[0]
            p[i] = old
            gp[i] = (fp - fm) / (2 * h)
        num.append(gp.ravel())
    np.testing.assert_allclose(g, np.concatenate(num), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("loss", ["softmax", "sigmoid"])
@pytest.mark.parametrize("act", ["relu", "leaky_relu", "sigmoid", "tanh", "identity"])
@pytest.mark.parametrize("n", [1, 13, 1024, 2500])  # 1024: one full chunk; 2500: a tail
def test_c_matches_reference(loss, act, n, num_threads):
    rng = np.random.default_rng(n)
    net, x, labels, targets = make(rng, (37, 19, 7, 4), act, n)
    ws = [w.astype(np.float64) for w in net.weights]
    bs = [b.astype(np.float64) for b in net.biases]
    kw = dict(labels=labels) if loss == "softmax" else dict(targets=targets.astype(np.float64))
    rloss, rg = ref_loss_grad(ws, bs, act, x.astype(np.float64), **kw)
    k = _ops._Net(np.asarray(net.layer_sizes), net.flat_parameters, act, LEAKY_SLOPE, 0.0)
    scale = np.abs(rg).max()
    results = []
    for inp in (x, csr(x)):
        for threads in (1, 2):
            with num_threads(threads):
                g = np.empty(net.n_params, np.float32)
                rows = _ops.Rows(inp, 37, labels=labels, targets=targets)
                value, _ = _ops.mlp_loss_grad(k, rows, None, loss, g)
            assert value == pytest.approx(rloss, rel=1e-5)
            # float32 GEMMs over up to 1024 rows per chunk: a few 1e-6 of the largest entry
            np.testing.assert_allclose(g, rg, rtol=0, atol=2e-5 * scale)
            results.append(g)
    # the same bits on 1 and 2 threads, for each input form
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[2], results[3])


def test_uint8_selection_and_logits():
    rng = np.random.default_rng(5)
    net, x, labels, targets = make(rng, (30, 16, 5), "relu", 300)
    x8 = (x * 255).astype(np.uint8)
    xs = x8.astype(np.float32) / 255
    sel = rng.permutation(300)[:77].astype(np.int64)
    k = net.c_net()
    g8, gs = np.empty(net.n_params, np.float32), np.empty(net.n_params, np.float32)
    r8 = _ops.Rows(x8, 30, 1 / 255, 0.0, labels=labels)
    l8, c8 = _ops.mlp_loss_grad(k, r8, sel, "softmax", g8)
    rs = _ops.Rows(np.ascontiguousarray(xs[sel]), 30, labels=labels[sel])
    ls, cs = _ops.mlp_loss_grad(k, rs, None, "softmax", gs)
    assert l8 == pytest.approx(ls, rel=1e-6) and c8 == cs
    np.testing.assert_allclose(g8, gs, rtol=0, atol=1e-6 * np.abs(gs).max())
    # the loss alone (no grads), and the logits of the same rows, sparse or dense
    assert _ops.mlp_loss_grad(k, r8, sel, "softmax")[0] == l8
    logits = _ops.mlp_logits_rows(k, _ops.Rows(csr(xs), 30), sel)
    np.testing.assert_allclose(logits, net.logits(xs[sel]), rtol=1e-5, atol=1e-5)
    assert c8 == int((logits.argmax(1) == labels[sel]).sum())


def test_bad_arguments_name_the_problem():
    rng = np.random.default_rng(6)
    net, x, labels, targets = make(rng, (10, 4, 3), "relu", 20)
    k = net.c_net()
    ip, ix, dv, n = csr(x)
    bad = ix.copy()
    bad[0] = 10
    with pytest.raises(ValueError, match="indices must be in"):
        _ops.Rows((ip, bad, dv, n), 10)
    with pytest.raises(ValueError, match="indptr"):
        _ops.Rows((ip[::-1].copy(), ix, dv, n), 10)
    with pytest.raises(ValueError, match="shift"):
        _ops.Rows((ip, ix, dv, n), 10, 1.0, 0.5)
    with pytest.raises(ValueError, match="x has shape"):
        _ops.Rows(x[:, :5].copy(), 10)
    with pytest.raises(ValueError, match="targets"):
        _ops.Rows(x, 10, targets=targets * 3)
    rows = _ops.Rows(x, 10, labels=labels + 3, targets=targets)
    with pytest.raises(ValueError, match="labels must be in"):
        _ops.mlp_loss_grad(k, rows, None, "softmax")
    with pytest.raises(ValueError, match="sel has rows"):
        _ops.mlp_loss_grad(k, rows, np.array([20], np.int64), "sigmoid")
    with pytest.raises(ValueError, match="grads must not overlap"):
        _ops.mlp_loss_grad(k, rows, None, "sigmoid", net.flat_parameters)
    with pytest.raises(ValueError, match="loss must be"):
        _ops.mlp_loss_grad(k, rows, None, "hinge")
    with pytest.raises(ValueError, match="needs rows with labels"):
        _ops.mlp_loss_grad(k, _ops.Rows(x, 10), None, "softmax")
    with pytest.raises(ValueError, match="features"):
        _ops.mlp_loss_grad(Network([5, 3], seed=0).c_net(), rows, None, "sigmoid")
    # a negative row count passed the length checks (Python's negative indexing) and
    # reached the kernel as "invalid argument reached a digitcore kernel"
    with pytest.raises(ValueError, match="n_rows must be >= 0, got -2"):
        _ops.Rows((ip, ix, dv, -2), 10, labels=labels)
    # layer sizes whose parameter count wraps int64 were taken, and the kernels wrote past
    # a buffer sized by the wrapped count (a crash)
    for sizes in ([2, 2**62, 1], [2, 2**40, 2**40, 3], [2**31, 3]):
        with pytest.raises(ValueError, match="too large"):
            _ops._Net(np.array(sizes), np.zeros(1, np.float32), "relu", 0.0, 0.0)


def test_arrays_checked_once_are_copies_the_caller_cannot_change():
    """_Net kept the caller's sizes array and Rows a CSR's indptr/indices (the estimator
    passes them without copying); changed after the one check, C indexed out of bounds."""
    rng = np.random.default_rng(8)
    net, x, labels, _ = make(rng, (10, 6, 3), "relu", 40)
    sizes = np.array(net.layer_sizes, np.int64)
    k = _ops._Net(sizes, net.flat_parameters, "relu", 0.0, 0.0)
    ip, ix, dv, n = csr(x)
    rows = _ops.Rows((ip, ix, dv, n), 10, labels=labels)
    g = np.empty(net.n_params, np.float32)
    want = _ops.mlp_loss_grad(k, rows, None, "softmax", g)[0], g.copy()
    sizes[:] = [10**6, 10**6, 10**6]
    ip[1:] = ip[-1]  # every entry in row 0
    ix[:] = 10**6
    got = _ops.mlp_loss_grad(k, rows, None, "softmax", g)[0]
    assert got == want[0]
    np.testing.assert_array_equal(g, want[1])


def test_train_refuses_a_negative_step_and_keeps_the_loss_sum_of_no_batches():
    net = Network([4, 3, 2], seed=0)
    k = net.c_net()
    x = np.zeros((5, 4), np.float32)
    y = np.zeros(5, np.int64)
    grads = np.zeros(net.n_params, np.float32)
    opt = {"kind": "sgd", "step": -1}
    with pytest.raises(ValueError, match="step"):
        k.train(x, y, np.arange(5, dtype=np.int64), 2, np.full(3, 0.1, np.float32), 1.0, 0.0,
                0, opt, grads, None, None)
    assert opt["step"] == -1
    opt["step"] = 0
    got = k.train(x, y, np.zeros(0, np.int64), 2, np.zeros(0, np.float32), 1.0, 0.0, 0,
                  opt, grads, None, None, loss_sum=2.5)
    assert got == (2.5, 0, 0)
