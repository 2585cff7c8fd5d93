"""The first layer on sparse input off a background (csrc/mlp_layer0.c): float input that
is dense in zeros but mostly one value per column (standardized MNIST: 81% of the
entries are -0.4242) is taken as x = c + s with s sparse. The forward adds b + W c, the
weight gradient db c^T; the result must train like the dense path (up to rounding), give
the same bits on any number of threads, and leave data with a zero background on
today's path and bits.
"""

from functools import partial

import numpy as np
import pytest

import digitcore
from digitcore import Network, Trainer
from digitcore.trainer import _background
from sparse_data import sparse_digits

MNIST_MEAN, MNIST_STD = np.float32(0.1307), np.float32(0.3081)


# (synthetic sparse digits: sparse_data.py)
_digits = partial(sparse_digits, n=640, d=784, k=5, density=0.2)


def _standardized(x):
    """PyTorch's MNIST normalization, as float32: the zero pixel becomes -0.4242."""
    return ((x.astype(np.float32) / np.float32(255) - MNIST_MEAN) / MNIST_STD).astype(
        np.float32)


def _column_standardized(x):
    """scikit-learn's StandardScaler: each column its own mean and scale (1 where the
    column is constant), so each column's zero pixel is its own background value."""
    xf = x.astype(np.float32)
    mean = xf.mean(axis=0)
    std = xf.std(axis=0)
    std[std == 0] = 1.0
    return ((xf - mean) / std).astype(np.float32)


def _train(x, y, sizes, mode="auto", *, offset=None, optimizer="sgd", lr=0.1, epochs=2,
           bs=64, dropout=0.0, activation="relu", threads=None):
    before = digitcore.get_num_threads()
    if threads:
        digitcore.set_num_threads(threads)
    try:
        net = Network(sizes, activation=activation, dropout=dropout, seed=0)
        tr = Trainer(net, optimizer=optimizer, lr=lr, batch_size=bs, epochs=epochs, seed=1,
                     verbose=0)
        tr._sparse_input = mode
        tr._sparse_offset = offset
        tr.fit(x, y)
        net.first_layer_used = tr._first_layer_used  # (the fit's choice; see Trainer.fit)
        return net
    finally:
        digitcore.set_num_threads(before)


def _close(a, b):
    np.testing.assert_allclose(a.flat_parameters, b.flat_parameters, rtol=2e-4, atol=2e-5)


def test_background_is_each_columns_most_common_value():
    x = np.array([[1, 3, np.nan, 0],
                  [1, 5, np.nan, 0],
                  [2, 5, 7, 0],
                  [1, 3, 7, 0]], np.float32)
    # column 1: 3 and 5 twice each, the smaller wins; column 2: 7 twice (NaNs are
    # unequal); scaled by 2
    assert _background(x, 2.0).tolist() == [2.0, 6.0, 14.0, 0.0]
    assert _background(np.full((3, 2), np.inf, np.float32), 1.0).tolist() == [0.0, 0.0]
    assert _background(x, 1.0).dtype == np.float32


def test_standardized_input_takes_the_sparse_path_off_its_background(rng):
    """Standardized MNIST-like data: auto finds c = -0.4242 in every column, the C loop
    runs sparse on it (the same bits as forcing the sparse path with that c), and the
    weights are the dense path's up to rounding."""
    x8, y = _digits(rng)
    x = _standardized(x8)
    assert np.count_nonzero(x) == x.size  # no zero anywhere: the zero rule refuses
    net = Network([784, 20, 5], seed=0)
    tr = Trainer(net, optimizer="sgd", lr=0.1, batch_size=64, epochs=1, seed=1, verbose=0)
    tr.fit(x, y)
    c = tr._first_layer_used["sparse_offset"]
    assert c is not None and tr._first_layer_used["sparse_input"] == "auto"
    np.testing.assert_array_equal(c, np.full(784, -MNIST_MEAN / MNIST_STD, np.float32))
    for sizes in ([784, 20, 5], [784, 136, 5], [784, 72, 24, 5]):
        dense = _train(x, y, sizes, "never")
        auto = _train(x, y, sizes, "auto")
        forced = _train(x, y, sizes, "always", offset=c)
        assert np.array_equal(auto.flat_parameters, forced.flat_parameters)
        assert not np.array_equal(auto.flat_parameters, dense.flat_parameters)
        _close(dense, auto)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("sizes", [[784, 20, 5], [784, 136, 5]])
def test_every_optimizer_and_dropout_off_the_background(rng, optimizer, sizes):
    """The weight gradient's rank-1 term goes into the fused plain-SGD step (sgd) or into
    the gradient the optimizer reads (momentum, Adam); one column block (20: the per-block
    steps cut into row slices) or three (136), with dropout on a hidden layer."""
    x8, y = _digits(rng, n=384)
    x = _standardized(x8)
    sizes = sizes[:2] + [16] + sizes[2:]
    kw = dict(optimizer=optimizer, lr=0.02 if optimizer == "adam" else 0.05,
              dropout=0.2)
    dense = _train(x, y, sizes, "never", **kw)
    auto = _train(x, y, sizes, "auto", **kw)
    assert auto.first_layer_used["sparse_offset"] is not None
    _close(dense, auto)


