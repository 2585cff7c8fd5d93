"""digitcore.MLPClassifier side by side with sklearn.neural_network.MLPClassifier.

What a scikit-learn user swaps one import for: the same parameters with the same meaning
(identity activation, lbfgs with max_fun, the learning-rate schedules, warm_start,
n_iter_no_change=inf), multilabel targets, scipy.sparse input, settable coefs_ /
intercepts_, the same errors and warnings, and at least scikit-learn's accuracy for the
same max_iter on small data.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import digitcore

sklearn = pytest.importorskip("sklearn")
sp = pytest.importorskip("scipy.sparse")

from sklearn.datasets import (  # noqa: E402
    load_digits,
    load_iris,
    make_blobs,
    make_multilabel_classification,
)
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLP  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils import shuffle  # noqa: E402

from digitcore.estimator import MLPClassifier  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    from threadpoolctl import threadpool_limits

    old = digitcore.get_num_threads()
    digitcore.set_num_threads(1)  # tiny problems; and bitwise reproducible fits
    # scikit-learn's fits run on NumPy's BLAS: on a shared 2-core machine its spinning
    # threads made one fit on the 8x8 digits take 17 s instead of 1.6 s
    with threadpool_limits(1, "blas"):
        yield
    digitcore.set_num_threads(old)


def blobs():
    """check_classifiers_train's data: make_blobs(300), shuffled, standardised."""
    X, y = make_blobs(n_samples=300, random_state=0)
    X, y = shuffle(X, y, random_state=7)
    return StandardScaler().fit_transform(X), y


def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


DATA = {"blobs": blobs, "blobs_binary": lambda: tuple(a[blobs()[1] != 2] for a in blobs()),
        "digits": digits, "iris": iris}


def both(**params):
    return SkMLP(**params), MLPClassifier(**params)


