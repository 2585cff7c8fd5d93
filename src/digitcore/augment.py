"""Training-time deformations of digit images: :class:`Augment` and the named recipes.

``Trainer(..., augment="elastic")`` deforms every training image anew each time it is
drawn into a batch (never validation or test images), which is what takes fully
connected networks past ~98.6% on MNIST (Simard et al. 2003: 784-800-10, 99.3% with
elastic distortions). The kernels are :func:`digitcore.ops.augment` and
:func:`digitcore.ops.elastic_bank`; this module holds the parameters.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from digitcore._checks import all_finite, square_images

__all__ = ["Augment", "AUGMENTS", "get_augment", "parse_augment", "TTA", "check_tta",
           "model_tta", "tta_views", "mean_proba", "tta_mean_proba", "tta_answers"]


@dataclasses.dataclass(frozen=True)
class Augment:
    """Parameters of the random deformation of each training image.

    Each image draws every parameter uniformly in ``[-max, max]``; 0 turns a part off.
    All parts compose into one inverse map and one bilinear pass.

    Parameters
    ----------
    rotate : float
        Degrees of rotation, in [0, 180].
    shear : float
        Degrees of horizontal shear, in [0, 80].
    scale : float
        Relative scale of each axis, drawn separately: factors in [1 - scale, 1 + scale].
    translate : float
        Pixels of shift along each axis, drawn separately.
    alpha : float
        Elastic distortion (Simard): pixels of displacement per unit of the smoothed
        field; 0 turns it off. Simard's values: alpha 34-38 with sigma 4-6.
    sigma : float
        Standard deviation (pixels) of the Gaussian that smooths the elastic fields.
    thickness : float
        Stroke thickness change, in [0, 1): an intensity curve that thickens
        (``v / (1 - u)``) or thins (``(v + u) / (1 + u)``) anti-aliased strokes, u drawn
        in [-thickness, thickness].
    faint : float
        In [0, 1): resampled values below ``faint`` times the value range (255 for uint8,
        1 for floats), after the stroke curve, become 0. Bilinear resampling spreads a
        faint rim around every stroke (about 15% more non-zero pixels on MNIST with
        "full"), which the sparse first layer pays for; a small ``faint`` trims it. With
        "full"'s other fields, 0.06 left 156 non-zero pixels an image of 174 and the
        augmented epoch of 784-800-10 7.5% longer than a plain one (on a Xeon, where
        "full" alone read 13.0%, at an earlier commit) but cost the `committee` preset's
        networks ~0.05 pt on a validation split, so no named recipe sets it (README,
        "Augmentation").
    bank_size : int
        Side of the periodic bank of smoothed fields that images take elastic windows
        from (a power of two); redrawn every epoch. Its cost grows as bank_size squared
        times sigma: ~2 ms an epoch at 128 and sigma 4, over a minute and ~270 MB at the
        largest values (4096, sigma 64).
    """

    rotate: float = 0.0
    shear: float = 0.0
    scale: float = 0.0
    translate: float = 0.0
    alpha: float = 0.0
    sigma: float = 4.0
    thickness: float = 0.0
    faint: float = 0.0
    bank_size: int = 128

    def __post_init__(self):
        checks = {"rotate": (0, 180, False), "shear": (0, 80, False), "scale": (0, 1, True),
                  "translate": (0, 1e6, False), "alpha": (0, 1e6, False),
                  "sigma": (0, 64, False), "thickness": (0, 1, True),
                  "faint": (0, 1, True)}
        for name, (lo, hi, open_hi) in checks.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise TypeError(f"Augment.{name} must be a number, got {v!r}")
            # in the float32 the kernels take too: 0.99999999 rounds to 1, 1e-46 to 0
            ok = all(math.isfinite(f) and (lo < f if name == "sigma" else lo <= f) and
                     (f < hi if open_hi else f <= hi) for f in _double_and_single(v))
            if not ok:
                raise ValueError(f"Augment.{name} must be in {'(' if name == 'sigma' else '['}"
                                 f"{lo:g}, {hi:g}{')' if open_hi else ']'} (also as a float32), "
                                 f"got {v!r}")
        b = self.bank_size
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1 or \
                b > 4096 or b & (b - 1):
            raise ValueError(f"Augment.bank_size must be a power of two in [1, 4096], "
                             f"got {b!r}")

    @property
    def elastic(self) -> bool:
        return self.alpha > 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def bank(self, seed=0, stream=0):
        """The (2, S, S) smoothed fields images take their elastic windows from, or None."""
        if not self.elastic:
            return None
        from digitcore.ops import elastic_bank

        return elastic_bank(self.bank_size, self.sigma, seed, stream)

    def kernel_args(self) -> dict:
        return {"rotate": self.rotate, "shear": self.shear, "scale": self.scale,
                "translate": self.translate, "alpha": self.alpha,
                "thickness": self.thickness, "faint": self.faint}

    def apply(self, images, seed=0, stream=0):
        """Deformed copies of ``images`` ((n, H, W), or (n, F) with F a square; uint8 or
        float in [0, 1]), in the same shape and dtype (float32 for floats); the same
        (seed, stream) gives the same images. The kernel and the parameters training
        deforms each batch with (training draws its own seeds and streams)."""
        from digitcore.ops import augment

        x = np.asarray(images)
        shape = x.shape
        x3 = square_images(x, "images")
        if x3.dtype != np.uint8:
            if x3.dtype.kind not in "f":
                raise TypeError(f"images have dtype {x3.dtype}: pass uint8 pixels (0-255) or "
                                f"floats scaled to [0, 1]")
            x3 = np.ascontiguousarray(x3, dtype=np.float32)
            if not all_finite(x3):  # (training refuses such input too)
                raise ValueError("images contain NaN or infinite values")
            check_augmentable(x3, "images")
        bank = self.bank(seed, stream)
        out = augment(np.ascontiguousarray(x3), bank=bank, seed=seed, stream=stream,
                      **self.kernel_args())
        return out.reshape(shape)


def _double_and_single(v):
    """v as a float, and as the float32 it rounds to (inf past either's range)."""
    try:
        f = float(v)
    except OverflowError:
        return (math.inf,)
    with np.errstate(over="ignore"):
        return f, float(np.float32(f))


def check_augmentable(x, name="x"):
    """The augmentation kernel deforms pictures on a background of 0 and clamps strokes to
    the value range: uint8 pixels, or floats in [0, 1]. Standardized floats (a background
    of -0.42, strokes up to 2.8) or floats in 0-255 would come out with 0 where the image
    was moved away from and their strokes clamped to 1: refused, naming the way that
    works."""
    if x.dtype == np.uint8 or x.size == 0:
        return
    lo, hi = float(x.min()), float(x.max())
    # (a resampled picture may overshoot [0, 1] a little: Lanczos gives -0.01 or 1.02)
    if lo < -0.1 or hi > 1.1:
        raise ValueError(
            f"augment deforms pictures whose background is 0: uint8 pixels, or floats in "
            f"[0, 1]; the values of {name} lie in [{lo:.3g}, {hi:.3g}]. To train on "
            f"standardized inputs, pass the pixels and let the network standardize them "
            f"(Network(..., input_mean=..., input_std=...)); scale 0-255 floats by 1/255")


# Named recipes. "affine" and "elastic" follow Ciresan et al. (2010) and Simard et al.
# (2003); the strengths were tuned on a validation split of MNIST's training images
# (see presets.py).
AUGMENTS = {
    "affine": Augment(rotate=12.0, shear=12.0, scale=0.12, translate=2.0),
    "elastic": Augment(alpha=34.0, sigma=4.0),
    "thickness": Augment(thickness=0.4),
    "full": Augment(rotate=12.0, shear=12.0, scale=0.12, translate=2.0, alpha=34.0,
                    sigma=4.0, thickness=0.3),
}


def get_augment(spec):
    """None, a name from :data:`AUGMENTS`, a dict of :class:`Augment` fields, or an
    Augment -> an Augment or None."""
    if spec is None or spec is False or spec == "none":
        return None
    if isinstance(spec, Augment):
        return spec
    if isinstance(spec, str):
        try:
            return AUGMENTS[spec]
        except KeyError:
            raise ValueError(f"unknown augmentation {spec!r}; choose one of "
                             f"{sorted(AUGMENTS)} or 'none', or give an Augment") from None
    if isinstance(spec, dict):
        try:
            return Augment(**spec)
        except TypeError as exc:
            raise ValueError(f"bad augmentation parameters {spec!r}: {exc}") from None
    raise TypeError(f"augment must be None, a name ({sorted(AUGMENTS)}), a dict or an "
                    f"Augment, got {type(spec).__name__}")


def parse_augment(text):
    """An augmentation from its text form, as ``digitcore train --augment`` takes it: a
    name from :data:`AUGMENTS`, "none", or comma-separated ``key=number`` pairs of
    :class:`Augment`'s fields ("rotate=10,alpha=34,faint=0.06") -> an Augment or None.
    Raises ValueError naming what is wrong."""
    text = text.strip()
    if "=" not in text:
        return get_augment(text)
    spec = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        key = key.strip()
        if key in spec:
            raise ValueError(f"{key} is given twice in {text!r}")
        try:
            spec[key] = int(value) if key == "bank_size" else float(value)
        except ValueError:
            raise ValueError(f"expected key=number pairs, got {part!r} in {text!r}") from None
    return get_augment(spec)


# Test-time augmentation: the views of each image whose mean class probability answers
# (``predict_proba(x, tta="shift")``). "shift": the image, then it moved one pixel up,
# down, left and right, as (rows, columns) offsets. Chosen on the validation split
# of benchmarks/tune_presets.py (first 50,000 training images / last 10,000): four
# 784-800-128-10 networks trained with augment "full" read 99.29-99.40% alone and
# 99.44-99.50% with these five views (+0.10 to +0.16 pt each); views with 1/2-pixel
# shifts, +-8 degree rotations, 10% scalings or shears gained less (+0.03 to +0.11 pt).
# The `augmented` preset's 784-800-256-10 read 99.34 / 99.45 / 99.37% there alone and
# 99.45 / 99.46 / 99.47% with the shifts (seeds 0-2).
# For networks trained on deformed digits: one trained on centred digits alone has
# never seen a shifted one.
TTA = {"shift": ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))}


