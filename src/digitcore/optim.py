"""Optimizers and learning-rate schedules.

An optimizer is a small object holding its hyperparameters and its state (flat float32
arrays laid out like ``Network.flat_parameters``). The trainer hands both to the fused C
training loop; ``update_params`` applies one step from Python for people who write their
own loop.
"""

from __future__ import annotations

import math
import weakref

import numpy as np

from digitcore._checks import count_value, fraction_value, kernel_value, positive_value

__all__ = ["Optimizer", "SGD", "Momentum", "Nesterov", "RMSprop", "Adam", "AdamW",
           "get_optimizer", "make_schedule", "OPTIMIZERS", "SCHEDULES"]


class Optimizer:
    """Base class. Subclasses set ``kind`` and ``_kernel_args``."""

    kind = "sgd"
    default_lr = 0.01
    _owner = None  # (the class's default: optimizers pickled before it existed have none)

    def __init__(self, lr=None):
        self.lr = kernel_value(self.default_lr if lr is None else lr, "lr")
        self.step_count = 0
        self.n_params = None  # size the state was made for (None: not yet)
        self._owner = None  # weakref to the network the state is for (None: not known)
        # The state, float32 arrays laid out like network.flat_parameters (None where this
        # optimizer keeps none): the running average of the gradient (SGD momentum's
        # velocity, Adam's m) and of the squared gradient (RMSprop's, Adam's v).
        self.grad_avg = None
        self.sq_avg = None

    def _kernel_args(self):  # pragma: no cover - overridden
        return {}

    def _validate(self):
        """Check (and normalize) the hyperparameters as they are now: at construction, and
        again before each use, since they are plain attributes a callback may change (a
        negative rate climbed the loss; an eps of 0 divided 0 by 0 in C)."""
        self.lr = kernel_value(self.lr, "lr")

    @property
    def learning_rate(self):
        """The current learning rate (``lr``; scikit-learn's optimizers' name for it)."""
        return self.lr

    @learning_rate.setter
    def learning_rate(self, value):
        self.lr = kernel_value(value, "learning_rate")

    def iteration_ends(self, time_step):
        """Called after each epoch with the number of samples seen so far (no-op here)."""

    def trigger_stopping(self, msg, verbose):
        """The stopping criterion was met: True (stop). Prints ``msg`` if ``verbose``."""
        if verbose:
            print(msg + " Stopping.")
        return True

    def _needs(self):
        """(keeps grad_avg, keeps sq_avg)."""
        return False, False

    def reset(self, n_params):
        """Allocate zeroed state for ``n_params`` parameters and restart step counting."""
        need_grad_avg, need_sq_avg = self._needs()
        self.grad_avg = np.zeros(n_params, np.float32) if need_grad_avg else None
        self.sq_avg = np.zeros(n_params, np.float32) if need_sq_avg else None
        self.step_count = 0
        self.n_params = int(n_params)

    def state_for(self, network):
        """Make the state ``network``'s: kept when it already is (training the same network
        again continues its moments and step count), zeroed for another network, even one
        of the same size (the moments of one network are noise to another), or a new size.
        A state whose network is not known (a fresh, unpickled or copied optimizer) is
        kept when the size matches. One optimizer alternated between two networks
        therefore starts afresh at each switch: give each network its own."""
        ref = self._owner
        other = ref is not None and ref() is not network
        if self.n_params != network.n_params or other:
            self.reset(network.n_params)
        self._owner = weakref.ref(network)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_owner"] = None  # (a weak reference does not pickle)
        return state

    def kernel_config(self, l2=0.0, clip_norm=None, l1=0.0):
        self._validate()
        cfg = {"kind": self.kind, "step": self.step_count, "l2": float(l2), "l1": float(l1),
               "clip_norm": float(clip_norm or 0.0)}
        cfg.update(self._kernel_args())
        return cfg

    def update_params(self, network, grads, lr=None, l2=0.0, l1=0.0):
        """Apply one update to ``network`` in place from a flat gradient ``grads``.

        For people who write their own loop (the Trainer does the same in C). ``grads`` is
        laid out like ``network.flat_parameters``; ``l2``, ``l1`` (which adds
        ``l1 * sign(w)``) and Adam's ``weight_decay`` act on weights only, not biases.
        """
        from digitcore import ops
        from digitcore._checks import all_finite

        params = network.flat_parameters
        grads = np.ascontiguousarray(grads, dtype=np.float32)
        if grads.shape != params.shape:
            raise ValueError(f"grads has shape {grads.shape}, expected {params.shape}")
        # (checked before anything changes: a NaN gradient was written into the
        # parameters, and a negative lr, l2 or l1 climbed the loss)
        if not all_finite(grads):
            raise ValueError("grads contains NaN or infinite values")
        self._validate()
        # (0 is a step that moves nothing: a schedule's multiplier may be 0)
        lr = self.lr if lr is None else kernel_value(lr, "lr", allow_zero=True)
        l2, l1 = kernel_value(l2, "l2", allow_zero=True), kernel_value(l1, "l1",
                                                                      allow_zero=True)
        self.state_for(network)
        self.step_count += 1
        cfg = self.kernel_config(l2, l1=l1)
        off = 0
        for w, b in zip(network.weights, network.biases):
            for seg, decay in ((w, True), (b, False)):
                n = seg.size
                sl = slice(off, off + n)
                p, g = params[sl], grads[sl]
                grad_avg = None if self.grad_avg is None else self.grad_avg[sl]
                sq_avg = None if self.sq_avg is None else self.sq_avg[sl]
                l2_seg = cfg["l2"] if decay else 0.0
                l1_seg = cfg["l1"] if decay else 0.0
                if self.kind == "sgd":
                    ops.sgd_update(p, g, grad_avg, lr=lr, momentum=cfg["momentum"],
                                   nesterov=cfg["nesterov"], l2=l2_seg, l1=l1_seg)
                elif self.kind == "rmsprop":
                    ops.rmsprop_update(p, g, sq_avg, lr=lr, rho=cfg["rho"], eps=cfg["eps"],
                                       l2=l2_seg, l1=l1_seg)
                else:
                    ops.adam_update(p, g, grad_avg, sq_avg, self.step_count, lr=lr,
                                    beta1=cfg["beta1"], beta2=cfg["beta2"], eps=cfg["eps"],
                                    l2=l2_seg, l1=l1_seg,
                                    weight_decay=cfg.get("weight_decay", 0.0) if decay else 0.0)
                off += n

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._public().items())
        return f"{type(self).__name__}({args})"

    def _public(self):
        return {"lr": self.lr}


