"""A scikit-learn compatible classifier over :class:`~digitcore.network.Network` and
:class:`~digitcore.trainer.Trainer`.

``digitcore.MLPClassifier`` takes the parameters of
``sklearn.neural_network.MLPClassifier`` (where digitcore has the feature) and trains with
digitcore's C kernels. scikit-learn is optional: without it the class is a plain estimator
with ``get_params`` / ``set_params``; with it the class derives from ``ClassifierMixin`` and
``BaseEstimator``, so ``clone``, ``Pipeline``, ``cross_val_score`` and ``GridSearchCV``
work, and input validation is scikit-learn's own (feature names, messages).

Differences from scikit-learn that matter
-----------------------------------------
- ``alpha`` (see :class:`MLPClassifier`) becomes ``Trainer(l2=alpha / batch_size)``.
- The output layer is always a softmax, also for two classes: ``n_outputs_ == 2`` and
  ``out_activation_ == "softmax"`` where scikit-learn uses one logistic unit.
- Parameters are float32; ``coefs_`` / ``intercepts_`` are float32 copies.
- Initialisation is He (relu, leaky_relu) or Glorot uniform (logistic, tanh).
- Only ``solver`` in the SGD family uses ``learning_rate`` schedules, as in scikit-learn.
"""

from __future__ import annotations

import inspect
import math
import numbers
import warnings

import numpy as np

__all__ = ["MLPClassifier"]

try:  # scikit-learn is optional
    from sklearn.base import BaseEstimator as _SkBaseEstimator
    from sklearn.base import ClassifierMixin as _SkClassifierMixin
    from sklearn.exceptions import ConvergenceWarning as _ConvergenceWarning
    from sklearn.exceptions import DataConversionWarning as _DataConversionWarning
    from sklearn.exceptions import NotFittedError as _NotFittedError
    from sklearn.utils.multiclass import check_classification_targets as _sk_check_targets

    try:  # scikit-learn >= 1.6
        from sklearn.utils.validation import validate_data as _sk_validate_data
    except ImportError:  # pragma: no cover - older scikit-learn
        def _sk_validate_data(estimator, X, y="no_validation", reset=True, **kw):
            return estimator._validate_data(X, y, reset=reset, **kw)

    HAVE_SKLEARN = True
except ImportError:  # pragma: no cover - exercised by a subprocess test
    HAVE_SKLEARN = False

    class ConvergenceWarning(UserWarning):
        """Training stopped at ``max_iter`` before the convergence criterion was met."""

    _ConvergenceWarning = ConvergenceWarning

    class _DataConversionWarning(UserWarning):
        """A column vector ``y`` was passed where a 1-D array was expected."""

    class _NotFittedError(ValueError, AttributeError):
        """The estimator is used before ``fit`` (scikit-learn's NotFittedError)."""

#: scikit-learn activation names -> digitcore's.
_ACTIVATIONS = {"relu": "relu", "logistic": "sigmoid", "tanh": "tanh",
                "leaky_relu": "leaky_relu"}
_SOLVERS = ("sgd", "adam", "rmsprop", "adamw", "nesterov", "momentum")
_SGD_FAMILY = ("sgd", "nesterov", "momentum")
_LEARNING_RATES = ("constant", "invscaling", "adaptive")
# scikit-learn's "adaptive" schedule stops once the learning rate is this small.
_MIN_ADAPTIVE_LR = 1e-6


# ---- parameter machinery without scikit-learn ----------------------------------------------

