"""A scikit-learn ``MLPClassifier`` trained by digitcore's C kernels.

``digitcore.MLPClassifier`` takes every constructor parameter of
``sklearn.neural_network.MLPClassifier`` with the same meaning (solvers "lbfgs", "sgd",
"adam"; the three learning-rate schedules; ``warm_start``), its inputs (multilabel
targets; ``scipy.sparse`` input) but not ``fit``'s and ``partial_fit``'s
``sample_weight`` (recent scikit-learn releases take it; the C kernels weigh every sample
alike), plus a few digitcore extras (more solvers, ``leaky_relu``, ``dropout``), and
raises scikit-learn's errors and warnings (but a stochastic fit whose loss diverges raises
:class:`digitcore.errors.TrainingDivergedError`, a ``FloatingPointError`` naming the epoch,
where scikit-learn raises a ``ValueError``). A fit refused before it trains leaves a
fitted estimator as it was.

It needs scikit-learn (``pip install "digitcore[sklearn]"``, which brings SciPy). An
estimator whose point is to be swapped for scikit-learn's only has users who have
scikit-learn, and re-implementing scikit-learn's base classes, parameter and input
validation, label binarizer and data splits for the case where it is absent was about 40%
of this module and drifted from scikit-learn's messages. The rest of digitcore (Network,
Trainer, the CLI) does not need scikit-learn.

One file for one unit: the one class scikit-learn's contract describes, with
its fit, partial_fit, solvers and attributes; its methods share the fitted state, and
splitting them would only scatter that contract.

How the work is done
--------------------
- "sgd"/"adam" (and the extras) on dense single-label input: :class:`~digitcore.Trainer`,
  whose C loop runs whole mini-batches (forward, loss, backward, update) with the GIL
  released.
- "lbfgs": SciPy's L-BFGS-B; each evaluation is one nogil C call computing the loss and
  the gradient over the whole training set (``csrc/mlp_grad.c``).
- Multilabel targets (sigmoid outputs, binary cross-entropy) and ``scipy.sparse`` input
  with a stochastic solver: the same C call per mini-batch, then the optimizer's C update.
  Sparse rows go straight into the sparse first-layer kernel (``dc_spmm``); the matrix is
  never densified.

Where it differs from scikit-learn, and why
-------------------------------------------
- **float32 parameters** for float64 input: every kernel computes in float32 (twice the
  SIMD width, half the memory traffic). ``coefs_`` / ``intercepts_`` are float32.
- **uint8 input is scaled by 1/255** (images stay uint8 in memory, as everywhere in
  digitcore); other dtypes are used as given, but once fitted on uint8 the estimator
  refuses floats above 2 (0-255 pixels as floats, which it would read 255 times too
  bright), and once fitted on floats above 2 it refuses uint8 (which it would read 255
  times too dark).
- **Two softmax outputs for two classes** (``n_outputs_ == 2``, ``out_activation_ ==
  "softmax"``) where scikit-learn has one logistic unit: the fused training loop has one
  output loss. ``predict_proba`` has the same shape as scikit-learn's. The two rows of
  the last layer's weight start as ``-v/2`` and ``+v/2`` of scikit-learn's unit ``v``
  (the same decision function), and ``alpha`` penalises both rows, which is half
  scikit-learn's penalty on their difference: for two classes, ``alpha`` on that layer
  acts as scikit-learn's ``alpha / 2`` (the hidden layers' as the same ``alpha``).
- **Initialisation**: weights are drawn exactly as scikit-learn draws them (Glorot
  uniform, bound ``sqrt(6 / (fan_in + fan_out))``, ``sqrt(2 / ...)`` for "logistic",
  from ``check_random_state(random_state)`` in the same order), so for more than two
  classes the initial ``coefs_`` equal scikit-learn's; **biases start at zero** where
  scikit-learn draws them from the same uniform. On small data that learns faster per
  epoch: over 5 seeds at max_iter 5/10/20 on make_blobs (300 samples), its two-class
  subset and iris, mean training accuracy was at or above scikit-learn's in every case,
  while random biases were below it on the two-class blobs (e.g. 0.81 vs 0.93 at 20).
- **Per step**: ``alpha`` is applied as ``alpha / batch_size`` on each mini-batch's mean
  gradient (scikit-learn divides by the actual batch length, so its shorter last batch
  gets a slightly larger penalty); the penalty in ``loss_curve_`` is the epoch's last
  weights', where scikit-learn averages each mini-batch's weights before its update (the
  same steps; with a large ``alpha`` the reported curves differ). Adam adds ``epsilon`` to the bias-corrected
  ``sqrt(v_hat)`` (PyTorch's form); scikit-learn adds it to ``sqrt(v)`` and folds the bias
  corrections into the step size, which is the same update with epsilon scaled by
  ``sqrt(1 - beta_2 ** t)``. SGD momentum is PyTorch's ``v = mu v + g; w -= lr v``, the
  same steps as scikit-learn's ``v = mu v - lr g; w += v`` while the rate is constant
  (they differ only right after "invscaling"/"adaptive" change it). Shuffling uses a
  different random stream.
- To start from exactly scikit-learn's weights, copy them in:
  ``ours.coefs_ = sk.coefs_; ours.intercepts_ = sk.intercepts_`` on a fitted estimator
  with ``warm_start=True`` (for more than two classes), then ``fit``.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

try:
    import scipy.optimize
    import scipy.sparse
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state
    from sklearn.utils._param_validation import Interval, Options, StrOptions
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import (
        _check_partial_fit_first_call,
        check_classification_targets,
        type_of_target,
        unique_labels,
    )
    from sklearn.utils.optimize import _check_optimize_result
    from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "digitcore.MLPClassifier needs scikit-learn >= 1.6 (and SciPy): "
        "pip install 'digitcore[sklearn]'") from exc

try:
    from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
except ImportError:  # pragma: no cover - other scikit-learn versions
    def _get_additional_lbfgs_options_dict(key, value):
        return {key: value}

from digitcore import optim
from digitcore._checks import FLOAT32_RANGE, all_finite
from digitcore._config import _ops
from digitcore.errors import TrainingDivergedError

__all__ = ["MLPClassifier"]

#: scikit-learn activation names -> digitcore's.
_ACTIVATIONS = {"identity": "identity", "relu": "relu", "logistic": "sigmoid",
                "tanh": "tanh", "leaky_relu": "leaky_relu"}
_STOCHASTIC = ("sgd", "adam", "rmsprop", "adamw", "nesterov", "momentum")
_SGD_FAMILY = ("sgd", "nesterov", "momentum")


def _is_sparse(X):
    return scipy.sparse.issparse(X)


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """Multi-layer perceptron classifier trained by digitcore's C kernels.

    A drop-in for ``sklearn.neural_network.MLPClassifier``: same parameters, inputs
    (but not ``sample_weight``), attributes, errors and warnings (see the module docstring
    for what differs and why).
    Inputs are ``(n_samples, n_features)`` arrays or ``scipy.sparse`` CSR/CSC matrices
    (``(n, h, w)`` image stacks are flattened). **uint8 inputs are scaled by 1/255**;
    every other dtype is converted to float32 and used as given, so scale float features
    yourself (e.g. ``X / 16`` for ``load_digits``) or put a ``StandardScaler`` in front.
    Fitted on uint8, it refuses floats above 2 at predict time (0-255 pixels as floats).

    Parameters
    ----------
    hidden_layer_sizes : int or array-like of int, default=(100,)
        Units of each hidden layer; ``()`` trains a softmax regression.
    activation : {"identity", "logistic", "tanh", "relu", "leaky_relu"}, default="relu"
        Hidden activation ("leaky_relu", slope 0.01, is a digitcore extra).
    solver : {"lbfgs", "sgd", "adam", "rmsprop", "adamw", "nesterov", "momentum"}, \
