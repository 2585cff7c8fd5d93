"""The first layer on sparse input (csrc/sparse.c): the sparse kernels must train the same
network as the dense GEMM path, up to float rounding, on every shape and setting.

Training compares three modes of the C loop: "never" (dense GEMM, the reference),
"always" (sparse kernels whatever the density) and "auto" (sparse for batches at most a
quarter non-zero, dense GEMM on the transposed layout otherwise).
"""

from functools import partial

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import digitcore
from digitcore import Network, Trainer, optim
from digitcore.errors import TrainingDivergedError
from kernel_config import config
from sparse_data import sparse_digits


# (synthetic sparse digits: sparse_data.py)
_sparse_digits = partial(sparse_digits, n=300, d=64, k=5, density=0.2)


def _train(x, y, sizes, mode, *, activation="relu", optimizer="adam", epochs=2, bs=32,
           dropout=0.0, l2=0.0, clip_norm=None, lr=None, threads=None, split=None):
    before = digitcore.get_num_threads()
    if threads:
        digitcore.set_num_threads(threads)
    try:
        net = Network(sizes, activation=activation, dropout=dropout, seed=0)
        tr = Trainer(net, optimizer=optimizer, lr=lr, batch_size=bs, epochs=epochs, l2=l2,
                     clip_norm=clip_norm, seed=1, verbose=0)
        tr._sparse_input = mode
        tr._sparse_split = split
        tr.fit(x, y)
        # (these tests feed noise rows to the inference paths: not the dark-background
        # check's business, network.check_pixel_images)
        net.training_summary.pop("background", None)
        return net, tr
    finally:
        digitcore.set_num_threads(before)


def _close(a, b):
    np.testing.assert_allclose(a.flat_parameters, b.flat_parameters, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("hidden", [1, 7, 10, 64, 70, 130])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "sigmoid", "tanh"])
def test_sparse_path_trains_like_the_dense_path(rng, hidden, activation):
    # widths around the 8-column vector and the 64-column block, all four activations
    x, y = _sparse_digits(rng)
    dense, _ = _train(x, y, [64, hidden, 5], "never", activation=activation)
    sparse, _ = _train(x, y, [64, hidden, 5], "always", activation=activation)
    _close(dense, sparse)


@pytest.mark.parametrize("d, density", [(24, 0.1), (64, 0.2)])
def test_the_sparse_path_really_runs_and_auto_picks_it(rng, d, density):
    x, y = _sparse_digits(rng, d=d, density=density)  # every batch under a quarter
    dense, _ = _train(x, y, [d, 16, 5], "never")
    sparse, _ = _train(x, y, [d, 16, 5], "always")
    auto, _ = _train(x, y, [d, 16, 5], "auto")
    if digitcore.kernel_path() == "avx2" or d > 32:
        # the AVX2 GEMM blocks and fuses its sums differently, and from 64 inputs on the
        # sparse forward sums two groups of inputs apart: the bits differ
        assert not np.array_equal(dense.flat_parameters, sparse.flat_parameters)
        _close(dense, sparse)
    else:
        # with one group (below 64 inputs the first is empty) the portable GEMM and
        # sparse kernels add the same non-zero terms in the same order (a zero pixel
        # only adds +0): identical bits
        assert np.array_equal(dense.flat_parameters, sparse.flat_parameters)
    assert np.array_equal(auto.flat_parameters, sparse.flat_parameters)


@pytest.mark.parametrize("hidden", [12, 136])
@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_every_optimizer_and_its_state_survive_the_transposed_layout(rng, name, hidden):
    """Layer 0's weight and optimizer state are held transposed during a call, by blocks
    of 64 columns (136 = 64 + 64 + 8), and put back after: a second fit continues from
    the right state in either mode."""
    x, y = _sparse_digits(rng)
    nets = {}
    for mode in ("never", "always"):
        net, tr = _train(x, y, [64, hidden, 5], mode, optimizer=name, l2=1e-3)
        tr.fit(x, y)  # continues: state must have been stored back untransposed
        nets[mode] = (net, tr.optimizer)
    _close(nets["never"][0], nets["always"][0])
    for attr in ("grad_avg", "sq_avg"):
        a, b = getattr(nets["never"][1], attr, None), getattr(nets["always"][1], attr, None)
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-6)