class _ParamsMixin:
    """``get_params`` / ``set_params`` / ``score`` like scikit-learn's ``BaseEstimator``.

    Parameters are the keyword arguments of ``__init__``, stored unchanged as attributes.
    """

    @classmethod
    def _get_param_names(cls):
        sig = inspect.signature(cls.__init__)
        return sorted(p.name for p in sig.parameters.values()
                      if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))

    def get_params(self, deep=True):
        out = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params):
        valid = self._get_param_names()
        nested = {}
        for key, value in params.items():
            name, sep, sub = key.partition("__")
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for estimator {self!r}; "
                                 f"valid parameters are {valid}")
            if sep:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub_params in nested.items():
            getattr(self, name).set_params(**sub_params)
        return self

    def score(self, X, y, sample_weight=None):
        """Mean accuracy of ``predict(X)`` against ``y`` (weighted by ``sample_weight``)."""
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        correct = (self.predict(X) == y).astype(np.float64)
        return float(np.average(correct, weights=sample_weight))

    def __repr__(self):
        defaults = {p.name: p.default
                    for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = []
        for name in self._get_param_names():
            value = getattr(self, name)
            default = defaults.get(name, inspect.Parameter.empty)
            try:
                same = bool(value == default)
            except Exception:
                same = False
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"


_BASES = (_SkClassifierMixin, _SkBaseEstimator) if HAVE_SKLEARN else (_ParamsMixin,)


# ---- pickling the network -------------------------------------------------------------------

def _restore_network(config, flat, training_summary):
    from digitcore.network import Network

    net = Network.from_config(config)
    net.flat_parameters[...] = flat
    net.training_summary = training_summary
    return net


class _PickledNetwork:
    """Stands in for a Network in a pickle: Network caches a C object that cannot be
    pickled, and its ``weights`` are views into one buffer that a plain pickle would split."""

    def __init__(self, net):
        self.args = (net.get_config(), net.flat_parameters.copy(), net.training_summary)

    def __reduce__(self):
        return _restore_network, self.args


# ---- input validation -----------------------------------------------------------------------

def _flatten_images(X):
    """(n, h, w) image stacks (e.g. from ``load_mnist``) become (n, h * w)."""
    if isinstance(X, np.ndarray) and X.ndim == 3:
        return X.reshape(X.shape[0], -1)
    return X


def _to_kernel_dtype(X):
    """uint8 stays uint8 (the network scales it by 1/255); everything else is float32."""
    if X.dtype == np.uint8:
        return np.ascontiguousarray(X)
    return np.ascontiguousarray(X, dtype=np.float32)


def _check_X_plain(X, name="X"):
    """Validation without scikit-learn: a finite, numeric, non-empty 2-D array."""
    if X is None:
        raise ValueError(f"{name} is None; expected an array of shape (n_samples, n_features)")
    if hasattr(X, "toarray") and hasattr(X, "nnz"):
        raise TypeError(f"sparse input is not supported; pass a dense array "
                        f"({name}.toarray())")
    try:
        X = np.asarray(X)
    except Exception as exc:
        raise ValueError(f"{name} could not be converted to an array: {exc}") from None
    if X.dtype == object:
        try:
            X = X.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} holds non-numeric values: {exc}") from None
    if X.dtype.kind not in "buif":
        raise ValueError(f"{name} must be numeric (uint8 or float), got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"Expected a 2D array for {name}, got shape {X.shape}; reshape "
                         f"a single feature with X.reshape(-1, 1) or a single sample with "
                         f"X.reshape(1, -1)")
    if X.shape[0] == 0:
        raise ValueError(f"Found array with 0 sample(s) (shape={X.shape}) while a minimum "
                         f"of 1 is required")
    if X.shape[1] == 0:
        raise ValueError(f"Found array with 0 feature(s) (shape={X.shape}) while a minimum "
                         f"of 1 is required")
    if X.dtype.kind == "f" and not np.isfinite(X).all():
        raise ValueError(f"Input {name} contains NaN or infinity")
    return X


def _check_y_plain(y, n):
    if y is None:
        raise ValueError("MLPClassifier requires y to be passed, but the target y is None")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected; "
                      "use y.ravel()", _DataConversionWarning, stacklevel=4)
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"y should be a 1d array, got an array of shape {y.shape} instead "
                         f"(multi-label and multi-output targets are not supported)")
    if y.shape[0] != n:
        raise ValueError(f"Found input variables with inconsistent numbers of samples: "
                         f"[{n}, {y.shape[0]}]")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise ValueError("Input y contains NaN or infinity")
        if not np.all(y == np.round(y)):
            raise ValueError("Unknown label type: continuous; MLPClassifier needs class "
                             "labels (ints, strings, ...), not continuous values")
    elif y.dtype.kind not in "biuUSO":
        raise ValueError(f"Unknown label type: y has dtype {y.dtype}")
    return y


