"""The rules for samples and class labels, in one place: Network, Trainer, datasets,
metrics, plots and augmentation apply them, each raising its own error type, with messages
that name the argument.
"""

from __future__ import annotations

import math

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


def seed_value(seed, name: str = "seed", generators: bool = False):
    """``seed`` as NumPy's generators take it: None or an int >= 0 (a NumPy integer too),
    and with ``generators`` a numpy Generator, BitGenerator or SeedSequence as given; else
    a ValueError naming ``name`` (NumPy's own says "expected non-negative integer")."""
    if seed is None:
        return None
    if generators and isinstance(seed, (np.random.Generator, np.random.BitGenerator,
                                        np.random.SeedSequence)):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) \
            or seed < 0:
        raise ValueError(f"{name} must be an int >= 0 or None, got {seed!r}")
    return int(seed)


def count_value(value, name: str, minimum: int) -> int:
    """``value`` as an int >= ``minimum``: an integer, or a float with an integral value
    (128.0), else a ValueError naming ``name`` (2.9, NaN, "full" and True are refused)."""
    if isinstance(value, (bool, np.bool_, complex, np.complexfloating)) \
            or not isinstance(value, (int, float, np.number)) or not math.isfinite(value) \
            or value != int(value) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def real_value(value, name: str) -> float:
    """``value`` as a float (a number, a 0-d array, or a string that reads as one, as a
    config file may give "1e-3"), or a ValueError naming ``name`` when it is not one (None,
    a bool, "abc"); its range is the caller's to check."""
    if isinstance(value, (bool, np.bool_, bytes)) or np.ndim(value) != 0:
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None


def positive_value(value, name: str, allow_zero: bool = False, unit: str = "") -> float:
    """``value`` as a finite float > 0 (>= 0 with ``allow_zero``), read as ``real_value``
    reads it (so "1e-3" from a config file is taken), else a ValueError naming ``name``;
    ``unit`` (" epochs") follows the bound in the message."""
    v = real_value(value, name)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}{unit} and finite, "
                         f"got {value!r}")
    return v


def kernel_value(value, name: str, allow_zero: bool = False, normal: bool = False) -> float:
    """``positive_value`` for a hyperparameter the C kernels take as float32: also finite
    there (at most about 3.4e38, past which it would reach them as inf), and, unless
    ``allow_zero``, not so small that it rounds to 0 (below about 1.4e-45). ``normal``: at
    least float32's smallest normal number, 1.18e-38 (an optimizer's eps: the x86 update
    loops flush smaller values to 0, and an eps of 0 divides 0 by 0)."""
    v = positive_value(value, name, allow_zero)
    with np.errstate(over="ignore"):
        f = np.float32(v)
    if not np.isfinite(f):
        raise ValueError(f"{name} must be at most 3.4e38 (digitcore computes in float32), "
                         f"got {value!r}")
    if normal and not f >= np.finfo(np.float32).tiny:
        raise ValueError(f"{name} must be at least 1.18e-38 (float32's smallest normal "
                         f"number; digitcore reads smaller values as 0), got {value!r}")
    if f == 0 and v != 0 and not allow_zero:
        raise ValueError(f"{name} must be > 0 in float32 (at least 1.4e-45; digitcore "
                         f"computes in float32), got {value!r}")
    return v


def fraction_value(value, name: str) -> float:
    """``value`` as a float in [0, 1) that stays below 1 in float32, where the C kernels
    take it (0.99999999999 rounds to 1 there: RMSprop's and Adam's averages would then
    never move), else a ValueError naming ``name``."""
    v = real_value(value, name)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    if not np.float32(v) < 1.0:
        raise ValueError(f"{name} must be in [0, 1) in float32, where digitcore computes; "
                         f"{value!r} rounds to 1 (at most 0.99999994)")
    return v


# A float array finite as given whose float32 copy is not: values past float32's range
FLOAT32_RANGE = ("{name} holds values past float32's range (magnitudes above 3.4e38), "
                 "and digitcore computes in float32")


def all_finite(arr: np.ndarray) -> bool:
    """``np.isfinite(arr).all()`` for a float array, without its boolean temporary: the sum
    of the values meets every NaN and infinity (NaN stays NaN; inf stays inf, or meets -inf
    as NaN), so a finite sum proves them all finite, in one read of the array (0.57x the
    time on MNIST's 60,000 x 784 float32 rows, checked at every fit). Only a sum of finite
    values that overflows takes the elementwise check."""
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(arr, axis=None)
    return bool(np.isfinite(total)) or bool(np.isfinite(arr).all())


