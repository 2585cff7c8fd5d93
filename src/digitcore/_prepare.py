"""Arrays of images and labels made ready for training: shape checks, one-hot labels, a
stratified train/validation split and mini-batches.

Public through :mod:`digitcore.datasets` (``digitcore.train_val_split``, ``one_hot``, ...),
which re-exports every name here; this module holds them apart from the finding,
verifying and downloading of dataset files, a job of its own.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from digitcore._checks import class_indices, samples_2d
from digitcore.errors import DatasetError

__all__ = ["as_2d_images", "check_labels", "one_hot", "train_val_split", "iter_batches"]


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def as_2d_images(x, name: str = "x") -> np.ndarray:
    """View images as ``(n, features)``.

    Accepts ``(n, features)`` or ``(n, h, w)`` arrays of uint8 or floating dtype and
    returns a reshaped view (a copy only if ``x`` is not contiguous enough to
    reshape). NaNs are not checked here.

    Raises
    ------
    DatasetError
        Wrong rank, empty feature axis, or a dtype other than uint8 / float.
    """
    arr = np.asarray(x)
    if arr.dtype != np.uint8 and arr.dtype.kind != "f":
        raise DatasetError(f"{name} must be uint8 or floating point images, got dtype "
                           f"{arr.dtype} with shape {arr.shape}")
    return samples_2d(arr, name, DatasetError)


def check_labels(y, n: int, n_classes: int | None = None, name: str = "y") -> np.ndarray:
    """Validate integer class labels; return them as int64 (a view when already int64).

    Raises DatasetError when ``y`` is not 1-D, not of integer dtype, its length is
    not ``n``, or a label is negative (or ``>= n_classes`` when given).
    """
    return class_indices(y, n, n_classes, name=name, error=DatasetError,
                         type_error=DatasetError)


def one_hot(y, n_classes: int | None = None) -> np.ndarray:
    """One-hot encode integer labels: ``(n,)`` -> float32 ``(n, n_classes)``.

    ``n_classes`` defaults to ``max(y) + 1``.
    """
    arr = np.asarray(y)
    labels = check_labels(arr, arr.shape[0] if arr.ndim == 1 else -1, n_classes)
    if n_classes is None:
        n_classes = int(labels.max()) + 1 if labels.size else 0
    if n_classes < 0:
        raise DatasetError(f"n_classes must be >= 0, got {n_classes}")
    out = np.zeros((labels.shape[0], n_classes), dtype=np.float32)
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


def validation_count(n, val_fraction):
    """How many of ``n`` examples :func:`train_val_split` holds out for ``val_fraction``:
    the rounded fraction, at least 1 and at most ``n - 1``."""
    return min(max(int(round(n * float(val_fraction))), 1), n - 1)


def train_val_split(x, y, val_fraction: float, seed=None, stratify: bool = True):
    """Split ``(x, y)`` into training and validation parts.

    Parameters
    ----------
    x : array (n, ...)
    y : array (n,) integer labels (or ``(n, k)`` one-hot, stratified by argmax)
    val_fraction : float in (0, 1)
        ``round(n * val_fraction)`` examples (at least 1, at most n - 1) go to validation.
    seed : int, Generator or None
    stratify : bool
        Keep class proportions in both parts (largest-remainder allocation per class).

    Returns
    -------
    (x_tr, y_tr), (x_val, y_val)
        Copies; each part keeps the original relative order of its examples.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim == 0 or y.ndim == 0 or len(x) != len(y):
        raise DatasetError(f"x and y must have the same length, got shapes {x.shape} and {y.shape}")
    if not 0.0 < float(val_fraction) < 1.0:
        raise DatasetError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    n = len(x)
    if n < 2:
        raise DatasetError(f"need at least 2 examples to split, got {n}")
    n_val = validation_count(n, val_fraction)
    rng = _rng(seed)
    if stratify:
        classes = y.argmax(axis=1) if y.ndim == 2 else y
        if classes.ndim != 1 or classes.dtype.kind not in "iub":
            raise DatasetError(f"stratify=True needs integer labels, got y of dtype {y.dtype} "
                               f"and shape {y.shape}; pass stratify=False")
        perm = rng.permutation(n)
        order = perm[np.argsort(classes[perm], kind="stable")]  # grouped by class, shuffled within
        uniq, starts, counts = np.unique(classes[order], return_index=True, return_counts=True)
        quota = counts * (n_val / n)
        take = np.floor(quota).astype(np.int64)
        short = n_val - int(take.sum())
        if short > 0:
            # largest remainders first; ties broken randomly so no class is favoured
            rem = quota - take
            pick = np.lexsort((rng.random(len(uniq)), -rem))[:short]
            take[pick] += 1
        mask = np.zeros(n, dtype=bool)
        for s, t in zip(starts, take):
            mask[order[s:s + t]] = True
    else:
        mask = np.zeros(n, dtype=bool)
        mask[rng.choice(n, size=n_val, replace=False)] = True
    val_idx = np.flatnonzero(mask)
    tr_idx = np.flatnonzero(~mask)
    return (x[tr_idx], y[tr_idx]), (x[val_idx], y[val_idx])


def iter_batches(x, y, batch_size: int, shuffle: bool = True, seed=None,
                 drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Yield ``(x_batch, y_batch)`` pairs, keeping the dtype of ``x`` (uint8 stays uint8).

    Without shuffling the batches are views (slices); with shuffling each batch is
    gathered by index, so only one batch is copied at a time. ``y`` may be None
    (then ``y_batch`` is None). The permutation comes from ``seed`` (int, Generator
    or None).
    """
    x = np.asarray(x)
    if x.ndim == 0:
        raise DatasetError("x must be an array of examples, got a scalar")
    n = len(x)
    if y is not None:
        y = np.asarray(y)
        if y.ndim == 0 or len(y) != n:
            raise DatasetError(f"x has {n} examples but y has shape {y.shape}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise DatasetError(f"batch_size must be a positive integer, got {batch_size!r}")
    batch_size = int(batch_size)
    stop = n - n % batch_size if drop_last else n
    if not shuffle:
        for i in range(0, stop, batch_size):
            yield x[i:i + batch_size], (None if y is None else y[i:i + batch_size])
        return
    perm = _rng(seed).permutation(n)
    for i in range(0, stop, batch_size):
        idx = perm[i:i + batch_size]
        yield x[idx], (None if y is None else y[idx])
