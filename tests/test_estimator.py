"""digitcore.MLPClassifier: scikit-learn compatibility, training behaviour, validation.

The estimator needs scikit-learn (the "sklearn" extra): this module is skipped without it,
and one test checks, in a subprocess where scikit-learn cannot be imported, that importing
the estimator says so. Behaviour that scikit-learn users rely on is checked side by side
with ``sklearn.neural_network.MLPClassifier`` in tests/test_estimator_sklearn.py.
"""

import os
import pickle
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import digitcore

pytest.importorskip("sklearn")
pytest.importorskip("scipy")

from digitcore.estimator import MLPClassifier  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    # These problems are tiny (64-784 features, <= 200-row batches): a second thread
    # only adds fork/join cost, and on a loaded machine OpenMP barriers cost ~100x more.
    # One thread also makes every fit bitwise reproducible across machines. NumPy's BLAS
    # (scikit-learn's checks, the scaler) is held to one thread for the same reason.
    from threadpoolctl import threadpool_limits

    old = digitcore.get_num_threads()
    digitcore.set_num_threads(1)
    with threadpool_limits(1, "blas"):
        yield
    digitcore.set_num_threads(old)


@pytest.fixture(scope="module")
def digits():
    """load_digits scaled to [0, 1], split 75/25 (stratified, fixed seed)."""
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


@pytest.fixture(scope="module")
def mini():
    """1500 training and 500 test images of the bundled mnist-mini (uint8, (n, 28, 28))."""
    (x, y), (xt, yt) = digitcore.datasets.load_mnist_mini()
    return x[:1500], y[:1500], xt[:500], yt[:500]


def quiet(**kw):
    """A small, fast classifier; ConvergenceWarnings are expected with few epochs."""
    params = dict(hidden_layer_sizes=(32,), max_iter=30, random_state=0,
                  learning_rate_init=0.01)
    params.update(kw)
    return MLPClassifier(**params)


