"""Public compute ops of digitcore: thin names over the compiled kernels.

Every op takes float32, C-contiguous, aligned NumPy arrays (uint8 for :func:`gather_u8`
inputs and dropout masks, integers for labels and indices), validates shapes, dtypes,
layout, alignment and aliasing at the boundary (``TypeError`` for a wrong type or dtype, ``ValueError`` for a wrong
rank, shape, layout, overlap or value, each naming the argument and printing the shapes),
releases the GIL while the C kernel runs, and returns NumPy arrays. Functions whose name or
docstring says "in place" update their array arguments and return None (or a scalar).

:mod:`digitcore.ops_ref` has a NumPy reference of every op with the same signature.

Layer ops
---------
::

    activation_forward(x, kind, alpha=0.01, out=None)
    activation_backward(dout, out_fwd, kind, alpha=0.01, out=None)
    relu_forward / leaky_relu_forward / sigmoid_forward / tanh_forward (and ``*_backward``)
    dense_forward(x, weight, bias=None, activation=None, alpha=0.01, out=None)
    dense_backward(dout, x, weight, *, compute_dinp=True, compute_dbias=True, accumulate=False,
                   dinp=None, dweight=None, dbias=None) -> (dinp, dweight, dbias)
    softmax(logits, out=None)
    softmax_cross_entropy(logits, labels, label_smoothing=0.0, *, probs=None, dlogits=None,
                          return_n_correct=False) -> (loss, probs, dlogits[, n_correct])
    sigmoid_binary_cross_entropy(logits, targets, *, probs=None, dlogits=None,
                                 return_n_correct=False) -> (loss, probs, dlogits[, n_correct])
    gather_u8(x, idx=None, scale=1/255, shift=0.0, out=None), gather_f32(...)
    dropout_forward(x, p, seed, stream=0, out=None, mask=None) -> (out, mask)
    dropout_backward(dout, mask, p, out=None)
    hash64(seed, stream, i)

Augmentation
------------
::

    elastic_bank(size=128, sigma=4.0, seed=0, stream=0, out=None) -> (2, size, size) fields
    augment(x, idx=None, *, rotate=0.0, shear=0.0, scale=0.0, translate=0.0, alpha=0.0,
            thickness=0.0, faint=0.0, bank=None, seed=0, stream=0, out=None)
            -> images like x[idx]

Optimizer ops (in place)
------------------------
::

    sgd_update(param, grad, velocity=None, lr=0.01, momentum=0.0, nesterov=False, l2=0.0,
               l1=0.0)
    rmsprop_update(param, grad, sq_avg, lr=0.01, rho=0.99, eps=1e-8, l2=0.0, l1=0.0)
    adam_update(param, grad, m, v, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, l2=0.0,
                weight_decay=0.0, l1=0.0)
    sum_squares(x), scale_inplace(x, s), clip_grad_norm(grads, max_norm, eps=1e-12)

GEMM
----
::

    gemm(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out=None), gemm_ref(...)

Examples
--------
>>> import numpy as np
>>> from digitcore import ops
>>> x = np.array([[1.0, -2.0]], dtype=np.float32)
>>> w = np.array([[1.0, 1.0], [0.5, -1.0]], dtype=np.float32)
>>> ops.dense_forward(x, w, activation="relu")
array([[0. , 2.5]], dtype=float32)
"""

from __future__ import annotations

from digitcore._config import _ops

# The compiled module loaded as _config loads it (libgomp's spin setting) and configured
# from DIGITCORE_NUM_THREADS / _KERNEL / _AVX512 / _TEAM before the names below are taken:
# a program that only uses these kernels gets the settings too (a bad one raises here).
_ops()
from digitcore._ops import (  # noqa: E402
    activation_backward,
    activation_forward,
    adam_update,
    augment,
    clip_grad_norm,
    dense_backward,
    dense_forward,
    dropout_backward,
    dropout_forward,
    elastic_bank,
    gather_f32,
    gather_u8,
    gemm,
    gemm_ref,
    hash64,
    leaky_relu_backward,
    leaky_relu_forward,
    relu_backward,
    relu_forward,
    rmsprop_update,
    scale_inplace,
    sgd_update,
    sigmoid_backward,
    sigmoid_binary_cross_entropy,
    sigmoid_forward,
    softmax,
    softmax_cross_entropy,
    sum_squares,
    tanh_backward,
    tanh_forward,
)

__all__ = [
    "gemm", "gemm_ref",
    "activation_forward", "activation_backward",
    "relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
    "sigmoid_forward", "sigmoid_backward", "tanh_forward", "tanh_backward",
    "dense_forward", "dense_backward",
    "softmax", "softmax_cross_entropy", "sigmoid_binary_cross_entropy",
    "gather_u8", "gather_f32",
    "sgd_update", "rmsprop_update", "adam_update",
    "sum_squares", "scale_inplace", "clip_grad_norm",
    "hash64", "dropout_forward", "dropout_backward",
    "elastic_bank", "augment",
]