def _as_float(v) -> float:
    """float(v), or +-inf for an int too large for a float."""
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def standardization_problem(input_mean, input_std) -> str | None:
    """What is wrong with a network's input standardization ``(x - input_mean) /
    input_std``, or None. The kernels take it as a float32 scale and shift (1/std, and
    1/(255 std) for uint8 pixels; -mean/std): each must be finite and the scale not 0, or
    every input would come out infinite or zero and the answers would be wrong."""
    try:
        mean, std = _as_float(input_mean), _as_float(input_std)
    except (TypeError, ValueError):
        return f"input_mean and input_std must be numbers, got {input_mean!r:.50}, {input_std!r:.50}"
    if not math.isfinite(mean) or not math.isfinite(std) or std <= 0:
        return (f"input_std must be positive and finite and input_mean finite, got "
                f"mean={mean}, std={std}")
    with np.errstate(over="ignore", under="ignore"):
        scale_hi, scale_lo = np.float32(1.0 / std), np.float32(1.0 / (255.0 * std))
        shift = np.float32(-mean / std)
    if not (np.isfinite(scale_hi) and scale_lo != 0 and np.isfinite(shift)):
        return (f"input_mean={mean:g} and input_std={std:g} are out of float32's range: "
                f"1/std and mean/std must be finite and 1/(255 std) non-zero in float32")
    return None


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
    if arr.size:  # (on the labels as given: a uint64 past 2**63 would wrap in int64)
        lo, hi = int(arr.min()), int(arr.max())
        if n_classes is not None and (lo < 0 or hi >= n_classes):
            raise error(f"{name} has labels outside [0, {n_classes - 1}] (min {lo}, max {hi}; "
                        f"n_classes is {n_classes})")
        if lo < 0:
            raise error(f"{name} has a negative label ({lo})")
        if hi > np.iinfo(np.int64).max:
            raise error(f"{name} has a label too large for a class index ({hi})")
    return arr.astype(np.int64, copy=False)


def square_images(x: np.ndarray, name: str = "x") -> np.ndarray:
    """(n, H, W) view of ``x`` given as (n, H, W), or as (n, F) with F a perfect square:
    the images augmentation deforms; anything else raises ValueError."""
    if x.ndim == 3:
        return x
    if x.ndim == 2:
        side = math.isqrt(x.shape[1])
        if side * side == x.shape[1]:
            return x.reshape(x.shape[0], side, side)
        raise ValueError(f"augmentation needs images: {name} has {x.shape[1]} features "
                         f"per sample, not a square; give {name} as (n, height, width)")
    raise ValueError(f"augmentation needs images: {name} must be (n, height, width) or "
                     f"(n, features), got shape {x.shape}")


def metric_labels(y, name: str) -> np.ndarray:
    """``y`` as a 1-D array of labels a metric can compare (bool, int, float, str or object;
    floats finite), or ValueError naming the argument."""
    arr = labels_1d(y, name)
    if arr.dtype.kind not in "biuUSO" and arr.dtype.kind != "f":
        raise ValueError(f"{name} has unsupported dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite labels")
    return arr


def label_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, y_pred)`` checked by :func:`metric_labels`, of one non-zero length."""
    y_true = metric_labels(y_true, "y_true")
    y_pred = metric_labels(y_pred, "y_pred")
    if y_true.shape[0] != y_pred.shape[0]:
        raise ValueError(
            f"y_true and y_pred have different lengths: {y_true.shape[0]} and "
            f"{y_pred.shape[0]}")
    if y_true.shape[0] == 0:
        raise ValueError("y_true and y_pred are empty")
    kinds = {_label_kind(a) for a in (y_true, y_pred)}
    if kinds == {"number", "text"}:  # (never equal: accuracy 0 for labels that agree)
        raise TypeError(f"y_true holds {y_true.dtype} labels and y_pred {y_pred.dtype}: "
                        "numbers and strings never compare equal; give both as one kind")
    return y_true, y_pred


def _label_kind(a: np.ndarray) -> str:
    """"number", "text" or "other": an object array (pandas' strings) by its elements."""
    if a.dtype.kind == "O":
        kinds = {"text" if isinstance(v, str) else "number"
                 if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
                 else "other" for v in a.ravel().tolist()}
        return kinds.pop() if len(kinds) == 1 else "other"
    return "number" if a.dtype.kind in "biuf" else "text" if a.dtype.kind in "US" else "other"


def labels_in(y_true: np.ndarray, y_pred: np.ndarray, labels) -> np.ndarray:
    """The classes a metric counts, in order: ``labels`` (1-D, non-empty, no duplicates,
    numbers for number labels and strings for string ones), or when None the sorted union
    of ``y_true`` and ``y_pred`` (as scikit-learn)."""
    if labels is None:
        try:
            return np.union1d(y_true, y_pred)
        except TypeError as exc:
            raise ValueError(
                f"y_true ({y_true.dtype}) and y_pred ({y_pred.dtype}) labels cannot be "
                "compared; use one label type") from exc
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
    if np.unique(labels).shape[0] != labels.shape[0]:
        raise ValueError("labels contains duplicates")
    if {_label_kind(labels), _label_kind(y_true)} == {"number", "text"}:
        # (never equal: every sample would fall outside the labels, and every count be 0)
        raise TypeError(f"labels holds {labels.dtype} values and y {y_true.dtype} ones: "
                        "numbers and strings never compare equal; give labels as the "
                        "classes in y (class names for display go elsewhere)")
    return labels