def test_plain_sgd_fused_update_matches_dense(rng):
    # plain SGD applies layer 0's gradient while computing it; clipping and L2 turn it off
    x, y = _sparse_digits(rng)
    for kw in ({}, {"clip_norm": 0.5}, {"l2": 1e-3}):
        dense, _ = _train(x, y, [64, 20, 5], "never", optimizer="sgd", lr=0.1, **kw)
        sparse, _ = _train(x, y, [64, 20, 5], "always", optimizer="sgd", lr=0.1, **kw)
        _close(dense, sparse)


def test_float_input_and_dropout(rng):
    x, y = _sparse_digits(rng)
    xf = x.astype(np.float32) / 255
    dense, _ = _train(xf, y, [64, 24, 16, 5], "never", dropout=0.3)
    sparse, _ = _train(xf, y, [64, 24, 16, 5], "always", dropout=0.3)
    _close(dense, sparse)


@pytest.mark.parametrize("hidden", [20, 136])
def test_auto_mixes_dense_and_sparse_batches(rng, hidden):
    """Batches over a quarter non-zero go through the GEMM (per 64-column block) on the
    transposed layout; a call that mixes both kinds still trains like the dense path."""
    x, y = _sparse_digits(rng, n=256, density=0.1)
    dense_rows = rng.integers(1, 256, size=(64, 64)).astype(np.uint8)
    x[:64] = dense_rows  # with shuffle=False, the first two batches of 32 are dense
    results = {}
    for mode in ("never", "auto"):
        net = Network([64, hidden, 5], seed=0)
        tr = Trainer(net, optimizer="sgd", lr=0.05, batch_size=32, epochs=2, shuffle=False,
                     seed=0, verbose=0)
        tr._sparse_input = mode
        tr.fit(x, y)
        results[mode] = net
    _close(results["never"], results["auto"])


def test_auto_takes_the_dense_path_on_dense_data(rng):
    """Data whose batches nearly all exceed the sparse path's quarter (Fashion-MNIST is
    about half non-zero) trains on the dense path from the start, instead of trying each
    batch sparse and falling back to the GEMM on the transposed layout: Trainer hands
    the C loop "never", and the weights are "never"'s bit for bit on 1 and 2 threads.
    MNIST-like data, and full batches, keep "auto"."""
    x, y = _sparse_digits(rng, n=640, d=64, density=0.6)
    assert np.count_nonzero(x) > 0.4 * x.size
    never, _ = _train(x, y, [64, 70, 5], "never", optimizer="sgd", lr=0.1, threads=1)
    for threads in (1, 2):
        auto, tr = _train(x, y, [64, 70, 5], "auto", optimizer="sgd", lr=0.1,
                          threads=threads)
        assert tr._first_layer_used["sparse_input"] == "never"
        assert np.array_equal(auto.flat_parameters, never.flat_parameters)
    _, tr = _train(x, y, [64, 70, 5], "auto", bs=None, optimizer="sgd", lr=0.1, epochs=1)
    assert tr._first_layer_used["sparse_input"] == "auto"
    xs, ys = _sparse_digits(rng, n=640, d=64, density=0.2)
    _, tr = _train(xs, ys, [64, 70, 5], "auto", optimizer="sgd", lr=0.1, epochs=1)
    assert tr._first_layer_used["sparse_input"] == "auto"


def test_a_fit_leaves_inference_as_a_loaded_network_has_it(rng):
    """The first-layer path a fit chose for its data (here "never", dense data) was left
    on the C view inference uses too: the same weights then predicted MNIST-like batches
    on the dense path, other bits and ~1.7x slower than the same network loaded anew."""
    x, y = _sparse_digits(rng, n=640, d=64, density=0.6)
    net, tr = _train(x, y, [64, 70, 5], "auto", optimizer="sgd", lr=0.1, epochs=1)
    assert tr._first_layer_used["sparse_input"] == "never"
    assert net.c_net().sparse_input == "auto" and net.c_net().sparse_offset is None
    xs, _ = _sparse_digits(rng, n=512, d=64, density=0.1)
    fresh = Network([64, 70, 5], seed=1)
    fresh.flat_parameters[...] = net.flat_parameters
    assert np.array_equal(net.predict_proba(xs), fresh.predict_proba(xs))


