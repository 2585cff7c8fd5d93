"""Full-batch descent keeps its sparse input between steps (csrc/mlp_keep.c): the steps
read the kept rows in the batch's order instead of gathering the whole data set anew.
They must train the same bits as the gathered batches, on both kernel paths and any
thread count; the keep is rebuilt for another array and forgotten after user callbacks,
which may change the data in place. Trainer takes a full batch in x's row order
whatever `shuffle` says (its order changes only the rounding of the sums).
"""

from functools import partial
from unittest import mock

import numpy as np
import pytest

from digitcore import Network, Trainer
from kernel_config import PATHS, config
from sparse_data import sparse_digits


# (synthetic sparse digits: sparse_data.py)
_digits = partial(sparse_digits, n=400, d=784, k=10, density=0.15)


def _fit(x, y, sizes, keep, *, path, threads, optimizer="sgd", lr=0.1, epochs=4,
         dropout=0.0, callbacks=(), sparse="auto", shuffle=True):
    made = []
    real = Network.c_keep

    def spy():  # (the keep the fit hands to every train call, if any)
        made.append(real())
        return made[-1]

    with config(path, threads), mock.patch.object(Network, "c_keep", staticmethod(spy)):
        net = Network(sizes, dropout=dropout, seed=0)
        tr = Trainer(net, optimizer=optimizer, lr=lr, batch_size=None, epochs=epochs, seed=1,
                     verbose=0, callbacks=callbacks, shuffle=shuffle)
        tr._keep_input = keep
        tr._sparse_input = sparse
        tr.fit(x, y)
    # the comparisons below are of the kept path with the gathered one only if the fit
    # really kept its input (and a sparse-path fit without callbacks still holds it)
    assert len(made) == (1 if keep else 0), made
    if keep and not callbacks and sparse != "never" and np.count_nonzero(x) < 0.3 * x.size:
        assert made[0].nnz > 0
    return net, tr


def _same(a, b):
    (na, ta), (nb, tb) = a, b
    assert np.array_equal(na.flat_parameters, nb.flat_parameters)
    for s in ("grad_avg", "sq_avg"):
        sa, sb = getattr(ta.optimizer, s), getattr(tb.optimizer, s)
        assert (sa is None) == (sb is None)
        if sa is not None:
            assert np.array_equal(sa, sb)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("sizes, optimizer, dropout", [
    ([784, 10, 10], "sgd", 0.0),           # the tutorial's: one block with a masked tail
    ([784, 10], "sgd", 0.0),               # one layer: layer 0 is the output
    ([784, 70, 10], "momentum", 0.0),      # two blocks (64 + 6), state in the kept layout
    ([784, 26, 10], "sgd", 0.0),           # a whole and a partial 16-column vector
    ([784, 48, 10], "nesterov", 0.0),      # three whole 16-column vectors
    ([784, 136, 24, 10], "adam", 0.2),     # three blocks (64 + 64 + 8), dropout
])
def test_kept_input_trains_the_same_bits(rng, path, threads, sizes, optimizer, dropout):
    x, y = _digits(rng)
    lr = 1e-3 if optimizer == "adam" else 0.1
    runs = [_fit(x, y, sizes, keep, path=path, threads=threads, optimizer=optimizer, lr=lr,
                 dropout=dropout) for keep in (False, True)]
    _same(*runs)


@pytest.mark.parametrize("path", PATHS)
def test_unshuffled_and_float_input(rng, path):
    x, y = _digits(rng)
    xf = x.astype(np.float32) / 255
    for data, shuffle in ((x, False), (xf, True)):
        runs = [_fit(data, y, [784, 20, 10], keep, path=path, threads=2, shuffle=shuffle)
                for keep in (False, True)]
        _same(*runs)