def fit_quiet(clf, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return clf.fit(X, y)


# ---- accuracy and fitted attributes ---------------------------------------------------------

def test_fit_predict_score_digits(digits):
    Xtr, Xte, ytr, yte = digits
    clf = fit_quiet(MLPClassifier((64,), random_state=0), Xtr, ytr)
    assert clf.score(Xte, yte) > 0.95
    assert clf.classes_.tolist() == list(range(10))
    assert clf.n_features_in_ == 64
    assert (clf.n_layers_, clf.n_outputs_, clf.out_activation_) == (3, 10, "softmax")
    assert [c.shape for c in clf.coefs_] == [(64, 64), (64, 10)]
    assert [b.shape for b in clf.intercepts_] == [(64,), (10,)]
    for c, w in zip(clf.coefs_, clf.network_.weights):
        np.testing.assert_array_equal(c, w.T)
    assert isinstance(clf.network_, digitcore.Network)
    assert clf.network_.layer_sizes == (64, 64, 10)
    assert len(clf.loss_curve_) == clf.n_iter_ >= 1
    assert clf.best_loss_ == min(clf.loss_curve_)
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    assert clf.t_ == clf.n_iter_ * len(Xtr)


def test_mnist_mini_uint8_images(mini):
    x, y, xt, yt = mini
    clf = fit_quiet(quiet(hidden_layer_sizes=(64,), max_iter=15), x, y)
    assert clf.n_features_in_ == 784
    assert clf.score(xt, yt) > 0.85
    # uint8 pixels are scaled by 1/255 inside the network: same model as floats / 255
    p_u8 = clf.predict_proba(xt.reshape(len(xt), -1))
    p_f = clf.predict_proba(xt.astype(np.float32) / 255)
    np.testing.assert_allclose(p_u8, p_f, atol=1e-4)
    # an empty stack of images is refused as an empty 2-D X is, not with NumPy's reshape
    # error ("cannot reshape array of size 0 into shape (0,newaxis)")
    for call in (clf.predict, lambda a: quiet().fit(a, y[:0])):
        with pytest.raises(ValueError, match="0 sample"):
            call(np.zeros((0, 28, 28), np.uint8))


def test_softmax_regression_and_int_hidden_sizes(digits):
    Xtr, Xte, ytr, yte = digits
    clf = fit_quiet(quiet(hidden_layer_sizes=(), learning_rate_init=0.01), Xtr, ytr)
    assert clf.n_layers_ == 2 and [c.shape for c in clf.coefs_] == [(64, 10)]
    assert clf.score(Xte, yte) > 0.85
    clf = fit_quiet(quiet(hidden_layer_sizes=16, max_iter=2), Xtr, ytr)
    assert clf.network_.layer_sizes == (64, 16, 10)


@pytest.mark.parametrize("solver", ["sgd", "adam", "rmsprop", "adamw", "nesterov",
                                    "momentum"])
@pytest.mark.parametrize("activation", ["relu", "logistic", "tanh", "leaky_relu", "identity"])
def test_solvers_and_activations_learn(digits, solver, activation):
    Xtr, Xte, ytr, yte = digits
    lr = 0.05 if solver in ("sgd", "nesterov", "momentum") else 0.005
    if activation == "logistic" and lr == 0.05:
        lr = 0.3  # scikit-learn's initialisation for logistic is sqrt(3) times narrower
    clf = fit_quiet(quiet(solver=solver, activation=activation, learning_rate_init=lr,
                          max_iter=8), Xtr, ytr)
    assert clf.score(Xte, yte) > 0.8, (solver, activation)
    expected = {"logistic": "sigmoid"}.get(activation, activation)
    assert clf.network_.activation == expected


def test_solver_maps_to_digitcore_optimizers(digits):
    from digitcore import optim

    Xtr, _, ytr, _ = digits
    cases = {"sgd": (optim.SGD, dict(momentum=0.9, nesterov=True)),
             "momentum": (optim.SGD, dict(momentum=0.5, nesterov=False)),
             "nesterov": (optim.SGD, dict(momentum=0.5, nesterov=True)),
             "rmsprop": (optim.RMSprop, dict(eps=1e-7)),
             "adam": (optim.Adam, dict(betas=(0.8, 0.99), eps=1e-7)),
             "adamw": (optim.AdamW, dict(betas=(0.8, 0.99)))}
    for solver, (cls, attrs) in cases.items():
        momentum = 0.9 if solver == "sgd" else 0.5
        clf = fit_quiet(quiet(solver=solver, momentum=momentum, beta_1=0.8, beta_2=0.99,
                              epsilon=1e-7, max_iter=1), Xtr, ytr)
        opt = clf._optimizer
        assert type(opt) is cls, solver
        for k, v in attrs.items():
            assert getattr(opt, k) == pytest.approx(v), (solver, k)
    clf = fit_quiet(quiet(solver="sgd", nesterovs_momentum=False, max_iter=1), Xtr, ytr)
    assert clf._optimizer.nesterov is False


# ---- alpha, schedules, convergence ----------------------------------------------------------

@pytest.mark.parametrize("batch_size, n, expected_bs", [("auto", 300, 200), ("auto", 150, 150),
                                                      (32, 300, 32), (500, 300, 300)])
def test_alpha_maps_to_l2_over_batch_size(digits, monkeypatch, batch_size, n, expected_bs):
    import digitcore.trainer as trainer_mod

    Xtr, _, ytr, _ = digits
    calls, original = [], trainer_mod.Trainer

    def recording_trainer(*args, **kw):
        calls.append(kw)
        return original(*args, **kw)

    monkeypatch.setattr(trainer_mod, "Trainer", recording_trainer)
    fit_quiet(quiet(alpha=0.3, batch_size=batch_size, max_iter=1), Xtr[:n], ytr[:n])
    assert calls[-1]["batch_size"] == expected_bs
    assert calls[-1]["l2"] == pytest.approx(0.3 / expected_bs)


def test_alpha_shrinks_weights_and_is_in_the_loss(digits):
    Xtr, _, ytr, _ = digits
    small = fit_quiet(quiet(alpha=1e-5, max_iter=20), Xtr, ytr)
    big = fit_quiet(quiet(alpha=20.0, max_iter=20), Xtr, ytr)
    norm = lambda c: sum(float((w ** 2).sum()) for w in c.coefs_)  # noqa: E731
    assert norm(big) < 0.5 * norm(small)
    # loss_curve_ = cross-entropy + alpha / (2 * batch_size) * ||W||^2, as in scikit-learn.
    # The curve holds the epoch's mean batch loss, taken while the weights move; with a
    # learning rate of 1e-9 they do not, so the epoch's loss is the final weights' loss
    # to float rounding (measured 7e-12 relative) and the penalty's scale is checked exactly
    still = fit_quiet(quiet(solver="sgd", momentum=0.0, alpha=20.0, max_iter=1,
                            learning_rate_init=1e-9), Xtr, ytr)
    ce, _ = still.network_.evaluate(Xtr.astype(np.float32), np.searchsorted(still.classes_, ytr))
    penalty = 20.0 / (2 * 200) * norm(still)
    assert penalty > ce  # alpha = 20: the penalty is most of the loss
    assert still.loss_curve_[-1] == pytest.approx(ce + penalty, rel=1e-6)


def test_adamw_uses_alpha_as_decoupled_weight_decay(digits, monkeypatch):
    import digitcore.trainer as trainer_mod

    Xtr, _, ytr, _ = digits
    calls, original = [], trainer_mod.Trainer

    def recording_trainer(*args, **kw):
        calls.append(kw)
        return original(*args, **kw)

    monkeypatch.setattr(trainer_mod, "Trainer", recording_trainer)
    clf = fit_quiet(quiet(solver="adamw", alpha=2.0, max_iter=1), Xtr, ytr)
    assert clf._optimizer.weight_decay == pytest.approx(2.0 / 200)
    # decoupled only: no L2 penalty in the gradient as well (alpha applied twice)
    assert calls and all(kw["l2"] == 0.0 for kw in calls), calls


def test_stops_when_loss_stops_improving(digits):
    Xtr, _, ytr, _ = digits
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converging must not warn
        clf = quiet(tol=10.0, n_iter_no_change=3, max_iter=100).fit(Xtr, ytr)
    # the first epoch improves on best_loss_=inf; then 3 + 1 epochs without improvement
    assert clf.n_iter_ == 1 + 3 + 1


def test_max_iter_warns_convergence(digits):
    Xtr, _, ytr, _ = digits
    sklearn = pytest.importorskip("sklearn")
    with pytest.warns(sklearn.exceptions.ConvergenceWarning, match="Maximum iterations"):
        clf = quiet(max_iter=2, tol=0.0).fit(Xtr, ytr)
    assert clf.n_iter_ == 2


def test_learning_rate_invscaling(digits):
    Xtr, _, ytr, _ = digits
    clf = fit_quiet(quiet(solver="sgd", learning_rate="invscaling", learning_rate_init=0.1,
                          power_t=0.25, max_iter=3), Xtr, ytr)
    assert clf._optimizer.lr == pytest.approx(0.1 / (3 * len(Xtr) + 1) ** 0.25)


def test_learning_rate_adaptive_divides_by_five_then_stops(digits):
    Xtr, _, ytr, _ = digits
    clf = fit_quiet(quiet(solver="sgd", learning_rate="adaptive", learning_rate_init=0.1,
                          tol=10.0, n_iter_no_change=1, max_iter=100), Xtr, ytr)
    # after the first epoch, every 2 non-improving epochs lr /= 5 until lr <= 1e-6
    # (0.1 / 5**8 = 2.6e-7); the next 2 non-improving epochs stop training
    assert clf._optimizer.lr == pytest.approx(0.1 / 5 ** 8)
    assert clf.n_iter_ == 1 + 2 * 9


def test_learning_rate_schedules_ignored_by_adam(digits):
    Xtr, _, ytr, _ = digits
    clf = fit_quiet(quiet(learning_rate="adaptive", tol=10.0, n_iter_no_change=1), Xtr, ytr)
    assert clf.n_iter_ == 3 and clf._optimizer.lr == pytest.approx(0.01)


def test_early_stopping_tracks_validation_accuracy(digits):
    Xtr, Xte, ytr, yte = digits
    clf = fit_quiet(quiet(early_stopping=True, validation_fraction=0.2, n_iter_no_change=3,
                          max_iter=200, hidden_layer_sizes=(64,)), Xtr, ytr)
    assert clf.best_loss_ is None
    assert len(clf.validation_scores_) == clf.n_iter_ < 200
    assert clf.best_validation_score_ == max(clf.validation_scores_) > 0.9
    # scikit-learn's train_test_split: ceil(0.2 * n) validation samples
    assert clf.t_ == clf.n_iter_ * (len(Xtr) - int(np.ceil(0.2 * len(Xtr))))
    assert clf.score(Xte, yte) > 0.9


def test_verbose_prints_iterations(digits, capsys):
    Xtr, _, ytr, _ = digits
    fit_quiet(quiet(verbose=True, max_iter=2, early_stopping=True), Xtr, ytr)
    out = capsys.readouterr().out
    assert "Iteration 1, loss = " in out and "Validation score: " in out


def test_dropout_is_passed_to_the_network(digits):
    Xtr, Xte, ytr, yte = digits
    clf = fit_quiet(quiet(dropout=0.2, max_iter=15), Xtr, ytr)
    assert clf.network_.dropout == 0.2
    # no dropout at inference: predict_proba is the plain forward pass of the learned weights
    h = Xte.astype(np.float32)
    for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_)):
        h = h @ w + b
        if i + 1 < len(clf.coefs_):
            h = np.maximum(h, 0)
    ref = np.exp(h - h.max(axis=1, keepdims=True))
    ref /= ref.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(clf.predict_proba(Xte), ref, atol=1e-5)
    assert clf.score(Xte, yte) > 0.85