class SGD(Optimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum (PyTorch semantics).

    ``lr_schedule`` and ``power_t`` are scikit-learn's ``learning_rate`` schedules for
    ``MLPClassifier``, applied between epochs by :meth:`iteration_ends` and
    :meth:`trigger_stopping`: "constant"; "invscaling", ``lr = learning_rate_init /
    (t + 1) ** power_t`` after ``t`` samples; "adaptive", ``lr /= 5`` each time the
    stopping criterion is met, stopping once ``lr <= 1e-6``. Only ``MLPClassifier`` calls
    those two, between the fits it runs: :class:`~digitcore.Trainer` refuses an SGD with
    another schedule than "constant" (its rate would stay put) and has its own
    ``lr_schedule=`` ("step", "cosine", warmup).
    """

    kind = "sgd"
    default_lr = 0.01
    SCHEDULES = ("constant", "invscaling", "adaptive")
    #: "adaptive" stops once the learning rate is this small (as scikit-learn does).
    MIN_ADAPTIVE_LR = 1e-6

    def __init__(self, lr=None, momentum=0.0, nesterov=False, lr_schedule="constant",
                 power_t=0.5):
        super().__init__(lr)
        self.momentum = momentum
        self.nesterov = bool(nesterov)
        self.lr_schedule = lr_schedule
        self.power_t = power_t
        self._validate()
        self.learning_rate_init = self.lr

    def _validate(self):
        super()._validate()
        self.momentum = fraction_value(self.momentum, "momentum")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        if self.lr_schedule not in self.SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {self.SCHEDULES}, got "
                             f"{self.lr_schedule!r}")
        self.power_t = positive_value(self.power_t, "power_t", allow_zero=True)

    def iteration_ends(self, time_step):
        """After an epoch, ``time_step`` samples seen in all: the "invscaling" step."""
        if self.lr_schedule == "invscaling":
            self.lr = float(self.learning_rate_init) / (time_step + 1) ** self.power_t

    def trigger_stopping(self, msg, verbose):
        """True to stop; "adaptive" first divides the rate by 5 until it is <= 1e-6."""
        if self.lr_schedule != "adaptive":
            return super().trigger_stopping(msg, verbose)
        if self.lr <= self.MIN_ADAPTIVE_LR:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.lr /= 5.0
        if verbose:
            print(msg + f" Setting learning rate to {self.lr:f}")
        return False

    def _needs(self):
        return self.momentum != 0.0, False

    def _kernel_args(self):
        return {"momentum": self.momentum, "nesterov": self.nesterov}

    def _public(self):
        out = {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov}
        if self.lr_schedule != "constant":
            out.update(lr_schedule=self.lr_schedule, power_t=self.power_t)
        return out


class Momentum(SGD):
    """SGD with classical momentum, 0.9 unless given."""

    def __init__(self, lr=None, momentum=0.9):
        super().__init__(lr, momentum=momentum)


class Nesterov(SGD):
    """SGD with Nesterov momentum, 0.9 unless given."""

    def __init__(self, lr=None, momentum=0.9):
        super().__init__(lr, momentum=momentum, nesterov=True)


class RMSprop(Optimizer):
    """RMSprop: ``sq = rho*sq + (1-rho)*g**2; p -= lr * g / (sqrt(sq) + eps)``; ``rho``
    defaults to 0.9 here (Keras's and Hinton's value), to 0.99 in ``ops.rmsprop_update``
    (PyTorch's ``alpha``)."""

    kind = "rmsprop"
    default_lr = 0.001

    def __init__(self, lr=None, rho=0.9, eps=1e-8):
        super().__init__(lr)
        self.rho, self.eps = rho, eps
        self._validate()

    def _validate(self):
        super()._validate()
        self.rho = fraction_value(self.rho, "rho")
        self.eps = kernel_value(self.eps, "eps", normal=True)

    def _needs(self):
        return False, True

    def _kernel_args(self):
        return {"rho": self.rho, "eps": self.eps}

    def _public(self):
        return {"lr": self.lr, "rho": self.rho, "eps": self.eps}


class Adam(Optimizer):
    """Adam with bias correction; ``weight_decay`` is an L2 penalty added to the gradient
    (PyTorch's ``Adam``). For decay applied to the weights themselves, apart from the
    gradient, use :class:`AdamW`, whose ``weight_decay`` is what ``ops.adam_update``'s
    ``weight_decay`` means."""

    kind = "adam"
    default_lr = 0.001
    decoupled = False

    def __init__(self, lr=None, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(lr)
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay
        self._validate()

    def _validate(self):
        super()._validate()
        try:
            b1, b2 = self.betas
        except (TypeError, ValueError):
            raise ValueError(f"betas must be a pair of floats, got {self.betas!r}") from None
        self.betas = (fraction_value(b1, "betas[0]"), fraction_value(b2, "betas[1]"))
        self.eps = kernel_value(self.eps, "eps", normal=True)
        self.weight_decay = kernel_value(self.weight_decay, "weight_decay", allow_zero=True)

    def _needs(self):
        return True, True

    def _kernel_args(self):
        args = {"beta1": self.betas[0], "beta2": self.betas[1], "eps": self.eps}
        if self.decoupled:
            args["weight_decay"] = self.weight_decay
        return args

    def kernel_config(self, l2=0.0, clip_norm=None, l1=0.0):
        if not self.decoupled:
            # one L2 penalty in C: the sum must stay in float32's range too
            l2 = kernel_value(float(l2) + self.weight_decay, "l2 + Adam's weight_decay",
                              allow_zero=True)
        return super().kernel_config(l2=l2, clip_norm=clip_norm, l1=l1)

    def _public(self):
        return {"lr": self.lr, "betas": self.betas, "eps": self.eps,
                "weight_decay": self.weight_decay}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p -= lr * wd * p``."""

    decoupled = True

    def __init__(self, lr=None, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(lr, betas=betas, eps=eps, weight_decay=weight_decay)


OPTIMIZERS = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "rmsprop": RMSprop,
    "adam": Adam,
    "adamw": AdamW,
}


def get_optimizer(optimizer, lr=None):
    """An optimizer object from a name in :data:`OPTIMIZERS` or an existing object."""
    if isinstance(optimizer, Optimizer):
        if lr is not None:
            optimizer.lr = kernel_value(lr, "lr")
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in OPTIMIZERS:
        return OPTIMIZERS[optimizer.lower()](lr)
    raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)} or a "
                     f"digitcore.optim.Optimizer, got {optimizer!r}")


# ---- learning-rate schedules --------------------------------------------------------------

SCHEDULES = ("constant", "step", "cosine")


def make_schedule(name, total_steps, warmup_steps=0, step_size=None, gamma=0.1,
                  min_factor=0.0):
    """A function ``step -> lr multiplier`` for ``step`` in ``[0, total_steps)``.

    ``constant``: 1. ``step``: multiply by ``gamma`` every ``step_size`` steps (default: a
    third of the run, rounded up, so the run has at most three levels). ``cosine``: half a cosine
    from 1 down to ``min_factor``. A linear warmup from ~0 to 1 over the first
    ``warmup_steps`` steps is applied on top. A callable's multiplier must be a finite
    number >= 0 (else ValueError, naming it).
    """
    total_steps = count_value(total_steps, "total_steps", 0)
    warmup_steps = count_value(warmup_steps, "warmup_steps", 0)
    if step_size is not None:  # (0 fell back to the default without a word)
        step_size = count_value(step_size, "step_size", 1)
    gamma = positive_value(gamma, "gamma", allow_zero=True)
    min_factor = positive_value(min_factor, "min_factor", allow_zero=True)
    if callable(name):
        def base(step, schedule=name):
            m = schedule(step)
            try:  # (a number of any kind, a 0-d array as np.where gives; not a bool)
                f = float(m) if not isinstance(m, (bool, np.bool_, str, bytes)) \
                    and np.ndim(m) == 0 else None
            except (TypeError, ValueError):
                f = None
            if f is None or not math.isfinite(f) or f < 0:
                raise ValueError(f"lr_schedule({step}) returned {m!r}: a learning-rate "
                                 "multiplier must be a finite number >= 0")
            return f
    elif name == "constant":
        def base(step):
            return 1.0
    elif name == "step":
        size = step_size or max(1, -(-total_steps // 3))  # (// 3 gave 40 steps a 4th level)

        def base(step):
            return gamma ** (step // size)
    elif name == "cosine":
        span = max(1, total_steps - warmup_steps)

        def base(step):
            t = min(1.0, max(0.0, (step - warmup_steps) / span))
            return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * t))
    else:
        raise ValueError(f"lr_schedule must be one of {SCHEDULES} or a callable, got {name!r}")
    if warmup_steps <= 0:
        return base

    def warm(step):
        w = min(1.0, (step + 1) / warmup_steps)
        return w * base(step)
    return warm