def test_first_layer_mode_counts_the_batches_that_fit():
    """The rule on batches of 4 rows of 40 inputs (a batch fits with at most
    4 * 40 // 4 + 1 = 41 non-zeros): "never" when at most 1 in 10 batches fits, a mode
    asked for explicitly and full batches untouched."""
    from digitcore.trainer import _first_layer_mode, _nonzero_sample

    def mode(x, bs, requested):
        return _first_layer_mode(_nonzero_sample(x), len(x), bs, requested)

    x = np.zeros((40, 40), np.uint8)
    x[:, :20] = 1  # 80 non-zeros per batch: none fits
    assert mode(x, 4, "auto") == "never"
    x[:4, 10:20] = 0  # the first batch: 40, fits
    assert mode(x, 4, "auto") == "never"
    x[4:8, 10:20] = 0
    x[4, 10] = 1  # the second: 41, fits, so 2 in 10
    assert mode(x, 4, "auto") == "auto"
    x[4, 11] = 1  # 42: over
    assert mode(x, 4, "auto") == "never"
    assert mode(x, 40, "auto") == "auto"  # one full batch
    assert mode(x, 4, "always") == "always"
    assert mode(np.zeros((40, 40), np.float32), 4, "auto") == "auto"


def test_all_zero_rows_and_full_batch(rng):
    x, y = _sparse_digits(rng, n=120)
    x[::3] = 0  # rows without entries: the forward is act(bias)
    dense, _ = _train(x, y, [64, 9, 5], "never", bs=None, optimizer="sgd", lr=0.2, epochs=5)
    sparse, _ = _train(x, y, [64, 9, 5], "always", bs=None, optimizer="sgd", lr=0.2,
                       epochs=5)
    _close(dense, sparse)


def test_bitwise_identical_across_thread_counts(rng):
    x, y = _sparse_digits(rng, n=2000, d=784, density=0.2)
    a, _ = _train(x, y, [784, 130, 10], "always", bs=128, epochs=1, threads=1)
    b, _ = _train(x, y, [784, 130, 10], "always", bs=128, epochs=1, threads=2)
    assert np.array_equal(a.flat_parameters, b.flat_parameters)


@pytest.mark.parametrize("sizes", [[784, 200, 10], [784, 130, 64, 10], [784, 300, 40, 10]])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_thread_counts_agree_with_a_narrow_last_block_on_long_batches(rng, sizes, optimizer):
    # Layer 1's weight gradient: one product on one thread, one per column block of
    # layer 0's outputs on two. A last block of at most 16 columns (200 = 3 x 64 + 8)
    # would take the narrow GEMM kernel, which sums a batch of more than kc = 256 rows
    # in another order than the wide product; batch 300 crosses that.
    x, y = _sparse_digits(rng, n=600, d=784, density=0.2)
    kw = dict(bs=300, epochs=1, optimizer=optimizer, lr=0.01 if optimizer == "adam" else 0.1)
    a, _ = _train(x, y, sizes, "always", threads=1, **kw)
    b, _ = _train(x, y, sizes, "always", threads=2, **kw)
    assert np.array_equal(a.flat_parameters, b.flat_parameters)


