"""Training loop: epochs, mini-batches, validation, schedules, early stopping, history.

The work of each mini-batch (input conversion, forward, loss, backward, update) runs in
C; Python calls the kernel once per chunk of batches (a handful of calls per epoch),
keeps the history, prints progress and runs callbacks between epochs.

One file: Trainer and what its loop hands to and reads from between chunks
(History, the callbacks and early stopping, progress, the Ctrl-C flag), which are
meaningless without it.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
import warnings
import weakref

import numpy as np

from digitcore._checks import (count_value, kernel_value, positive_value, real_value, seed_value,
                               square_images)
from digitcore.augment import check_augmentable
from digitcore.errors import TrainingDivergedError
from digitcore.optim import get_optimizer, make_schedule

__all__ = ["Trainer", "History", "Callback", "EarlyStopping", "LambdaCallback"]

# Work per C call, the defaults of Trainer's chunk_samples / chunk_seconds (tests pass
# those): the first call of a fit takes _CHUNK_SAMPLES samples; after each call the next
# is sized to take about _CHUNK_SECONDS:
# long enough that the per-call costs (scratch set-up, the parameter snapshot and overflow
# check) vanish, short enough that progress updates and Ctrl-C stay responsive.
_CHUNK_SAMPLES = 16384
_CHUNK_SECONDS = 0.25
# csrc/digitcore.h's DC_AUG_SEED_STREAM
_AUG_SEED_STREAM = 0x6175676D656E74
# Samples _sparse_split and _first_layer_mode look at.
_SPLIT_SAMPLES = 8192

# The networks some fit is training now (see _training).
_IN_TRAINING: weakref.WeakSet = weakref.WeakSet()
_IN_TRAINING_LOCK = threading.Lock()


@contextlib.contextmanager
def _training(net):
    """Mark ``net`` as being trained for the block; a RuntimeError if it already is. Two
    fits of one network at once would each copy layer 0's weights into C's layout at the
    start of a call and write them back at its end, losing the other's updates."""
    with _IN_TRAINING_LOCK:
        if net in _IN_TRAINING:
            raise RuntimeError("this network is already being trained by another fit (in "
                               "another thread, or the fit whose callback this is); "
                               "train one network in one fit at a time")
        _IN_TRAINING.add(net)
    try:
        yield
    finally:
        with _IN_TRAINING_LOCK:
            _IN_TRAINING.discard(net)


def _nonzero_sample(x):
    """Which entries of x's first _SPLIT_SAMPLES rows are non-zero: the one look at the
    data that _sparse_split and _first_layer_mode both count (along columns, along rows)."""
    return x[:_SPLIT_SAMPLES] != 0


def _count_along(nonzero, axis):
    """np.count_nonzero(nonzero, axis=axis) for a 2-D bool array, as int64: summed as
    bytes into uint16 where the count cannot pass 65,535 (4x faster than count_nonzero's
    own reduction: 4.1 ms a fit on MNIST's sample, ~4% of a 2-thread epoch)."""
    wide = nonzero.shape[axis] > np.iinfo(np.uint16).max
    acc = np.int64 if wide else np.uint16
    return np.add.reduce(nonzero.view(np.uint8), axis=axis, dtype=acc).astype(np.int64)


def _sparse_split(nonzero):
    """Where the first layer's sparse products cut the inputs into two groups, one per
    thread on two cores (csrc/mlp_layer0.c): the column, a multiple of 8 (the
    gather's vector width), that best halves the non-zero inputs of the sample
    ``nonzero`` (_nonzero_sample of the training inputs). MNIST's ink sits a little low:
    408 of 784 (half is 392). A function of the data alone, so the same data gives the
    same bits on any number of threads. 0 (the kernel's default) when the sample is all
    zeros."""
    counts = _count_along(nonzero, 0)
    cum = np.cumsum(counts, dtype=np.int64)
    if cum.size == 0 or cum[-1] == 0:
        return 0
    cuts = np.arange(0, nonzero.shape[1] + 1, 8)
    below = np.concatenate(([0], cum))[cuts]  # non-zeros before each candidate cut
    return int(cuts[np.argmin(np.abs(2 * below - cum[-1]))])


# A mini-batch run takes the dense first layer from the start when at most this share of
# the batches _first_layer_mode samples would fit the sparse one.
_SPARSE_MIN_FIT = 0.1