@pytest.mark.parametrize("keep", [False, True])
def test_a_full_batch_is_taken_in_xs_order(rng, keep):
    x, y = _digits(rng)
    runs = [_fit(x, y, [784, 20, 10], keep, path=PATHS[-1], threads=2, shuffle=shuffle)
            for shuffle in (True, False)]
    _same(*runs)
    # any batch size of at least the number of samples is the same full batch
    with config(PATHS[-1], 2):
        net = Network([784, 20, 10], seed=0)
        tr = Trainer(net, optimizer="sgd", lr=0.1, batch_size=len(x) + 5, epochs=4, seed=1,
                     verbose=0)
        tr._keep_input = keep
        tr.fit(x, y)
    _same(runs[0], (net, tr))
    # and a mini-batch run still shuffles: its bits depend on the order
    mini = [_fit_mini(x, y, shuffle) for shuffle in (True, False)]
    assert not np.array_equal(mini[0].flat_parameters, mini[1].flat_parameters)


def _fit_mini(x, y, shuffle):
    with config(PATHS[-1], 2):
        net = Network([784, 20, 10], seed=0)
        Trainer(net, optimizer="sgd", lr=0.1, batch_size=len(x) - 1, epochs=2, seed=1,
                verbose=0, shuffle=shuffle).fit(x, y)
    return net


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("hidden", [5, 8, 10, 16])
def test_a_narrow_full_batch_agrees_with_the_dense_path(rng, path, hidden):
    # A narrow layer 0 (at most 16 outputs) takes its full-batch forward in two chains
    # of sums with the weight read from 16-float rows (dc_spmm_ld_chains): other bits
    # than the mini-batch kernels', the same sums to rounding. The dense path (GEMM) is
    # the yardstick; widths 5 and 8 have one vector, 10 a masked second one, 16 two.
    x, y = _digits(rng)
    runs = [_fit(x, y, [784, hidden, 10], True, path=path, threads=2, sparse=sparse)
            for sparse in ("auto", "never")]
    (na, _), (nb, _) = runs
    assert not np.array_equal(na.flat_parameters, Network([784, hidden, 10],
                                                          seed=0).flat_parameters)
    np.testing.assert_allclose(na.flat_parameters, nb.flat_parameters, rtol=1e-4, atol=1e-5)


def test_too_dense_data_takes_the_dense_path_either_way(rng):
    x, y = _digits(rng, density=0.6)  # over a quarter non-zero: the GEMM on every step
    runs = [_fit(x, y, [784, 12, 10], keep, path=PATHS[-1], threads=2)
            for keep in (False, True)]
    _same(*runs)
    # "always" forces the sparse path, kept too
    runs = [_fit(x, y, [784, 12, 10], keep, path=PATHS[-1], threads=2, sparse="always")
            for keep in (False, True)]
    _same(*runs)


def test_a_callback_that_changes_x_in_place_is_seen(rng):
    x0, y = _digits(rng)
    other, _ = _digits(np.random.default_rng(99))

    def run(keep):
        x = x0.copy()

        def swap(epoch, logs):
            if epoch == 1:
                x[:] = other

        return _fit(x, y, [784, 10, 10], keep, path=PATHS[-1], threads=2, callbacks=[swap])

    _same(run(False), run(True))


# ---- the keep itself, through the C view's train -------------------------------------------

def _step(net, x, y, order, keep, lr=0.1):
    c = net.c_net()
    grads = np.empty(net.n_params, np.float32)
    return c.train(x, np.asarray(y, np.int64), np.asarray(order, np.int64), len(order),
                   np.full(1, lr, np.float32), 1 / 255, 0.0, 7, {"kind": "sgd", "step": 0},
                   grads, None, None, None, keep)


def test_the_keep_holds_the_data_sets_entries(rng):
    x, y = _digits(rng)
    net = Network([784, 10, 10], seed=0)
    keep = net.c_keep()
    assert keep.nnz == -1
    _step(net, x, y, rng.permutation(len(x)), keep)
    assert keep.nnz == np.count_nonzero(x)
    keep.clear()
    assert keep.nnz == -1
    dense, _ = _digits(rng, density=0.6)
    _step(net, dense, y, rng.permutation(len(x)), keep)
    assert keep.nnz == -1  # too dense: nothing kept, the step went dense