@pytest.mark.skipif(not digitcore._ops.cpu_has_avx512(), reason="needs a CPU with AVX-512")
@pytest.mark.parametrize("hidden", [1, 15, 16, 17, 33, 64, 65, 130])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_avx512_row_kernel_gives_the_avx2_bits(rng, hidden, activation):
    # the sparse products' row kernel on 16-column vectors (sparse_avx512.c) repeats the
    # 8-column one's FMA chain and epilogue: full and partial vectors of every block width
    # (hidden % 64), the fused activations, training and inference
    x, y = _sparse_digits(rng, n=600, d=784, density=0.2)
    out = {}
    for path in ("avx2", "avx512"):
        with config(path, 2):
            net, _ = _train(x, y, [784, hidden, 10], "always", activation=activation, bs=64,
                            epochs=1, dropout=0.1, l2=1e-4)
            out[path] = (net.flat_parameters.copy(), net.predict_proba(x[:200]))
    for a, b in zip(out["avx2"], out["avx512"]):
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("mode", ["always", "auto"])
@pytest.mark.parametrize("bs", [32, 64])
def test_thread_count_changes_no_bit_deeper_with_dropout(rng, mode, bs):
    """1 and 2 threads give the same bits with three layers, dropout, and (auto) dense
    batches mixed in (the gather and the products split fixed groups of input columns
    and fixed column blocks of outputs, and sum the groups in a fixed order)."""
    x, y = _sparse_digits(rng, n=1000, d=784, density=0.2)
    x[:100] = rng.integers(1, 256, size=(100, 784))  # dense rows: some batches go dense
    nets = [_train(x, y, [784, 40, 16, 10], mode, bs=bs, epochs=2, dropout=0.2,
                   optimizer=opt, threads=t)[0]
            for opt in ("sgd", "adam") for t in (1, 2)]
    assert np.array_equal(nets[0].flat_parameters, nets[1].flat_parameters)
    assert np.array_equal(nets[2].flat_parameters, nets[3].flat_parameters)


@pytest.mark.parametrize("d, split", [(40, 0), (40, 40), (70, 1), (70, None),
                                      (784, 0), (784, 408), (784, None)])
@pytest.mark.parametrize("sizes", [[130, 10], [72, 24, 10]])
def test_input_column_groups_on_two_threads(rng, d, split, sizes):
    """Layer 0's sparse products run per group of input columns: two groups, cut at
    the split (0: half the inputs rounded down to 32, so with 40 inputs the first group
    is empty; 40 of 40 leaves the second empty; None: from the data). Batches dense
    enough for two threads to share the work: the same bits on 1 and 2 threads, with
    dropout and a leaky ReLU, and the dense path's weights up to rounding."""
    x, y = _sparse_digits(rng, n=512, d=d, density=0.4)
    kw = dict(bs=128, epochs=2, dropout=0.1, activation="leaky_relu", optimizer="sgd",
              lr=0.2, split=split)
    one, _ = _train(x, y, [d] + sizes, "always", threads=1, **kw)
    two, _ = _train(x, y, [d] + sizes, "always", threads=2, **kw)
    dense, _ = _train(x, y, [d] + sizes, "never", threads=2, **kw)
    assert np.array_equal(one.flat_parameters, two.flat_parameters)
    _close(dense, two)
    assert one.score(x, y) > 0.3  # five classes: chance is 0.2


@pytest.mark.parametrize("sizes", [[784, 72, 10], [784, 136, 24, 10]])
def test_backward_tail_in_column_blocks(rng, sizes):
    """On a sparse batch, layers 1 and 0 of the backward pass run per 64-column block of
    layer 0's outputs and per (input group, block) pair, shared among threads
    (tail_block and dw_pair via mlp_run_phases, csrc/mlp_layer0.c).
    Widths with a short last block (72 = 64 + 8: that block's products take the narrow
    GEMM), several blocks per thread, dropout and sigmoid: the same bits on 1 and 2
    threads, and the dense path's weights up to rounding."""
    x, y = _sparse_digits(rng, n=640, d=784, density=0.2)
    kw = dict(bs=64, epochs=2, dropout=0.2, activation="sigmoid", optimizer="sgd", lr=0.5)
    one, _ = _train(x, y, sizes, "always", threads=1, **kw)
    two, _ = _train(x, y, sizes, "always", threads=2, **kw)
    dense, _ = _train(x, y, sizes, "never", threads=2, **kw)
    assert np.array_equal(one.flat_parameters, two.flat_parameters)
    _close(dense, two)
    # it learned something (the tail's gradients are not zero or noise)
    assert not np.array_equal(one.flat_parameters, Network(sizes, activation="sigmoid",
                                                           dropout=0.2, seed=0).flat_parameters)


