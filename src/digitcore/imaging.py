"""Turn a picture of a handwritten digit into an MNIST-like 28x28 image.

MNIST digits are light on a black background, scaled (keeping their aspect
ratio) to fit a 20x20 box with anti-aliasing, and placed in a 28x28 field so
that their centre of mass is at the centre. :func:`preprocess_image` does the
same to a photo, a scan or a drawing:

1. read it (file via Pillow, or a NumPy array) as grey levels in [0, 1],
   compositing transparent pixels as background;
2. detect the background from the border pixels' median and invert
   dark-on-light images;
3. subtract the background, drop levels within the paper's noise (estimated
   on the border) or below 12% of the strongest ink, stretch the ink to full
   intensity;
4. crop to the ink's bounding box, resize to fit 20x20 (area averaging when
   shrinking, bilinear when enlarging, in NumPy);
5. shift so the centre of mass lands on pixel (14, 14).
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["preprocess_image", "load_image", "resize"]

BOX = 20
FIELD = 28
# After removing the background and stretching the ink to [0, 1], levels below this
# are paper texture, JPEG noise or shadows rather than ink.
NOISE_FLOOR = 0.12
# If the brightest ink is less than this far from the background, there is no digit.
MIN_CONTRAST = 0.08
# Longer image sides are block-averaged down to at most this first.
MAX_SIDE = 1024
# Levels within this many noise sigmas (estimated on the border) of the paper are paper.
NOISE_SIGMAS = 5.0


def _pillow():
    try:
        from PIL import Image, ImageOps
    except ImportError as exc:
        raise ImportError(
            "reading image files needs Pillow: pip install 'digitcore[image]' "
            "(or pass a NumPy array)") from exc
    return Image, ImageOps


def load_image(path) -> np.ndarray:
    """Read an image file into an array (no other processing).

    Parameters
    ----------
    path : str or os.PathLike
        Any format Pillow reads (PNG, JPEG, GIF, BMP, WebP, ...). The EXIF
        orientation of photos is applied.

    Returns
    -------
    ndarray
        uint8 ``(h, w)`` for grey images, ``(h, w, 3)`` RGB, or ``(h, w, 4)``
        RGBA when the image has transparency; float64 ``(h, w)`` in [0, 1]
        for 16-bit and floating-point images.

    Raises
    ------
    ValueError
        If the file cannot be read as an image (the message names the path).
    ImportError
        If Pillow is not installed.
    """
    Image, ImageOps = _pillow()
    fspath = os.fspath(path)
    try:
        with Image.open(fspath) as img:
            img.load()
            try:
                img = ImageOps.exif_transpose(img)
            except Exception:  # broken EXIF must not hide a readable image
                pass
            mode = img.mode
            if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                arr = np.asarray(img, dtype=np.float64)
                top = 1.0 if mode == "F" else (65535.0 if arr.max(initial=0) > 255 else 255.0)
                return np.clip(arr / top, 0.0, 1.0)
            if mode == "L":
                return np.asarray(img, dtype=np.uint8)
            has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info
            return np.asarray(img.convert("RGBA" if has_alpha else "RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise ValueError(f"{fspath}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{fspath}: is a directory, not an image file") from None
    except Exception as exc:  # Pillow raises many types for a bad file
        raise ValueError(f"{fspath}: cannot read image: {exc}") from exc


def _divisor(arr: np.ndarray) -> float:
    """What to divide `arr` by to get levels in [0, 1]; validates the values."""
    kind = arr.dtype.kind
    if kind == "b":
        return 1.0
    if kind == "u" or kind == "i":
        if arr.dtype.itemsize == 1 and kind == "u":
            return 255.0
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0:
            raise ValueError(f"image has negative pixel values (min {lo})")
        if hi <= 255:
            return 255.0
        if hi <= 65535:
            return 65535.0
        raise ValueError(f"image pixel values up to {hi}: expected 8-bit (0-255) or 16-bit")
    if kind == "f":
        if not np.isfinite(arr).all():
            raise ValueError("image contains NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1e-6 or hi > 1.0 + 1e-6:
            raise ValueError(
                f"float image values must be in [0, 1], got range [{lo:.4g}, {hi:.4g}] "
                "(pass uint8 for 0-255 pixels)")
        return 1.0
    raise ValueError(f"image has unsupported dtype {arr.dtype}")


def _to_float(arr: np.ndarray) -> np.ndarray:
    """Pixel values in [0, 1], float64, same shape except that images larger than
    MAX_SIDE are first shrunk by whole-block averaging (the final resize averages
    areas anyway; this just keeps a 12-megapixel photo from costing gigabytes)."""
    div = _divisor(arr)
    f = -(-max(arr.shape[0], arr.shape[1]) // MAX_SIDE)
    if f > 1:
        h, w = arr.shape[0] // f, arr.shape[1] // f
        if h == 0 or w == 0:
            f = 1
        else:
            block = arr[:h * f, :w * f].reshape(h, f, w, f, *arr.shape[2:])
            out = block.mean(axis=(1, 3), dtype=np.float32).astype(np.float64)
            return np.clip(out / div, 0.0, 1.0)
    return np.clip(arr.astype(np.float64) / div, 0.0, 1.0)


def _grey_and_alpha(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        return _to_float(arr), None
    if arr.ndim != 3 or arr.shape[2] not in (2, 3, 4):
        raise ValueError(
            f"image must have shape (h, w), (h, w, 3) or (h, w, 4), got {arr.shape}")
    x = _to_float(arr)
    if x.shape[2] in (1, 2):
        grey = x[:, :, 0]
    else:
        # ITU-R BT.601 luma, what Pillow's convert("L") uses
        grey = x[:, :, 0] * 0.299 + x[:, :, 1] * 0.587 + x[:, :, 2] * 0.114
    alpha = x[:, :, -1] if x.shape[2] in (2, 4) else None
    return grey, alpha


def _composite(grey: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Put transparent pixels on a background that contrasts with the visible strokes."""
    if alpha is None or alpha.min() >= 1.0:
        return grey
    weight = alpha.sum()
    if weight == 0:
        raise ValueError("image is blank: every pixel is fully transparent")
    # A drawing with a transparent background: what is opaque is the ink, so the
    # background is the opposite of the ink's mean level (black strokes -> white paper).
    ink_level = float((grey * alpha).sum() / weight)
    background = 1.0 if ink_level < 0.5 else 0.0
    return grey * alpha + background * (1.0 - alpha)


