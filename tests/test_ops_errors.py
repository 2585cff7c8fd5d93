"""Bad calls to digitcore.ops raise the documented exception with a useful message, never
crash, and never write to an output before failing."""

from __future__ import annotations

import numpy as np
import pytest

from digitcore import ops

F = np.float32


def a32(*shape):
    return np.arange(int(np.prod(shape)), dtype=F).reshape(shape) / 10 - 1


X = a32(4, 5)
W = a32(3, 5)
B = a32(3)
G = a32(4, 3)
LAB = np.array([0, 1, 2, 1])
BUF = a32(30)
RO = a32(4, 5)
RO.setflags(write=False)
# float32 at an odd address (C may assume 4-byte alignment; vectorized code may fault)
ODD = np.frombuffer(bytes(4 * 20 + 1), F, count=20, offset=1).reshape(4, 5)
ODD_OUT = np.frombuffer(bytearray(4 * 20 + 1), F, count=20, offset=1).reshape(4, 5)

# (call, exception, substring of the message)
BAD_CALLS = [
    # type / dtype
    (lambda: ops.relu_forward(X.tolist()), TypeError, "numpy.ndarray"),
    (lambda: ops.relu_forward(X.astype(np.float64)), TypeError, "float32, got float64"),
    (lambda: ops.relu_forward(X, out=np.empty((4, 5), np.float64)), TypeError, "out"),
    (lambda: ops.dense_forward(X, W.astype(np.float16)), TypeError, "weight"),
    (lambda: ops.softmax_cross_entropy(G, LAB.astype(F)), TypeError, "integer dtype"),
    (lambda: ops.gather_u8(X), TypeError, "uint8"),
    (lambda: ops.gather_f32(X, np.array([0.0])), TypeError, "idx"),
    (lambda: ops.dropout_backward(X, X, 0.5), TypeError, "mask"),
    (lambda: ops.dropout_forward(X, 0.5, 1.5), TypeError, "seed"),
    (lambda: ops.adam_update(X.copy(), X, X.copy(), X.copy(), 1.0), TypeError, "step"),
    # rank
    (lambda: ops.dense_forward(X.ravel(), W), ValueError, "x must be 2-D, got shape (20,)"),
    (lambda: ops.dense_forward(X, W, B[None]), ValueError, "bias must be 1-D"),
    (lambda: ops.softmax(X.ravel()), ValueError, "2-D"),
    (lambda: ops.gather_u8(np.zeros(5, np.uint8)), ValueError, "at least 2-D"),
    # shape (messages print expected and actual)
    (lambda: ops.dense_forward(X, a32(3, 4)), ValueError, "weight has shape (3, 4), expected"),
    (lambda: ops.dense_forward(X, W, a32(4)), ValueError, "bias has shape (4,), expected"),
    (lambda: ops.dense_forward(X, W, out=a32(4, 4)), ValueError, "out has shape (4, 4), "
     "expected (4, 3)"),
    (lambda: ops.dense_backward(a32(4, 2), X, W), ValueError, "dout has shape (4, 2)"),
    (lambda: ops.dense_backward(G, X, W, dweight=a32(5, 3)), ValueError, "dweight has shape"),
    (lambda: ops.activation_backward(X, a32(5, 4), "relu"), ValueError, "out_fwd has shape"),
    (lambda: ops.softmax_cross_entropy(G, LAB[:3]), ValueError, "labels has shape (3,)"),
    (lambda: ops.sgd_update(X.copy(), a32(5, 4)), ValueError, "grad has shape (5, 4)"),
    (lambda: ops.adam_update(X.copy(), X, X.copy(), a32(20), 1), ValueError, "v has shape"),
    (lambda: ops.dropout_backward(X, np.ones((4, 4), np.uint8), 0.5), ValueError, "mask"),
    # layout
    (lambda: ops.relu_forward(a32(4, 10)[:, ::2]), ValueError, "C-contiguous"),
    (lambda: ops.dense_forward(X, a32(5, 3).T), ValueError, "C-contiguous"),
    (lambda: ops.relu_forward(X, out=a32(5, 4).T), ValueError, "C-contiguous"),
    (lambda: ops.softmax_cross_entropy(G, (np.arange(8) % 3)[::2]), ValueError, "contiguous"),
    # aliasing
    (lambda: ops.relu_forward(BUF[:20], out=BUF[5:25]), ValueError, "overlap"),
    (lambda: ops.dense_forward(BUF[:20].reshape(4, 5), W, out=BUF[18:30].reshape(4, 3)),
     ValueError, "out must not overlap x"),
    (lambda: ops.dense_backward(G, X, W, dinp=X), ValueError, "dinp must not"),
    (lambda: ops.softmax_cross_entropy(G, LAB, probs=G, dlogits=G), ValueError, "must not"),
    (lambda: _sgd_alias(), ValueError, "must not"),
    (lambda: ops.dropout_forward(BUF[:20], 0.5, 1, out=BUF[1:21]), ValueError, "overlap"),
    (lambda: ops.clip_grad_norm([BUF[:10], BUF[5:15]], 1.0), ValueError, "overlap"),
    # misaligned inputs and outputs
    (lambda: ops.relu_forward(ODD), ValueError, "x is not aligned to its dtype's 4 bytes"),
    (lambda: ops.relu_forward(X, out=ODD_OUT), ValueError, "out is not aligned"),
    (lambda: ops.gemm(ODD, W.T.copy()), ValueError, "a is not aligned"),
    (lambda: ops.gemm(X, W.T.copy(), out=ODD_OUT.ravel()[:12].reshape(4, 3)), ValueError,
     "out is not aligned"),
    (lambda: ops.softmax_cross_entropy(
        G, np.frombuffer(bytes(8 * 4 + 1), np.int64, count=4, offset=1)), ValueError,
     "labels is not aligned"),
    # read-only outputs / in-place arrays
    (lambda: ops.relu_forward(X, out=RO), ValueError, "writeable"),
    (lambda: ops.sgd_update(RO, X), ValueError, "writeable"),
    (lambda: ops.scale_inplace(RO, 2.0), ValueError, "writeable"),
    # values
    (lambda: ops.activation_forward(X, "gelu"), ValueError, "unknown activation"),
    (lambda: ops.leaky_relu_forward(X, -0.1), ValueError, "alpha"),
    (lambda: ops.softmax_cross_entropy(G, np.array([0, 1, 3, 1])), ValueError, "[0, 3)"),
    (lambda: ops.softmax_cross_entropy(G, np.array([0, -1, 2, 1])), ValueError, "[0, 3)"),
    (lambda: ops.softmax_cross_entropy(G, LAB, 1.5), ValueError, "label_smoothing"),
    (lambda: ops.gather_f32(X, np.array([0, 4])), ValueError, "outside [0, 4)"),
    (lambda: ops.gather_f32(X, np.array([-1])), ValueError, "outside"),
    (lambda: ops.dropout_forward(X, 1.0, 1), ValueError, "[0, 1)"),
    (lambda: ops.dropout_forward(X, -0.1, 1), ValueError, "[0, 1)"),
    (lambda: ops.dropout_forward(X, 0.5, -1), ValueError, "seed"),
    (lambda: ops.hash64(0, 2**64, 0), ValueError, "stream"),
    (lambda: ops.sgd_update(X.copy(), X, None, momentum=0.9), ValueError, "velocity"),
    (lambda: ops.sgd_update(X.copy(), X, nesterov=True), ValueError, "nesterov"),
    (lambda: ops.adam_update(X.copy(), X, X.copy(), X.copy(), 0), ValueError, "step"),
    (lambda: ops.adam_update(X.copy(), X, X.copy(), X.copy(), 2**70), ValueError,
     "step counts from 1 (to 2**62)"),
    (lambda: ops.adam_update(X.copy(), X, X.copy(), X.copy(), 1, beta1=1.0), ValueError,
     "beta"),
    (lambda: ops.rmsprop_update(X.copy(), X, X.copy(), lr=float("nan")), ValueError, "lr"),
    (lambda: ops.clip_grad_norm([X.copy()], 0.0), ValueError, "max_norm"),
    (lambda: ops.dense_backward(G, X, W, accumulate=True), ValueError, "dweight"),
    (lambda: ops.gemm(X, W), ValueError, "inner dimensions"),
    (lambda: ops.gemm(X, W, trans_b="no"), TypeError, "trans_b must be a bool, got 'no'"),
    (lambda: ops.gemm_ref(X.T.copy(), W.T.copy(), trans_a=2), TypeError, "trans_a must be a bool"),
    # values finite in float64 but not in the float32 the kernels take (they were inf there)
    (lambda: ops.sgd_update(X.copy(), X, lr=1e39), ValueError, "lr must be finite in float32"),
    (lambda: ops.adam_update(X.copy(), X, X.copy(), X.copy(), 1, weight_decay=1e39),
     ValueError, "weight_decay must be finite in float32"),
    (lambda: ops.gather_u8(np.zeros((2, 3), np.uint8), scale=1e300), ValueError,
     "scale must be finite in float32"),
    (lambda: ops.leaky_relu_forward(X, alpha=1e39), ValueError, "finite in float32"),
    # ... and a fraction that rounds to 1 there
    (lambda: ops.adam_update(X.copy(), X, X.copy(), X.copy(), 1, beta2=0.99999999999),
     ValueError, "beta"),
    # an optimizer's eps below float32's smallest normal number is flushed to 0: 0 / 0
    (lambda: ops.adam_update(X.copy(), X, X.copy(), X.copy(), 1, eps=1e-39), ValueError,
     "eps must be at least 1.18e-38"),
    (lambda: ops.rmsprop_update(X.copy(), X, X.copy(), eps=0.0), ValueError, "eps"),
    # clipping's eps (a negative one flipped the gradients' sign, a NaN one made them NaN)
    (lambda: ops.clip_grad_norm([X.copy()], 1.0, eps=-10.0), ValueError, "eps"),
    (lambda: ops.clip_grad_norm([X.copy()], 1.0, eps=float("nan")), ValueError, "eps"),
    # a negative rate climbs the loss, a negative penalty or decay rewards large weights
    # (accepted before, as only l1 was checked; PyTorch refuses them too)
    (lambda: ops.sgd_update(X.copy(), X, lr=-0.1), ValueError, "lr must be >= 0"),
    (lambda: ops.sgd_update(X.copy(), X, l2=-5.0), ValueError, "l2 must be >= 0"),
    (lambda: ops.rmsprop_update(X.copy(), X, X.copy(), lr=-1e-3), ValueError,
     "lr must be >= 0"),
    (lambda: ops.rmsprop_update(X.copy(), X, X.copy(), l2=-1.0), ValueError, "l2 must be >= 0"),
    (lambda: ops.adam_update(X.copy(), X, X.copy(), X.copy(), 1, lr=-0.1), ValueError,
     "lr must be >= 0"),
    (lambda: ops.adam_update(X.copy(), X, X.copy(), X.copy(), 1, weight_decay=-100.0),
     ValueError, "weight_decay must be >= 0"),
]