# ---- labels, probabilities, determinism -----------------------------------------------------

@pytest.mark.parametrize("kind", ["strings", "sparse_ints", "floats", "binary"])
def test_arbitrary_labels(digits, kind):
    Xtr, Xte, ytr, yte = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"])
    convert = {"strings": lambda y: names[y], "sparse_ints": lambda y: y * 100 - 7,
               "floats": lambda y: y.astype(np.float64) + 0.0,
               "binary": lambda y: np.where(y % 2 == 0, "even", "odd")}[kind]
    clf = fit_quiet(quiet(max_iter=15), Xtr, convert(ytr))
    np.testing.assert_array_equal(clf.classes_, np.unique(convert(ytr)))
    pred = clf.predict(Xte)
    assert pred.dtype == clf.classes_.dtype
    assert set(np.unique(pred)) <= set(clf.classes_)
    assert np.mean(pred == convert(yte)) > 0.85
    assert clf.predict_proba(Xte).shape == (len(Xte), len(clf.classes_))
    if kind == "binary":
        assert clf.n_outputs_ == 2 and clf.coefs_[-1].shape == (32, 2)


def test_predict_proba_and_log_proba(digits):
    Xtr, Xte, ytr, _ = digits
    clf = fit_quiet(quiet(max_iter=10), Xtr, ytr)
    proba = clf.predict_proba(Xte)
    assert proba.dtype == np.float64 and proba.shape == (len(Xte), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    assert (proba >= 0).all()
    log_proba = clf.predict_log_proba(Xte)
    np.testing.assert_array_equal(log_proba, np.log(proba))  # as scikit-learn does
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(Xte))
    np.testing.assert_allclose(proba, clf.network_.predict_proba(Xte), atol=1e-5)