def _border(x: np.ndarray) -> np.ndarray:
    """The outermost ring of pixels (all pixels of a tiny image)."""
    if x.shape[0] <= 2 or x.shape[1] <= 2:
        return x.ravel()
    return np.concatenate([x[0, :], x[-1, :], x[1:-1, 0], x[1:-1, -1]])


def _resize_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix resampling one axis: area averaging or bilinear."""
    w = np.zeros((n_out, n_in))
    scale = n_in / n_out
    if n_out <= n_in:
        # output pixel o covers input span [o*scale, (o+1)*scale); weight = overlap / scale
        edges = np.arange(n_out + 1) * scale
        for o in range(n_out):
            lo, hi = edges[o], edges[o + 1]
            i0, i1 = int(np.floor(lo)), min(int(np.ceil(hi)), n_in)
            idx = np.arange(i0, i1)
            overlap = np.minimum(idx + 1, hi) - np.maximum(idx, lo)
            w[o, i0:i1] = np.clip(overlap, 0, None) / scale
    else:
        # bilinear with pixel centres aligned (half-pixel convention, like Pillow)
        centres = (np.arange(n_out) + 0.5) * scale - 0.5
        centres = np.clip(centres, 0, n_in - 1)
        i0 = np.floor(centres).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        frac = centres - i0
        w[np.arange(n_out), i0] += 1 - frac
        w[np.arange(n_out), i1] += frac
    return w


def resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a grey image with NumPy only.

    Each axis is resampled separately: area averaging where it shrinks (every
    input pixel contributes in proportion to its overlap, which anti-aliases
    like MNIST's preparation), bilinear interpolation where it grows.

    Parameters
    ----------
    image : ndarray, shape (h, w), float
    shape : (int, int)
        Output ``(height, width)``, each >= 1.

    Returns
    -------
    ndarray, float64, shape `shape`
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2 or 0 in image.shape:
        raise ValueError(f"resize needs a non-empty 2-D image, got shape {image.shape}")
    h, w = (int(s) for s in shape)
    if h < 1 or w < 1:
        raise ValueError(f"resize target must be at least 1x1, got {shape}")
    return _resize_weights(image.shape[0], h) @ image @ _resize_weights(image.shape[1], w).T


def _centre_of_mass(x: np.ndarray) -> tuple[float, float]:
    total = x.sum()
    rows = np.arange(x.shape[0]) @ x.sum(axis=1) / total
    cols = np.arange(x.shape[1]) @ x.sum(axis=0) / total
    return float(rows), float(cols)


def preprocess_image(image) -> np.ndarray:
    """Prepare a handwritten digit like MNIST: 28x28, light on dark, centred.

    Parameters
    ----------
    image : str, os.PathLike or ndarray
        An image file (needs Pillow: ``pip install 'digitcore[image]'``) or an
        array of any size: grey ``(h, w)``, RGB ``(h, w, 3)`` or RGBA
        ``(h, w, 4)``, uint8 (0-255) or float in [0, 1]. Dark ink on light
        paper and light ink on dark are both fine; transparent pixels count
        as background.

    Returns
    -------
    ndarray, uint8, shape (28, 28)
        Background 0, strongest ink 255; the digit fits a 20x20 box (its
        longer side is 20 pixels) and its centre of mass is at (14, 14)
        (within a pixel; a digit whose centre of mass is far off its box's
        centre is moved only as far as keeps all its ink in the field).

    Raises
    ------
    ValueError
        For an unreadable file (the message names the path), a bad array
        shape or dtype, or an image with no visible ink.
    """
    if isinstance(image, (str, os.PathLike)):
        arr = load_image(image)
        where = f"{os.fspath(image)}: "
    else:
        if isinstance(image, (bytes, bytearray)):
            raise ValueError("pass a file path or a NumPy array, not bytes")
        arr = np.asarray(image)
        where = ""
    if arr.size == 0:
        raise ValueError(f"{where}image is empty (shape {arr.shape})")
    try:
        grey, alpha = _grey_and_alpha(arr)
        x = _composite(grey, alpha)
    except ValueError as exc:
        raise ValueError(f"{where}{exc}") from None

    border = _border(x)
    background = float(np.median(border))
    if background > 0.5:  # dark ink on light paper: make it light on dark like MNIST
        x = 1.0 - x
        border = 1.0 - border
        background = 1.0 - background
    # robust noise level of the paper (MAD of the border, scaled to a Gaussian sigma)
    noise = 1.4826 * float(np.median(np.abs(border - background)))
    x = np.clip(x - background, 0.0, None)
    peak = float(x.max())
    if peak < max(MIN_CONTRAST, NOISE_SIGMAS * noise):
        raise ValueError(f"{where}image is blank: no ink stands out from the background")
    x[x < max(NOISE_FLOOR * peak, NOISE_SIGMAS * noise)] = 0.0
    x /= peak

    rows = np.flatnonzero(x.any(axis=1))
    cols = np.flatnonzero(x.any(axis=0))
    x = x[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = x.shape
    scale = BOX / max(h, w)
    new_h = min(BOX, max(1, int(round(h * scale))))
    new_w = min(BOX, max(1, int(round(w * scale))))
    small = resize(x, (new_h, new_w))
    # a thin stroke averaged over a big area gets faint; MNIST strokes reach full ink
    small /= small.max()

    cy, cx = _centre_of_mass(small)
    top = int(round(FIELD / 2 - cy))
    left = int(round(FIELD / 2 - cx))
    top = min(max(top, 0), FIELD - new_h)
    left = min(max(left, 0), FIELD - new_w)
    out = np.zeros((FIELD, FIELD))
    out[top:top + new_h, left:left + new_w] = small
    return np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)
