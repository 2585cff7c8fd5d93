"""Tests of digitcore.metrics: hand-computed examples and scikit-learn parity."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from digitcore import metrics as M

# A worked example small enough to check by hand.
#   class 0: tp=1 fp=2 fn=0 -> p=1/3 r=1   f1=2tp/(2tp+fp+fn)=1/2
#   class 1: tp=0 fp=0 fn=1 -> p=0/0 r=0   f1=0   (never predicted: zero division)
#   class 2: tp=2 fp=0 fn=1 -> p=1   r=2/3 f1=4/5
Y_TRUE = np.array([0, 1, 2, 2, 2])
Y_PRED = np.array([0, 0, 2, 2, 0])


def test_accuracy_hand_computed():
    assert M.accuracy(Y_TRUE, Y_PRED) == pytest.approx(3 / 5)
    assert M.accuracy_score is M.accuracy
    assert M.accuracy([1, 2], [1, 2]) == 1.0


def test_confusion_matrix_hand_computed():
    cm = M.confusion_matrix(Y_TRUE, Y_PRED)
    np.testing.assert_array_equal(cm, [[1, 0, 0], [1, 0, 0], [1, 0, 2]])
    assert cm.dtype == np.int64
    # explicit labels: a class absent from both inputs gets an empty row and column,
    # and samples of unlisted classes are dropped
    cm4 = M.confusion_matrix(Y_TRUE, Y_PRED, labels=[2, 0, 3])
    np.testing.assert_array_equal(cm4, [[2, 1, 0], [0, 1, 0], [0, 0, 0]])


def test_per_class_hand_computed():
    p, r, f1, s = M.precision_recall_fscore_support(Y_TRUE, Y_PRED)
    np.testing.assert_allclose(p, [1 / 3, 0.0, 1.0])
    np.testing.assert_allclose(r, [1.0, 0.0, 2 / 3])
    np.testing.assert_allclose(f1, [0.5, 0.0, 0.8])
    np.testing.assert_array_equal(s, [1, 1, 3])
    p, r, f1, s = M.precision_recall_fscore_support(Y_TRUE, Y_PRED, average="macro")
    assert p == pytest.approx((1 / 3 + 0 + 1) / 3)
    assert r == pytest.approx((1 + 0 + 2 / 3) / 3)
    assert s is None
    p, r, f1, _ = M.precision_recall_fscore_support(Y_TRUE, Y_PRED, average="weighted")
    assert f1 == pytest.approx((0.5 * 1 + 0 * 1 + 0.8 * 3) / 5)
    assert M.f1_score(Y_TRUE, Y_PRED, average="micro") == pytest.approx(0.6)
    p1, *_ = M.precision_recall_fscore_support(Y_TRUE, Y_PRED, zero_division=1.0)
    assert p1[1] == 1.0
    pn, *_ = M.precision_recall_fscore_support(Y_TRUE, Y_PRED, zero_division=np.nan)
    assert np.isnan(pn[1])
    # NaN entries are left out of the macro average
    assert M.precision_score(Y_TRUE, Y_PRED, zero_division=np.nan) == pytest.approx(
        (1 / 3 + 1) / 2)


def test_report_text_layout():
    text = M.classification_report(Y_TRUE, Y_PRED)
    lines = text.splitlines()
    assert lines[0].split() == ["precision", "recall", "f1-score", "support"]
    assert lines[2].split() == ["0", "0.33", "1.00", "0.50", "1"]
    assert lines[3].split() == ["1", "0.00", "0.00", "0.00", "1"]
    assert lines[6].split() == ["accuracy", "0.60", "5"]
    assert lines[7].split()[:2] == ["macro", "avg"]
    assert lines[8].split()[:2] == ["weighted", "avg"]
    named = M.classification_report(Y_TRUE, Y_PRED, digits=3,
                                    target_names=["zero", "one", "two"])
    assert "zero" in named and "0.333" in named


def test_report_dict():
    d = M.classification_report(Y_TRUE, Y_PRED, output_dict=True)
    assert set(d) == {"0", "1", "2", "accuracy", "macro avg", "weighted avg"}
    assert d["accuracy"] == pytest.approx(0.6)
    assert d["2"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1-score": 0.8,
                                    "support": 3.0})
    assert d["macro avg"]["support"] == 5.0


@pytest.mark.parametrize("bad", [
    lambda: M.accuracy([1, 2, 3], [1, 2]),
    lambda: M.confusion_matrix([[1, 2]], [[1, 2]]),
    lambda: M.precision_recall_fscore_support([1, 2], [1, 2, 2]),
    lambda: M.classification_report(np.zeros((2, 2)), [0, 1]),
    lambda: M.classification_report([0, 1], [0, 1], target_names=["a"]),
    lambda: M.classification_report([0, 1], [0, 1], digits=-1),
    lambda: M.precision_recall_fscore_support([0, 1], [0, 1], average="samples"),
    lambda: M.precision_recall_fscore_support([0, 1], [0, 1], zero_division=0.5),
    lambda: M.accuracy([], []),
    lambda: M.accuracy(3, 3),
])
def test_bad_inputs_raise_value_error(bad):
    with pytest.raises(ValueError):
        bad()


def test_numbers_against_strings_are_refused():
    # accuracy([0, 1], ["0", "1"]) read 0.0
    for f in (M.accuracy_score, M.confusion_matrix):
        with pytest.raises(TypeError, match="numbers and strings never compare equal"):
            f([0, 1], ["0", "1"])
    assert M.accuracy_score(["0", "1"], np.array(["0", "2"])) == 0.5


def test_length_mismatch_message_names_lengths():
    with pytest.raises(ValueError, match="3 and 2"):
        M.accuracy([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match=r"shape \(1, 2\)"):
        M.accuracy([[1, 2]], [1])


def test_top_mistakes():
    y = np.array([0, 1, 2, 1, 0])
    proba = np.array([
        [0.9, 0.05, 0.05],  # right
        [0.7, 0.2, 0.1],    # wrong, 0.7
        [0.1, 0.85, 0.05],  # wrong, 0.85
        [0.6, 0.3, 0.1],    # wrong, 0.6
        [0.3, 0.7, 0.0],    # wrong, 0.7 (tie with index 1: sample order kept)
    ], dtype=np.float32)
    top = M.top_mistakes(y, proba, k=3)
    assert [m.index for m in top] == [2, 1, 4]
    assert top[0] == M.Mistake(2, 2, 1, pytest.approx(0.85))
    assert isinstance(top[0].index, int) and isinstance(top[0].confidence, float)
    assert len(M.top_mistakes(y, proba, k=None)) == 4
    assert M.top_mistakes(y, proba, k=0) == []
    assert M.top_mistakes([0], [[1.0, 0.0]]) == []
    with pytest.raises(ValueError, match="rows"):
        M.top_mistakes(y[:3], proba)
    with pytest.raises(ValueError, match="shape"):
        M.top_mistakes(y, proba[:, 0])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        M.top_mistakes([0, 5, 0, 0, 0], proba)
    with pytest.raises(ValueError, match="k must"):
        M.top_mistakes(y, proba, k=-1)


# ---------------------------------------------------------------------------
# scikit-learn parity

def _cases():
    rng = np.random.default_rng(1234)
    cases = [(Y_TRUE, Y_PRED)]
    # random 10-class predictions, mostly right
    y = rng.integers(0, 10, 500)
    p = np.where(rng.random(500) < 0.8, y, rng.integers(0, 10, 500))
    cases.append((y, p))
    # a class only in y_pred (recall undefined) and one only in y_true (precision undefined)
    cases.append((np.array([0, 0, 1, 1, 3]), np.array([0, 2, 1, 1, 0])))
    # every prediction the same class
    cases.append((rng.integers(0, 4, 50), np.zeros(50, dtype=np.int64)))
    # one class, all right
    cases.append((np.ones(7, dtype=np.int64), np.ones(7, dtype=np.int64)))
    # string labels
    cases.append((np.array(["cat", "dog", "dog", "eel"]), np.array(["dog", "dog", "cat", "eel"])))
    return cases


@pytest.mark.parametrize("case", range(6))
@pytest.mark.parametrize("zero_division", [0.0, 1.0])
def test_matches_sklearn(case, zero_division):
    skm = pytest.importorskip("sklearn.metrics")
    y_true, y_pred = _cases()[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's UndefinedMetricWarning
        assert M.accuracy(y_true, y_pred) == skm.accuracy_score(y_true, y_pred)
        np.testing.assert_array_equal(M.confusion_matrix(y_true, y_pred),
                                      skm.confusion_matrix(y_true, y_pred))
        for average in (None, "macro", "weighted", "micro"):
            ours = M.precision_recall_fscore_support(y_true, y_pred, average=average,
                                                     zero_division=zero_division)
            theirs = skm.precision_recall_fscore_support(y_true, y_pred, average=average,
                                                         zero_division=zero_division)
            for a, b in zip(ours, theirs):
                if b is None:
                    assert a is None
                else:
                    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
        for digits in (2, 4):
            assert M.classification_report(y_true, y_pred, digits=digits,
                                           zero_division=zero_division) == \
                skm.classification_report(y_true, y_pred, digits=digits,
                                          zero_division=zero_division)
        ours = M.classification_report(y_true, y_pred, output_dict=True,
                                       zero_division=zero_division)
        theirs = skm.classification_report(y_true, y_pred, output_dict=True,
                                           zero_division=zero_division)
        assert ours == theirs


def test_matches_sklearn_default_zero_division_and_target_names():
    """sklearn's default zero_division="warn" warns and returns 0; ours returns 0."""
    skm = pytest.importorskip("sklearn.metrics")
    y_true, y_pred = _cases()[2]
    names = ["zero", "one", "two", "three!"]
    with pytest.warns(Warning):
        theirs = skm.classification_report(y_true, y_pred, target_names=names)
    assert M.classification_report(y_true, y_pred, target_names=names) == theirs
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ours does not warn
        M.classification_report(y_true, y_pred)