def test_same_random_state_same_model(digits):
    Xtr, Xte, ytr, _ = digits
    a = fit_quiet(quiet(max_iter=5, random_state=3), Xtr, ytr)
    b = fit_quiet(quiet(max_iter=5, random_state=3), Xtr, ytr)
    c = fit_quiet(quiet(max_iter=5, random_state=4), Xtr, ytr)
    np.testing.assert_array_equal(a.predict(Xte), b.predict(Xte))
    np.testing.assert_array_equal(a.predict_proba(Xte), b.predict_proba(Xte))
    assert a.loss_curve_ == b.loss_curve_
    assert not np.array_equal(a.coefs_[0], c.coefs_[0])
    # refitting the same estimator gives the same model again (fit is idempotent)
    a2 = fit_quiet(a, Xtr, ytr)
    np.testing.assert_array_equal(a2.coefs_[0], b.coefs_[0])


def test_random_state_instances_accepted(digits):
    Xtr, _, ytr, _ = digits
    fit_quiet(quiet(max_iter=1, random_state=np.random.RandomState(0)), Xtr, ytr)
    fit_quiet(quiet(max_iter=1, random_state=None), Xtr, ytr)
    with pytest.raises(ValueError, match="random_state"):  # as scikit-learn: no Generator
        fit_quiet(quiet(max_iter=1, random_state=np.random.default_rng(0)), Xtr, ytr)


# ---- partial_fit and warm_start -------------------------------------------------------------