def _seed_from(random_state):
    """An int seed from ``random_state`` (None, int, RandomState or Generator)."""
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1, np.uint32)[0])
    if isinstance(random_state, (numbers.Integral, np.integer)) and not isinstance(
            random_state, bool):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**31 - 1))
    raise ValueError(f"random_state must be None, an int, a numpy RandomState or "
                     f"Generator, got {random_state!r}")


# ---- the estimator --------------------------------------------------------------------------

class MLPClassifier(*_BASES):
    """Multi-layer perceptron classifier trained by digitcore's C kernels.

    A drop-in for ``sklearn.neural_network.MLPClassifier`` for the solvers digitcore has.
    Inputs are ``(n_samples, n_features)`` arrays (``(n, h, w)`` image stacks are
    flattened). **uint8 inputs are scaled by 1/255**; every other dtype is converted to
    float32 and used as given, so scale float features to about [0, 1] yourself (e.g.
    ``X / 16`` for ``load_digits``) or put a ``StandardScaler`` in front.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(100,)
        Units of each hidden layer; ``()`` trains a softmax regression.
    activation : {"relu", "logistic", "tanh", "leaky_relu"}, default="relu"
        Hidden activation ("logistic" is digitcore's "sigmoid"; "leaky_relu" has slope
        0.01). "identity" is not available.
    solver : {"adam", "sgd", "rmsprop", "adamw", "nesterov", "momentum"}, default="adam"
        "sgd" is SGD with ``momentum`` (Nesterov if ``nesterovs_momentum``), as in
        scikit-learn; "momentum" / "nesterov" force classical / Nesterov momentum;
        "rmsprop" uses rho=0.9 and ``epsilon``. "lbfgs" is not available.
    alpha : float, default=1e-4
        L2 penalty with scikit-learn's scaling. scikit-learn adds
        ``alpha * ||W||^2 / (2 * n_batch)`` to each batch loss, i.e. ``alpha / n_batch * W``
        to the weight gradients (biases are not penalised). digitcore's ``Trainer(l2=c)``
        adds ``c * W``, so ``c = alpha / batch_size`` (the effective batch size, after
        ``"auto"`` and clipping; scikit-learn's shorter last batch gets a slightly larger
        penalty, digitcore's does not). For ``solver="adamw"`` the same ``c`` is applied
        as decoupled weight decay (``W -= lr * c * W``) instead of through the gradient.
        ``loss_curve_`` includes the penalty ``c / 2 * ||W||^2`` like scikit-learn's.
    batch_size : int or "auto", default="auto"
        ``"auto"`` is ``min(200, n_samples)``; larger values are clipped to n_samples.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        Only used by the SGD-family solvers, as in scikit-learn. "invscaling":
        after each epoch ``lr = learning_rate_init / (t + 1) ** power_t``, ``t`` being the
        number of samples seen. "adaptive": constant until ``n_iter_no_change`` epochs fail
        to improve by ``tol``, then ``lr /= 5``; training stops when ``lr`` < 1e-6.
    learning_rate_init : float, default=1e-3
    power_t : float, default=0.5
        Exponent of "invscaling".
    max_iter : int, default=200
        Maximum number of epochs per ``fit``.
    shuffle : bool, default=True
    random_state : None, int, RandomState or Generator
        Seeds the weights, the shuffling, dropout and the early-stopping split. An int
        reproduces a fit bit for bit on the same thread count.
    tol : float, default=1e-4
        Training stops when the loss (or, with ``early_stopping``, the validation accuracy)
        has not improved by ``tol`` for ``n_iter_no_change`` consecutive epochs.
    verbose : bool, default=False
        Print the loss (and validation score) after each epoch.
    warm_start : bool, default=False
        ``fit`` continues from the current weights (the optimizer starts afresh, as in
        scikit-learn). The architecture, features and classes must not change.
    momentum : float in [0, 1), default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified), stop on validation
        accuracy, and keep the weights of the best epoch. Ignored by ``partial_fit``.
    validation_fraction : float in (0, 1), default=0.1
    beta_1, beta_2, epsilon : float
        Adam / AdamW moments and epsilon (``epsilon`` also for RMSprop).
    n_iter_no_change : int, default=10
    dropout : float in [0, 1), default=0.0
        digitcore extra: dropout on the hidden activations during training.

    Attributes
    ----------
    classes_ : ndarray (n_classes,)
    network_ : digitcore.Network
        The trained network (weights ``(out, in)``); save it with ``network_.save(path)``.
    coefs_, intercepts_ : list of ndarray
        float32 copies in scikit-learn's layout: ``coefs_[i]`` is ``(in, out)``.
        Change the model through ``network_.set_parameters``, not by editing these.
    loss_curve_ : list of float
    validation_scores_ : list of float or None
        Validation accuracy per epoch when ``early_stopping``, else None.
    best_validation_score_ : float or None
    best_loss_ : float or None
        None when ``early_stopping`` (as in scikit-learn).
    n_iter_ : int
        Epochs run by the last ``fit`` (``partial_fit`` adds one per call).
    t_ : int
        Training samples seen by the optimizer.
    n_features_in_, n_layers_, n_outputs_, out_activation_

    Examples
    --------
    >>> from sklearn.datasets import load_digits                     # doctest: +SKIP
    >>> X, y = load_digits(return_X_y=True)                          # doctest: +SKIP
    >>> clf = MLPClassifier((64,), random_state=0).fit(X / 16, y)    # doctest: +SKIP
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, dropout=0.0):
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
        self.dropout = dropout

    # ---- scikit-learn protocol --------------------------------------------------------------

    if HAVE_SKLEARN and hasattr(_SkBaseEstimator, "__sklearn_tags__"):
        def __sklearn_tags__(self):
            tags = super().__sklearn_tags__()
            tags.classifier_tags.multi_label = False
            tags.input_tags.sparse = False
            tags.input_tags.allow_nan = False
            return tags

    if HAVE_SKLEARN and not hasattr(_SkBaseEstimator, "__sklearn_tags__"):
        def _more_tags(self):  # pragma: no cover - scikit-learn < 1.6
            return {"multilabel": False, "allow_nan": False}

    def __sklearn_is_fitted__(self):
        return hasattr(self, "network_")

    def __getstate__(self):
        parent = getattr(super(), "__getstate__", None)
        state = parent() if parent is not None else None
        state = dict(self.__dict__ if state is None else state)
        if state.get("network_") is not None:
            state["network_"] = _PickledNetwork(state["network_"])
        return state

    # ---- validation -------------------------------------------------------------------------

    def _validated_params(self):
        """Check every parameter (at fit time, as scikit-learn does); returns a dict."""
        p = {}
        hls = self.hidden_layer_sizes
        if isinstance(hls, (numbers.Integral, np.integer)) and not isinstance(hls, bool):
            hls = (hls,)
        try:
            hls = tuple(hls)
        except TypeError:
            raise ValueError(f"hidden_layer_sizes must be an int or a sequence of ints, "
                             f"got {self.hidden_layer_sizes!r}") from None
        for h in hls:
            if (isinstance(h, bool) or not isinstance(h, (numbers.Integral, np.integer))
                    or h < 1):
                raise ValueError(f"hidden_layer_sizes must be > 0 integers, got "
                                 f"{self.hidden_layer_sizes!r}")
        p["hidden"] = tuple(int(h) for h in hls)
        if self.activation == "identity":
            raise ValueError("activation='identity' is not supported by digitcore; use "
                             "'relu', 'logistic', 'tanh' or 'leaky_relu'")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got "
                             f"{self.activation!r}")
        if self.solver == "lbfgs":
            raise ValueError("solver='lbfgs' is not supported by digitcore (it has no "
                             "full-batch quasi-Newton optimizer); use one of "
                             f"{list(_SOLVERS)}")
        if self.solver not in _SOLVERS:
            raise ValueError(f"solver must be one of {list(_SOLVERS)}, got {self.solver!r}")
        if self.learning_rate not in _LEARNING_RATES:
            raise ValueError(f"learning_rate must be one of {list(_LEARNING_RATES)}, got "
                             f"{self.learning_rate!r}")
        if self.batch_size != "auto" and (
                isinstance(self.batch_size, bool)
                or not isinstance(self.batch_size, (numbers.Integral, np.integer))
                or self.batch_size < 1):
            raise ValueError(f"batch_size must be 'auto' or a positive int, got "
                             f"{self.batch_size!r}")
        for name in ("max_iter", "n_iter_no_change"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (numbers.Integral, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")

        def real(name, lo, hi, lo_open=False, hi_open=False):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite real number, got {v!r}")
            v = float(v)
            if (v < lo or (lo_open and v == lo) or (hi is not None and v > hi)
                    or (hi_open and v == hi)):
                lb, rb = "(" if lo_open else "[", ")" if hi_open else "]"
                raise ValueError(f"{name} must be in {lb}{lo}, {'inf' if hi is None else hi}"
                                 f"{rb}, got {v!r}")
            return v

        p["alpha"] = real("alpha", 0.0, None)
        p["lr"] = real("learning_rate_init", 0.0, None, lo_open=True)
        p["power_t"] = real("power_t", 0.0, None)
        p["tol"] = real("tol", 0.0, None)
        p["momentum"] = real("momentum", 0.0, 1.0, hi_open=True)
        p["validation_fraction"] = real("validation_fraction", 0.0, 1.0, True, True)
        p["beta_1"] = real("beta_1", 0.0, 1.0, hi_open=True)
        p["beta_2"] = real("beta_2", 0.0, 1.0, hi_open=True)
        p["epsilon"] = real("epsilon", 0.0, None, lo_open=True)
        p["dropout"] = real("dropout", 0.0, 1.0, hi_open=True)
        return p

    def _check_X(self, X, reset):
        X = _flatten_images(X)
        if HAVE_SKLEARN:
            X = _sk_validate_data(self, X, reset=reset, accept_sparse=False,
                                  dtype="numeric")
        else:
            X = _check_X_plain(X)
            if reset:
                self.n_features_in_ = X.shape[1]
            elif X.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} "
                                 f"is expecting {self.n_features_in_} features as input.")
        if X.dtype.kind == "c":
            raise ValueError("Complex data not supported")
        return _to_kernel_dtype(X)

    def _check_Xy(self, X, y, reset):
        X = _flatten_images(X)
        if HAVE_SKLEARN:
            if y is None:
                raise ValueError(f"{type(self).__name__} requires y to be passed, but the "
                                 f"target y is None")
            X, y = _sk_validate_data(self, X, y, reset=reset, accept_sparse=False,
                                     dtype="numeric", multi_output=False)
            _sk_check_targets(y)
        else:
            X = _check_X_plain(X)
            y = _check_y_plain(y, X.shape[0])
            if reset:
                self.n_features_in_ = X.shape[1]
            elif X.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} "
                                 f"is expecting {self.n_features_in_} features as input.")
        return _to_kernel_dtype(X), y

    def _check_fitted(self):
        if not hasattr(self, "network_"):
            raise _NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                f"appropriate arguments before using this estimator.")

    # ---- building blocks --------------------------------------------------------------------

    def _make_optimizer(self, p, l2):
        from digitcore import optim

        lr, solver = p["lr"], self.solver
        if solver == "sgd":
            return optim.SGD(lr, momentum=p["momentum"],
                             nesterov=bool(self.nesterovs_momentum) and p["momentum"] > 0)
        if solver in ("momentum", "nesterov"):
            if p["momentum"] == 0:
                raise ValueError(f"solver={solver!r} needs momentum > 0")
            return optim.SGD(lr, momentum=p["momentum"], nesterov=solver == "nesterov")
        if solver == "rmsprop":
            return optim.RMSprop(lr, eps=p["epsilon"])
        if solver == "adamw":
            return optim.AdamW(lr, betas=(p["beta_1"], p["beta_2"]), eps=p["epsilon"],
                               weight_decay=l2)
        return optim.Adam(lr, betas=(p["beta_1"], p["beta_2"]), eps=p["epsilon"])

    def _initialize(self, classes, n_features, p):
        from digitcore.network import Network

        self._rng = np.random.default_rng(_seed_from(self.random_state))
        activation = _ACTIVATIONS[self.activation]
        init = "he" if activation in ("relu", "leaky_relu") else "glorot"
        self.classes_ = classes
        self.network_ = Network((n_features, *p["hidden"], max(2, len(classes))),
                                activation=activation, init=init, dropout=p["dropout"],
                                seed=int(self._rng.integers(0, 2**63)))
        self.n_layers_ = len(p["hidden"]) + 2
        self.n_outputs_ = self.network_.n_classes
        self.out_activation_ = "softmax"
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.best_loss_ = np.inf
        self._optimizer = None

    def _same_architecture(self, p):
        net = self.network_
        return (net.layer_sizes[1:-1] == p["hidden"]
                and net.activation == _ACTIVATIONS[self.activation])

    def _encode(self, y):
        idx = np.searchsorted(self.classes_, y)
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        bad = self.classes_[idx] != y
        if np.any(bad):
            unseen = np.unique(np.asarray(y)[bad])
            raise ValueError(f"y contains labels not in classes_ {self.classes_.tolist()}: "
                             f"{unseen[:10].tolist()}")
        return idx.astype(np.int64)

    def _batch_size(self, n):
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn(f"batch_size={self.batch_size} is larger than the {n} training "
                          f"samples; it is clipped to {n}", stacklevel=4)
        return min(int(self.batch_size), n)

    # ---- training ---------------------------------------------------------------------------

    def fit(self, X, y):
        """Train on ``X`` (n, features) with labels ``y`` (n,) for up to ``max_iter`` epochs.

        Returns
        -------
        self
        """
        p = self._validated_params()
        fitted = hasattr(self, "network_")
        warm = bool(self.warm_start) and fitted
        X, y = self._check_Xy(X, y, reset=not warm)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes; "
                             f"got 1 class {classes.tolist()} in y")
        if warm:
            if not np.array_equal(classes, self.classes_):
                raise ValueError(f"warm_start can only be used where y has the same classes "
                                 f"as in the previous call to fit; previously got "
                                 f"{self.classes_.tolist()}, y has {classes.tolist()}")
            if not self._same_architecture(p):
                raise ValueError("warm_start=True cannot change hidden_layer_sizes or "
                                 "activation of a fitted model; set warm_start=False")
            self.network_.dropout = p["dropout"]
        else:
            self._initialize(classes, X.shape[1], p)
        y_idx = self._encode(y)
        self._optimizer = None  # a new optimizer per fit, as in scikit-learn
        self._train(X, y_idx, p, incremental=False)
        return self

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``(X, y)``; ``classes`` (all labels) is required on the first call.

        The optimizer state (momentum, Adam moments) persists between calls.
        """
        p = self._validated_params()
        first = not hasattr(self, "network_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        X, y = self._check_Xy(X, y, reset=first)
        if classes is not None:
            classes = np.unique(np.asarray(classes))
            if not first and not np.array_equal(classes, self.classes_):
                raise ValueError(f"`classes={classes.tolist()}` is not the same as on the "
                                 f"last call to partial_fit, was: {self.classes_.tolist()}")
            if len(classes) < 2:
                raise ValueError(f"{type(self).__name__} needs at least 2 classes, got "
                                 f"{classes.tolist()}")
        if first:
            self._initialize(classes, X.shape[1], p)
        elif not self._same_architecture(p):
            raise ValueError("partial_fit cannot change hidden_layer_sizes or activation of "
                             "a fitted model")
        self.network_.dropout = p["dropout"]
        y_idx = self._encode(y)
        self._train(X, y_idx, p, incremental=True)
        return self

    def _train(self, X, y_idx, p, incremental):
        from digitcore.datasets import train_val_split
        from digitcore.trainer import Callback, Trainer

        early = bool(self.early_stopping) and not incremental
        val = None
        if early:
            (X, y_idx), val = train_val_split(X, y_idx, p["validation_fraction"],
                                              seed=int(self._rng.integers(0, 2**63)))
            if val[0].shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            if self.best_validation_score_ is None:  # warm start after early_stopping=False
                self.validation_scores_, self.best_validation_score_ = [], -np.inf
        elif self.best_loss_ is None:
            self.best_loss_ = np.inf
        n = X.shape[0]
        bs = self._batch_size(n)
        l2 = p["alpha"] / bs
        if self._optimizer is None:
            self._optimizer = self._make_optimizer(p, l2)
            self._lr = p["lr"]
        opt = self._optimizer
        opt.lr = self._lr
        sgd_family = self.solver in _SGD_FAMILY
        schedule = self.learning_rate if sgd_family else "constant"
        est = self
        net = self.network_
        best_flat = [None]
        epochs_run = [0]

        class _Convergence(Callback):
            """scikit-learn's per-epoch bookkeeping and stopping rule."""

            def on_epoch_end(self, epoch, logs):
                epochs_run[0] += 1
                est.n_iter_ += 1
                est.t_ += n
                sq = sum(float(np.dot(w.ravel(), w.ravel())) for w in net.weights)
                loss = float(logs["loss"]) + 0.5 * l2 * sq
                est.loss_ = loss
                est.loss_curve_.append(loss)
                if est.verbose:
                    print(f"Iteration {est.n_iter_}, loss = {loss:.8f}")
                tol = p["tol"]
                if early:
                    score = float(logs["val_accuracy"])
                    est.validation_scores_.append(score)
                    if est.verbose:
                        print(f"Validation score: {score:f}")
                    if score < est.best_validation_score_ + tol:
                        est._no_improvement_count += 1
                    else:
                        est._no_improvement_count = 0
                    if score > est.best_validation_score_:
                        est.best_validation_score_ = score
                        best_flat[0] = net.flat_parameters.copy()
                else:
                    if loss > est.best_loss_ - tol:
                        est._no_improvement_count += 1
                    else:
                        est._no_improvement_count = 0
                    est.best_loss_ = min(est.best_loss_, loss)
                if schedule == "invscaling":
                    est._lr = p["lr"] / (est.t_ + 1) ** p["power_t"]
                    opt.lr = est._lr
                if est._no_improvement_count > est.n_iter_no_change:
                    what = "Validation score" if early else "Training loss"
                    msg = (f"{what} did not improve more than tol={tol:f} for "
                           f"{est.n_iter_no_change} consecutive epochs.")
                    if schedule == "adaptive" and est._lr > _MIN_ADAPTIVE_LR:
                        est._lr /= 5.0
                        opt.lr = est._lr
                        est._no_improvement_count = 0
                        if est.verbose:
                            print(f"{msg} Setting learning rate to {est._lr:f}")
                    else:
                        if est.verbose:
                            print(f"{msg} Stopping.")
                        self.trainer.stop_training = True

        trainer = Trainer(net, optimizer=opt, batch_size=bs,
                          epochs=1 if incremental else int(self.max_iter),
                          l2=0.0 if self.solver == "adamw" else l2,
                          seed=int(self._rng.integers(0, 2**63)), verbose=0,
                          callbacks=[_Convergence()], shuffle=bool(self.shuffle))
        if self.solver == "adamw":
            opt.weight_decay = l2  # the batch size may differ from the previous call
        history = trainer.fit(X, y_idx, validation_data=val)
        if history.interrupted:
            warnings.warn("Training interrupted by user.", stacklevel=3)
        elif (not incremental and epochs_run[0] == int(self.max_iter)
                and not trainer.stop_training):
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                          f"reached and the optimization hasn't converged yet.",
                          _ConvergenceWarning, stacklevel=3)
        if not incremental:
            self.n_iter_ = epochs_run[0]
        if early and best_flat[0] is not None:
            net.flat_parameters[...] = best_flat[0]

    # ---- inference --------------------------------------------------------------------------

    def _log_proba(self, X):
        self._check_fitted()
        X = self._check_X(X, reset=False)
        logits = self.network_.logits(X).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        logits -= np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return logits[:, :len(self.classes_)]

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`, float64 (n, n_classes), computed stably."""
        return self._log_proba(X)

    def predict_proba(self, X):
        """Class probabilities, float64 (n, n_classes), columns ordered as ``classes_``."""
        return np.exp(self._log_proba(X))

    def predict(self, X):
        """Predicted labels (n,), drawn from ``classes_``."""
        self._check_fitted()
        X = self._check_X(X, reset=False)
        return self.classes_[np.argmax(self.network_.logits(X), axis=1)]

    # ---- scikit-learn-layout parameters -----------------------------------------------------

    @property
    def coefs_(self):
        """Weight matrices ``(in, out)`` (float32 copies; scikit-learn's layout)."""
        self._fitted_attr("coefs_")
        return [np.ascontiguousarray(w.T) for w in self.network_.weights]

    @property
    def intercepts_(self):
        """Bias vectors ``(out,)`` (float32 copies)."""
        self._fitted_attr("intercepts_")
        return [b.copy() for b in self.network_.biases]

    def _fitted_attr(self, name):
        if "network_" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r} before "
                                 f"fit")