def check_tta(tta):
    """None (or "none") -> None; a name of :data:`TTA` -> that name; else ValueError."""
    if tta is None or tta == "none":
        return None
    if isinstance(tta, str) and tta in TTA:
        return tta
    raise ValueError(f"tta must be None, 'none' or one of {sorted(TTA)}, got {tta!r:.50}")


def model_tta(model, tta=None):
    """The test-time augmentation to read with: ``tta`` when given ("none" for none), else
    the one ``model`` was trained to be scored with (its ``training_summary["tta"]``, which
    ``digitcore train`` records), else None. A ValueError names an unknown one (a file
    written by a later version). What ``digitcore evaluate``, ``predict`` and ``serve``
    apply."""
    if tta is None:
        summary = getattr(model, "training_summary", None)
        tta = summary.get("tta") if isinstance(summary, dict) else None
    return check_tta(tta)


def tta_views(x, tta):
    """The views of images ``x`` ((n, H, W), or (n, F) with F a square) that test-time
    augmentation ``tta`` (a name of :data:`TTA`) averages over, each in ``x``'s shape and
    dtype: ``x`` itself, then each shifted copy, whose vacated row or column repeats the
    image's edge (the background, whatever its value)."""
    name = check_tta(tta)
    shifts = TTA[name] if name else ((0, 0),)
    x = np.asarray(x)
    images = square_images(x, "x")
    h, w = images.shape[1:]
    views = []
    for dy, dx in shifts:
        if dy == 0 and dx == 0:
            views.append(x)
            continue
        rows = np.clip(np.arange(h) - dy, 0, h - 1)
        cols = np.clip(np.arange(w) - dx, 0, w - 1)
        views.append(images[:, rows][:, :, cols].reshape(x.shape))
    return views