@pytest.mark.parametrize("labels", [list(range(10)), [0, 1], [2, 0, 1, 7]],
                         ids=["all-ten", "subset", "reordered-with-absent"])
def test_report_labels_match_sklearn(labels):
    """classification_report had no labels=: a class absent from both arrays could get no
    row, and ten target names for the nine present classes were refused."""
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    y_true, y_pred = rng.integers(0, 9, 80), rng.integers(0, 9, 80)  # (no 9)
    names = [f"class {c}" for c in labels]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for kw in ({}, {"target_names": names}, {"output_dict": True}, {"digits": 4}):
            assert M.classification_report(y_true, y_pred, labels=labels, **kw) == \
                skm.classification_report(y_true, y_pred, labels=labels, zero_division=0.0,
                                          **kw), kw


def test_confusion_matrix_labels_none_of_which_occur_are_refused():
    """It returned a matrix of zeros; scikit-learn refuses, and so do we now."""
    y = np.array([0, 1, 1, 2])
    with pytest.raises(ValueError, match="At least one label specified must be in y_true"):
        M.confusion_matrix(y, y, labels=[10, 11])
    np.testing.assert_array_equal(M.confusion_matrix(y, y, labels=[2, 10]),
                                  [[1, 0], [0, 0]])


def test_labels_of_another_kind_than_y_are_refused():
    """Explicit labels as strings for number y (or the reverse) matched no sample: an
    all-zero confusion matrix and scores, with no error."""
    from digitcore import metrics

    for labels, y in ((["0", "1"], [0, 1, 1]), ([0, 1], ["a", "b", "b"])):
        with pytest.raises(TypeError, match="labels holds"):
            metrics.confusion_matrix(y, y[::-1], labels=labels)
        with pytest.raises(TypeError, match="labels holds"):
            metrics.precision_recall_fscore_support(y, y[::-1], labels=labels)
    # the same kind still works, with labels absent from y too
    np.testing.assert_array_equal(metrics.confusion_matrix([0, 1, 1], [0, 1, 0], labels=[1, 0, 2]),
                                  [[1, 1, 0], [0, 1, 0], [0, 0, 0]])


def test_object_labels_are_kind_checked_by_their_values():
    """pandas hands string labels over as object arrays: they counted as neither numbers
    nor text, so number labels against them gave an all-zero matrix silently."""
    from digitcore import metrics

    y = np.array(["a", "b", "b"], dtype=object)
    with pytest.raises(TypeError, match="labels holds"):
        metrics.confusion_matrix(y, y, labels=[0, 1])
    with pytest.raises(TypeError, match="numbers and strings"):
        metrics.accuracy(y, np.array([0, 1, 1]))
    np.testing.assert_array_equal(metrics.confusion_matrix(y, y, labels=["a", "b"]),
                                  [[1, 0], [0, 2]])
    assert metrics.accuracy(np.array([1, 2], dtype=object), [1, 2]) == 1.0
