"""Classification metrics in pure NumPy.

Accuracy, per-class precision / recall / F1 / support, macro and weighted
averages, the confusion matrix, a text report laid out like scikit-learn's
``classification_report``, and the most confident mistakes of a classifier.

Where scikit-learn has the same function, given the same arguments the results are the
same (labels are the sorted union of ``y_true`` and ``y_pred``; an undefined ratio such as
the precision of a class that is never predicted is ``zero_division``, 0.0 by default,
which is what scikit-learn returns after its warning). One default differs:
``precision_score``, ``recall_score`` and ``f1_score`` average over the classes
(``average="macro"``), where scikit-learn's default, ``"binary"``, scores only class 1
of a two-class problem and is not offered here; pass ``average=None`` for per-class
scores.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from digitcore._checks import label_pair, labels_in, metric_labels

__all__ = [
    "accuracy",
    "accuracy_score",
    "confusion_matrix",
    "precision_recall_fscore_support",
    "precision_score",
    "recall_score",
    "f1_score",
    "classification_report",
    "Mistake",
    "top_mistakes",
]

_AVERAGES = (None, "macro", "weighted", "micro")


# ----------------------------------------------------------------------------
# validation helpers

def _label_index(y: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Position of each element of `y` in `labels`, or -1 where it is absent."""
    sorter = np.argsort(labels, kind="stable")
    sorted_labels = labels[sorter]
    pos = np.searchsorted(sorted_labels, y)
    pos = np.clip(pos, 0, len(labels) - 1)
    found = sorted_labels[pos] == y
    return np.where(found, sorter[pos], -1)


def _check_zero_division(zero_division) -> float:
    if isinstance(zero_division, (int, float, np.floating, np.integer)) and not isinstance(
            zero_division, bool):
        value = float(zero_division)
        if value in (0.0, 1.0) or np.isnan(value):
            return value
    raise ValueError(f"zero_division must be 0.0, 1.0 or nan, got {zero_division!r}")


def _divide(num: np.ndarray, den: np.ndarray, zero_division: float) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(num.shape, zero_division, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _nanaverage(values: np.ndarray, weights=None) -> float:
    # Same rule as scikit-learn: NaN entries (zero_division=nan) are left out.
    mask = ~np.isnan(values)
    if not mask.any():
        return float("nan")
    if weights is None:
        return float(np.mean(values[mask]))
    w = np.asarray(weights, dtype=np.float64)[mask]
    if w.sum() == 0:
        return float(np.mean(values[mask]))
    return float(np.average(values[mask], weights=w))


# ----------------------------------------------------------------------------
# metrics

def accuracy_score(y_true, y_pred) -> float:
    """Fraction of predictions equal to the true labels.

    Parameters
    ----------
    y_true : array_like, shape (n,)
        True class labels.
    y_pred : array_like, shape (n,)
        Predicted class labels.

    Returns
    -------
    float
        ``mean(y_true == y_pred)``, in [0, 1].
    """
    y_true, y_pred = label_pair(y_true, y_pred)
    return float(np.mean(y_true == y_pred))


accuracy = accuracy_score


def confusion_matrix(y_true, y_pred, labels=None) -> np.ndarray:
    """Count how often each true class was predicted as each class.

    Parameters
    ----------
    y_true : array_like, shape (n,)
        True class labels.
    y_pred : array_like, shape (n,)
        Predicted class labels.
    labels : array_like, shape (n_labels,), optional
        Row / column order. Default: sorted union of `y_true` and `y_pred`.
        Samples whose true or predicted label is not listed are ignored; at least one
        must be a class of `y_true` (ValueError otherwise, as scikit-learn).

    Returns
    -------
    ndarray, shape (n_labels, n_labels), int64
        ``cm[i, j]`` is the number of samples of true class ``labels[i]``
        predicted as ``labels[j]``.
    """
    y_true, y_pred = label_pair(y_true, y_pred)
    given = labels is not None
    labels = labels_in(y_true, y_pred, labels)
    if given and y_true.shape[0] and not np.isin(labels, y_true).any():
        # (every count would be 0: labels that are not the classes of y, as scikit-learn)
        raise ValueError(f"At least one label specified must be in y_true; labels "
                         f"{labels[:10].tolist()} and y_true's classes "
                         f"{np.unique(y_true)[:10].tolist()} have none in common")
    n = labels.shape[0]
    ti = _label_index(y_true, labels)
    pi = _label_index(y_pred, labels)
    keep = (ti >= 0) & (pi >= 0)
    flat = ti[keep] * n + pi[keep]
    return np.bincount(flat, minlength=n * n).reshape(n, n).astype(np.int64)


def precision_recall_fscore_support(y_true, y_pred, labels=None, average=None,
                                    zero_division=0.0):
    """Precision, recall, F1 and support, per class or averaged.

    Parameters
    ----------
    y_true : array_like, shape (n,)
        True class labels.
    y_pred : array_like, shape (n,)
        Predicted class labels.
    labels : array_like, shape (n_labels,), optional
        Classes to report, in order. Default: sorted union of both inputs.
    average : {None, "macro", "weighted", "micro"}
        None gives one value per class; "macro" is the unweighted mean over
        classes; "weighted" weighs each class by its support; "micro" counts
        over all samples (equals accuracy when every label is listed).
    zero_division : {0.0, 1.0, nan}
        Value of a ratio whose denominator is zero (a class never predicted has
        no precision; a class absent from `y_true` has no recall). NaN values
        are left out of averages, as in scikit-learn.

    Returns
    -------
    precision, recall, f1 : ndarray, shape (n_labels,) float64, or float if averaged
    support : ndarray, shape (n_labels,) int64, or None if averaged
        Number of samples of each class in `y_true`.
    """
    if average not in _AVERAGES:
        raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}")
    zd = _check_zero_division(zero_division)
    y_true, y_pred = label_pair(y_true, y_pred)
    labels = labels_in(y_true, y_pred, labels)
    n = labels.shape[0]
    ti = _label_index(y_true, labels)
    pi = _label_index(y_pred, labels)
    tp = np.bincount(ti[(ti >= 0) & (ti == pi)], minlength=n)
    true_sum = np.bincount(ti[ti >= 0], minlength=n)
    pred_sum = np.bincount(pi[pi >= 0], minlength=n)
    if average == "micro":
        tp, true_sum, pred_sum = (np.array([a.sum()]) for a in (tp, true_sum, pred_sum))
    precision = _divide(tp, pred_sum, zd)
    recall = _divide(tp, true_sum, zd)
    # F1 from counts, 2tp / (2tp + fp + fn), so that p = r = 0 gives 0 and not 0/0.
    f1 = _divide(2.0 * tp, true_sum + pred_sum, zd)
    if average is None:
        return precision, recall, f1, true_sum.astype(np.int64)
    weights = true_sum if average == "weighted" else None
    return (_nanaverage(precision, weights), _nanaverage(recall, weights),
            _nanaverage(f1, weights), None)


