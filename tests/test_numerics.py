"""Numerical edge cases: saturated images, non-finite input, huge learning rates, huge logits.

The rule under test: digitcore either gives a finite, usable result or raises the
documented error (ValueError for bad input, TrainingDivergedError for divergence). It never
returns normally with NaN/inf inside the network or its outputs, and a network that
raised TrainingDivergedError is left finite (it still predicts, saves and loads).
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import digitcore
from digitcore import Network, Trainer, ops
from digitcore.errors import TrainingDivergedError
from digitcore.imaging import preprocess_image

OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw")
HUGE_LRS = (1e3, 1e8, 1e20, 1e30, 3e38)


def _data(rng, n=384, features=784):
    x = rng.integers(0, 256, (n, features), dtype=np.uint8)
    y = rng.integers(0, 10, n)
    return x, y


def _assert_usable(net, x):
    assert np.isfinite(net.flat_parameters).all(), "non-finite parameters left in the network"
    p = net.predict_proba(x[:4])
    assert np.isfinite(p).all() and np.allclose(p.sum(axis=1), 1.0, atol=1e-5)


# ---------------------------------------------------------------------------- saturated images

@pytest.mark.parametrize("level", [0, 255])
def test_constant_images_train_and_predict(level):
    x = np.full((256, 784), level, dtype=np.uint8)
    y = np.arange(256) % 10
    net = Network([784, 32, 10], seed=0)
    hist = Trainer(net, epochs=3, verbose=0, seed=0).fit(x, y)
    assert np.isfinite(hist.loss).all()
    _assert_usable(net, x)
    # identical inputs cannot be told apart: the best the net can do is the class prior
    p = net.predict_proba(x[:1])[0]
    assert p.max() < 0.5
    loss, acc = net.evaluate(x, y)
    assert np.isfinite(loss) and 0.0 <= acc <= 1.0


@pytest.mark.parametrize("level", [0.0, 1.0])
def test_constant_float_images(level):
    x = np.full((64, 784), level, dtype=np.float32)
    net = Network([784, 16, 10], seed=0, input_mean=0.13, input_std=0.31)
    _assert_usable(net, x)
    Trainer(net, epochs=1, verbose=0, seed=0).fit(x, np.arange(64) % 10)
    _assert_usable(net, x)


@pytest.mark.parametrize("level", [0, 255])
def test_constant_image_is_blank_for_preprocess(level):
    with pytest.raises(ValueError, match="blank"):
        preprocess_image(np.full((28, 28), level, dtype=np.uint8))
    with pytest.raises(ValueError, match="blank"):
        preprocess_image(np.full((40, 30, 3), level, dtype=np.uint8))


# ---------------------------------------------------------------------------- NaN / inf input

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_float_input_is_a_clear_error(bad, dtype):
    net = Network([784, 16, 10], seed=0)
    x = np.full((3, 784), 0.5, dtype=dtype)
    x[1, 100] = bad
    for call in (net.predict, net.predict_proba, net.logits):
        with pytest.raises(ValueError, match="NaN or infinite"):
            call(x)
    with pytest.raises(ValueError, match="NaN or infinite"):
        net.evaluate(x, [0, 1, 2])
    with pytest.raises(ValueError, match="NaN or infinite"):
        Trainer(net, epochs=1, verbose=0).fit(x, [0, 1, 2])
    with pytest.raises(ValueError, match="NaN or infinite"):
        preprocess_image(x[1].reshape(28, 28))
    assert np.isfinite(net.flat_parameters).all()


def test_finite_input_whose_sum_overflows_is_accepted():
    # the finiteness check sums the values first: a sum of huge finite values that
    # overflows must fall back to the elementwise check, not reject the input
    from digitcore._checks import all_finite
    big = np.full((4, 784), 3e38, dtype=np.float32)
    assert all_finite(big)
    for bad in ([np.inf, -np.inf], [np.nan], [-np.inf]):
        x = big.copy()
        x[2, :len(bad)] = bad
        assert not all_finite(x)
    net = Network([784, 4, 10], seed=0)
    # (weights small enough that these inputs' products stay finite: the point is that
    # the input check accepts them; with the usual weights the outputs overflow, and
    # predict says so)
    net.weights[0][...] = np.float32(1e-30)
    assert net.predict(big).shape == (4,)
    with pytest.raises(FloatingPointError, match="output is NaN"):
        Network([784, 4, 10], seed=0).predict(big)


def test_float64_values_beyond_float32_range_are_rejected():
    # finite in float64, inf once cast to the float32 the kernels use
    net = Network([784, 16, 10], seed=0)
    x = np.zeros((2, 784))
    x[0, 0] = 1e300
    # (it was called NaN or infinite, which x is not; and NumPy warned about the cast)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="x holds values past float32's range"):
            net.predict(x)


def test_non_finite_validation_data_is_rejected():
    rng = np.random.default_rng(0)
    x, y = _data(rng, 64)
    xv = np.full((8, 784), np.nan, dtype=np.float32)
    with pytest.raises(ValueError, match="NaN or infinite"):
        Trainer(Network([784, 8, 10], seed=0), epochs=1, verbose=0).fit(
            x, y, validation_data=(xv, np.zeros(8, int)))


def test_non_finite_parameters_are_rejected():
    net = Network([4, 3, 2], seed=0)
    w = [np.array(w) for w in net.weights]
    w[0][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        net.set_parameters(w, net.biases)
    assert np.isfinite(net.flat_parameters).all()


# ---------------------------------------------------------------------------- huge learning rates

@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("lr", HUGE_LRS)
def test_huge_learning_rate_never_leaves_a_silent_nan_model(optimizer, lr, tmp_path):
    rng = np.random.default_rng(1)
    x, y = _data(rng)
    net = Network([784, 32, 10], seed=0)
    try:
        hist = Trainer(net, optimizer=optimizer, lr=lr, epochs=2, batch_size=64, verbose=0,
                       seed=0).fit(x, y)
    except TrainingDivergedError as exc:
        assert "learning rate" in str(exc)
    else:
        assert np.isfinite(hist.loss).all(), hist.loss
    # either way: finite parameters, predictions work, the model round-trips through a file
    _assert_usable(net, x)
    net.save(tmp_path / "m.safetensors")
    back = digitcore.load_model(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(back.flat_parameters, net.flat_parameters)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_huge_learning_rate_with_clip_norm(optimizer):
    rng = np.random.default_rng(2)
    x, y = _data(rng)
    net = Network([784, 32, 10], seed=0)
    try:
        Trainer(net, optimizer=optimizer, lr=1e30, epochs=2, clip_norm=1.0, verbose=0,
                seed=0).fit(x, y)
    except TrainingDivergedError:
        pass
    _assert_usable(net, x)


def test_diverged_training_can_continue_with_a_sane_learning_rate():
    rng = np.random.default_rng(3)
    x, y = _data(rng)
    net = Network([784, 32, 10], seed=0)
    with pytest.raises(TrainingDivergedError):
        Trainer(net, optimizer="adam", lr=3e38, epochs=2, verbose=0, seed=0).fit(x, y)
    hist = Trainer(net, optimizer="adam", lr=1e-3, epochs=1, verbose=0, seed=0).fit(x, y)
    assert np.isfinite(hist.loss).all()
    _assert_usable(net, x)


# Two of the three ways a chunk is found to diverge: a non-finite loss in C (adam, rmsprop,
# sgd here) and outputs that overflow (momentum, adamw); the third, parameters that
# overflow without either, is forced in the test after this one.
@pytest.mark.parametrize("optimizer,lr,batch_size", [
    ("adam", 3e38, 64), ("rmsprop", 1e30, 64), ("momentum", 1e12, None), ("sgd", 1e20, 64),
    ("adamw", 4923882.631706731, None),
])
def test_divergence_undoes_the_optimizer_state_with_the_parameters(optimizer, lr, batch_size):
    # Before, the parameters went back to the chunk's start but the optimizer kept the
    # chunk's step count and moments: a fit that continued after the error ran Adam's bias
    # correction at the wrong step, from moments of updates that had been undone.
    rng = np.random.default_rng(1)
    x, y = _data(rng)

    def trainer(net, epochs, opt=optimizer):
        # one chunk per epoch: the chunk undone starts where the epoch does
        return Trainer(net, optimizer=opt, lr=lr, epochs=epochs, batch_size=batch_size,
                       lr_schedule="constant", verbose=0, seed=0, chunk_samples=len(x),
                       chunk_seconds=None)

    net = Network([784, 32, 10], seed=0)
    tr = trainer(net, 6)
    with pytest.raises(TrainingDivergedError) as info:
        tr.fit(x, y)
    epoch = int(re.search(r"epoch (\d+),", str(info.value)).group(1))
    # the state of a run stopped before that epoch
    ref = Network([784, 32, 10], seed=0)
    ref_tr = trainer(ref, epoch - 1)
    if epoch > 1:
        ref_tr.fit(x, y)
    opt, ref_opt = tr.optimizer, ref_tr.optimizer
    np.testing.assert_array_equal(net.flat_parameters, ref.flat_parameters)
    assert opt.step_count == ref_opt.step_count
    for state, ref_state in ((opt.grad_avg, ref_opt.grad_avg), (opt.sq_avg, ref_opt.sq_avg)):
        if ref_state is None or epoch == 1:
            assert state is None or not state.any()
        else:
            np.testing.assert_array_equal(state, ref_state)
    # continuing with the same optimizer gives what the stopped run continued gives
    opt.lr = ref_opt.lr = 1e-3
    for n, o in ((net, opt), (ref, ref_opt)):
        Trainer(n, optimizer=o, epochs=1, batch_size=64, verbose=0, seed=0).fit(x, y)
    np.testing.assert_array_equal(net.flat_parameters, ref.flat_parameters)
    assert opt.step_count == ref_opt.step_count > 0


class _OverflowingView:
    """A network's C view whose train() call number ``at`` leaves an inf in the parameters
    without a non-finite loss: the path where the trainer finds the overflow itself."""

    def __init__(self, real, net, at):
        object.__setattr__(self, "_real", real)
        object.__setattr__(self, "_net", net)
        object.__setattr__(self, "_left", at)

    def __getattr__(self, name):
        return getattr(self._real, name)

    def __setattr__(self, name, value):
        setattr(self._real, name, value)

    def train(self, *args, **kwargs):
        out = self._real.train(*args, **kwargs)
        object.__setattr__(self, "_left", self._left - 1)
        if self._left == 0:
            self._net.flat_parameters[3] = np.inf
        return out


@pytest.mark.parametrize("optimizer", ["adam", "momentum", "sgd"])
def test_parameters_that_overflow_undo_the_chunk_with_the_optimizer(optimizer, monkeypatch):
    rng = np.random.default_rng(1)
    x, y = _data(rng)

    def trainer(net, epochs):
        return Trainer(net, optimizer=optimizer, lr=1e-3, epochs=epochs, batch_size=64,
                       verbose=0, seed=0, chunk_samples=len(x), chunk_seconds=None)

    net = Network([784, 32, 10], seed=0)
    real = net.c_net
    monkeypatch.setattr(net, "c_net", lambda *a, **k: _OverflowingView(real(*a, **k), net, 2))
    tr = trainer(net, 3)
    with pytest.raises(TrainingDivergedError, match="the parameters overflowed in epoch 2,"):
        tr.fit(x, y)
    ref = Network([784, 32, 10], seed=0)
    ref_tr = trainer(ref, 1)
    ref_tr.fit(x, y)
    np.testing.assert_array_equal(net.flat_parameters, ref.flat_parameters)
    assert tr.optimizer.step_count == ref_tr.optimizer.step_count == len(x) // 64
    for name in ("grad_avg", "sq_avg"):
        a, b = getattr(tr.optimizer, name), getattr(ref_tr.optimizer, name)
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------- huge logits

@pytest.mark.parametrize("scale", [1e4, 1e6, 1e30, 3e38])
def test_softmax_of_huge_logits(scale):
    logits = np.array([[scale, -scale, 0.0, scale / 2],
                       [-scale, -scale, -scale, -scale],
                       [scale, scale, -scale, 0.0]], dtype=np.float32)
    p = ops.softmax(logits)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(p[0], [1, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(p[1], [0.25] * 4, atol=1e-6)
    np.testing.assert_allclose(p[2], [0.5, 0.5, 0, 0], atol=1e-6)


@pytest.mark.parametrize("scale", [1e4, 1e6, 1e30])
def test_cross_entropy_of_huge_logits(scale):
    logits = np.array([[scale, -scale, 0.0], [-scale, scale, 0.0]], dtype=np.float32)
    labels = np.array([0, 0])
    loss, probs, dlogits = ops.softmax_cross_entropy(logits, labels)
    assert np.isfinite(loss) and np.isfinite(probs).all() and np.isfinite(dlogits).all()
    # row 0 is right with certainty (loss 0), row 1 wrong by 2*scale (loss 2*scale), mean
    np.testing.assert_allclose(loss, scale, rtol=1e-5)
    np.testing.assert_allclose(dlogits, [[0, 0, 0], [-0.5, 0.5, 0]], atol=1e-6)


def test_softmax_rejects_or_propagates_non_finite_logits():
    # NaN logits cannot give probabilities; either a clear error or NaN in that row only
    logits = np.array([[np.nan, 0.0], [1.0, 0.0]], dtype=np.float32)
    try:
        p = ops.softmax(logits)
    except (ValueError, FloatingPointError):
        return
    assert np.isfinite(p[1]).all() and np.isclose(p[1].sum(), 1.0)


def test_network_with_huge_weights_predicts_finite_probabilities():
    net = Network([784, 16, 10], seed=0)
    net.flat_parameters[...] *= 1e4
    x = np.random.default_rng(4).integers(0, 256, (8, 784), dtype=np.uint8)
    p = net.predict_proba(x)
    assert np.isfinite(p).all() and np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    logits = net.logits(x)
    assert np.isfinite(logits).all()
    assert (net.predict(x) == np.argmax(logits, axis=1)).all()


def test_nan_parameters_are_an_error_not_a_confident_answer():
    # NaN weights: predict returned all 0s and score(x, zeros) 1.0; only predict_proba said so
    net = Network([784, 16, 10], seed=0)
    x = np.zeros((3, 784), np.uint8)
    x[:, 100] = 200
    net.weights[1][:] = np.nan
    for call in (lambda: net.predict(x), lambda: net.predict(x[:1]),
                 lambda: net.score(x, [0, 0, 0]), lambda: net.evaluate(x, [0, 0, 0]),
                 lambda: net.predict_proba(x), lambda: net.score(x, [0, 0, 0], tta="shift")):
        with pytest.raises(FloatingPointError):
            call()


def test_overflowing_output_is_a_clear_error_not_nan_probabilities():
    """Finite weights can still overflow float32 on some input (found by fuzz_model.py:
    a loaded file with one weight of -3.3e38 and input_mean 5). predict_proba then has
    no probabilities to give: it says so instead of returning NaN; logits() shows the
    infinite values and predict() still takes the largest."""
    from digitcore import Committee

    net = Network([3, 2], seed=0, input_mean=5.0)
    net.weights[0][1, 2] = -3.3e38
    x = np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3)
    # (5,000 rows: blocks shared by the threads, the error taken from whichever had it)
    for xs in (x, (x * 255).astype(np.uint8), (x[:1] * 255).astype(np.uint8),
               np.repeat(x, 2500, axis=0)):
        with pytest.raises(FloatingPointError, match="overflowed float32 for this input"):
            net.predict_proba(xs)
    assert np.isposinf(net.logits(x)[:, 1]).all()
    assert (net.predict(x) == 1).all()
    with pytest.raises(FloatingPointError, match="overflowed float32"):
        Committee([net, Network([3, 2], seed=1)]).predict_proba(x)
    # a NaN logit (inf - inf inside a layer) is refused the same way
    deep = Network([3, 4, 2], seed=0, input_mean=5.0)
    deep.weights[0][:2, 2] = -3.3e38
    deep.weights[1][0, :2] = [3.3e38, -3.3e38]  # output 0: inf - inf
    assert np.isnan(deep.logits(x)).any()
    with pytest.raises(FloatingPointError, match="overflowed float32"):
        deep.predict_proba(x)
    # ... and predict and evaluate too: predict took a NaN row's first logit, and score
    # counted it right for label 0
    for xs in (x, (x * 255).astype(np.uint8), np.repeat(x, 2500, axis=0)):
        with pytest.raises(FloatingPointError, match="output is NaN"):
            deep.predict(xs)
    with pytest.raises(FloatingPointError, match="no loss to give"):
        deep.evaluate(x, [0, 0])
    with pytest.raises(FloatingPointError, match="no loss to give"):
        deep.score(x, [0, 0])
    with pytest.raises(FloatingPointError, match="no loss to give"):
        net.score(x, [1, 1])  # (infinite logits: predict answers, the loss cannot)
    with pytest.raises(FloatingPointError):
        Committee([deep, Network([3, 4, 2], seed=1)]).score(x, [0, 0])
    # the same network on an input that does not overflow answers as before
    net.weights[0][1, 2] = -3.3
    assert np.allclose(net.predict_proba(x).sum(axis=1), 1.0, atol=1e-6)


# Regressions: found by sweeping optimizers x learning rates x batch sizes. Before the
# fixes, TrainingDivergedError left the network with inf/NaN (adam lr=3e38) or with
# finite but overflowing parameters (sgd lr=1e20: predict_proba all NaN), and full-batch
# adamw at lr~4.9e6 even returned normally with a network whose outputs were NaN.
@pytest.mark.parametrize("optimizer,lr,batch_size", [
    ("adam", 3e38, 64), ("adamw", 3e38, 64), ("sgd", 1e20, 64), ("adam", 1e20, 64),
    ("sgd", 1.08e11, 384), ("sgd", 1e15, None), ("adamw", 4923882.631706731, 384),
    ("adamw", 4923882.631706731, None), ("momentum", 1e12, None),
])
def test_regression_no_overflowing_network_after_fit(optimizer, lr, batch_size):
    rng = np.random.default_rng(1)
    x, y = _data(rng)
    net = Network([784, 32, 10], seed=0)
    try:
        Trainer(net, optimizer=optimizer, lr=lr, epochs=4, batch_size=batch_size, verbose=0,
                seed=0).fit(x, y)
    except TrainingDivergedError:
        pass
    assert np.isfinite(net.flat_parameters).all()
    p = net.predict_proba(x)
    assert np.isfinite(p).all(), "network outputs NaN on its own training data"


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_weight_is_never_a_silent_answer(rng, bad):
    """ReLU made NaN 0: a network with a NaN first-layer weight predicted class 0 (dense
    path) or some other class (sparse path) without a word. NaN now stays NaN through
    ReLU, as in PyTorch, so predict raises, on every kernel path and both sides of the
    sparse threshold (rows whose pixel under the bad weight is lit)."""
    from kernel_config import PATHS, config

    x = ((rng.random((300, 784)) < 0.15) * 255).astype(np.uint8)
    x[:, 100] = 255
    net = Network([784, 32, 10], seed=0)
    net.weights[0][:, 100] = bad
    for path in PATHS:
        for threads in (1, 2):
            with config(path, threads):
                for rows in (1, 300):
                    with pytest.raises(FloatingPointError, match="NaN or infinite"):
                        net.predict(x[:rows])
                    with pytest.raises(FloatingPointError):
                        net.predict_proba(x[:rows])


def test_relu_keeps_nan_on_every_kernel_path():
    from kernel_config import PATHS, config

    from digitcore import ops_ref

    x = np.array([[np.nan, -1.0, 2.0, -0.0, 0.0, np.inf, -np.inf, 1e-40] * 5], np.float32)
    want = ops_ref.relu_forward(x)
    assert np.isnan(want[0, 0]) and want[0, 1] == 0 and want[0, 5] == np.inf
    for path in PATHS:
        with config(path, 1):
            np.testing.assert_array_equal(ops.relu_forward(x), want)
