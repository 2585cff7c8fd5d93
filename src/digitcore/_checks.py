"""The rules for samples and class labels, in one place: Network, Trainer, datasets and
metrics apply them, each raising its own error type, with messages that name the argument.
"""

from __future__ import annotations

import numpy as np


def samples_2d(arr: np.ndarray, name: str = "x", error: type = ValueError) -> np.ndarray:
    """``arr`` (n, features) as it is, or (n, height, width) as (n, height * width) (a view
    when the memory allows); anything else, or no features, raises ``error``."""
    if arr.ndim == 3:
        if arr.shape[1] == 0 or arr.shape[2] == 0:
            raise error(f"{name} has empty images: shape {arr.shape}")
        return arr.reshape(arr.shape[0], arr.shape[1] * arr.shape[2])
    if arr.ndim == 2:
        if arr.shape[1] == 0:
            raise error(f"{name} has no features: shape {arr.shape}")
        return arr
    raise error(f"{name} must have shape (n, features) or (n, height, width), got {arr.shape}")


def labels_1d(y, name: str = "y", error: type = ValueError) -> np.ndarray:
    """``y`` as a 1-D array of any label type, or ``error``."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise error(f"{name} must be a 1-D array of class labels, got shape {arr.shape}")
    return arr


def class_indices(y, n: int, n_classes: int | None = None, *, name: str = "y",
                  error: type = ValueError, type_error: type = TypeError,
                  integral_floats: bool = False) -> np.ndarray:
    """``y`` as ``n`` int64 class indices in ``[0, n_classes)`` (a view when it is int64
    already). Floats are accepted only when ``integral_floats`` and every value is a
    whole number; a wrong dtype raises ``type_error``, everything else ``error``."""
    arr = labels_1d(y, name, error)
    if arr.shape[0] != n:
        raise error(f"{name} has {arr.shape[0]} labels but x has {n} samples")
    if arr.dtype.kind not in "iu":
        if not (integral_floats and arr.dtype.kind == "f" and n and np.isfinite(arr).all()
                and (arr == np.round(arr)).all()):
            raise type_error(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    out = arr.astype(np.int64, copy=False)
    if out.size:
        lo, hi = int(out.min()), int(out.max())
        if n_classes is not None and (lo < 0 or hi >= n_classes):
            raise error(f"{name} has labels outside [0, {n_classes - 1}] (min {lo}, max {hi}; "
                        f"n_classes is {n_classes})")
        if lo < 0:
            raise error(f"{name} has a negative label ({lo})")
    return out