def _first_layer_mode(nonzero, n, bs, requested):
    """The C loop's ``sparse_input`` for a run on ``n`` rows with batches of ``bs`` rows:
    ``requested``, except that "auto" becomes "never" when at most _SPARSE_MIN_FIT of the
    batches of the sample ``nonzero`` (_nonzero_sample of the training inputs, cut in
    order) hold at most a quarter
    non-zero inputs, the sparse path's limit per batch (csrc/mlp_layer0.c). On such data
    (Fashion-MNIST, about half its pixels non-zero) every batch would first be gathered
    sparse until the limit stopped it, then run the GEMM on the sparse path's layout:
    0.89-0.92x the dense path's epoch (bench_matrix, fashion-b128 against
    digitcore-dense). Full batches keep "auto": their one gather is kept between steps
    (csrc/mlp_keep.c), and a data set over the limit is told apart once. A function of
    the data and the batch size alone, so a run's bits do not depend on the thread
    count."""
    if requested != "auto" or bs >= n:
        return requested
    per_row = _count_along(nonzero, 1)
    rows = min(bs, per_row.shape[0])  # (batches longer than the sample: the sample)
    k = per_row.shape[0] // rows
    per_batch = per_row[:k * rows].reshape(k, rows).sum(axis=1)
    fits = np.count_nonzero(per_batch <= rows * nonzero.shape[1] // 4 + 1)
    return "never" if fits <= _SPARSE_MIN_FIT * k else "auto"


# Rows _background takes each column's most common value from (the share of entries off
# it is then counted on the _SPLIT_SAMPLES rows _first_layer_mode looks at).
_BACKGROUND_ROWS = 256


def _background(x, scale):
    """The background of float input ``x`` for the first layer's sparse path
    (csrc/mlp_layer0.c): per column, the most common value of ``x * scale`` in its first
    _BACKGROUND_ROWS rows (the smallest on a tie; 0 where that is not finite), float32.
    Standardized MNIST, ``(x/255 - 0.1307)/0.3081``: -0.4242 in every column, 81% of the
    entries; a column-wise standardized one (StandardScaler): each column's value of the
    zero pixel. A function of the data alone (no thread count)."""
    s = x[:_BACKGROUND_ROWS]
    s = np.sort(s if scale == 1.0 else s * np.float32(scale), axis=0)
    pos = np.arange(s.shape[0])[:, None]
    new = np.ones(s.shape, dtype=bool)
    new[1:] = s[1:] != s[:-1]
    start = np.maximum.accumulate(np.where(new, pos, 0), axis=0)
    # the end of each column's first longest run of equal values
    c = s[np.argmax(pos - start, axis=0), np.arange(s.shape[1])]
    return np.where(np.isfinite(c), c, np.float32(0)).astype(np.float32)


class _Diverged(FloatingPointError):
    def __init__(self, batch, what):
        super().__init__(what)
        self.batch, self.what = batch, what


class History:
    """Per-epoch metrics; ``history.history`` is a dict of lists (Keras convention)."""

    KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")

    def __init__(self):
        self.history = {k: [] for k in self.KEYS}
        self.epoch = []
        self.seed = None
        self.stopped_early = False
        self.interrupted = False
        self.resumed = False  # fit(resume=True) found a checkpoint and continued it
        self.best_epoch = None
        self.restored_epoch = None  # the epoch whose weights EarlyStopping put back
        self.n_train = 0  # samples trained on in each epoch (a validation split held out)

    def _append(self, epoch, logs):
        self.epoch.append(epoch)
        for k in self.KEYS:
            self.history[k].append(logs.get(k, math.nan))

    def __getattr__(self, name):
        if name in History.KEYS:
            return self.__dict__["history"][name]
        raise AttributeError(name)

    def __len__(self):
        return len(self.epoch)

    def __repr__(self):
        if not self.epoch:
            return "History(0 epochs)"
        last = {k: v[-1] for k, v in self.history.items() if v and not _isnan(v[-1])}
        shown = ", ".join(f"{k}={v:.4g}" for k, v in last.items())
        return f"History({len(self.epoch)} epochs, last: {shown})"


def _isnan(v):
    return isinstance(v, float) and math.isnan(v)


class Callback:
    """Base class: override what you need. Set ``trainer.stop_training = True`` to stop."""

    trainer = None

    def on_train_begin(self, logs=None):
        pass

    def on_epoch_end(self, epoch, logs):
        pass

    def on_train_end(self, logs=None):
        pass


class LambdaCallback(Callback):
    """Wraps a function ``f(epoch, logs)``; returning True stops training."""

    def __init__(self, on_epoch_end):
        self._f = on_epoch_end

    def on_epoch_end(self, epoch, logs):
        if self._f(epoch, logs):
            self.trainer.stop_training = True


class EarlyStopping(Callback):
    """Stop when a validation metric stops improving; optionally restore the best weights.

    Parameters
    ----------
    monitor : {"val_loss", "val_accuracy", "loss", "accuracy"}
    patience : int
        Epochs in a row without improvement (by more than ``min_delta``) that are
        tolerated: training stops at the ``patience + 1``-th, as scikit-learn counts
        ``n_iter_no_change`` (Keras's ``patience`` stops at the ``patience``-th).
    min_delta : float
        The least change of the metric that counts as an improvement (finite; its sign is
        ignored).
    restore_best : bool
        Put back the parameters of the best epoch when training ends.
    """

    def __init__(self, monitor="val_loss", patience=5, min_delta=0.0, restore_best=True):
        if monitor not in ("val_loss", "val_accuracy", "loss", "accuracy"):
            raise ValueError(f"monitor must be val_loss, val_accuracy, loss or accuracy, "
                             f"got {monitor!r}")
        # (an infinite or NaN min_delta made every comparison false: training stopped after
        # patience + 1 epochs with nothing to restore); its sign is ignored, as Keras does
        self.patience = count_value(patience, "patience", 0)
        self.min_delta = positive_value(abs(real_value(min_delta, "min_delta")), "min_delta",
                                        allow_zero=True)
        self.monitor = monitor
        self.restore_best = bool(restore_best)
        self.mode = "max" if "accuracy" in monitor else "min"

    def on_train_begin(self, logs=None):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = None
        self.best_params = None
        self.wait = 0

    def missing(self) -> ValueError:
        """The error for a run that does not produce the monitored value."""
        return ValueError(f"EarlyStopping monitors {self.monitor!r}, which this run does "
                          f"not produce (give validation_data or validation_fraction)")

    def on_epoch_end(self, epoch, logs):
        value = logs.get(self.monitor)
        if value is None or _isnan(value):
            raise self.missing()
        better = (value < self.best - self.min_delta if self.mode == "min"
                  else value > self.best + self.min_delta)
        if better:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_params = self.trainer.network.flat_parameters.copy()
        else:
            self.wait += 1
            if self.wait > self.patience:
                self.trainer.stop_training = True
                self.trainer.history.stopped_early = True

    def on_train_end(self, logs=None):
        if self.best_epoch is not None:
            self.trainer.history.best_epoch = self.best_epoch
        if self.restore_best and self.best_params is not None:
            self.trainer.network.flat_parameters[...] = self.best_params
            self.trainer.history.restored_epoch = self.best_epoch


def _early_stopping(spec):
    if spec is None or spec is False:
        return None
    if spec is True:
        return EarlyStopping()
    if isinstance(spec, EarlyStopping):
        return spec
    if isinstance(spec, int):
        return EarlyStopping(patience=spec)
    if isinstance(spec, dict):
        return EarlyStopping(**spec)
    raise ValueError(f"early_stopping must be None, True, a patience (int), a dict of "
                     f"EarlyStopping arguments or an EarlyStopping, got {spec!r}")


class _Progress:
    """Progress bar on a terminal (verbose=1), one line per epoch otherwise (verbose>=1)."""

    def __init__(self, verbose, epochs, stream=None):
        self.stream = stream or sys.stderr
        self.verbose = verbose
        self.epochs = epochs
        self.bar = verbose == 1 and getattr(self.stream, "isatty", lambda: False)()

    def update(self, epoch, seen, total, loss, acc, rate):
        if not self.bar:
            return
        width = 24
        done = int(width * seen / max(total, 1))
        self.stream.write(
            f"\rEpoch {epoch + 1}/{self.epochs} [{'=' * done}{'.' * (width - done)}] "
            f"{seen}/{total} loss {loss:.4f} acc {acc:.4f} {rate:,.0f} samples/s ")
        self.stream.flush()

    def end_epoch(self, epoch, logs, rate):
        if not self.verbose:
            return
        parts = [f"Epoch {epoch + 1}/{self.epochs}", f"loss {logs['loss']:.4f}",
                 f"acc {logs['accuracy']:.4f}"]
        if not _isnan(logs.get("val_loss", math.nan)):
            parts += [f"val_loss {logs['val_loss']:.4f}", f"val_acc {logs['val_accuracy']:.4f}"]
        parts += [f"lr {logs['lr']:.3g}", f"{logs['seconds']:.2f}s", f"{rate:,.0f} samples/s"]
        prefix = "\r" if self.bar else ""
        self.stream.write(prefix + " - ".join(parts) + (" " * 8 if self.bar else "") + "\n")
        self.stream.flush()


# Trainer attributes that do not decide a run's bits (or are recorded on their own).
_NOT_RUN_SETTINGS = {"network", "optimizer", "verbose", "stream", "callbacks", "history",
                     "stop_training", "checkpoint", "checkpoint_seconds", "early_stopping",
                     "_keep_input", "chunk_samples", "chunk_seconds", "_rate_at_stop"}


def _setting(value):
    """A trainer setting as JSON for the checkpoint's run config."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_setting(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _setting(v) for k, v in value.items()}
    if hasattr(value, "get_config"):
        return {"type": type(value).__name__, "config": _setting(value.get_config())}
    if hasattr(value, "to_dict"):  # an Augment
        return {"type": type(value).__name__, "config": _setting(value.to_dict())}
    if callable(value):  # a custom schedule: only its name can be compared
        return f"callable {getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', '?')}"
    return type(value).__name__


class _SigintFlag:
    """With a checkpoint, the first Ctrl-C only sets ``raised``: the loop writes a
    checkpoint at the next chunk boundary (where the state is consistent) and stops. A
    second Ctrl-C interrupts at once. Only the main thread can install signal handlers."""

    def __init__(self, active):
        self.raised = False
        self.previous = None
        if active and threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True

    def restore(self):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None


class Trainer:
    """Trains a :class:`~digitcore.network.Network` with mini-batch gradient descent.

    Parameters
    ----------
    network : Network
    optimizer : str or digitcore.optim.Optimizer
        "sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw" or an optimizer object.
        An object's state (moments, step count) carries over from one ``fit`` to the next
        on the same network, and starts afresh on another network (a copied or unpickled
        optimizer, whose network is not known, keeps its state).
    lr : float, optional
        Learning rate (default: the optimizer's, e.g. 0.001 for Adam, 0.01 for SGD).
    batch_size : int or None
        Mini-batch size; ``None`` is full-batch gradient descent. A full batch (``None``,
        or any size of at least the number of samples) is taken in ``x``'s row order
        whatever ``shuffle`` says: its order changes only the rounding of the gradient's
        sums, and in order its rows are read as they lie in memory.
    epochs : int
    l2 : float
        L2 penalty on weights (not biases): adds ``l2 * w`` to each weight's gradient.
    l1 : float
        L1 penalty on weights (not biases): adds ``l1 * sign(w)`` to each weight's
        gradient (0 where ``w == 0``), the subgradient of ``l1 * sum(|w|)``, which pushes
        weights that the data does not need toward 0. Every optimizer; with Adam or RMSprop
        it enters the gradient before the adaptive scaling, like ``l2``.
    lr_schedule : {"constant", "step", "cosine"} or callable ``step -> multiplier``
    warmup : float
        Epochs of linear learning-rate warmup (may be fractional).
    early_stopping : None, True, int (patience), dict or EarlyStopping
    clip_norm : float, optional
        Clip the global gradient norm of each batch to this value.
    seed : int, optional
        Seeds shuffling and dropout; the same seed and thread count reproduce a run
        bit for bit. If None, a seed is drawn and kept in ``history.seed``.
    verbose : {0, 1, 2}
        0 silent; 1 a progress bar on a terminal (one line per epoch otherwise); 2 one
        line per epoch.
    callbacks : sequence of Callback or callables ``f(epoch, logs) -> stop?``
    shuffle : bool
        Draw each epoch's mini-batches in a new random order (the default), or take the
        rows in ``x``'s order every epoch.
    stream : file-like, optional
        Where the progress lines go (default ``sys.stderr``).
    augment : None, str, dict or digitcore.Augment
        Deform each training image anew every time it is drawn into a batch (never the
        validation data): a name ("affine", "elastic", "thickness", "full"), a dict of
        :class:`~digitcore.Augment` fields or an Augment. Needs images: x of shape
        (n, height, width), or (n, features) with a square number of features.
    checkpoint : str or os.PathLike, optional
        A directory: the run's full state (parameters, optimizer state and step, the
        shuffling generator, history, early-stopping state, config) is written to
        ``DIR/checkpoint.safetensors`` atomically at the end of every epoch, every
        ``checkpoint_seconds`` seconds, and on Ctrl-C. ``fit(..., resume=True)``
        continues it bit for bit (see :mod:`digitcore.checkpoint`).
    checkpoint_seconds : float, optional
        Also write a checkpoint between chunks of batches when this many seconds have
        passed since the last one (default: only at epoch ends and on Ctrl-C).
    chunk_samples, chunk_seconds : int, float or None
        How an epoch is cut into calls of the C training loop: the first call takes
        ``chunk_samples`` samples, each later one about ``chunk_seconds`` of work
        (``None``: every call ``chunk_samples``). Changes neither the weights nor the
        history's losses: the C loop adds each batch's loss to the epoch's float64 sum in
        turn, whatever call it falls in.
    """

    def __init__(self, network, optimizer="adam", lr=None, batch_size=128, epochs=10, l2=0.0,
                 lr_schedule="constant", early_stopping=None, seed=None, verbose=1,
                 callbacks=(), *, warmup=0.0, clip_norm=None, l1=0.0, shuffle=True, stream=None,
                 augment=None, checkpoint=None, checkpoint_seconds=None,
                 chunk_samples=None, chunk_seconds="default"):
        from digitcore.augment import get_augment
        from digitcore.network import Network

        if not isinstance(network, Network):
            raise TypeError(f"network must be a digitcore.Network, got {type(network).__name__}")
        self.network = network
        self.optimizer = get_optimizer(optimizer, lr)
        sgd_schedule = getattr(self.optimizer, "lr_schedule", "constant")
        if sgd_schedule != "constant" and not getattr(self.optimizer,
                                                      "_schedule_applied_outside", False):
            raise ValueError(
                f"SGD(lr_schedule={sgd_schedule!r}) is MLPClassifier's learning_rate "
                f"schedule, which Trainer does not apply (the rate would stay put): give "
                f"Trainer lr_schedule= ('constant', 'step', 'cosine' or a function of the "
                f"step) and SGD the default 'constant'")
        try:
            self.batch_size = None if batch_size is None else count_value(batch_size, "", 1)
        except ValueError:
            raise ValueError(f"batch_size must be an int >= 1 or None (full batch), got "
                             f"{batch_size!r}") from None
        self.epochs = count_value(epochs, "epochs", 0)
        self.l2 = kernel_value(l2, "l2", allow_zero=True)
        self.l1 = kernel_value(l1, "l1", allow_zero=True)
        make_schedule(lr_schedule, 1)  # validates the name now, not mid-fit
        self.lr_schedule = lr_schedule
        self.warmup = positive_value(warmup, "warmup", allow_zero=True, unit=" epochs")
        if clip_norm is not None and not np.float32(real_value(clip_norm, "clip_norm")) > 0:
            # (below float32's smallest value it rounds to 0, which the kernel reads as
            # no clipping at all)
            raise ValueError(f"clip_norm must be > 0 (in float32) or None, got {clip_norm}")
        self.clip_norm = clip_norm
        self.early_stopping = _early_stopping(early_stopping)
        self.seed = seed_value(seed)
        if verbose not in (0, 1, 2, False, True):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        self.verbose = int(verbose)
        self.shuffle = bool(shuffle)
        if isinstance(callbacks, (Callback, str)) or callable(callbacks):
            raise TypeError("callbacks must be a sequence of Callback objects or callables "
                            "f(epoch, logs); wrap a single one in a list")
        callbacks = list(callbacks)
        for i, c in enumerate(callbacks):
            if not isinstance(c, Callback) and not callable(c):
                raise TypeError(f"callbacks[{i}] is a {type(c).__name__}, expected a "
                                "digitcore.trainer.Callback or a callable f(epoch, logs)")
        self.callbacks = [c if isinstance(c, Callback) else LambdaCallback(c) for c in callbacks]
        self.stream = stream
        self.augment = get_augment(augment)
        if chunk_samples is None:
            chunk_samples = _CHUNK_SAMPLES
        if chunk_seconds == "default":
            chunk_seconds = _CHUNK_SECONDS
        if isinstance(chunk_samples, bool) or not isinstance(chunk_samples, int) or \
                chunk_samples < 1:
            raise ValueError(f"chunk_samples must be a positive int, got {chunk_samples!r}")
        if chunk_seconds is not None and not real_value(chunk_seconds, "chunk_seconds") > 0:
            raise ValueError(f"chunk_seconds must be > 0 or None, got {chunk_seconds!r}")
        self.chunk_samples = chunk_samples
        self.chunk_seconds = chunk_seconds
        self.stop_training = False
        self.checkpoint = None if checkpoint is None else os.fspath(checkpoint)
        if checkpoint_seconds is not None and \
                not real_value(checkpoint_seconds, "checkpoint_seconds") >= 0:
            raise ValueError(f"checkpoint_seconds must be >= 0 or None, got {checkpoint_seconds}")
        self.checkpoint_seconds = None if checkpoint_seconds is None else float(checkpoint_seconds)
        # First layer on sparse input: "auto" (the default: batches at most a quarter
        # non-zero go through the sparse kernels), "never" or "always". Not a public
        # knob: the tests and benchmarks compare the two paths with it.
        self._sparse_input = "auto"
        # Where the sparse first layer cuts its inputs into two groups (None: from the
        # data, see _sparse_split; the tests set edge cases).
        self._sparse_split = None
        # (MLPClassifier, which takes any features as scikit-learn does, turns it off)
        self._warn_large_floats = True
        # The first layer's background on float input (see fit): None picks it from the
        # data; tests set one (float32, one per input) to force it with any mode.
        self._sparse_offset = None
        # Full-batch runs keep the sparse input between steps (see fit); the tests turn
        # it off to compare.
        self._keep_input = True
        self.history = None

    def _run_config(self, seed, x2, labels, val, kernel):
        """Everything that decides a run's bits, for the checkpoint's refusal check."""
        from digitcore.checkpoint import data_fingerprint

        def stopping(es):
            return {"monitor": es.monitor, "patience": es.patience,
                    "min_delta": es.min_delta, "restore_best": es.restore_best}

        es = self.early_stopping
        opt_cfg = {k: v for k, v in self.optimizer.kernel_config(self.l2, self.clip_norm,
                                                                        self.l1).items()
                   if k != "step"}
        trainer = dict(
            {k: _setting(v) for k, v in vars(self).items() if k not in _NOT_RUN_SETTINGS},
            seed=seed, sparse_split=getattr(kernel, "sparse_split", None),
            early_stopping=None if es is None else stopping(es))
        # the early stoppings given in `callbacks` (their state is the checkpoint's, and
        # they decide when the run stops), in order; named only when there are any
        stops = [stopping(cb) for cb in self.callbacks if isinstance(cb, EarlyStopping)]
        if stops:
            trainer["callback_stoppings"] = stops
        return {
            "network": self.network.get_config(),
            "optimizer": dict(opt_cfg, lr=self.optimizer.lr, name=repr(self.optimizer)),
            # every setting of this trainer (also ones added later, like an l1 penalty or
            # augmentation), except those that do not change the arithmetic
            "trainer": trainer,
            "data": {"train": data_fingerprint(x2, labels),
                     "validation": None if val is None else data_fingerprint(*val[:2])},
        }

    def __repr__(self):
        return (f"Trainer({self.network!r}, optimizer={self.optimizer!r}, "
                f"batch_size={self.batch_size}, epochs={self.epochs})")

    def fit(self, x, y, validation_data=None, validation_fraction=0.0, resume=False):
        """Train the network; returns a :class:`History`.

        Parameters
        ----------
        x : array (n, height, width) or (n, features), uint8 (kept uint8) or float in [0, 1]
        y : array (n,) of integer labels in ``[0, n_classes)``
        validation_data : (x_val, y_val), optional
        validation_fraction : float
            Hold out this fraction of ``x`` (stratified, seeded) for validation.

        resume : bool
            Continue from the ``checkpoint`` directory's checkpoint if it has one (else
            start afresh). The checkpoint must come from the same run: same data,
            network, optimizer and settings, or :class:`~digitcore.checkpoint.
            CheckpointError` is raised. Without ``resume``, an existing checkpoint is
            never overwritten: that is an error too.

        Ctrl-C stops after the current chunk of batches and returns the history so far
        (with ``checkpoint``, after writing one).

        One network trains in one fit at a time: a second fit of it (from another
        thread, or from a callback) raises a RuntimeError.
        """
        with _training(self.network):
            if self.checkpoint is None:
                return self._fit(x, y, validation_data, validation_fraction, resume, None)
            from digitcore.checkpoint import Checkpointer

            # (the directory is this fit's until it returns: another run on it is refused)
            with Checkpointer(self.checkpoint, self.checkpoint_seconds) as ckpt:
                ckpt.prepare(resume)
                return self._fit(x, y, validation_data, validation_fraction, resume, ckpt)

    def _fit(self, x, y, validation_data, validation_fraction, resume, ckpt):
        net = self.network
        seed, saved = self.seed, None
        if ckpt is not None:
            from digitcore.checkpoint import read_checkpoint

            if resume and ckpt.exists():
                saved = read_checkpoint(ckpt.path)
                if seed is None:  # the seed the checkpointed run drew
                    seed = saved[0].get("seed")
        elif resume:
            raise ValueError("resume=True needs a checkpoint directory: "
                             "Trainer(..., checkpoint=DIR)")
        if seed is None:  # drawn before the validation split, which history.seed repeats too
            seed = int(np.random.SeedSequence().generate_state(1, np.uint32)[0])
        if validation_fraction:
            if validation_data is not None:
                raise ValueError("give validation_data or validation_fraction, not both")
            if not 0.0 < float(validation_fraction) < 1.0:
                raise ValueError(f"validation_fraction must be in (0, 1), got "
                                 f"{validation_fraction}")
            from digitcore.datasets import train_val_split

            # labels checked as fit takes them (2.0 is class 2) before the split stratifies
            y = net.prepared_labels(y, np.shape(x)[0])
            (x, y), validation_data = train_val_split(
                x, y, float(validation_fraction), seed=seed)
        x2, scale, shift = net.prepared_input(x)
        aug = self.augment
        if aug is not None:
            hw = np.shape(x)[1:] if np.ndim(x) == 3 else square_images(x2[:0]).shape[1:]
            check_augmentable(x2)
        labels = net.prepared_labels(y, x2.shape[0])
        n = x2.shape[0]
        if n == 0:
            raise ValueError("cannot train on zero samples")
        from digitcore.network import input_record, pixel_background, refuse_pixel_floats

        # what this fit reads (uint8 pixels, or floats in [0, 1] after them, keep "uint8")
        record = input_record(x2, net.training_summary)
        # floats as large as 0-255 pixels, not standardized by the network: a learner's
        # x.astype(np.float32) trains badly, and uint8 given later would be read 255
        # times darker than them (recorded: check_pixel_images refuses it)
        # (judged on the first 2,048 rows: the whole of MNIST as float32 takes a tenth of
        # a quick epoch to scan)
        float_top = None
        if (x2.dtype != np.uint8 and net.input_mean == 0.0 and net.input_std == 1.0
                and x2.size):
            top = float(x2[:2048].max())
            float_top = top if top > 2.0 else None
        if float_top is not None and getattr(self, "_warn_large_floats", True):
            warnings.warn(
                f"x holds floats up to {float_top:g}: pixels train best as uint8 (0-255) or "
                f"as floats scaled to [0, 1] (x / 255), and other features "
                f"standardized (Network(input_mean=..., input_std=...)); this network "
                f"will refuse uint8 input, which it would read 255 times darker",
                UserWarning, stacklevel=3)
        val = None
        if validation_data is not None:
            try:
                xv, yv = validation_data
            except (TypeError, ValueError):
                raise ValueError("validation_data must be a pair (x_val, y_val)") from None
            # (its own conversion: uint8 validation pixels beside float training data, or
            # floats in [0, 1] beside uint8 ones, are read as they are)
            xv2, v_scale, v_shift = net.prepared_input(xv, "x_val")
            if record == "uint8":  # 0-255 floats beside pixels, refused as in predict
                refuse_pixel_floats(xv2, "x_val")
            val = (xv2, net.prepared_labels(yv, xv2.shape[0], "y_val"), v_scale, v_shift)
            if val[0].shape[0] == 0:
                raise ValueError("validation_data has zero samples")
        if val is None:  # (checked before any epoch, not after the first)
            for cb in [*self.callbacks, self.early_stopping]:
                if isinstance(cb, EarlyStopping) and cb.monitor.startswith("val_"):
                    raise cb.missing()

        rng = np.random.default_rng(seed)
        dropout_seed = int(rng.integers(0, 2**63))
        if aug is not None:
            from digitcore.ops import hash64

            # the kernel deforms each batch with a seed derived from dropout_seed, not
            # drawn from rng, so runs without augmentation keep their bits; the bank of
            # elastic fields is redrawn every epoch from the same seed
            aug_seed = hash64(dropout_seed, _AUG_SEED_STREAM, 0)
        bs = n if self.batch_size is None else min(self.batch_size, n)
        batches_per_epoch = -(-n // bs)
        total_steps = batches_per_epoch * self.epochs
        schedule = make_schedule(self.lr_schedule, total_steps,
                                 warmup_steps=int(round(self.warmup * batches_per_epoch)))
        opt = self.optimizer
        opt.state_for(net)  # zeroed unless it is this network's (a second fit continues)
        grads = np.empty(net.n_params, np.float32)
        c_net = net.c_net(net.dropout)
        nonzero = (_nonzero_sample(x2) if self._sparse_split is None
                   or (shift == 0.0 and self._sparse_input == "auto") else None)
        # (a shift turns the sparse path off in C: nothing to decide)
        first_layer = (self._sparse_input if shift != 0.0
                       else _first_layer_mode(nonzero, n, bs, self._sparse_input))
        # Float data that is dense in zeros may be sparse off a per-column background c
        # (standardized inputs: x = c + s, s sparse): the first layer then takes the
        # sparse path on s, with b + W c and the rank-1 db c^T added in C. Only where the
        # zero rule refused, so every run it takes keeps its path and bits; mini-batches
        # only (a full batch's kept sparse form is off zeros).
        offset = self._sparse_offset  # (None: from the data; tests force one)
        if (offset is None and first_layer == "never" and self._sparse_input == "auto" and shift == 0.0
                and x2.dtype == np.float32 and bs < n):
            bg = _background(x2, scale)
            if bg.any():
                head = x2[:_SPLIT_SAMPLES]
                off = (head if scale == 1.0 else head * np.float32(scale)) != bg
                if _first_layer_mode(off, n, bs, "auto") == "auto":
                    offset, nonzero, first_layer = bg, off, "auto"
        c_net.sparse_offset = offset
        c_net.sparse_input = first_layer
        if first_layer != "never":
            c_net.sparse_split = (_sparse_split(nonzero) if self._sparse_split is None
                                   else self._sparse_split)
        # (what this fit chose, for the tests: the C view is reset when it ends)
        self._first_layer_used = {"sparse_input": c_net.sparse_input,
                                  "sparse_split": c_net.sparse_split,
                                  "sparse_offset": c_net.sparse_offset}
        chunk_batches = max(1, self.chunk_samples // bs)
        # Full-batch descent loads every row of x at each step: the C loop keeps their
        # sparse form between calls instead of gathering it anew (same bits; freed with
        # this fit, and forgotten after user callbacks, which may change x in place).
        keep = net.c_keep() if bs == n and aug is None and self._keep_input else None

        history = History()
        history.seed = seed
        history.resumed = saved is not None
        history.n_train = n
        self.history = history
        self.stop_training = False
        callbacks = list(self.callbacks)
        if self.early_stopping is not None:
            callbacks.append(self.early_stopping)
        # the early stoppings, whose state a checkpoint keeps: the trainer's own as
        # "early_stopping", the j-th EarlyStopping given in callbacks as "callbacks.{j}"
        # (numbered among themselves: other callbacks may come and go on resume)
        given = [cb for cb in self.callbacks if isinstance(cb, EarlyStopping)]
        stoppings = [(f"callbacks.{j}", cb) for j, cb in enumerate(given)]
        if self.early_stopping is not None:
            stoppings.append(("early_stopping", self.early_stopping))
        for cb in callbacks:
            cb.trainer = self
            cb.on_train_begin()
        progress = _Progress(self.verbose, self.epochs, self.stream)
        step0 = 0
        # where to start: (epoch, batch, loss_sum, correct, seen, elapsed), finished?
        pos, finished = (0, 0, 0.0, 0, 0, 0.0), False
        if ckpt is not None:
            ckpt.set_run(self._run_config(seed, x2, labels, val, c_net))
            if saved is not None:
                pos, finished = ckpt.restore(saved, self, rng, history, stoppings)
                step0 = pos[0] * batches_per_epoch
        sigint = _SigintFlag(ckpt is not None)
        try:
            for epoch in range(pos[0], 0 if finished else self.epochs):
                resumed = epoch == pos[0]
                t0 = time.perf_counter() - (pos[5] if resumed else 0.0)
                rng_state = rng.bit_generator.state if ckpt is not None else None
                # (a full batch in x's order: see batch_size)
                shuffled = self.shuffle and bs < n
                order = (rng.permutation(n) if shuffled else np.arange(n)).astype(np.int64, copy=False)
                if aug is not None:
                    bank = aug.bank(aug_seed, epoch)
                lrs_all = np.array([opt.lr * schedule(step0 + j) for j in range(batches_per_epoch)],
                                   dtype=np.float32)
                loss_sum, correct, seen = pos[2:5] if resumed else (0.0, 0, 0)
                cfg = opt.kernel_config(self.l2, self.clip_norm, self.l1)
                b1 = pos[1] if resumed else 0
                while b1 < batches_per_epoch:
                    b0, b1 = b1, min(batches_per_epoch, b1 + chunk_batches)
                    t_chunk = time.perf_counter()
                    # The C loop stops at a non-finite loss; parameters that overflow to
                    # inf without one are caught here, and the chunk is undone: the
                    # parameters and the optimizer's moments and step count as they were
                    # before it, so a fit that continues after the error starts there.
                    snapshot = net.flat_parameters.copy()
                    moments = [(a, a.copy()) for a in (opt.grad_avg, opt.sq_avg)
                               if a is not None]
                    step_before = cfg["step"]

                    def undo():
                        net.flat_parameters[...] = snapshot
                        for a, saved_a in moments:
                            a[...] = saved_a
                        opt.step_count = cfg["step"] = step_before

                    try:
                        ls, c, s = c_net.train(
                            x2, labels, order[b0 * bs:min(n, b1 * bs)], bs, lrs_all[b0:b1],
                            scale, shift, dropout_seed, cfg, grads, opt.grad_avg, opt.sq_avg,
                            None if aug is None else (aug.kernel_args(), bank, hw), keep,
                            loss_sum)
                        if not np.isfinite(net.flat_parameters).all():
                            raise _Diverged(b1 - 1 - b0, "the parameters overflowed")
                        # The chunk's last update is never followed by a loss check in C:
                        # finite but huge parameters can still overflow the forward pass.
                        last = order[max(b0 * bs, min(n, b1 * bs) - 256):min(n, b1 * bs)]
                        if not math.isfinite(c_net.evaluate(x2[last], labels[last], scale,
                                                             shift)[0]):
                            raise _Diverged(b1 - 1 - b0, "the outputs overflowed")
                    except KeyboardInterrupt:
                        # Ctrl-C is delivered as the C loop returns: the chunk's updates are
                        # in the parameters and moments, so its steps must be in the count
                        # (Adam's bias correction and dropout's masks follow it)
                        opt.step_count = cfg["step"]
                        raise
                    except FloatingPointError as exc:
                        # undo the chunk: the batches before the one whose loss was
                        # NaN/inf may already have blown the parameters up
                        undo()
                        batch = b0 + getattr(exc, "batch", 0)
                        what = getattr(exc, "what", "the loss became NaN or infinite")
                        raise TrainingDivergedError(
                            f"training diverged: {what} in epoch {epoch + 1}, batch "
                            f"{batch + 1} (learning rate "
                            f"{lrs_all[min(batch, len(lrs_all) - 1)]:.3g}); try a lower "
                            f"learning rate or gradient clipping (clip_norm)") from None
                    opt.step_count = cfg["step"]
                    loss_sum = ls  # (this chunk's batches added to it one by one, in C)
                    correct += c
                    seen += s
                    el = time.perf_counter() - t0
                    progress.update(epoch, seen, n, loss_sum / seen, correct / seen,
                                    seen / max(el, 1e-9))
                    if self.chunk_seconds is not None:
                        per_batch = (time.perf_counter() - t_chunk) / (b1 - b0)
                        chunk_batches = max(1, int(self.chunk_seconds / max(per_batch, 1e-9)))
                    if ckpt is not None and (sigint.raised or ckpt.due()):
                        ckpt.save(self, rng_state, (epoch, b1, loss_sum, correct, seen,
                                                    time.perf_counter() - t0), history,
                                  stoppings, False)
                        if sigint.raised:
                            raise KeyboardInterrupt
                step0 += batches_per_epoch
                seconds = time.perf_counter() - t0
                logs = {"loss": loss_sum / seen, "accuracy": correct / seen,
                        "lr": float(lrs_all[-1]), "seconds": seconds}
                if val is not None:
                    vl, vc = c_net.evaluate(*val)
                    logs["val_loss"], logs["val_accuracy"] = float(vl), vc / val[0].shape[0]
                history._append(epoch, logs)
                progress.end_epoch(epoch, logs, seen / max(seconds, 1e-9))
                for cb in callbacks:
                    cb.on_epoch_end(epoch, logs)
                if keep is not None and self.callbacks:
                    keep.clear()
                if ckpt is not None:
                    ckpt.save(self, rng.bit_generator.state, (epoch + 1, 0, 0.0, 0, 0, 0.0),
                              history, stoppings,
                              self.stop_training or epoch + 1 == self.epochs)
                    if sigint.raised:
                        raise KeyboardInterrupt
                if self.stop_training:
                    break
        except KeyboardInterrupt:
            history.interrupted = True
            if progress.verbose:
                saved_to = f" (checkpoint in {ckpt.path})" if ckpt is not None and ckpt.writes else ""
                progress.stream.write(f"\ninterrupted: returning the history so far{saved_to}\n")
        finally:
            keep = None  # (not held by a traceback)
            # the C view is the one inference uses too: this fit's first-layer choices
            # (made for its data) must not decide how the network predicts afterwards
            c_net.sparse_input = "auto"
            c_net.sparse_split = 0
            c_net.sparse_offset = None
            sigint.restore()
            # the rate this fit left (a callback may have changed it): a resume on this
            # Trainer starts from it, and the checkpoint accepts it as the run's own
            self._rate_at_stop = float(opt.lr)
            for cb in callbacks:
                cb.on_train_end()
        restored = getattr(history, "restored_epoch", None)
        kept = history.epoch.index(restored) if restored in history.epoch else -1
        net.training_summary = {
            "epochs": len(history),
            "optimizer": repr(opt),
            "batch_size": self.batch_size,
            "l2": self.l2,
            "l1": self.l1,
            "seed": seed,
            # (the loss of the epoch whose weights the network holds: EarlyStopping may
            # have put back an earlier epoch's)
            "final_loss": (history.history["loss"][kept] if len(history) else None),
            # how the training images were deformed (None: not at all); a model file records it
            "augment": self.augment.to_dict() if self.augment is not None else None,
            # what it read: "uint8" pixels or "float32" (after "uint8", the network refuses
            # floats that can only be 0-255 pixels: network.check_pixel_floats)
            "input": record,
        }
        # uint8 images: their background, "dark" (as MNIST's) or "light"; a network
        # trained on dark ones refuses light-background or 0/1 uint8 images
        # (network.check_pixel_images)
        background = pixel_background(x2)
        if background is not None:
            net.training_summary["background"] = background
        if float_top is not None:  # (network.check_pixel_images: uint8 read 255x too dark)
            net.training_summary["float_max"] = float_top
        if restored is not None:  # (1-based, as the progress lines count epochs)
            net.training_summary["weights_from_epoch"] = restored + 1
        return history