def mean_proba(probas):
    """The mean of float32 probability arrays (an iterable, e.g. a committee's members' or
    test-time views' answers): summed in float64 in the iterable's order, divided once,
    rounded to float32 (so it depends on nothing else)."""
    total, k = None, 0
    for p in probas:
        total = p.astype(np.float64) if total is None else total + p
        k += 1
    if k == 0:
        raise ValueError("mean_proba needs at least one array of probabilities")
    total /= k
    return total.astype(np.float32)


def tta_mean_proba(predict_proba, x, tta):
    """The mean (:func:`mean_proba`) over :func:`tta_views` of ``predict_proba(view)``."""
    return mean_proba(predict_proba(view) for view in tta_views(x, tta))


def tta_answers(answers, x, tta):
    """``answers(view)`` gives a view's float32 probabilities and their float64 logs from
    one forward pass; over :func:`tta_views` this returns their mean (:func:`mean_proba`,
    as :func:`tta_mean_proba` gives it) and the log of that mean in float64
    (:func:`log_mean_exp`: finite where a view's float32 probability underflows to 0),
    so an evaluation takes each view once."""
    probas, logs = [], []
    for view in tta_views(x, tta):
        p, lp = answers(view)
        probas.append(p)
        logs.append(lp)
    return mean_proba(probas), log_mean_exp(np.stack(logs))


def log_mean_exp(s):
    """log(mean(exp(s), axis=0)) of a float64 stack of log probabilities (k, n, classes),
    taken off the largest term, so a term whose exp underflows still counts (the mean of
    TTA views here, of a committee's members in :mod:`digitcore.committee`)."""
    top = s.max(axis=0)
    return top + np.log(np.exp(s - top).sum(axis=0)) - np.log(len(s))