def test_keep_is_rebuilt_for_another_array_and_ignored_for_other_orders(rng):
    x1, y = _digits(rng)
    x2, _ = _digits(rng)
    n = len(x1)
    repeats = np.concatenate([np.arange(n - 1), [0]])  # n rows, not a permutation
    orders = [(x1, rng.permutation(n)), (x2, rng.permutation(n)), (x2, repeats),
              (x1, np.arange(n))]
    a, b = Network([784, 10, 10], seed=0), Network([784, 10, 10], seed=0)
    keep = b.c_keep()
    for x, order in orders:
        la = _step(a, x, y, order, None)
        lb = _step(b, x, y, order, keep)
        assert la == lb
        assert np.array_equal(a.flat_parameters, b.flat_parameters)
        assert keep.nnz == np.count_nonzero(x)


def test_one_keep_serves_networks_of_other_widths_and_dropout(rng):
    """The keep also holds a call's activations, gradients and dropout masks between calls
    (no fresh pages each step); a call that needs more grows them, and what an earlier
    call left in them never reaches a result: steps of networks of other widths, with and
    without dropout, through one keep, equal the same steps without it, bit for bit."""
    x, y = _digits(rng)
    keep = Network.c_keep()
    for sizes, dropout in (([784, 70, 10], 0.3), ([784, 10, 10], 0.0),
                           ([784, 136, 24, 10], 0.2), ([784, 70, 10], 0.3)):
        a, b = (Network(sizes, dropout=dropout, seed=3) for _ in range(2))
        for order in (rng.permutation(len(x)), np.arange(len(x))):
            assert _dropout_step(a, x, y, order, None) == _dropout_step(b, x, y, order, keep)
            assert np.array_equal(a.flat_parameters, b.flat_parameters)
        keep.clear()  # (the kept rows go; the state buffers stay for the next network)


def test_one_keep_serves_dense_full_batches_of_other_sizes(rng):
    """A full batch too dense for the sparse path loads its rows into the keep too (no
    fresh pages for them each step), the next call reusing them: data sets of other sizes
    and networks of other widths, through one keep, train the same bits as without it, and
    the rows a larger data set left behind never reach a result."""
    keep = Network.c_keep()
    for n, sizes, dropout in ((400, [784, 12, 10], 0.0), (150, [784, 30, 10], 0.3),
                              (400, [784, 40, 12, 10], 0.0), (90, [784, 12, 10], 0.0)):
        x, y = _digits(rng, n=n, density=0.6)  # over a quarter non-zero: the GEMM
        a, b = (Network(sizes, dropout=dropout, seed=5) for _ in range(2))
        for order in (rng.permutation(n), np.arange(n)):
            assert _dropout_step(a, x, y, order, None) == _dropout_step(b, x, y, order, keep)
            assert np.array_equal(a.flat_parameters, b.flat_parameters)
        assert keep.nnz == -1  # nothing kept in sparse form: the rows went dense


def _dropout_step(net, x, y, order, keep):
    c = net.c_net(net.dropout)
    grads = np.empty(net.n_params, np.float32)
    return c.train(x, np.asarray(y, np.int64), np.asarray(order, np.int64), len(order),
                   np.full(1, 0.1, np.float32), 1 / 255, 0.0, 7, {"kind": "sgd", "step": 0},
                   grads, None, None, None, keep)


def test_a_batch_size_near_int64s_limit_is_one_batch():
    # the number of batches was (m + batch_size - 1) // batch_size, which wrapped negative
    # for a batch_size near 2**63: the lrs length check was skipped and C read lrs[0] of an
    # empty array
    net = Network([6, 4, 3], seed=0)
    c = net.c_net()
    x = np.random.default_rng(0).integers(0, 256, (10, 6), dtype=np.uint8)
    args = (x, np.arange(10) % 3, np.arange(10, dtype=np.int64), 2**63 - 1)
    rest = (1 / 255, 0.0, 7, {"kind": "sgd", "step": 0}, np.empty(net.n_params, np.float32),
            None, None)
    before = net.flat_parameters.copy()
    with pytest.raises(ValueError, match="lrs"):
        c.train(*args, np.empty(0, np.float32), *rest)
    np.testing.assert_array_equal(net.flat_parameters, before)
    # one learning rate: one batch of all ten rows
    assert c.train(*args, np.full(1, 0.1, np.float32), *rest)[2] == 10