def test_partial_fit(digits):
    Xtr, Xte, ytr, yte = digits
    clf = quiet()
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(Xtr[:100], ytr[:100])
    classes = np.arange(10)
    halves = np.array_split(np.arange(len(Xtr)), 2)
    for epoch in range(8):
        for part in halves:
            clf.partial_fit(Xtr[part], ytr[part], classes=classes if epoch == 0 else None)
    # as in scikit-learn, n_iter_ counts the epochs of the last call
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 16 and clf.t_ == 8 * len(Xtr)
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf.score(Xte, yte) > 0.9
    # Adam's state lives on: its step count covers every batch of every call
    assert clf._optimizer.step_count == 16 * -(-len(halves[0]) // 200)
    with pytest.raises(ValueError, match="not the same as on last call"):
        clf.partial_fit(Xtr[:50], ytr[:50], classes=np.arange(11))
    with pytest.raises(ValueError, match="classes not in `self.classes_`"):
        clf.partial_fit(Xtr[:3], np.array([0, 1, 42]))


def test_partial_fit_classes_not_all_in_first_batch(digits):
    Xtr, Xte, ytr, _ = digits
    clf = quiet()
    first = ytr < 5
    clf.partial_fit(Xtr[first], ytr[first], classes=list(range(10)))
    clf.partial_fit(Xtr[~first], ytr[~first])
    assert clf.classes_.tolist() == list(range(10))
    assert clf.predict_proba(Xte).shape == (len(Xte), 10)
    # later calls train the classes the first lacked (one pass of a few Adam steps moves
    # little: a few more)
    for _ in range(10):
        clf.partial_fit(Xtr[~first], ytr[~first])
    assert set(clf.predict(Xtr[~first])) == set(range(5, 10))
    assert (clf.predict(Xtr[~first]) == ytr[~first]).mean() > 0.8


def test_partial_fit_after_fit_keeps_training(digits):
    Xtr, _, ytr, _ = digits
    clf = fit_quiet(quiet(max_iter=5), Xtr, ytr)
    steps = clf._optimizer.step_count
    clf.partial_fit(Xtr, ytr)
    assert clf._optimizer.step_count > steps and len(clf.loss_curve_) == 6


def test_warm_start(digits):
    Xtr, _, ytr, _ = digits
    cold = fit_quiet(quiet(max_iter=5), Xtr, ytr)
    first_loss = cold.loss_curve_[0]
    clf = fit_quiet(quiet(max_iter=5, warm_start=True), Xtr, ytr)
    fit_quiet(clf, Xtr, ytr)
    assert len(clf.loss_curve_) == 10 and clf.loss_curve_[5] < first_loss
    with pytest.raises(ValueError, match="same classes"):
        clf.fit(Xtr[ytr < 5], ytr[ytr < 5])
    clf.set_params(hidden_layer_sizes=(8,))
    with pytest.raises(ValueError, match="warm_start"):
        clf.fit(Xtr, ytr)
    # without warm_start, fit starts over
    cold2 = fit_quiet(cold, Xtr, ytr)
    assert len(cold2.loss_curve_) == 5


# ---- validation -----------------------------------------------------------------------------

@pytest.mark.parametrize("params, match", [
    (dict(activation="softplus"), "'activation' parameter"),
    (dict(solver="newton"), "'solver' parameter"),
    (dict(learning_rate="cyclic"), "'learning_rate' parameter"),
    (dict(alpha=-1.0), "'alpha' parameter"),
    (dict(alpha=float("nan")), "'alpha' parameter"),
    (dict(hidden_layer_sizes=(10, 0)), "hidden_layer_sizes must be > 0"),
    (dict(hidden_layer_sizes="big"), "'hidden_layer_sizes' parameter"),
    (dict(batch_size=0), "'batch_size' parameter"),
    (dict(batch_size="large"), "'batch_size' parameter"),
    (dict(learning_rate_init=0.0), "'learning_rate_init' parameter"),
    (dict(max_iter=0), "'max_iter' parameter"),
    (dict(n_iter_no_change=0), "'n_iter_no_change' parameter"),
    (dict(n_iter_no_change=2.5), "'n_iter_no_change' parameter"),
    (dict(max_fun=0), "'max_fun' parameter"),
    (dict(tol=-1e-3), "'tol' parameter"),
    (dict(momentum=1.0), "'momentum' parameter"),
    (dict(momentum=0.0, solver="nesterov"), "momentum > 0"),
    (dict(validation_fraction=1.0, early_stopping=True), "'validation_fraction' parameter"),
    (dict(beta_1=1.0), "'beta_1' parameter"),
    (dict(beta_2=-0.1), "'beta_2' parameter"),
    (dict(epsilon=0.0), "'epsilon' parameter"),
    (dict(dropout=1.0), "'dropout' parameter"),
    (dict(dropout=0.1, solver="lbfgs"), "dropout is only available"),
    (dict(random_state="seed"), "'random_state' parameter"),
])
def test_bad_params_raise_at_fit(digits, params, match):
    Xtr, _, ytr, _ = digits
    clf = MLPClassifier(**params)  # the constructor only stores parameters
    assert clf.get_params()[next(iter(params))] is params[next(iter(params))]
    with pytest.raises(ValueError, match=match):
        clf.fit(Xtr[:50], ytr[:50])


def test_bad_inputs(digits):
    Xtr, Xte, ytr, _ = digits
    X, y = Xtr[:60], ytr[:60]
    with pytest.raises(ValueError, match="NaN"):
        quiet().fit(np.where(np.eye(60, 64, dtype=bool), np.nan, X), y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        quiet().fit(X, y[:-1])
    with pytest.raises(ValueError):
        quiet().fit(X, np.stack([y, y], axis=1))
    with pytest.raises(ValueError, match="1 class"):
        quiet().fit(X, np.full(60, 3))
    with pytest.raises(ValueError, match="Unknown label type"):
        quiet().fit(X, np.linspace(0, 1, 60))
    with pytest.raises(ValueError, match="Expected 2D array"):
        quiet().fit(X[:, 0], y)
    with pytest.raises(ValueError, match="y to be passed"):
        quiet().fit(X, None)
    clf = fit_quiet(quiet(max_iter=1), X, y)
    with pytest.raises(ValueError, match="64 features"):
        clf.predict(Xte[:, :10])
    with pytest.raises(ValueError, match="NaN"):
        clf.predict_proba(np.full((2, 64), np.nan))
    with pytest.raises(AttributeError):
        MLPClassifier().coefs_
    import sklearn
    with pytest.raises(sklearn.exceptions.NotFittedError):
        MLPClassifier().predict(Xte)


def test_integer_and_float32_inputs(digits):
    Xtr, Xte, ytr, yte = digits
    X16 = (Xtr * 16).astype(np.int64)  # ints other than uint8 are used as given (0..16)
    clf = fit_quiet(quiet(max_iter=3), X16, ytr)
    assert clf.predict((Xte * 16).astype(np.int32)).shape == (len(Xte),)
    clf = fit_quiet(quiet(max_iter=10), Xtr.astype(np.float32), ytr)
    assert clf.score(Xte.astype(np.float32), yte) > 0.85


# ---- pickling ---------------------------------------------------------------------------------

def test_pickle_and_deepcopy_roundtrip(digits):
    import copy

    Xtr, Xte, ytr, _ = digits
    clf = fit_quiet(quiet(max_iter=3), Xtr, ytr)
    for other in (pickle.loads(pickle.dumps(clf)), copy.deepcopy(clf)):
        np.testing.assert_array_equal(other.predict_proba(Xte), clf.predict_proba(Xte))
        net = other.network_
        # weights are still views into the one flat buffer the kernels update
        assert all(np.shares_memory(w, net.flat_parameters) for w in net.weights)
        assert net is not clf.network_
        # the optimizer state survived too: Adam's step count and moments, so the next
        # partial_fit continues the same run (a copy without them restarted Adam)
        assert other._optimizer.step_count == clf._optimizer.step_count > 0
        np.testing.assert_array_equal(other._optimizer.grad_avg, clf._optimizer.grad_avg)
        np.testing.assert_array_equal(other._optimizer.sq_avg, clf._optimizer.sq_avg)
    assert clf.network_.flat_parameters is not other.network_.flat_parameters
    twin = pickle.loads(pickle.dumps(clf))
    clf.partial_fit(Xtr, ytr)
    twin.partial_fit(Xtr, ytr)
    for a, b in zip(clf.coefs_ + clf.intercepts_, twin.coefs_ + twin.intercepts_):
        np.testing.assert_array_equal(a, b)


# ---- scikit-learn integration ---------------------------------------------------------------

def test_clone_keeps_params(digits):
    pytest.importorskip("sklearn")
    from sklearn.base import clone, is_classifier

    Xtr, _, ytr, _ = digits
    clf = MLPClassifier((20, 10), activation="tanh", solver="nesterov", alpha=0.01,
                        batch_size=64, dropout=0.1, random_state=7, max_iter=2)
    cloned = clone(clf)
    assert cloned.get_params() == clf.get_params()
    assert is_classifier(cloned)
    fit_quiet(clf, Xtr, ytr)
    assert not hasattr(clone(clf), "network_")
    assert "hidden_layer_sizes=(20, 10)" in repr(clf)


def test_sklearn_tags():
    sklearn = pytest.importorskip("sklearn")
    clf = MLPClassifier()
    if hasattr(sklearn.utils, "get_tags"):  # scikit-learn >= 1.6
        tags = sklearn.utils.get_tags(clf)
        assert tags.estimator_type == "classifier"
        assert tags.classifier_tags.multi_label is True
        assert tags.input_tags.sparse is True
    assert sklearn.base.is_classifier(clf)


def test_pipeline_with_standard_scaler(digits):
    pytest.importorskip("sklearn")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    Xtr, Xte, ytr, yte = digits
    pipe = make_pipeline(StandardScaler(), quiet(hidden_layer_sizes=(64,), max_iter=20))
    fit_quiet(pipe, Xtr * 16, ytr)
    assert pipe.score(Xte * 16, yte) > 0.93
    assert pipe.predict_proba(Xte * 16).shape == (len(Xte), 10)


def test_cross_val_score(digits):
    pytest.importorskip("sklearn")
    from sklearn.model_selection import cross_val_score

    Xtr, _, ytr, _ = digits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = cross_val_score(quiet(max_iter=15), Xtr, ytr, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.9


def test_grid_search(digits):
    pytest.importorskip("sklearn")
    from sklearn.model_selection import GridSearchCV

    Xtr, Xte, ytr, yte = digits
    grid = {"hidden_layer_sizes": [(16,), (48,)], "alpha": [1e-4, 1e-1]}
    search = GridSearchCV(quiet(max_iter=12), grid, cv=2)
    fit_quiet(search, Xtr, ytr)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_params_["hidden_layer_sizes"] in grid["hidden_layer_sizes"]
    assert search.best_params_["alpha"] in grid["alpha"]
    best = search.best_estimator_
    assert best.network_.layer_sizes[1:-1] == best.hidden_layer_sizes
    assert search.score(Xte, yte) > 0.9


# scikit-learn's own estimator checks (the checks set max_iter=5), sparse and multilabel
# checks included (the tags say the estimator takes both)
_EXPECTED_FAILED_CHECKS = {}  # every applicable check passes with scikit-learn 1.9


@parametrize_with_checks([MLPClassifier(hidden_layer_sizes=(16,)),
                          MLPClassifier(hidden_layer_sizes=(16,), solver="lbfgs")],
                         expected_failed_checks=lambda est: _EXPECTED_FAILED_CHECKS)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        check(estimator)


# ---- without scikit-learn -------------------------------------------------------------------

def test_without_sklearn_the_import_says_what_to_install():
    code = textwrap.dedent("""
        import sys
        sys.modules["sklearn"] = None  # makes "import sklearn" raise ImportError
        import digitcore
        net = digitcore.Network([4, 3, 2], seed=0)  # the rest of digitcore works
        try:
            digitcore.MLPClassifier
        except ImportError as e:
            print("ok", e)
        else:
            raise AssertionError("MLPClassifier imported without scikit-learn")
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "pip install 'digitcore[sklearn]'" in res.stdout


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_fitted_on_uint8_it_refuses_0_255_floats(solver):
    """uint8 input is scaled by 1/255: floats 0-255 at predict time would read 255 times
    too bright, by every solver and on sparse input too."""
    import scipy.sparse

    rng = np.random.default_rng(0)
    x = (rng.random((120, 16)) * 255).astype(np.uint8)
    y = rng.integers(0, 3, 120)
    clf = MLPClassifier(hidden_layer_sizes=(8,), solver=solver, max_iter=5,
                        random_state=0).fit(x, y)
    with pytest.raises(ValueError, match="trained on uint8 pixels"):
        clf.predict(x.astype(np.float64))
    with pytest.raises(ValueError, match="trained on uint8 pixels"):
        clf.predict(scipy.sparse.csr_matrix(x.astype(np.float64)))
    np.testing.assert_array_equal(clf.predict(x / 255.0), clf.predict(x))


@pytest.mark.parametrize("how", ["partial_fit", "warm_start"])
def test_more_fitting_on_scaled_pixels_keeps_the_record(how):
    """Fitted on uint8, then more on the same pixels as floats in [0, 1]: still refuses
    0-255 floats; a fresh fit (no warm_start) on floats records float32."""
    rng = np.random.default_rng(2)
    x = (rng.random((120, 16)) * 255).astype(np.uint8)
    y = rng.integers(0, 3, 120)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0,
                        warm_start=how == "warm_start")
    if how == "partial_fit":
        clf.partial_fit(x, y, classes=[0, 1, 2]).partial_fit(x / 255.0, y)
    else:
        clf.fit(x, y).fit(x / 255.0, y)
    assert clf.network_.training_summary["input"] == "uint8"
    with pytest.raises(ValueError, match="trained on uint8 pixels"):
        clf.predict(x.astype(np.float64))
    clf.set_params(warm_start=False).fit(x / 255.0, y)
    assert clf.network_.training_summary["input"] == "float32"


def test_fitted_on_sparse_uint8_it_records_pixels():
    import scipy.sparse

    rng = np.random.default_rng(1)
    x = (rng.random((120, 16)) * 255).astype(np.uint8)
    y = rng.integers(0, 3, 120)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(
        scipy.sparse.csr_matrix(x), y)
    assert clf.network_.training_summary["input"] == "uint8"
    with pytest.raises(ValueError, match="trained on uint8 pixels"):
        clf.predict(x.astype(np.float64))


def test_non_finite_output_and_values_past_float32_are_errors():
    """predict_proba gave NaN rows and predict class 0 where Network raises; float64
    values past float32's range became inf in the cast: lbfgs returned an untrained model
    and the others blamed NaN or infinite values X does not hold."""
    import scipy.sparse

    rng = np.random.default_rng(0)
    X, y = rng.random((60, 4)), rng.integers(0, 3, 60)
    clf = MLPClassifier((5,), max_iter=30, random_state=0).fit(X, y)
    big = X.copy()
    big[0, 0] = 1e39
    for call in (lambda: clf.predict(big), lambda: clf.predict_proba(scipy.sparse.csr_matrix(big)),
                 lambda: MLPClassifier((5,), solver="lbfgs").fit(big, y),
                 lambda: MLPClassifier((5,), max_iter=2).fit(scipy.sparse.csr_matrix(big), y)):
        with pytest.raises(ValueError, match="past float32's range"):
            call()
    clf.coefs_ = [c * 1e10 for c in clf.coefs_]
    huge = X.copy()
    huge[0] = 1e25
    with pytest.raises(FloatingPointError, match="overflowed float32"):
        clf.predict_proba(huge)
    with pytest.raises(FloatingPointError, match="output is NaN"):
        clf.predict(huge)
    assert clf.predict(X[1:]).shape == (59,)  # (the other rows still answer)


@pytest.mark.parametrize("sizes", [(4.5,), (True,), ("8",)])
def test_hidden_layer_sizes_must_be_integers(sizes):
    X, y = np.random.default_rng(0).random((20, 3)), np.arange(20) % 2
    with pytest.raises((TypeError, ValueError), match="hidden_layer_sizes must hold integers"):
        MLPClassifier(sizes, max_iter=2).fit(X, y)


# ---- a refused fit changes nothing ----------------------------------------------------------

@pytest.mark.parametrize("refit", ["one class", "dropout with lbfgs", "momentum 0",
                                   "NaN in X"])
def test_a_refused_refit_leaves_the_fitted_model_as_it_was(digits, refit):
    """Checks that fail before training used to run after the estimator had taken the
    new call's classes, feature count or a fresh network: a fitted model was left
    predicting with one class (rows not summing to 1) or with untrained weights."""
    X, _, y, _ = digits
    clf = fit_quiet(MLPClassifier((16,), max_iter=30, random_state=0), X, y)
    before = (clf.classes_.copy(), clf.n_features_in_, clf.network_,
              clf.network_.flat_parameters.copy(), clf.predict_proba(X))
    with pytest.raises(ValueError):
        if refit == "one class":
            clf.fit(X, np.full(len(y), 7))
        elif refit == "dropout with lbfgs":
            clf.set_params(solver="lbfgs", dropout=0.1).fit(X, y)
        elif refit == "momentum 0":
            clf.set_params(solver="momentum", momentum=0.0).fit(X, y)
        else:
            bad = X[:, :10].copy()  # (a new feature count too)
            bad[3, 4] = np.nan
            clf.fit(bad, y)
    assert np.array_equal(clf.classes_, before[0]) and clf.n_features_in_ == before[1]
    assert clf.network_ is before[2]
    assert np.array_equal(clf.network_.flat_parameters, before[3])
    np.testing.assert_array_equal(clf.predict_proba(X), before[4])


def test_a_fresh_estimator_refused_is_not_fitted(digits):
    from sklearn.exceptions import NotFittedError

    X, _, y, _ = digits
    clf = MLPClassifier((8,), solver="nesterov", momentum=0.0)
    with pytest.raises(ValueError, match="needs momentum > 0"):
        clf.fit(X, y)
    with pytest.raises(NotFittedError):
        clf.predict(X)
    clf = MLPClassifier((8,))
    with pytest.raises(ValueError, match="at least 2 classes"):
        clf.fit(X, np.zeros(len(y), int))
    assert not hasattr(clf, "classes_") and not hasattr(clf, "network_")


def test_multilabel_targets_after_a_multiclass_fit_are_named(digits):
    X, _, y, _ = digits
    clf = MLPClassifier((8,), max_iter=5, random_state=0, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X[:200], y[:200])
        Y = np.stack([y[:200] % 2, y[:200] > 4], axis=1).astype(int)
        with pytest.raises(ValueError, match="not fitted with multilabel input"):
            clf.fit(X[:200], Y)
        with pytest.raises(ValueError, match="not fitted with multilabel input"):
            clf.partial_fit(X[:200], Y)
        ml = MLPClassifier((8,), max_iter=5, random_state=0).fit(X[:200], Y)
        with pytest.raises(ValueError, match="fitted with multilabel input"):
            ml.partial_fit(X[:200], y[:200])


def test_a_refit_whose_validation_split_fails_leaves_the_model_as_it_was(digits):
    """The early-stopping split is made after the set-up: a split that cannot be made
    (too few samples for the validation set) must not leave a fresh network behind."""
    X, _, y, _ = digits
    clf = fit_quiet(MLPClassifier((16,), max_iter=20, random_state=0), X, y)
    params, proba = clf.network_.flat_parameters.copy(), clf.predict_proba(X)
    with pytest.raises(ValueError, match="too small|least populated|test_size"):
        clf.set_params(early_stopping=True, validation_fraction=0.05).fit(X[:12], y[:12])
    np.testing.assert_array_equal(clf.network_.flat_parameters, params)
    np.testing.assert_array_equal(clf.predict_proba(X), proba)
    assert not hasattr(clf, "_began")


def test_a_refused_partial_fit_leaves_the_networks_dropout():
    """partial_fit set the new dropout on the fitted network before a later refusal
    (early_stopping is not for partial_fit): the network kept it, and its saved config."""
    rng = np.random.default_rng(0)
    X, y = rng.random((60, 8)), np.arange(60) % 3
    clf = MLPClassifier((5,), random_state=0, dropout=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="early_stopping"):
        clf.set_params(dropout=0.3, early_stopping=True).partial_fit(X, y)
    assert clf.network_.dropout == 0.0


def test_fitted_on_0_255_floats_it_refuses_uint8_input(mini):
    """uint8 is scaled by 1/255 whatever the model read: fitted on the same pixels as
    floats 0-255, it read uint8 images 255 times too dark and answered anyway."""
    x, y, xt, _ = mini
    X = x.reshape(len(x), -1)[:300]
    clf = fit_quiet(MLPClassifier((8,), max_iter=3, random_state=0), X.astype(np.float32),
                    y[:300])
    with pytest.raises(ValueError, match="fitted on floats up to 255"):
        clf.predict(X)
    assert clf.predict(X.astype(np.float32)).shape == (300,)
    # on floats in [0, 1], uint8 pixels are the same images
    ok = fit_quiet(MLPClassifier((8,), max_iter=3, random_state=0), X / 255.0, y[:300])
    np.testing.assert_array_equal(ok.predict(X), ok.predict(X / 255.0))


def test_a_dataframe_of_uint8_pixels_is_read_as_the_uint8_array(mini):
    """A DataFrame has no dtype: fitted on one of uint8 columns, the estimator recorded
    floats up to 255 (though it had scaled the pixels by 1/255) and refused uint8 images,
    then refused their float copy too; and a model fitted on 0-255 floats read such a
    DataFrame 255 times too dark without a word."""
    pd = pytest.importorskip("pandas")
    x, y, xt, _ = mini
    X, Xt = x.reshape(len(x), -1)[:300], xt.reshape(len(xt), -1)[:50]
    from_df = fit_quiet(MLPClassifier((8,), max_iter=3, random_state=0), pd.DataFrame(X),
                        y[:300])
    from_array = fit_quiet(MLPClassifier((8,), max_iter=3, random_state=0), X, y[:300])
    np.testing.assert_array_equal(from_df.coefs_[0], from_array.coefs_[0])
    assert from_df.network_.training_summary["input"] == "uint8"
    np.testing.assert_array_equal(from_df.predict(Xt), from_array.predict(Xt))
    on_floats = fit_quiet(MLPClassifier((8,), max_iter=3, random_state=0),
                          X.astype(np.float32), y[:300])
    with pytest.raises(ValueError, match="fitted on floats up to 255"):
        on_floats.predict(pd.DataFrame(Xt))


def test_a_pickled_estimator_keeps_its_classes_and_multilabel_outputs(digits):
    """The network's own model file holds class indices and a softmax (the docs said to
    save network_ with it, and a fit on labels {3, 7} came back predicting 0 and 1); a
    pickled estimator keeps classes_ and the sigmoid outputs, as the docs now say."""
    x, _, y, _ = digits
    keep = (y == 3) | (y == 7)
    clf = fit_quiet(quiet(hidden_layer_sizes=(16,), max_iter=5), x[keep], y[keep])
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.classes_, [3, 7])
    np.testing.assert_array_equal(back.predict(x[keep]), clf.predict(x[keep]))
    assert set(np.unique(back.predict(x[keep]))) <= {3, 7}
    ml = np.stack([y % 2, y > 4], axis=1).astype(int)
    mlc = fit_quiet(quiet(hidden_layer_sizes=(16,), max_iter=5), x, ml)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(mlc)).predict_proba(x),
                                  mlc.predict_proba(x))


def test_coefs_are_always_copies():
    """coefs_ said "float32 copies" but returned views of the live weights where a layer
    has one input or one output (w.T already contiguous): editing the "copy" changed
    the model."""
    rng = np.random.RandomState(0)
    X, y = rng.randn(60, 1), (rng.randn(60) > 0).astype(int)
    m = MLPClassifier(hidden_layer_sizes=(4, 1, 4), random_state=0, max_iter=5).fit(X, y)
    before = m.predict_proba(X[:5]).copy()
    for c in m.coefs_:
        c[...] = 0.0
    np.testing.assert_array_equal(m.predict_proba(X[:5]), before)


def test_nan_under_assume_finite_is_named_as_nan():
    """Under sklearn.config_context(assume_finite=True) validate_data does not look for
    NaN; the float32 check then said the values were too large."""
    import sklearn

    rng = np.random.RandomState(0)
    X, y = rng.randn(40, 3), np.arange(40) % 2
    m = MLPClassifier(hidden_layer_sizes=(4,), random_state=0, max_iter=5).fit(X, y)
    bad = X[:3].copy()
    bad[1, 1] = np.nan
    with sklearn.config_context(assume_finite=True):
        with pytest.raises(ValueError, match="Input X contains NaN"):
            m.predict(bad)
        with pytest.raises(ValueError, match="Input X contains NaN"):
            MLPClassifier(hidden_layer_sizes=(4,), max_iter=5).fit(np.vstack([X, bad]),
                                                                  np.r_[y, 0, 1, 0])