def precision_score(y_true, y_pred, labels=None, average="macro", zero_division=0.0):
    """Precision ``tp / (tp + fp)``; see :func:`precision_recall_fscore_support`."""
    return precision_recall_fscore_support(y_true, y_pred, labels, average, zero_division)[0]


def recall_score(y_true, y_pred, labels=None, average="macro", zero_division=0.0):
    """Recall ``tp / (tp + fn)``; see :func:`precision_recall_fscore_support`."""
    return precision_recall_fscore_support(y_true, y_pred, labels, average, zero_division)[1]


def f1_score(y_true, y_pred, labels=None, average="macro", zero_division=0.0):
    """F1 ``2 tp / (2 tp + fp + fn)``; see :func:`precision_recall_fscore_support`."""
    return precision_recall_fscore_support(y_true, y_pred, labels, average, zero_division)[2]


def classification_report(y_true, y_pred, digits=2, target_names=None, output_dict=False,
                          zero_division=0.0, labels=None):
    """Per-class precision, recall, F1 and support, with accuracy and averages.

    The text layout is scikit-learn's ``classification_report``, so the two
    print the same table for the same inputs.

    Parameters
    ----------
    y_true : array_like, shape (n,)
        True class labels.
    y_pred : array_like, shape (n,)
        Predicted class labels.
    digits : int
        Decimal places of the floats in the text report.
    target_names : sequence of str, shape (n_labels,), optional
        Display names of the labels, in their order (e.g. Fashion-MNIST class names).
    output_dict : bool
        Return a dict instead of text: ``{name: {"precision", "recall",
        "f1-score", "support"}, "accuracy": float, "macro avg": {...},
        "weighted avg": {...}}`` with float values.
    zero_division : {0.0, 1.0, nan}
        See :func:`precision_recall_fscore_support`.
    labels : array_like, shape (n_labels,), optional
        The classes reported, in this order (e.g. ``range(10)``, so that a class absent
        from both arrays still gets its row). Default: the sorted union of `y_true` and
        `y_pred`. When they leave out a class that occurs, the accuracy row is a
        "micro avg" row over the listed classes, as in scikit-learn.

    Returns
    -------
    str or dict
    """
    if isinstance(digits, bool) or not isinstance(digits, (int, np.integer)) or digits < 0:
        raise ValueError(f"digits must be a non-negative int, got {digits!r}")
    digits = int(digits)
    y_true, y_pred = label_pair(y_true, y_pred)
    present = labels_in(y_true, y_pred, None)
    labels = present if labels is None else labels_in(y_true, y_pred, labels)
    # the micro average is the accuracy unless listed labels leave out a class that occurs
    micro = "accuracy" if np.isin(present, labels).all() else "micro avg"
    if target_names is None:
        target_names = [str(label) for label in labels]
    else:
        target_names = [str(name) for name in target_names]
        if len(target_names) != len(labels):
            raise ValueError(
                f"Number of classes, {len(labels)}, does not match size of "
                f"target_names, {len(target_names)}")
    headers = ["precision", "recall", "f1-score", "support"]
    p, r, f1, s = precision_recall_fscore_support(y_true, y_pred, labels, None, zero_division)
    rows = list(zip(target_names, p, r, f1, s))
    averages = []
    for average, heading in (("micro", micro), ("macro", "macro avg"),
                             ("weighted", "weighted avg")):
        ap, ar, af, _ = precision_recall_fscore_support(y_true, y_pred, labels, average,
                                                        zero_division)
        averages.append((heading, ap, ar, af, int(np.sum(s))))

    if output_dict:
        report = {name: dict(zip(headers, (float(v) for v in vals)))
                  for name, *vals in rows}
        for heading, *vals in averages:
            report[heading] = dict(zip(headers, (float(v) for v in vals)))
        if micro == "accuracy":
            report["accuracy"] = report["accuracy"]["precision"]
        return report

    width = max(max(len(name) for name in target_names), len("weighted avg"), digits)
    text = ("{:>{width}s} " + " {:>9}" * 4).format("", *headers, width=width) + "\n\n"
    row_fmt = "{:>{width}s} " + " {:>9.{digits}f}" * 3 + " {:>9}\n"
    for row in rows:
        text += row_fmt.format(*row, width=width, digits=digits)
    text += "\n"
    for heading, ap, ar, af, support in averages:
        if heading == "accuracy":
            text += ("{:>{width}s} " + " {:>9.{digits}}" * 2 + " {:>9.{digits}f}"
                     + " {:>9}\n").format(heading, "", "", af, support, width=width,
                                          digits=digits)
        else:
            text += row_fmt.format(heading, ap, ar, af, support, width=width, digits=digits)
    return text