def _sgd_alias():
    p = X.copy()
    ops.sgd_update(p, p)


@pytest.mark.parametrize("i", range(len(BAD_CALLS)))
def test_bad_call(i):
    call, exc, msg = BAD_CALLS[i]
    with pytest.raises(exc) as info:
        call()
    assert msg in str(info.value), str(info.value)


def test_dense_out_may_not_alias_input():
    x = a32(3, 3)
    with pytest.raises(ValueError, match="out must not be the same array as x"):
        ops.dense_forward(x, a32(3, 3), out=x)


def test_label_error_writes_nothing():
    probs = np.full((4, 3), np.nan, F)
    dlogits = np.full((4, 3), 7.0, F)
    with pytest.raises(ValueError):
        ops.softmax_cross_entropy(G, np.array([0, 1, 2, 3]), probs=probs, dlogits=dlogits)
    assert np.isnan(probs).all() and (dlogits == 7.0).all()
    # in place: the logits survive too
    logits = G.copy()
    with pytest.raises(ValueError):
        ops.softmax_cross_entropy(logits, np.array([9, 0, 0, 0]), dlogits=logits)
    np.testing.assert_array_equal(logits, G)


def test_validation_happens_before_in_place_updates():
    p = X.copy()
    with pytest.raises(ValueError):
        ops.adam_update(p, X, X.copy(), a32(2), 1)
    np.testing.assert_array_equal(p, X)


def test_non_arrays_and_none_are_rejected_cleanly():
    for bad in (None, 3.0, "x", [1.0]):
        with pytest.raises(TypeError):
            ops.sum_squares(bad)
        with pytest.raises(TypeError):
            ops.dense_forward(bad, W)