@pytest.mark.parametrize("bs", [64, 128])
def test_the_same_bits_on_one_and_two_threads(rng, bs):
    """b + W c and the rank-1 db c^T are worked out per column block and per (group,
    block) pair in a fixed order: 1 and 2 threads give the same bits, also with a dense
    batch mixed in (it takes the GEMM)."""
    x8, y = _digits(rng, n=1024)
    x = _standardized(x8)
    x[:bs] = rng.standard_normal((bs, 784)).astype(np.float32)  # the first rows: dense
    kw = dict(bs=bs, epochs=2, dropout=0.1, activation="leaky_relu")
    for sizes in ([784, 130, 10], [784, 40, 16, 10]):
        for opt in ("sgd", "adam"):
            one = _train(x, y, sizes, optimizer=opt, threads=1, **kw)
            two = _train(x, y, sizes, optimizer=opt, threads=2, **kw)
            assert one.first_layer_used["sparse_offset"] is not None
            assert np.array_equal(one.flat_parameters, two.flat_parameters), (sizes, opt)


def test_column_wise_standardized_input(rng):
    """A different background in every column (StandardScaler), constant columns
    included (their background is 0, the zero rule's): found column by column, trains
    like the dense path, same bits on 1 and 2 threads."""
    x8, y = _digits(rng)
    x8[:, :40] = 0  # constant columns
    x = _column_standardized(x8)
    c = _background(x, 1.0)
    assert np.count_nonzero(c[:40]) == 0
    assert len(np.unique(c[40:])) > 100
    assert np.array_equal(c[40:], x[:, 40:].min(axis=0))  # the zero pixel's value
    dense = _train(x, y, [784, 70, 5], "never")
    one = _train(x, y, [784, 70, 5], threads=1)
    two = _train(x, y, [784, 70, 5], threads=2)
    assert one.first_layer_used["sparse_offset"] is not None
    np.testing.assert_array_equal(one.first_layer_used["sparse_offset"], c)
    assert np.array_equal(one.flat_parameters, two.flat_parameters)
    _close(dense, one)


def test_a_background_of_zeros_keeps_the_zero_path_and_its_bits(rng):
    """Data that is sparse in zeros never gets a background (the zero rule takes it
    first), and a background of zeros forced on it is no background: the same bits."""
    x8, y = _digits(rng)
    xf = x8.astype(np.float32) / np.float32(255)
    for x in (x8, xf):
        auto = _train(x, y, [784, 30, 5], "auto")
        assert auto.first_layer_used["sparse_offset"] is None
        zeros = _train(x, y, [784, 30, 5], "auto", offset=np.zeros(784, np.float32))
        assert zeros.first_layer_used["sparse_offset"] is None
        assert np.array_equal(auto.flat_parameters, zeros.flat_parameters)


def test_data_half_off_its_background_takes_the_dense_path(rng):
    """Fashion-MNIST-like data (about half the pixels off the background), standardized:
    the quarter rule refuses the background too, and the run is the dense path's bit for
    bit. Full batches and uint8 input never get one."""
    x8, y = _digits(rng, density=0.6)
    x = _standardized(x8)
    assert np.count_nonzero(x != x.min()) > 0.4 * x.size
    never = _train(x, y, [784, 30, 5], "never")
    auto = _train(x, y, [784, 30, 5], "auto")
    assert auto.first_layer_used["sparse_offset"] is None
    assert auto.first_layer_used["sparse_input"] == "never"
    assert np.array_equal(never.flat_parameters, auto.flat_parameters)
    xs, ys = _standardized(_digits(rng, n=256)[0]), y[:256]
    assert _train(xs, ys, [784, 30, 5], bs=None, epochs=1).first_layer_used["sparse_offset"] is None


def test_forced_background_on_dense_data_is_still_right(rng):
    """The arithmetic holds for any c and any data: a background that is wrong for half
    the columns (the sparse part then holds every entry there), forced sparse."""
    x8, y = _digits(rng, n=256, density=0.4)
    x = _standardized(x8)
    c = _background(x, 1.0)
    c[::2] = 1.5
    dense = _train(x, y, [784, 70, 5], "never", optimizer="adam", lr=0.01)
    forced = _train(x, y, [784, 70, 5], "always", offset=c, optimizer="adam", lr=0.01)
    _close(dense, forced)


def test_mnist_mini_standardized_learns_as_well():
    (x, y), (xt, yt) = digitcore.load_dataset("mnist-mini")
    x, xt = _standardized(x[:3000].reshape(3000, -1)), _standardized(xt.reshape(len(xt), -1))
    acc = {}
    for mode in ("never", "auto"):
        net = _train(x, y[:3000], [784, 64, 10], mode, epochs=3)
        acc[mode] = net.score(xt, yt)
        assert (net.first_layer_used["sparse_offset"] is not None) == (mode == "auto")
    assert acc["auto"] > 0.85
    assert abs(acc["auto"] - acc["never"]) < 0.01, acc


def test_bad_sparse_offset_is_a_clear_error():
    c_net = Network([6, 3, 2], seed=0).c_net()
    with pytest.raises(TypeError, match="sparse_offset"):
        c_net.sparse_offset = np.zeros(6)
    with pytest.raises(ValueError, match="sparse_offset"):
        c_net.sparse_offset = np.zeros(5, np.float32)
    with pytest.raises(ValueError, match="sparse_offset must be finite"):
        c_net.sparse_offset = np.array([0, 1, np.nan, 0, 0, 0], np.float32)
    c = np.arange(6, dtype=np.float32)
    c_net.sparse_offset = c
    c[:] = np.nan  # a copy is held
    assert c_net.sparse_offset.tolist() == [0, 1, 2, 3, 4, 5]
