"""Exception types raised by digitcore.

The errors of digitcore's own making subclass :class:`DigitcoreError`: a data file
(:class:`DatasetError`), a model file (:class:`ModelFormatError`), a checkpoint
(``digitcore.checkpoint.CheckpointError``), a kernel (:class:`KernelError`), a diverged
training run (:class:`TrainingDivergedError`), a picture without a digit
(:class:`NoDigitError`); the ones about bad input are also ``ValueError``, so
``except ValueError`` keeps working. A bad argument (an unknown activation, a negative
learning rate, a feature count that does not match the network) is a plain ``ValueError``
or ``TypeError``, and a missing file a ``FileNotFoundError``, as in NumPy and the standard
library.
"""

from __future__ import annotations

__all__ = ["DigitcoreError", "DatasetError", "ModelFormatError", "KernelError",
           "TrainingDivergedError", "NoDigitError"]


class DigitcoreError(Exception):
    """Base class of digitcore's own errors (files, kernels, divergence, no digit); bad
    arguments raise plain ValueError or TypeError."""


class DatasetError(DigitcoreError, ValueError):
    """A data file is missing, malformed, truncated or fails verification."""


class ModelFormatError(DigitcoreError, ValueError):
    """A model file is malformed or does not describe a digitcore network."""


class KernelError(DigitcoreError, RuntimeError):
    """A compute kernel failed for a reason that is not the caller's input."""


class TrainingDivergedError(DigitcoreError, FloatingPointError):
    """The training loss became NaN or infinite (usually: learning rate too high)."""


class NoDigitError(DigitcoreError, ValueError):
    """A picture holds no digit to read.

    ``reason`` says why: ``"blank"`` (no ink), ``"too_small"`` (a dot, specks, or a
    drawing too small to read) or ``"not_a_digit"`` (a solid blob, specks or noise, or
    strokes that do not look like a digit).
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