def test_mnist_mini_learns_on_the_sparse_path():
    (x, y), (xt, yt) = digitcore.load_dataset("mnist-mini")
    acc = {m: _train(x[:3000], y[:3000], [784, 64, 10], m, bs=64, epochs=3)[0].score(xt, yt)
           for m in ("never", "auto")}
    assert acc["auto"] > 0.85
    assert abs(acc["auto"] - acc["never"]) < 0.01, acc


def test_a_mean_shift_turns_the_sparse_path_off(rng):
    # with input_mean the zero pixels become non-zero: the dense path must be used, and
    # the result equals "never" bit for bit
    x, y = _sparse_digits(rng)
    runs = []
    for mode in ("never", "always"):
        net = Network([64, 8, 5], seed=0, input_mean=0.1)
        tr = Trainer(net, optimizer="adam", batch_size=32, epochs=1, seed=1, verbose=0)
        tr._sparse_input = mode
        tr.fit(x, y)
        runs.append(net.flat_parameters.copy())
    assert np.array_equal(runs[0], runs[1])


def test_divergence_on_the_sparse_path_leaves_the_network_usable(rng):
    x, y = _sparse_digits(rng)
    net = Network([64, 16, 5], seed=0)
    tr = Trainer(net, optimizer="sgd", lr=1e9, batch_size=32, epochs=3, seed=0, verbose=0)
    tr._sparse_input = "always"
    with pytest.raises(TrainingDivergedError):
        tr.fit(x, y)
    assert np.isfinite(net.flat_parameters).all()
    net.predict(x)


def test_bad_mode_is_a_clear_error():
    net = Network([4, 3, 2], seed=0)
    with pytest.raises(ValueError, match="sparse_input must be one of"):
        net.c_net().sparse_input = "sometimes"


# ---- inference (dc_mlp_forward / dc_mlp_evaluate) ----------------------------------------

def _infer(net, x, y, mode):
    net.c_net().sparse_input = mode
    try:
        return net.predict_proba(x), net.logits(x), net.evaluate(x, y)
    finally:
        net.c_net().sparse_input = "auto"


