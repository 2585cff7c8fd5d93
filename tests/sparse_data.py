"""Synthetic sparse digits for the first layer's sparse-path tests (test_sparse.py,
test_sparse_offset.py, test_full_batch.py): each of ``k`` classes has a prototype set of
pixels; an image keeps about two thirds of its class's pixels, each a random 1-255."""

from __future__ import annotations

import numpy as np


def sparse_digits(rng, *, n, d, k, density):
    """``(x, y)``: ``n`` uint8 'images' of ``d`` pixels, about ``density`` of them non-zero
    (class-dependent), and their labels in ``[0, k)``."""
    proto = rng.random((k, d)) < density * 1.5
    y = rng.integers(0, k, size=n)
    keep = proto[y] & (rng.random((n, d)) < 0.66)
    x = np.where(keep, rng.integers(1, 256, size=(n, d)), 0).astype(np.uint8)
    return x, y