def quiet_fit(clf, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clf.fit(X, y)


# ---- learning per iteration -------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(DATA))
def test_accuracy_per_iteration_at_least_sklearns(name):
    """Mean training accuracy over 5 seeds at max_iter 5, 10, 20, at the defaults."""
    X, y = DATA[name]()
    for max_iter in (5, 10, 20):
        ours, theirs = [], []
        for seed in range(5):
            sk, dc = both(max_iter=max_iter, random_state=seed)
            theirs.append(quiet_fit(sk, X, y).score(X, y))
            ours.append(quiet_fit(dc, X, y).score(X, y))
        # at least scikit-learn's mean, give or take 0.2 points (one or two samples per
        # seed on the digits, where both land within 0.1 points of each other)
        assert np.mean(ours) >= np.mean(theirs) - 0.002, (name, max_iter, ours, theirs)


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_check_classifiers_train_at_max_iter_20(solver):
    from sklearn.utils.estimator_checks import check_classifiers_train

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check_classifiers_train("MLPClassifier", MLPClassifier(max_iter=20, solver=solver))
        # and over seeds: none sticks (one did at 61% on blobs before)
        X, y = blobs()
        for seed in range(10):
            assert MLPClassifier(max_iter=20, random_state=seed).fit(X, y).score(X, y) > 0.83


def test_initial_weights_are_sklearns_draws():
    """Same RandomState stream, same order: for more than two classes the first layer's
    initial weights are scikit-learn's (biases start at 0, see the module docstring)."""
    X, y = iris()
    sk, dc = both(max_iter=1, random_state=3, learning_rate_init=1e-12, hidden_layer_sizes=(7,))
    quiet_fit(sk, X, y)
    quiet_fit(dc, X, y)
    for a, b in zip(sk.coefs_, dc.coefs_):  # lr 1e-12: still the initial draws
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
    assert all(np.abs(b).max() < 1e-9 for b in dc.intercepts_)


# ---- parameters -------------------------------------------------------------------------------

def test_identity_activation_learns_like_sklearn():
    X, y = digits()
    sk, dc = both(activation="identity", hidden_layer_sizes=(32,), max_iter=30,
                  random_state=0)
    quiet_fit(sk, X, y)
    quiet_fit(dc, X, y)
    assert dc.network_.activation == "identity"
    assert dc.score(X, y) >= sk.score(X, y) - 0.01


def test_lbfgs_reaches_sklearns_optimum_on_a_convex_problem():
    """No hidden layer: softmax regression is convex, so both L-BFGS runs reach the same
    minimum of the same loss (cross-entropy + alpha / (2n) ||W||^2)."""
    X, y = digits()
    sk, dc = both(solver="lbfgs", hidden_layer_sizes=(), alpha=1.0, max_iter=500,
                  random_state=0, tol=1e-7)
    quiet_fit(sk, X, y)
    quiet_fit(dc, X, y)
    assert dc.loss_ == pytest.approx(sk.loss_, rel=1e-3)
    assert np.mean(dc.predict(X) == sk.predict(X)) > 0.99
    np.testing.assert_allclose(dc.predict_proba(X), sk.predict_proba(X), atol=2e-2)
    assert 1 <= dc.n_iter_ <= 500
    assert not hasattr(dc, "loss_curve_") and not hasattr(sk, "loss_curve_")


def test_lbfgs_max_iter_and_max_fun_warn_as_sklearn():
    X, y = digits()
    for kw in (dict(max_iter=3), dict(max_fun=4)):
        sk, dc = both(solver="lbfgs", random_state=0, **kw)
        with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge") as ws:
            sk.fit(X, y)
        with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge") as wd:
            dc.fit(X, y)
        assert str(wd[0].message).splitlines()[0] == str(ws[0].message).splitlines()[0]
        assert dc.n_iter_ <= 3 if "max_iter" in kw else dc.n_iter_ < 4
    # on small data lbfgs gets where the tutorials say it does
    X2, y2 = digits()
    dc = quiet_fit(MLPClassifier(solver="lbfgs", max_iter=50, random_state=0), X2, y2)
    sk = quiet_fit(SkMLP(solver="lbfgs", max_iter=50, random_state=0), X2, y2)
    assert dc.score(X2, y2) >= sk.score(X2, y2) - 0.005


def test_partial_fit_is_hidden_for_lbfgs_as_in_sklearn():
    for cls in (SkMLP, MLPClassifier):
        assert not hasattr(cls(solver="lbfgs"), "partial_fit")
        assert hasattr(cls(solver="sgd"), "partial_fit")
    msgs = []
    for cls in (SkMLP, MLPClassifier):
        with pytest.raises(AttributeError) as e:
            cls(solver="lbfgs").partial_fit
        msgs.append(str(e.value).replace(cls.__name__, "MLP"))
    assert msgs[0] == msgs[1]


@pytest.mark.parametrize("schedule", ["constant", "invscaling", "adaptive"])
def test_learning_rate_schedules_on_the_sgd_optimizer(schedule):
    X, y = iris()
    sk, dc = both(solver="sgd", learning_rate=schedule, learning_rate_init=0.1, power_t=0.3,
                  max_iter=40, tol=0.05, n_iter_no_change=2, random_state=0)
    quiet_fit(sk, X, y)
    quiet_fit(dc, X, y)
    opt = dc._optimizer
    assert (opt.lr_schedule, opt.power_t, opt.learning_rate_init) == (schedule, 0.3, 0.1)
    if schedule == "constant":
        assert opt.learning_rate == sk._optimizer.learning_rate == 0.1
    elif schedule == "invscaling":  # depends on the samples seen only: the same rate
        assert opt.learning_rate == pytest.approx(0.1 / (dc.t_ + 1) ** 0.3)
        # (the fits above stop after different numbers of epochs: pinned to six, both have
        # seen the same samples and must have the same rate)
        sk6, dc6 = both(solver="sgd", learning_rate=schedule, learning_rate_init=0.1,
                        power_t=0.3, max_iter=6, n_iter_no_change=np.inf, random_state=0)
        quiet_fit(sk6, X, y)
        quiet_fit(dc6, X, y)
        assert dc6.n_iter_ == sk6.n_iter_ == 6 and dc6.t_ == sk6.t_
        assert dc6._optimizer.learning_rate == pytest.approx(sk6._optimizer.learning_rate)
    else:  # divided by 5 at each plateau
        k = round(np.log(0.1 / opt.learning_rate) / np.log(5))
        assert k >= 1 and opt.learning_rate == pytest.approx(0.1 / 5 ** k)
    assert dc.score(X, y) > 0.8


def test_n_iter_no_change_inf_runs_to_max_iter():
    X, y = iris()
    for cls in (SkMLP, MLPClassifier):
        clf = cls(solver="sgd", tol=1e6, n_iter_no_change=np.inf, max_iter=12, random_state=0)
        with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
            clf.fit(X, y)
        assert clf.n_iter_ == 12


# ---- warm_start and partial_fit ----------------------------------------------------------------

@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_warm_start_no_convergence_warns_each_fit(solver):
    """scikit-learn's test_mlp_warm_start_no_convergence, on both estimators."""
    X, y = iris()
    for cls in (SkMLP, MLPClassifier):
        model = cls(solver=solver, warm_start=True, early_stopping=False, max_iter=10,
                    n_iter_no_change=np.inf, random_state=0)
        with pytest.warns(ConvergenceWarning):
            model.fit(X, y)
        assert model.n_iter_ == 10
        model.set_params(max_iter=20)
        with pytest.warns(ConvergenceWarning):
            model.fit(X, y)
        assert model.n_iter_ == 20


def test_warm_start_continues_from_the_current_weights():
    X, y = digits()
    clf = quiet_fit(MLPClassifier(max_iter=5, warm_start=True, random_state=0), X, y)
    after_first = clf.loss_curve_[-1]
    coefs = [c.copy() for c in clf.coefs_]
    quiet_fit(clf, X, y)
    assert len(clf.loss_curve_) == 10 and clf.loss_curve_[5] < after_first * 1.05
    assert not np.array_equal(coefs[0], clf.coefs_[0])
    cold = quiet_fit(MLPClassifier(max_iter=5, random_state=0), X, y)
    assert cold.loss_curve_[0] > clf.loss_curve_[5]  # a cold start begins far higher
    # scikit-learn's message when the classes change
    with pytest.raises(ValueError, match=re.escape(
            "warm_start can only be used where `y` has the same classes as in the previous "
            "call to fit. Previously got [0 1 2 3 4 5 6 7 8 9], `y` has [0 1 2 3 4]")):
        clf.fit(X[y < 5], y[y < 5])


def test_fit_after_partial_fit_follows_sklearns_rules():
    X, y = iris()
    classes = np.unique(y)
    for warm in (False, True):
        pair = []
        for cls in (SkMLP, MLPClassifier):
            clf = cls(max_iter=3, warm_start=warm, random_state=0, learning_rate_init=0.01)
            for _ in range(20):
                clf.partial_fit(X, y, classes=classes)
            trained = clf.score(X, y)
            quiet_fit(clf, X, y)
            # warm_start=False: fit starts over (3 epochs from fresh weights);
            # True: it continues from what partial_fit learnt
            pair.append((trained, clf.score(X, y), clf.n_iter_))
        (sk_tr, sk_after, sk_n), (dc_tr, dc_after, dc_n) = pair
        assert sk_n == dc_n == 3
        if warm:
            assert dc_after >= dc_tr - 0.05 and sk_after >= sk_tr - 0.05
        else:
            assert dc_after < dc_tr and sk_after < sk_tr
    # partial_fit then partial_fit with an unseen class: scikit-learn's message
    clf = MLPClassifier().partial_fit(X, y, classes=classes)
    with pytest.raises(ValueError, match=re.escape("`y` has classes not in `self.classes_`")):
        clf.partial_fit(X[:3], np.array([0, 1, 7]))
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        MLPClassifier(early_stopping=True).fit(X, y).partial_fit(X, y)


# ---- multilabel ---------------------------------------------------------------------------------

@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_multilabel_like_sklearn(solver):
    X, Y = make_multilabel_classification(n_samples=300, n_features=20, n_classes=5,
                                          random_state=0)
    X = StandardScaler().fit_transform(X)
    lr = 0.05 if solver == "sgd" else 0.001
    sk, dc = both(solver=solver, max_iter=60, random_state=0, learning_rate_init=lr)
    quiet_fit(sk, X, Y)
    quiet_fit(dc, X, Y)
    assert dc.out_activation_ == sk.out_activation_ == "logistic"
    assert dc.n_outputs_ == sk.n_outputs_ == 5
    np.testing.assert_array_equal(dc.classes_, sk.classes_)
    pred = dc.predict(X)
    assert pred.shape == Y.shape and set(np.unique(pred)) <= {0, 1}
    proba = dc.predict_proba(X)
    assert proba.shape == Y.shape and ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_array_equal(pred, (proba > 0.5).astype(pred.dtype))
    assert dc.score(X, Y) >= sk.score(X, Y) - 0.05  # subset accuracy
    # partial_fit on multilabel targets, as scikit-learn allows
    if solver != "lbfgs":
        clf = MLPClassifier(solver=solver, random_state=0, learning_rate_init=lr)
        for _ in range(30):  # classes are required on the first call, as in scikit-learn
            clf.partial_fit(X, Y, classes=np.arange(5))
        assert clf.score(X, Y) > 0.3 and clf.predict(X).shape == Y.shape


# ---- sparse input -------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_sparse_input_trains_without_densifying(fmt, solver, monkeypatch):
    from scipy.sparse import _base, _compressed

    X, y = digits()
    Xs = sp.csr_matrix(X) if fmt == "csr" else sp.csc_matrix(X)
    sk = quiet_fit(SkMLP(solver=solver, max_iter=20, random_state=0), Xs, y)
    sk_score = sk.score(Xs, y)

    def refuse(self, *a, **k):
        raise AssertionError("a sparse matrix was densified")

    # from here on, anything that turns a sparse matrix into a dense one fails the test
    monkeypatch.setattr(_compressed._cs_matrix, "toarray", refuse)
    monkeypatch.setattr(_base._spbase, "toarray", refuse)
    monkeypatch.setattr(_base._spbase, "todense", refuse)
    dc = quiet_fit(MLPClassifier(solver=solver, max_iter=20, random_state=0), Xs, y)
    assert dc.score(Xs, y) >= sk_score - 0.01
    p_sparse = dc.predict_proba(Xs)
    p_dense = dc.predict_proba(np.ascontiguousarray(X))
    np.testing.assert_allclose(p_sparse, p_dense, atol=1e-5)


def test_sparse_and_dense_lbfgs_follow_the_same_loss():
    X, y = iris()
    X = X - X.min()  # non-negative, a third of it zero
    X[X < np.median(X)] = 0
    a = quiet_fit(MLPClassifier(solver="lbfgs", max_iter=15, random_state=0), X, y)
    b = quiet_fit(MLPClassifier(solver="lbfgs", max_iter=15, random_state=0),
                  sp.csr_matrix(X), y)
    assert b.loss_ == pytest.approx(a.loss_, rel=1e-3)


def test_uint8_sparse_is_scaled_like_uint8_dense():
    (x, y), _ = digitcore.datasets.load_mnist_mini()
    x = x[:600].reshape(600, -1)
    clf = quiet_fit(MLPClassifier((32,), solver="lbfgs", max_iter=20, random_state=0), x, y[:600])
    np.testing.assert_allclose(clf.predict_proba(sp.csr_matrix(x)), clf.predict_proba(x),
                               atol=1e-5)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_malformed_sparse_input_is_refused_in_a_subprocess(fmt):
    # SciPy trusts indptr/indices: sorting this CSR crashed the process (SIGSEGV), and the
    # CSC's out-of-range row index was dropped without a word. Run apart, so a crash is a
    # failed test and not a dead worker.
    code = textwrap.dedent(f"""
        import warnings; warnings.simplefilter("ignore")
        import numpy as np, scipy.sparse as sp
        from digitcore.estimator import MLPClassifier
        X = np.random.default_rng(0).random((40, 6)).astype(np.float32)
        m = MLPClassifier((8,), max_iter=1).fit(X, np.arange(40) % 3)
        if "{fmt}" == "csr":
            Xs = sp.csr_matrix(X[:4]); Xs.indptr[2] = 10**6
        else:
            Xs = sp.csc_matrix(X[:4]); Xs.indices[0] = 99
        for call in (m.predict, m.predict_proba, lambda a: m.fit(a, np.arange(4) % 3)):
            try:
                call(Xs)
            except ValueError as exc:
                print(exc)
            else:
                print("accepted")
        """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 3 and all(f"not a valid {fmt.upper()} matrix" in ln for ln in lines)


def test_checking_a_sparse_matrix_leaves_it_as_it_was():
    # check_format(full_check=True) prunes arrays longer than nnz (and may convert byte
    # order or index dtypes) on the matrix it is called on: the caller's must not change
    X, y = digits()
    Xs = sp.csr_matrix(X)
    Xs.indices = np.concatenate([Xs.indices, np.zeros(3, Xs.indices.dtype)])
    Xs.data = np.concatenate([Xs.data, np.zeros(3, Xs.data.dtype)])
    data, indices, indptr = Xs.data, Xs.indices, Xs.indptr
    clf = quiet_fit(MLPClassifier((8,), max_iter=2, random_state=0), Xs, y)
    clf.predict(Xs)
    assert Xs.data is data and Xs.indices is indices and Xs.indptr is indptr
    assert len(Xs.data) == Xs.nnz + 3


# ---- attributes ----------------------------------------------------------------------------------

def test_coefs_and_intercepts_are_settable():
    """sklearn's fitted weights set into ours give sklearn's probabilities."""
    X, y = iris()
    sk = quiet_fit(SkMLP(hidden_layer_sizes=(9,), max_iter=50, random_state=0), X, y)
    dc = quiet_fit(MLPClassifier(hidden_layer_sizes=(9,), max_iter=1, random_state=0), X, y)
    dc.coefs_ = sk.coefs_
    dc.intercepts_ = sk.intercepts_
    np.testing.assert_allclose(dc.predict_proba(X), sk.predict_proba(X), atol=1e-5)
    np.testing.assert_array_equal(dc.predict(X), sk.predict(X))
    # in scikit-learn's (inputs, outputs) layout (the kernels' transposed shapes were
    # named, so the message said to transpose the wrong way)
    with pytest.raises(ValueError, match=r"coefs_\[0\] has shape \(2, 9\), expected \(4, 9\)"):
        dc.coefs_ = [c[:2] for c in sk.coefs_]
    with pytest.raises(ValueError, match=r"coefs_\[1\] has shape \(3, 9\), expected \(9, 3\)"):
        dc.coefs_ = [sk.coefs_[0], sk.coefs_[1].T]
    with pytest.raises(ValueError, match="coefs_ must hold 2 weight matrices, got 1"):
        dc.coefs_ = sk.coefs_[:1]
    with pytest.raises(AttributeError):
        MLPClassifier().coefs_ = sk.coefs_


# ---- messages -------------------------------------------------------------------------------------

def test_early_stopping_class_too_small_to_stratify_gives_sklearns_error():
    X = np.arange(40, dtype=float).reshape(20, 2)
    y = np.array([0] * 19 + [1])
    messages = []
    for cls in (SkMLP, MLPClassifier):
        with pytest.raises(ValueError) as e:
            cls(early_stopping=True, random_state=0).fit(X, y)
        messages.append(str(e.value))
    assert messages[0] == messages[1]
    assert "The least populated classes in y have only 1 member" in messages[1]


def test_same_errors_as_sklearn_for_bad_parameters():
    X, y = iris()
    for params in (dict(activation="softplus"), dict(solver="newton"), dict(max_fun=0),
                   dict(n_iter_no_change=0), dict(learning_rate="cyclic")):
        msgs = []
        for cls in (SkMLP, MLPClassifier):
            with pytest.raises(ValueError) as e:
                cls(**params).fit(X, y)
            msgs.append(str(e.value).split(" must be ")[0])
        assert msgs[0] == msgs[1], params