default="adam"
        "lbfgs": SciPy's L-BFGS-B over the whole training set (each loss and gradient in
        one C call). "sgd": SGD with ``momentum`` (Nesterov if ``nesterovs_momentum``).
        Extras: "momentum" / "nesterov" force classical / Nesterov momentum; "rmsprop"
        (rho 0.9, ``epsilon``); "adamw" (``alpha`` as decoupled weight decay).
    alpha : float, default=1e-4
        L2 penalty, scaled as scikit-learn scales it: ``alpha / n`` times the weights is
        added to the mean gradient over ``n`` samples (the batch size for the stochastic
        solvers, the training set for "lbfgs"); biases are not penalised. (With two
        classes, see the module docstring: on the last layer it acts as scikit-learn's
        ``alpha / 2``.)
        ``loss_curve_`` / ``loss_`` include ``alpha / (2 n) * ||W||^2``, taken once an
        epoch at the epoch's last weights (scikit-learn adds it for every mini-batch at
        the weights before its update: with a large ``alpha`` the curves differ, and
        ``n_iter_no_change`` may stop an epoch apart, on the same weights).
    batch_size : int or "auto", default="auto"
        ``"auto"`` is ``min(200, n_samples)``; larger values are clipped to n_samples
        with a warning. Not used by "lbfgs".
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        Schedule of the SGD-family solvers (ignored by the others, as in scikit-learn):
        "invscaling", ``lr = learning_rate_init / (t + 1) ** power_t`` after each epoch,
        ``t`` the samples seen; "adaptive", ``lr /= 5`` whenever the stopping criterion
        is met, stopping once ``lr <= 1e-6``. The optimizer (``_optimizer``) carries
        ``learning_rate``, ``lr_schedule`` and ``power_t``.
    learning_rate_init : float, default=1e-3
    power_t : float, default=0.5
    max_iter : int, default=200
        Epochs per ``fit`` (stochastic solvers) or L-BFGS iterations.
    shuffle : bool, default=True
    random_state : None, int or RandomState
        Seeds the weights, the early-stopping split, the shuffling and dropout. An int
        reproduces a fit bit for bit on the same thread count.
    tol : float, default=1e-4
        Stochastic solvers stop when the loss (or, with ``early_stopping``, the validation
        accuracy) has not improved by ``tol`` for ``n_iter_no_change`` consecutive
        epochs; "lbfgs" stops when the projected gradient is below ``tol``.
    verbose : bool, default=False
    warm_start : bool, default=False
        ``fit`` continues from the current weights (the classes must be the same; a new
        optimizer, as in scikit-learn). The architecture must not change.
    momentum : float in [0, 1), default=0.9
        (scikit-learn also accepts 1.0, where velocity never decays.)
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified for two classes, as in
        scikit-learn), stop on validation accuracy, and keep the best weights.
    validation_fraction : float in [0, 1), default=0.1
    beta_1, beta_2, epsilon : float
        Adam / AdamW moments and epsilon (``epsilon`` also for RMSprop).
    n_iter_no_change : int or np.inf, default=10
        ``np.inf`` switches the tolerance stop off.
    max_fun : int, default=15000
        "lbfgs" only: the most loss evaluations.
    dropout : float in [0, 1), default=0.0
        digitcore extra: dropout on the hidden activations (stochastic solvers, dense
        single-label input).

    Attributes
    ----------
    classes_ : ndarray (n_classes,)
    network_ : digitcore.Network
        The trained network (weights ``(out, in)``). ``network_.save(path)`` writes the
        network alone, which predicts class indices ``0 .. n_classes - 1`` with a softmax:
        the estimator's ``classes_`` (labels such as ``[3, 7]`` or strings) and a
        multilabel fit's independent sigmoid outputs are estimator state. To keep them,
        pickle the estimator (``pickle.dump`` or ``joblib.dump``).
    coefs_, intercepts_ : list of ndarray
        float32, in scikit-learn's layout (``coefs_[i]`` is ``(in, out)``). Reading gives
        copies; assigning a list of the right shapes sets the network's parameters.
    loss_ : float
    loss_curve_ : list of float
        Stochastic solvers only, as in scikit-learn.
    best_loss_, validation_scores_, best_validation_score_
        Stochastic solvers only, as in scikit-learn.
    n_iter_ : int
        Epochs (or L-BFGS iterations) run by the last ``fit`` / ``partial_fit`` call.
    t_ : int
        Training samples seen by the stochastic optimizer.
    n_features_in_, n_layers_, n_outputs_, out_activation_

    Examples
    --------
    >>> from sklearn.datasets import load_digits                     # doctest: +SKIP
    >>> X, y = load_digits(return_X_y=True)                          # doctest: +SKIP
    >>> clf = MLPClassifier((64,), random_state=0).fit(X / 16, y)    # doctest: +SKIP
    """

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(numbers.Integral, 1, None,
                                                      closed="left")],
        "activation": [StrOptions(set(_ACTIVATIONS))],
        "solver": [StrOptions({"lbfgs", *_STOCHASTIC})],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None,
                                                      closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(numbers.Real, 0, None, closed="neither")],
        "power_t": [Interval(numbers.Real, 0, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(numbers.Real, 0, 1, closed="left")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "beta_1": [Interval(numbers.Real, 0, 1, closed="left")],
        "beta_2": [Interval(numbers.Real, 0, 1, closed="left")],
        "epsilon": [Interval(numbers.Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left"),
                             Options(numbers.Real, {np.inf})],
        "max_fun": [Interval(numbers.Integral, 1, None, closed="left")],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
    }

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dropout=0.0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout

    # ---- scikit-learn protocol --------------------------------------------------------------

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        tags.input_tags.sparse = True
        return tags

    def __sklearn_is_fitted__(self):
        return hasattr(self, "network_")

    # ---- input ------------------------------------------------------------------------------

    def _hidden(self):
        hls = self.hidden_layer_sizes
        if not hasattr(hls, "__iter__"):
            hls = [hls]
        hls = list(hls)
        for h in hls:  # (4.5 built 4 units, True 1)
            if isinstance(h, bool) or not isinstance(h, (numbers.Integral, np.integer)):
                raise TypeError(f"hidden_layer_sizes must hold integers, got {h!r} in "
                                f"{self.hidden_layer_sizes!r}")
        if np.any(np.array(hls) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hls}.")
        return tuple(int(h) for h in hls)

    def _check_X(self, X, y="no_validation", reset=False):
        """Validated X (and y) in a form the kernels take: a uint8/float32 C-contiguous
        array, or scipy CSR with float32 data."""
        if isinstance(X, np.ndarray) and X.ndim == 3:  # (n, h, w) image stacks
            # (an empty stack: reshape cannot infer -1 from 0 elements)
            X = X.reshape(X.shape[0], X.shape[1] * X.shape[2])
        if _is_sparse(X) and X.format in ("csr", "csc"):
            # SciPy trusts indptr and indices: sorting a CSR whose indptr points past its
            # data crashed the process, and a CSC's row index past the end was dropped
            try:  # (on a new matrix object over the same arrays: check_format may prune
                # or convert them, which must not change the caller's matrix)
                type(X)((X.data, X.indices, X.indptr), shape=X.shape,
                        copy=False).check_format(full_check=True)
            except ValueError as exc:
                raise ValueError(f"X is not a valid {X.format.upper()} matrix: {exc}") from None
        kw = dict(accept_sparse=["csr", "csc"], dtype="numeric", reset=reset)
        if isinstance(y, str) and y == "no_validation":
            X = validate_data(self, X, **kw)
        else:
            X, y = validate_data(self, X, y, multi_output=True, **kw)
        top = getattr(self, "_float_max", None)
        # (checked on the validated array: a DataFrame of uint8 columns is uint8 here)
        if not reset and X.dtype == np.uint8 and top is not None and top > 2:
            # uint8 is read as pixels, scaled by 1/255: a model fitted on floats as large as
            # 0-255 pixels would read such images 255 times too dark
            raise ValueError(f"X is uint8, which this estimator scales by 1/255, but it was "
                             f"fitted on floats up to {top:g}: give X as those floats "
                             "(X.astype(np.float32)), as it was fitted")
        with np.errstate(over="ignore"):  # (values past float32's range: said below)
            if _is_sparse(X):
                X = X.tocsr()
                if X.dtype == np.uint8:
                    X = X.astype(np.float32) / np.float32(255)
                X = X.astype(np.float32, copy=False)
                if not X.has_sorted_indices:
                    X = X.sorted_indices()
            elif X.dtype != np.uint8:
                X = np.ascontiguousarray(X, dtype=np.float32)
            else:
                X = np.ascontiguousarray(X)
        if X.dtype == np.float32 and not all_finite(X.data if _is_sparse(X) else X):
            # finite as validate_data checked it: past float32's range, inf once cast; but
            # under sklearn.config_context(assume_finite=True) it did not check
            if np.isnan(X.data if _is_sparse(X) else X).any():
                raise ValueError("Input X contains NaN.")
            raise ValueError(FLOAT32_RANGE.format(name="X") + " (or is infinite): scale the "
                             "features down")
        return X if isinstance(y, str) and y == "no_validation" else (X, y)

    @staticmethod
    def _kernel_rows(X, target=None):
        """X (and its encoded target), checked once, for the row kernels."""
        if _is_sparse(X):
            x, scale = (X.indptr.astype(np.int64), X.indices.astype(np.int32, copy=False),
                        X.data, X.shape[0]), 1.0
        else:
            x, scale = X, (1.0 / 255.0 if X.dtype == np.uint8 else 1.0)
        labels = target if target is not None and target.ndim == 1 else None
        targets = target if target is not None and target.ndim == 2 else None
        return _ops().Rows(x, X.shape[1], scale, 0.0, labels=labels, targets=targets)

    # ---- labels -----------------------------------------------------------------------------

    def _encode(self, y, first, incremental):
        """Labels -> class indices (n,) int64, or a (n, n_labels) float32 indicator."""
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if not first and (type_of_target(y).startswith("multilabel")
                          != self._label_binarizer.y_type_.startswith("multilabel")):
            raise ValueError("The object was not fitted with multilabel input."
                             if type_of_target(y).startswith("multilabel") else
                             "The object was fitted with multilabel input; y must be a "
                             "multilabel indicator too.")
        if first:
            lb = LabelBinarizer()
            lb.fit(y)
            self._label_binarizer = lb
            self.classes_ = lb.classes_
        elif not incremental or self.warm_start:
            classes = unique_labels(y)
            if self.warm_start and set(classes) != set(self.classes_):
                raise ValueError(
                    f"warm_start can only be used where `y` has the same classes as in the "
                    f"previous call to fit. Previously got {self.classes_}, `y` has "
                    f"{classes}")
        else:
            classes = unique_labels(y)
            if len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` "
                                 f"has {self.classes_}. 'y' has {classes}.")
        if self._label_binarizer.y_type_.startswith("multilabel"):
            return np.ascontiguousarray(self._label_binarizer.transform(y), np.float32)
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes; "
                             f"got 1 class {self.classes_.tolist()} in y")
        return np.searchsorted(self.classes_, y).astype(np.int64)

    @property
    def _multilabel(self):
        return self.out_activation_ == "logistic"

    # ---- set-up -----------------------------------------------------------------------------

    def _initialize(self, n_features, n_outputs, multilabel, hidden):
        from digitcore.network import Network

        act = _ACTIVATIONS[self.activation]
        sizes = (n_features, *hidden, n_outputs)
        net = Network(sizes, activation=act, init="glorot", dropout=float(self.dropout))
        factor = 2.0 if self.activation == "logistic" else 6.0
        binary = n_outputs == 2 and not multilabel
        for i, (w, b) in enumerate(zip(net.weights, net.biases)):
            fan_out, fan_in = w.shape
            if binary and i == len(net.weights) - 1:
                fan_out = 1  # scikit-learn's one logistic unit, see below
            bound = np.sqrt(factor / (fan_in + fan_out))
            # scikit-learn's draws, in its order: coefs (in, out), then intercepts (kept
            # zero here, see the module docstring; drawn so the stream stays aligned)
            coef = self._random_state.uniform(-bound, bound, (fan_in, fan_out)).T
            self._random_state.uniform(-bound, bound, fan_out)
            if fan_out == 1 and w.shape[0] == 2:
                # two softmax outputs -v/2, +v/2: logit difference v . h, the same
                # decision function and hidden-layer gradient as one logistic unit v
                coef = np.concatenate([-coef / 2, coef / 2])
            w[...] = coef
            b[...] = 0.0
        self.network_ = net
        self.n_iter_ = 0
        self.t_ = 0
        self.n_layers_ = len(sizes)
        self.n_outputs_ = n_outputs
        self.out_activation_ = "logistic" if multilabel else "softmax"
        self._best_flat = net.flat_parameters.copy()
        if self.solver in _STOCHASTIC:
            self._init_stochastic_state()

    def _init_stochastic_state(self):
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    def _make_optimizer(self, l2):
        lr, solver = float(self.learning_rate_init), self.solver
        if solver in _SGD_FAMILY:  # (momentum > 0 where needed: checked by _start_fit)
            nesterov = (solver == "nesterov" or (solver == "sgd" and self.nesterovs_momentum
                                                 and self.momentum > 0))
            return optim.SGD(lr, momentum=self.momentum, nesterov=nesterov,
                             lr_schedule=self.learning_rate, power_t=self.power_t)
        if solver == "rmsprop":
            return optim.RMSprop(lr, eps=self.epsilon)
        if solver == "adamw":
            return optim.AdamW(lr, betas=(self.beta_1, self.beta_2), eps=self.epsilon,
                               weight_decay=l2)
        return optim.Adam(lr, betas=(self.beta_1, self.beta_2), eps=self.epsilon)

    def _batch_size(self, n):
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                          "going to be clipped", stacklevel=4)
        return int(np.clip(self.batch_size, 1, n))

    def _check_solver(self):
        if self.solver not in _STOCHASTIC:
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    # ---- fit / partial_fit ------------------------------------------------------------------

    def fit(self, X, y):
        """Train on ``X`` (n, features), dense or sparse, with labels ``y`` (n,) or a
        multilabel indicator ``y`` (n, n_labels).

        Returns
        -------
        self
        """
        self._validate_params()
        return self._fit(X, y, incremental=False)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, classes=None):
        """One epoch over ``(X, y)``; ``classes`` (all labels) is required on the first
        call. The optimizer state (momentum, Adam moments) persists between calls.
        Not available for ``solver="lbfgs"``, as in scikit-learn.
        """
        self._validate_params()

        def first_call():
            if _check_partial_fit_first_call(self, classes):
                self._label_binarizer = LabelBinarizer()
                if type_of_target(y).startswith("multilabel"):
                    self._label_binarizer.fit(y)
                else:
                    self._label_binarizer.fit(classes)

        return self._fit(X, y, incremental=True, setup=first_call)

    def _fit(self, X, y, incremental, setup=None):
        # A fit refused before training (bad X or y, one class, a parameter that does not
        # apply, a validation split that cannot be made) leaves the estimator as it was: a
        # fitted model keeps its network, classes and feature count, instead of a mix of
        # the old and the refused call's. The solvers say when training begins
        # (_began); an error after that leaves what the training did.
        saved = dict(self.__dict__)
        net = saved.get("network_")
        dropout = net.dropout if net is not None else None  # (set on it for warm starts)
        try:
            if setup is not None:
                setup()
            X, target, multilabel, pixels = self._start_fit(X, y, incremental)
            before = self.network_.training_summary  # (a new network's: None)
            if self.solver == "lbfgs":
                self._fit_lbfgs(X, target)
            else:
                self._fit_stochastic(X, target, incremental)
        except BaseException:
            if not self.__dict__.get("_began"):
                self.__dict__.clear()
                self.__dict__.update(saved)
                if net is not None:
                    net.dropout = dropout
            raise
        finally:
            self.__dict__.pop("_began", None)
        if not np.isfinite(self.network_.flat_parameters).all():
            raise ValueError("Solver produced non-finite parameter weights. The input data "
                             "may contain large values and need to be preprocessed.")
        from digitcore.network import input_record

        # what it read, by every solver: fitted on uint8 pixels (or on floats in [0, 1]
        # after them: warm_start, partial_fit), it refuses floats that can only be 0-255
        # pixels (network.check_pixel_floats)
        self.network_.training_summary = dict(
            self.network_.training_summary or {},
            input="uint8" if pixels else input_record(X, before))
        # the largest float it read (None: uint8 pixels), for the check of uint8 input
        values = X.data if _is_sparse(X) else X
        self._float_max = None if pixels or values.size == 0 else float(np.abs(values).max())
        return self

    def _start_fit(self, X, y, incremental):
        """Everything a fit checks and sets up before it trains: the checked X, the
        encoded target, whether it is multilabel, whether X was uint8 pixels."""
        hidden = self._hidden()
        first = not hasattr(self, "network_") or (not self.warm_start and not incremental)
        sparse_uint8 = _is_sparse(X) and X.dtype == np.uint8  # (scaled to floats by _check_X)
        if self.solver in _SGD_FAMILY and self.solver != "sgd" and self.momentum == 0:
            raise ValueError(f"solver={self.solver!r} needs momentum > 0")
        X, y = self._check_X(X, y, reset=first)
        # uint8 pixels, as validated (a DataFrame of uint8 columns is a uint8 array)
        pixels = sparse_uint8 or X.dtype == np.uint8
        if incremental and first and hasattr(self, "classes_"):
            # first partial_fit: classes_ came from `classes`; encode against them
            target = self._encode(y, first=False, incremental=True)
        else:
            target = self._encode(y, first=first and not incremental, incremental=incremental)
        multilabel = self._label_binarizer.y_type_.startswith("multilabel")
        if self.dropout and (self.solver == "lbfgs" or multilabel or _is_sparse(X)):
            raise ValueError("dropout is only available with a stochastic solver on dense, "
                             "single-label input")
        n_outputs = target.shape[1] if multilabel else max(2, len(self.classes_))
        self._random_state = check_random_state(self.random_state)
        if first:
            self._initialize(X.shape[1], n_outputs, multilabel, hidden)
        else:
            net = self.network_
            if (net.layer_sizes[1:-1] != hidden
                    or net.activation != _ACTIVATIONS[self.activation]
                    or net.n_classes != n_outputs or multilabel != self._multilabel):
                raise ValueError("warm_start / partial_fit cannot change hidden_layer_sizes, "
                                 "activation or the kind of target of a fitted model; set "
                                 "warm_start=False")
            net.dropout = float(self.dropout)
        return X, target, multilabel, pixels

    def _loss_kind(self):
        return "sigmoid" if self._multilabel else "softmax"

    def _penalty(self, alpha_over_n):
        sq = sum(float(np.dot(w.ravel(), w.ravel())) for w in self.network_.weights)
        return 0.5 * alpha_over_n * sq

    def _fit_lbfgs(self, X, target):
        net = self.network_
        flat = net.flat_parameters
        kernel = net.c_net(0.0)
        rows = self._kernel_rows(X, target)
        n = X.shape[0]
        alpha_n = float(self.alpha) / n
        is_weight = np.zeros(flat.size, bool)
        for w in net.weights:  # weights are penalised, biases are not
            off = (w.__array_interface__["data"][0]
                   - flat.__array_interface__["data"][0]) // flat.itemsize
            is_weight[off:off + w.size] = True
        grads = np.empty(flat.size, np.float32)
        loss_kind = self._loss_kind()

        def loss_grad(theta):
            flat[...] = theta
            loss, _ = _ops().mlp_loss_grad(kernel, rows, None, loss_kind, grads)
            p = flat.astype(np.float64)
            g = grads.astype(np.float64)
            g[is_weight] += alpha_n * p[is_weight]
            return loss + 0.5 * alpha_n * float(np.dot(p[is_weight], p[is_weight])), g

        iprint = 1 if self.verbose is True or self.verbose >= 1 else -1
        self._began = True
        res = scipy.optimize.minimize(
            loss_grad, flat.astype(np.float64), method="L-BFGS-B", jac=True,
            options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol,
                     **_get_additional_lbfgs_options_dict("iprint", iprint)})
        self.n_iter_ = _check_optimize_result("lbfgs", res, self.max_iter)
        self.loss_ = float(res.fun)
        flat[...] = res.x

    def _fit_stochastic(self, X, target, incremental):
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early = bool(self.early_stopping)
        val = None
        if not hasattr(self, "loss_curve_"):  # warm start after solver="lbfgs"
            self._init_stochastic_state()
        if early:
            # stratified for two classes (scikit-learn's one output), on the same boolean
            # column scikit-learn stratifies on, so a class too small to split gives
            # scikit-learn's own error
            binary = target.ndim == 1 and len(self.classes_) == 2
            stratify = (target == 1).reshape(-1, 1) if binary else None
            X, X_val, target, t_val = train_test_split(
                X, target, random_state=self._random_state,
                test_size=self.validation_fraction, stratify=stratify)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            if self.best_validation_score_ is None:  # warm start after early_stopping=False
                self.validation_scores_, self.best_validation_score_ = [], -np.inf
                self._best_flat = self.network_.flat_parameters.copy()
            val = (X_val, t_val)
        elif self.best_loss_ is None:  # warm start after early_stopping=True
            self.best_loss_ = np.inf
        n = X.shape[0]
        bs = self._batch_size(n)
        l2 = float(self.alpha) / bs
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = self._make_optimizer(l2)
        if self.solver == "adamw":
            self._optimizer.weight_decay = l2  # the batch size may differ between calls
        self.n_iter_ = 0
        epochs = 1 if incremental else int(self.max_iter)
        if _is_sparse(X) or target.ndim == 2:
            self._began = True
            stopped, interrupted = self._run_batches(X, target, val, bs, l2, epochs)
        else:
            stopped, interrupted = self._run_trainer(X, target, val, bs, l2, epochs)
        if interrupted:
            warnings.warn("Training interrupted by user.", stacklevel=3)
        elif not incremental and self.n_iter_ == self.max_iter and not stopped:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                          f"reached and the optimization hasn't converged yet.",
                          ConvergenceWarning, stacklevel=3)
        if early:
            self.network_.flat_parameters[...] = self._best_flat

    def _end_epoch(self, n, loss, val_score):
        """scikit-learn's bookkeeping after an epoch; True to stop."""
        self.n_iter_ += 1
        self.t_ += n
        self.loss_ = loss
        self.loss_curve_.append(loss)
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
        tol = float(self.tol)
        if val_score is not None:
            self.validation_scores_.append(val_score)
            if self.verbose:
                print(f"Validation score: {val_score:f}")
            if val_score < self.best_validation_score_ + tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if val_score > self.best_validation_score_:
                self.best_validation_score_ = val_score
                self._best_flat = self.network_.flat_parameters.copy()
        else:
            if loss > self.best_loss_ - tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            self.best_loss_ = min(self.best_loss_, loss)
        self._optimizer.iteration_ends(self.t_)
        if self._no_improvement_count > self.n_iter_no_change:
            what = "Validation score" if val_score is not None else "Training loss"
            msg = (f"{what} did not improve more than tol={tol:f} for "
                   f"{self.n_iter_no_change} consecutive epochs.")
            if self._optimizer.trigger_stopping(msg, self.verbose):
                return True
            self._no_improvement_count = 0
        return False

    def _run_trainer(self, X, y_idx, val, bs, l2, epochs):
        """Dense single-label input: the fused C training loop, an epoch per callback."""
        from digitcore.trainer import Callback, Trainer

        est, n = self, X.shape[0]
        opt = self._optimizer
        # (set here too: an estimator pickled before the mark existed continues with it)
        opt._schedule_applied_outside = True

        class _Convergence(Callback):
            def on_train_begin(self, logs=None):
                est._began = True  # (after the Trainer's own checks of its settings and data)

            def on_epoch_end(self, epoch, logs):
                loss = float(logs["loss"]) + est._penalty(l2)
                score = float(logs["val_accuracy"]) if val is not None else None
                if est._end_epoch(n, loss, score):
                    self.trainer.stop_training = True

        trainer = Trainer(self.network_, optimizer=opt, batch_size=bs, epochs=epochs,
                          l2=0.0 if self.solver == "adamw" else l2,
                          seed=int(self._random_state.randint(0, 2**31 - 1)), verbose=0,
                          callbacks=[_Convergence()], shuffle=bool(self.shuffle))
        trainer._warn_large_floats = False  # (features of any scale, as scikit-learn's)
        history = trainer.fit(X, y_idx, validation_data=val)
        return trainer.stop_training, history.interrupted

    def _run_batches(self, X, target, val, bs, l2, epochs):
        """Sparse input or multilabel targets: one C call per mini-batch for the loss and
        gradient (sparse rows straight into the sparse first-layer kernel), then the
        optimizer's C update."""
        net, opt = self.network_, self._optimizer
        kernel = net.c_net(0.0)
        rows = self._kernel_rows(X, target)
        n = X.shape[0]
        opt.state_for(net)
        grads = np.empty(net.n_params, np.float32)
        rng = np.random.default_rng(int(self._random_state.randint(0, 2**31 - 1)))
        loss_kind = self._loss_kind()
        l2_grad = 0.0 if self.solver == "adamw" else l2
        try:
            for _ in range(epochs):
                order = (rng.permutation(n) if self.shuffle else np.arange(n)).astype(np.int64)
                total = 0.0
                for b0 in range(0, n, bs):
                    sel = order[b0:b0 + bs]
                    loss, _ = _ops().mlp_loss_grad(kernel, rows, sel, loss_kind, grads)
                    if not (math.isfinite(loss) and np.isfinite(grads).all()):
                        raise TrainingDivergedError(
                            f"training diverged: the loss became NaN or infinite in epoch "
                            f"{self.n_iter_ + 1} (learning rate {opt.lr:.3g}); try a lower "
                            f"learning rate")
                    total += loss * sel.size
                    opt.update_params(net, grads, l2=l2_grad)
                score = None
                if val is not None:
                    score = float(self._score_rows(val[0], val[1]))
                if self._end_epoch(n, total / n + self._penalty(l2), score):
                    return True, False
        except KeyboardInterrupt:
            return False, True
        return False, False

    def _score_rows(self, X, target):
        """Accuracy (subset accuracy for multilabel) of prepared rows against encoded
        targets, from one C call."""
        _, correct = _ops().mlp_loss_grad(self.network_.c_net(0.0),
                                          self._kernel_rows(X, target), None,
                                          self._loss_kind())
        return correct / X.shape[0]

    # ---- inference --------------------------------------------------------------------------

    def _logits(self, X):
        check_is_fitted(self)
        X = self._check_X(X)
        if _is_sparse(X):
            from digitcore.network import check_pixel_floats

            check_pixel_floats(X, self.network_.training_summary, "X")
            return _ops().mlp_logits_rows(self.network_.c_net(0.0), self._kernel_rows(X))
        return self.network_.logits(X)

    def predict_proba(self, X):
        """Class probabilities, float64 (n, n_classes), columns ordered as ``classes_``
        (per-label probabilities for multilabel targets)."""
        z = self._logits(X).astype(np.float64)
        if not all_finite(z):  # (as Network.predict_proba refuses them)
            raise FloatingPointError(
                "predict_proba: the network's output overflowed float32 for this input (a "
                "logit is infinite or NaN), so it has no probabilities to give: its "
                "weights or the input are far too large")
        if self._multilabel:
            return np.exp(-np.logaddexp(0.0, -z))
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z[:, :len(self.classes_)]

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``, as scikit-learn computes it (``-inf`` where a
        probability underflows to 0)."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """Predicted labels (n,) from ``classes_``, or an (n, n_labels) indicator."""
        z = self._logits(X)
        if np.isnan(z).any():  # (as Network.predict refuses it; an infinite one answers)
            raise FloatingPointError(
                "predict: the network's output is NaN for this input, so it has no answer "
                "to give: its weights or the input are far too large")
        if self._multilabel:
            return self._label_binarizer.inverse_transform((z > 0).astype(np.int64))
        return self.classes_[np.argmax(z, axis=1)]

    # ---- scikit-learn-layout parameters -----------------------------------------------------

    @property
    def coefs_(self):
        """Weight matrices ``(in, out)``, float32 copies; assign a list to set them."""
        self._fitted_attr("coefs_")
        # (copies always: ascontiguousarray returned a view of the live weights where
        # w.T is contiguous already, a layer of one input or one output)
        return [w.T.copy() for w in self.network_.weights]

    @coefs_.setter
    def coefs_(self, value):
        self._fitted_attr("coefs_")
        value = list(value)
        weights = self.network_.weights
        if len(value) != len(weights):
            raise ValueError(f"coefs_ must hold {len(weights)} weight matrices, got "
                             f"{len(value)}")
        for i, (c, w) in enumerate(zip(value, weights)):
            shape = np.shape(c)
            if shape != w.shape[::-1]:  # (scikit-learn's layout: (in, out))
                raise ValueError(f"coefs_[{i}] has shape {shape}, expected {w.shape[::-1]} "
                                 f"(inputs, outputs)")
        self.network_.set_parameters([np.asarray(c).T for c in value], self.network_.biases)

    @property
    def intercepts_(self):
        """Bias vectors ``(out,)``, float32 copies; assign a list to set them."""
        self._fitted_attr("intercepts_")
        return [b.copy() for b in self.network_.biases]

    @intercepts_.setter
    def intercepts_(self, value):
        self._fitted_attr("intercepts_")
        self.network_.set_parameters(self.network_.weights, list(value))

    def _fitted_attr(self, name):
        if "network_" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r} before "
                                 f"fit (coefs_ and intercepts_ are set by fit)")