class Mistake(NamedTuple):
    """One misclassified sample: its index, true and predicted class, and the
    probability the model gave to its (wrong) prediction."""

    index: int
    true: int
    predicted: int
    confidence: float


def top_mistakes(y_true, proba, k=10) -> list[Mistake]:
    """The `k` misclassified samples the model was most confident about.

    Parameters
    ----------
    y_true : array_like of int, shape (n,)
        True class indices in ``[0, n_classes)``.
    proba : array_like of float, shape (n, n_classes)
        Predicted class probabilities (e.g. ``Network.predict_proba``).
    k : int or None
        How many mistakes to return; None returns all of them.

    Returns
    -------
    list of Mistake, length min(k, n_mistakes)
        ``(index, true, predicted, confidence)`` sorted by decreasing
        confidence; ties keep sample order. The prediction is
        ``argmax(proba[index])`` and the confidence its probability.
    """
    y_true = metric_labels(y_true, "y_true")
    proba = np.asarray(proba)
    if proba.ndim != 2:
        raise ValueError(f"proba must have shape (n, n_classes), got shape {proba.shape}")
    if proba.shape[0] != y_true.shape[0]:
        raise ValueError(
            f"y_true has {y_true.shape[0]} samples but proba has {proba.shape[0]} rows "
            f"(proba shape {proba.shape})")
    if proba.shape[1] == 0:
        raise ValueError(f"proba has no classes (shape {proba.shape})")
    if y_true.dtype.kind not in "biu" and not (
            y_true.dtype.kind == "f" and np.all(y_true == np.round(y_true))):
        raise ValueError(f"y_true must hold integer class indices, got dtype {y_true.dtype}")
    if y_true.size and (y_true.min() < 0 or y_true.max() >= proba.shape[1]):
        raise ValueError(
            f"y_true values must be in [0, {proba.shape[1]}) to index proba columns, got "
            f"range [{y_true.min()}, {y_true.max()}]")
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"k must be a non-negative int or None, got {k!r}")
    y_true = y_true.astype(np.int64)
    pred = np.argmax(proba, axis=1)
    conf = proba[np.arange(proba.shape[0]), pred]
    wrong = np.flatnonzero(pred != y_true)
    order = wrong[np.argsort(-conf[wrong].astype(np.float64), kind="stable")]
    if k is not None:
        order = order[:int(k)]
    return [Mistake(int(i), int(y_true[i]), int(pred[i]), float(conf[i])) for i in order]