def _same_inference(a, b, exact):
    (pa, la, (lossa, acca)), (pb, lb, (lossb, accb)) = a, b
    if exact:
        assert np.array_equal(pa, pb) and np.array_equal(la, lb)
        assert lossa == lossb and acca == accb
    else:
        np.testing.assert_allclose(pa, pb, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(la, lb, rtol=1e-4, atol=1e-5)
        assert abs(lossa - lossb) < 1e-5 * max(1.0, abs(lossa))
        assert abs(acca - accb) <= 2 / len(pa)  # a near-tie may flip, both are right


@pytest.mark.parametrize("sizes", [[784, 130, 10], [784, 10], [784, 64, 32, 10]])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_sparse_inference_matches_dense(rng, sizes, dtype):
    """predict_proba, logits and evaluate on the sparse first layer give the dense path's
    results up to rounding (with 784 inputs even the portable GEMM sums K in blocks of
    256, the sparse kernel in one run); 2500 rows make three chunks, the last short."""
    x, y = _sparse_digits(rng, n=2500, d=784, k=10)
    net, _ = _train(x[:500], y[:500], sizes, "auto", epochs=1)
    xs = x if dtype == np.uint8 else x.astype(np.float32) / 255
    dense = _infer(net, xs, y, "never")
    sparse = _infer(net, xs, y, "always")
    _same_inference(dense, sparse, exact=False)
    if digitcore.kernel_path() == "avx2":  # the sparse path really ran: other rounding
        assert not np.array_equal(dense[1], sparse[1])
    # auto takes the sparse path here (enough rows, MNIST-like density)
    _same_inference(sparse, _infer(net, xs, y, "auto"), exact=True)


def test_sparse_inference_auto_rules(rng):
    x, y = _sparse_digits(rng, n=3000, d=784, k=10)
    net, _ = _train(x[:500], y[:500], [784, 40, 10], "auto", epochs=1)
    # few rows: auto stays dense (transposing the weight would cost more than it saves)
    few = _infer(net, x[:100], y[:100], "auto")
    _same_inference(_infer(net, x[:100], y[:100], "never"), few, exact=True)
    # a dense chunk (first 1024 rows) falls back to the GEMM, the sparse ones do not
    xd = x.copy()
    xd[:1024] = rng.integers(1, 256, size=(1024, 784))
    mixed = _infer(net, xd, y, "auto")
    _same_inference(_infer(net, xd, y, "never"), mixed, exact=False)
    sparse_part = _infer(net, xd[1024:2048], y[1024:2048], "always")
    assert np.array_equal(mixed[0][1024:2048], sparse_part[0])
    dense_part = _infer(net, xd[:1024], y[:1024], "never")
    assert np.array_equal(mixed[0][:1024], dense_part[0])
    # an input shift (input_mean) makes zero pixels non-zero: dense, exactly
    shifted = Network([784, 40, 10], seed=0, input_mean=0.1)
    _same_inference(_infer(shifted, x, y, "never"), _infer(shifted, x, y, "always"), exact=True)


def _rows(net, x, mode, threads, softmax=True):
    before = digitcore.get_num_threads()
    digitcore.set_num_threads(threads)
    net.c_net().sparse_input = mode
    try:
        return net.predict_proba(x) if softmax else net.logits(x)
    finally:
        net.c_net().sparse_input = "auto"
        digitcore.set_num_threads(before)


@pytest.mark.parametrize("sizes", [[784, 130, 10], [784, 64, 32, 10]])
def test_inference_row_blocks_keep_every_rows_bits(rng, sizes):
    """dc_mlp_forward runs fixed blocks of 128 rows, each on whichever thread is free, and
    still decides sparse or dense per chunk of 1024 rows: a row's output is the same on
    1, 2 or 3 threads, and the same as when it is predicted in a call of its own chunk's
    rows (so it depends neither on the blocks beside it nor on which thread ran it)."""
    x, y = _sparse_digits(rng, n=3000, d=784, k=10, density=0.1)  # ~10% non-zero
    net, _ = _train(x[:500], y[:500], sizes, "auto", epochs=1)
    # chunk 1 (rows 1024-2047): one block 60% non-zero inside a sparse chunk (the chunk
    # stays sparse: ~13% in all); chunk 2 (rows 2048-2999): dense but for one sparse block
    xm = x.copy()
    xm[1280:1408] = np.where(rng.random((128, 784)) < 0.6, rng.integers(1, 256, (128, 784)), 0)
    xm[2048:2944] = rng.integers(1, 256, size=(896, 784))
    assert (xm[1024:2048] != 0).mean() < 0.25 < (xm[1280:1408] != 0).mean()
    for softmax in (True, False):
        one = _rows(net, xm, "auto", 1, softmax)
        for threads in (2, 3):
            assert np.array_equal(one, _rows(net, xm, "auto", threads, softmax))
        for a, b, mode in ((0, 1024, "always"), (1024, 2048, "always"), (2048, 3000, "never")):
            part = _rows(net, xm[a:b], mode, 2, softmax)
            assert np.array_equal(one[a:b], part), (a, b, mode)
        # the dense path's rows do not depend on the call's other rows either (17 rows:
        # the smallest call cut into blocks; 300: three blocks, the last short)
        never = _rows(net, xm, "never", 2, softmax)
        for a, b in ((5, 22), (100, 400), (2900, 3000)):
            assert np.array_equal(never[a:b], _rows(net, xm[a:b], "never", 1, softmax))
    # and against NumPy's forward of the same network (ReLU hidden layers)
    h = xm.astype(np.float64) / 255
    for i, (w, b) in enumerate(zip(net.weights, net.biases)):
        h = h @ w.astype(np.float64).T + b
        if i + 1 < len(net.weights):
            h = np.maximum(h, 0)
    p = np.exp(h - h.max(axis=1, keepdims=True))
    np.testing.assert_allclose(_rows(net, xm, "auto", 2), p / p.sum(axis=1, keepdims=True),
                               rtol=1e-4, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(d=st.integers(1, 100), n=st.integers(1, 90), bs=st.integers(1, 40),
       density=st.floats(0.0, 1.0), threads=st.sampled_from([1, 2]),
       dtype=st.sampled_from(["u8", "f32"]), seed=st.integers(0, 2**16))
def test_random_shapes_sparse_equals_dense(d, n, bs, density, threads, dtype, seed):
    """Any width (the AVX2 gather works 8 and 32 pixels at a time, with tails), any
    density (empty rows, full rows), batch sizes that leave a short last batch, uint8 and
    float input, 1 or 2 threads: training and inference agree with the dense path."""
    r = np.random.default_rng(seed)
    keep = r.random((n, d)) < density
    x = np.where(keep, r.integers(1, 256, size=(n, d)), 0).astype(np.uint8)
    y = r.integers(0, 3, size=n)
    xs = x if dtype == "u8" else x.astype(np.float32) / 255
    dense, _ = _train(xs, y, [d, 5, 3], "never", bs=bs, epochs=1, optimizer="sgd", lr=0.1,
                      threads=threads)
    sparse, _ = _train(xs, y, [d, 5, 3], "always", bs=bs, epochs=1, optimizer="sgd",
                       lr=0.1, threads=threads)
    _close(dense, sparse)
    _same_inference(_infer(sparse, xs, y, "never"), _infer(sparse, xs, y, "always"),
                    exact=False)


def test_the_samples_counts_are_count_nonzeros_at_any_width(rng):
    """The split and the path are decided from counts of the sample's non-zeros along
    each axis, summed in uint16 where no count can pass its range: the same as
    np.count_nonzero, also past 65,535 along an axis."""
    from digitcore.trainer import _count_along
    for shape in [(300, 50), (3, 70_000), (70_000, 2), (1, 1), (0, 5)]:
        nz = rng.random(shape) < 0.999
        for axis in (0, 1):
            got = _count_along(nz, axis)
            assert got.dtype == np.int64
            np.testing.assert_array_equal(got, np.count_nonzero(nz, axis=axis))
    ones = np.ones((2, 70_000), bool)
    assert _count_along(ones, 1).tolist() == [70_000, 70_000]


def test_the_split_halves_the_non_zeros_and_changes_only_rounding(rng):
    """Trainer cuts the inputs where the data's non-zeros are halved, on a multiple of
    8; where the cut falls changes the forward's sums only by rounding; a split out of
    range is a clear error."""
    from digitcore.trainer import _nonzero_sample, _sparse_split
    x, y = _sparse_digits(rng, n=600, d=200, density=0.2)
    x[:, :100] = 0  # all the ink in the right half: the cut moves right of 100
    split = _sparse_split(_nonzero_sample(x))
    nz = np.count_nonzero(x, axis=0)
    assert split % 8 == 0 and 100 < split < 200
    imbalance = [abs(2 * int(nz[:c].sum()) - int(nz.sum())) for c in range(0, 201, 8)]
    assert imbalance[split // 8] == min(imbalance)
    assert _sparse_split(_nonzero_sample(np.zeros((4, 30), np.uint8))) == 0
    kw = dict(bs=64, epochs=1, optimizer="sgd", lr=0.1)
    a, _ = _train(x, y, [200, 130, 5], "always", split=8, **kw)
    b, _ = _train(x, y, [200, 130, 5], "always", split=split, **kw)
    assert not np.array_equal(a.flat_parameters, b.flat_parameters)
    _close(a, b)
    kernel = Network([200, 8, 5], seed=0).c_net(0.0)
    for bad in (-1, 201):
        with pytest.raises(ValueError, match="sparse_split must be in \\[0, 200\\]"):
            kernel.sparse_split = bad
