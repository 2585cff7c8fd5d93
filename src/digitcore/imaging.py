"""Turn a picture of a handwritten digit into an MNIST-like 28x28 image.

MNIST digits are light on a black background, scaled (keeping their aspect
ratio) to fit a 20x20 box with anti-aliasing, and placed in a 28x28 field so
that their centre of mass is at the centre. :func:`preprocess_image` does the
same to a photo, a scan or a drawing, and is the one place where this happens
(``Network.predict_image``, ``digitcore predict`` and ``digitcore serve`` all
call it):

1. read it (file via Pillow, or a NumPy array) as grey levels in [0, 1] (the
   luma, or the one colour channel where the levels spread far wider: yellow ink
   on white paper), compositing transparent pixels as background, and shrink it
   by area averaging to at most WORK_SIDE pixels a side;
2. decide which side is ink: the sparse extreme against the paper's local level (the
   median of a window wider than a stroke), so that a shadow over half the sheet or a
   frame line cannot turn a thin digit inside out; where the whole picture's median,
   near one end of the range, says otherwise (a thick digit cropped close fills any
   window), or where its rim lies near the light end and dark strokes reach into it
   while the local level says light ink (the paper shows between a bold digit's
   strokes where they reach the edges), or where what it takes for ink covers more than
   INK_AREA_BOTH of the picture inside its rim (a note on a dark desk, a slate on a
   light wall, too small to hold the median), steps 3-9 run both ways and the reading
   the shape check (step 9) takes less for the paper read as ink is kept;
3. estimate the paper, shadows and uneven lighting included, as a grey
   closing (dark ink) or opening (light ink) with a window wider than any pen
   stroke (PAPER_WINDOW); the ink is what differs from it (a top-hat);
4. measure the ink's contrast relative to the paper around it and keep what
   stands above the paper's noise (MAD of the residual; of the paper's pixels alone
   where the ink covers more than INK_SHARE of the picture), above 12% of the
   strongest ink and above INK_CONTRAST; faint straight lines along rows and
   columns (ruled paper) are subtracted first;
5. remove ruled lines, frames and scan borders: rows and columns with ink
   along LINE_COVER of their length that reach past the digit on both sides
   (or come in parallel bands), except where a stroke crosses them (and one band as
   thick as a stroke, at an end of the rest, that reaches just past it: a bold 7's
   top); and a printed
   box drawn around the digit apart from it (a form's field);
6. keep the connected marks that make the digit: the largest, those with at
   least a quarter of its ink within the digit's size of it, pieces of broken
   strokes (4%, or longer than wide) close to it and small marks inside its box,
   repeated while it grows; drop specks;
7. refuse what cannot be a digit (:class:`NoDigitError`): nothing left, marks
   no longer than MIN_EXTENT stroke widths when small in the picture (a dot, specks)
   or BLOB_EXTENT when big (a solid blob; thick-pen digits stay), a scatter of
   specks or noise (marks left out as heavy as the digit, or hundreds kept), or the
   rim of a filled shape wider than the paper's window;
8. crop to the digit, bring its stroke width into MNIST's range, resize to
   fit 20x20 (area averaging when shrinking, bilinear when enlarging) and
   shift so the centre of mass lands on pixel (14, 14);
9. refuse stroke drawings that are not digits (a plus, a minus, an X, a triangle,
   letters): a small network trained on MNIST digits against such drawings and
   against the paper of a picture read as ink (SHAPE_CHECK_FILE, built by
   benchmarks/train_shape_check.py; three classes) scores the 28x28 result, and a
   "not a digit" score (that class against the digit's) above its threshold (set so
   that at most 0.2% of held-out training digits, clean or photographed, reach it)
   is "not_a_digit"; so is a
   picture of two digits side by side, apart (a mark left out in step 6, beside the
   digit, about as dark, at least half its size, that the same check takes for a digit:
   reading one of the two would be a confident guess).

One file for one pipeline: the private helpers below (resizing, running
min/max and discs, connected components, line finding) exist for these nine steps and
are tuned together with them; nothing else uses them.
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path

import numpy as np

from digitcore.errors import ModelFormatError, NoDigitError

__all__ = ["preprocess_image", "not_digit_scores", "shape_check_ready", "load_image", "resize",
           "NoDigitError"]

BOX = 20
FIELD = 28
# After removing the background and stretching the ink to [0, 1], levels below this
# are paper texture, JPEG noise or shadows rather than ink.
NOISE_FLOOR = 0.12
# If the brightest ink is less than this far from the background, there is no digit.
MIN_CONTRAST = 0.08
# Ink is at least this much darker than the paper around it (relative to the paper's
# level): paper grain and a crumpled sheet's soft dips are not ink.
INK_CONTRAST = 0.15
# Longer image sides are block-averaged down to at most this first.
MAX_SIDE = 1024
# The largest image file read, in pixels: a 48-megapixel phone photo or an A4 page scanned
# at 600 dpi fit; a small file declaring more (a decompression bomb) is refused before it
# is decoded.
MAX_FILE_PIXELS = 8192 * 8192
# Levels within this many noise sigmas of the paper are paper.
NOISE_SIGMAS = 5.0
# Everything after reading works on a copy at most this many pixels a side (area averaged):
# a digit that fills a tenth of a photo's width is still about MNIST's 20 pixels.
WORK_SIDE = 512
# The paper is estimated with a window this fraction of the shorter side: wider than the
# thickest marker stroke of a digit filling the picture (a quarter of the side, and a
# square window must span a diagonal stroke: 1.4 times that), narrower than a shadow.
PAPER_WINDOW = 0.45
# A row (column) with ink along this fraction of it is a ruled line, a frame or a scan
# border, where it reaches past the digit on both sides.
LINE_COVER = 0.85
# ... except one band at least BAR_THICK of the digit's stroke width thick, inside the
# picture and at an end of the rest of the digit, that reaches past the rest by less than
# BAR_REACH stroke widths on one side: the bar of a bold digit cropped tightly (see
# _remove_lines).
BAR_THICK = 0.5
BAR_REACH = 1.5
# A printed box around the digit (_drop_boxes): at most BOX_INSIDE of its ink away from
# its sides, and a mark inside it at least BOX_CONTENT of its height tall.
BOX_INSIDE = 0.05
BOX_CONTENT = 0.3
# A line is at most this fraction of the side thick (and at most 4 pixels when wider).
LINE_WIDTH = 0.02
# Marks smaller than this fraction of the largest one are specks unless they lie next to it.
SPECK_FRACTION = 0.25
NEAR_FRACTION = 0.04
# Smaller pieces, down to this fraction, are kept next to it when they are at least
# PIECE_LENGTH times longer than wide (a thin stroke broken apart; a speck is round).
PIECE_FRACTION = 0.005
# Any mark of at least this fraction lying inside the digit's box belongs to it.
INSIDE_FRACTION = 0.01
PIECE_LENGTH = 3.0
# A digit is longer than this many stroke widths; MNIST's training digits: 2.9 for the
# 0.1st percentile, 7.1 median (2 * area / perimeter of the ink at level 128). A dot or a
# filled disc or square is about 2. A mark that short and small in the picture (under a
# quarter of its side) is too small to read; a big one is a solid blob below BLOB_EXTENT:
# photographed digits written with a thick pen fall below MNIST's range. On the
# development set of benchmarks/bench_real_images.py (4,000 photos of held-out training
# digits, generator seeds 1000 and 1001) a blob limit of 2.6 refused 33 of them, 2.2-2.3
# refused 23 and 2.4 25, with the same 17 of 18 pictures without a digit and 430 of 440
# stroke drawings that are not digits refused; at 2.0 three more of those got through.
MIN_EXTENT = 2.6
BLOB_EXTENT = 2.3
# A scatter of specks or noise, not a digit: two marks left out of the digit with at
# least SCATTER_RATIO of its ink each, or one beside a digit shorter than SCATTER_EXTENT
# stroke widths (two touching specks are about 3), or more than SCATTER_MARKS marks kept
# (the photo digits of tests/photo_digits.py keep at most 4; salt-and-pepper noise, 400+).
SCATTER_RATIO = 0.5
SCATTER_EXTENT = 4.0
SCATTER_MARKS = 24
# Two digits apart: a mark left out of the digit (beyond its reach, with SPECK_FRACTION
# of its ink or more) that is a stroke at least this fraction of the digit's size, and
# that the shape check takes for a digit, is another digit, or a mark as big (a pen
# beside it): the picture is refused (_second_digit).
SECOND_EXTENT = 0.5
# ... as dark as this fraction of the digit's mean ink: on the development set the false
# second digits (a shadow's edge, frame pieces, a patch of texture) read 0.17-0.34 of
# full ink, about 0.2-0.7 of the digit's mean, where a second digit reads about as dark.
SECOND_INK = 0.75
# Step 2: when the whole picture's median lies within this fraction of the range (0.5th
# to 99.5th percentile) from one end and says the other side is ink than the paper's
# local level does, the picture is read both ways and the reading the shape check takes
# less for the paper read as ink is kept (a refused one loses). Tight crops of broad-marker digits read
# by the bundled model (tests/photo_digits.py's tight_crop, held-out training digits
# 52,000-52,199, rng [1000, i]): the local level alone 49 of 200 at a 5% margin and 105 at
# 10%; this 146 and 192; the development set (4,000 photos of held-out training digits,
# generator seeds 1000 and 1001, and their 1,778 pictures without a digit) reads as it did
# with the local level alone but for one 0, now read where it was refused. (The median alone
# decided wrongly for a note on a dark desk and a shadow over most of the sheet; at 0.25
# it took 8 of 20 photos of a note on a brown desk inside out, and 0.15 read fewer tight
# crops.) The rim's median (see _dark_ink) near the light end does the same for light ink:
# with no margin at all, 12 of the 40 crops of tests/test_imaging_photos.py read with the
# median, 30 with the rim and the paper's pixels (INK_SHARE); the development set's 4,000
# photos and 1,778 pictures without a digit read as before but for a thick 0 under a
# shadow, read where it was refused (three more results move a little, the same digit).
MEDIAN_END = 0.2
# ... and when what the answer takes for ink (the quarter of the whole picture's range at
# the ink's end) covers more than this share of the picture inside its rim (its outer
# 1/12 left out, as for the local level): a note on a dark desk or a slate on a light wall
# too small to hold the picture's median, which read as one filled shape of ink with the
# digit a hole in it. On the development set (bench_real_images.py --dev) photos read
# 94.4% (94.2% without), broad-marker digits cropped with no margin 80.3% (79.4%), stroke
# drawings refused 97.2% (97.3%); a 180-pixel note on a 300-pixel desk, 28 of 30 (5).
INK_AREA_BOTH = 0.3
# Step 4: the ink covers more than INK_SHARE of a thick digit's picture cropped close,
# where the median and the MAD of all pixels would measure the ink as much as the paper:
# the paper's level and noise are then measured on the pixels below Otsu's threshold, when
# those above it are INK_SHARE to 1 - PAPER_SHARE of the picture and stand INK_SEPARATION
# times the larger spread of the two sides above those below. (A dark scan border as the
# lower side, under a fifth of the picture, and a shadow's edge, spread wide, stay out.)
INK_SHARE = 0.25
PAPER_SHARE = 0.2
INK_SEPARATION = 8.0
# A colour picture is read by one colour channel instead of its luma when that channel's
# levels spread over more than this times the luma's: yellow ink on white paper (the blue
# channel), never black, blue or red ink (whose luma spreads over at least half as far).
COLOUR_GAIN = 2.0
# MNIST's stroke widths in its 20-pixel box: 2.0 (1st percentile) to 5.6 (99th), median
# 2.8. Strokes outside [STROKE_MIN, STROKE_MAX] are thickened or thinned to that range.
STROKE_MIN = 2.0
STROKE_MAX = 5.0
# Transparent pixels (step 1) are put on the level of the opaque region's edge when the
# opaque pixels span more than OPAQUE_SPREAD, their edge less than half that, and the edge
# is at most OPAQUE_EDGE of them (a picture on a transparent canvas: its paper's margin;
# a sticker: its outline); else on the opposite of the opaque pixels' mean level (a
# drawing: its strokes are the opaque part).
OPAQUE_SPREAD = 0.3
OPAQUE_EDGE = 0.25
# Step 9's network (a digitcore model file, 784-...-3: class 1 is "not a digit", class 2
# the paper of a picture read as ink) and the score above which it refuses, kept in the
# file's training metadata as "threshold".
SHAPE_CHECK_FILE = "shape-check.safetensors"


def _pillow():
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError(
            "reading image files needs Pillow: pip install 'digitcore[image]' "
            "(or pass a NumPy array)") from exc
    return Image


def load_image(path) -> np.ndarray:
    """Read an image file into an array (no other processing).

    Parameters
    ----------
    path : str or os.PathLike
        Any format Pillow reads (PNG, JPEG, GIF, BMP, WebP, ...), of at most
        ``MAX_FILE_PIXELS`` pixels (8192 x 8192). The EXIF orientation of photos is
        applied. Without Pillow, PNG files only (:mod:`digitcore.png`: non-interlaced,
        up to its MAX_PIXELS, 4096 x 4096).

    Returns
    -------
    ndarray
        uint8 ``(h, w)`` for grey images, ``(h, w, 3)`` RGB, or ``(h, w, 4)``
        RGBA when the image has transparency; float32 ``(h, w)`` in [0, 1]
        for 16-bit and floating-point images (integer levels over the image's bit
        depth, see :func:`preprocess_image`; floats in [0, 1] as they are, any other
        range stretched from the darkest value to the lightest).
        Without Pillow, a 16-bit grey PNG is uint16 ``(h, w)``, 16-bit colour is
        reduced to 8 bits, and grey with alpha is ``(h, w, 2)``.

    Raises
    ------
    ValueError
        If the file cannot be read as an image, or declares more than MAX_FILE_PIXELS
        pixels (the message names the path).
    ImportError
        If Pillow is not installed and the file is not a PNG.
    """
    return _read_file(path)


def _read_file(path, longest=None) -> np.ndarray:
    """:func:`load_image`; with ``longest``, a JPEG more than twice that size a side is
    decoded at the smallest of its 1/2, 1/4 and 1/8 scales that keeps its longer side at
    least ``longest`` (the decoder averages 2x2 to 8x8 blocks of the picture on the way:
    a 12-megapixel photo reads in a fraction of the time, and preprocess_image shrinks
    it to MAX_SIDE by block averaging anyway)."""
    fspath = os.fspath(path)
    if os.path.isdir(fspath):  # (open() would say so on POSIX; Windows: PermissionError)
        raise ValueError(f"{fspath}: is a directory, not an image file")
    try:
        Image = _pillow()
    except ImportError:
        return _read_png(fspath)
    from digitcore._atomic import NotAFile, seekable

    try:
        with open(fspath, "rb") as raw:
            # (a pipe is read whole, up to a limit: `cat /dev/zero | digitcore predict
            # /dev/stdin` grew without end in Pillow's buffer; a device is refused)
            try:
                stream, _ = seekable(raw, _PIPE_IMAGE_MAX, "an image file")
            except NotAFile as exc:
                raise _TooLarge(f"{fspath}: {exc}") from None
            with warnings.catch_warnings():  # (past Pillow's own limit: refused below)
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(stream)
            return _decode_opened(img, fspath, longest)
    except FileNotFoundError:
        raise ValueError(f"{fspath}: no such file") from None
    except _TooLarge as exc:
        raise ValueError(str(exc)) from None
    except Image.DecompressionBombError:  # (over twice Pillow's limit: said at open)
        raise ValueError(f"{fspath}: the image has more pixels than Pillow opens "
                         f"(twice PIL.Image.MAX_IMAGE_PIXELS, "
                         f"{2 * (Image.MAX_IMAGE_PIXELS or 0):,}); "
                         f"digitcore reads at most {MAX_FILE_PIXELS:,} (a photo of one "
                         "digit needs far fewer: shrink it)") from None
    except Image.UnidentifiedImageError:  # (its message names the stream, not the file)
        raise ValueError(f"{fspath}: cannot read image: not a picture in a format Pillow "
                         "reads (PNG, JPEG, BMP, GIF, TIFF, WebP, ...)") from None
    except Exception as exc:  # Pillow raises many types for a bad file
        raise ValueError(f"{fspath}: cannot read image: {exc}") from exc


def _decode_opened(img, fspath, longest):
    """_read_file's decoding of an image Pillow has opened (its size checked first)."""
    with img:
        w, h = img.size
        if w * h > MAX_FILE_PIXELS:
            # (before decoding, and before a JPEG's reduced scale makes it smaller: a
            # small file can declare a huge picture, and the limit is the file's)
            raise _TooLarge(_too_many_pixels(fspath, w, h))
        if longest and _too_thin(w, h):  # (preprocess_image's refusal, with the file's
            raise _TooLarge(f"{fspath}: {_thin_message(w, h)}")  # size, not the shrunk one's)
        # (MPO: a phone's JPEG with a second, preview picture)
        if longest and img.format in ("JPEG", "MPO") and max(img.size) > 2 * longest:
            f = max(img.size) / longest
            img.draft(img.mode, (max(1, int(img.size[0] / f)),
                                 max(1, int(img.size[1] / f))))
        img.load()
        if (longest and max(img.size) > 4 * longest and "transparency" not in img.info
                and img.mode in ("L", "LA", "RGB", "RGBA", "I", "F")):
            # a big scan or photo other than a JPEG, shrunk by whole blocks at once
            # (preprocess_image block-averages it to `longest` anyway): its array and
            # copies would take ~20 bytes a pixel, 1.3 GB at MAX_FILE_PIXELS
            img = img.reduce(max(img.size) // (2 * longest))
        return _pillow_pixels(exif_upright(img))


def exif_upright(img):
    """A Pillow image turned as its EXIF orientation says, as viewers show it
    (``ImageOps.exif_transpose``); as it is when its EXIF is damaged, which must not
    hide a readable image. load_image and serve's PNG decoding both turn it."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(img)
    except Exception:
        return img


def _pillow_pixels(img) -> np.ndarray:
    """A decoded Pillow image as load_image returns it: 16-bit and float modes as float32
    in [0, 1], grey as uint8, anything else as RGB, or RGBA when it has transparency (a
    palette's colours, not its indices; CMYK as RGB)."""
    mode = img.mode
    if mode == "F":
        # a float picture from a file (a TIFF of floats) has no agreed scale, unlike an
        # array a caller passes (floats in [0, 1]): one in [0, 1] is taken as it is, any
        # other is stretched from its darkest to its lightest value
        arr = np.array(img, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise ValueError("the float image holds NaN or infinite values")
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if lo < 0 or hi > 1:
            arr -= np.float32(lo)
            arr /= np.float32(hi - lo) if hi > lo else np.float32(1)
        return arr
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        # checked and scaled as an array of its dtype is (_divisor), in one float32 copy:
        # float64 copies of a 16-bit picture of 90M pixels took 2.5 GB
        raw = np.asarray(img)
        div = _divisor(raw)
        arr = raw.astype(np.float32)
        arr /= np.float32(div)
        return arr
    if mode == "L" and "transparency" not in img.info:
        return np.asarray(img, dtype=np.uint8)
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info
    return np.asarray(img.convert("RGBA" if has_alpha else "RGB"), dtype=np.uint8)


class _TooLarge(Exception):
    """An image file declaring more than MAX_FILE_PIXELS pixels (_read_file's refusal)."""


def _is_pillow_image(obj) -> bool:
    """Whether obj is a PIL.Image.Image, without importing Pillow when it is not loaded."""
    import sys

    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(obj, pil.Image)


# The largest PNG file read without Pillow: the decoder's MAX_PIXELS of 16-bit RGBA,
# barely compressed, with room for its chunks.
_PNG_FILE_MAX = 160 << 20
# The most bytes an image is read from a pipe (Pillow's decoders; a file is read lazily).
_PIPE_IMAGE_MAX = 256 << 20


def _read_png(fspath: str) -> np.ndarray:
    """A PNG file without Pillow (digitcore.png: 8-bit, 16-bit grey as uint16, 16-bit
    colour reduced to 8 bits); any other file needs Pillow."""
    from digitcore._atomic import NotAFile, seekable
    from digitcore.png import SIGNATURE, decode_png

    try:
        with open(fspath, "rb") as f:
            # (read whole: a device such as /dev/zero, or a pipe past the limit, is
            # refused first, and a regular file from its size)
            try:
                f, size = seekable(f, _PNG_FILE_MAX, "an image file")
            except NotAFile as exc:
                raise ValueError(f"{fspath}: {exc}") from None
            if size > _PNG_FILE_MAX:
                raise ValueError(f"{fspath}: {size:,} bytes, more than the built-in PNG "
                                 f"decoder reads ({_PNG_FILE_MAX:,}; Pillow reads more: "
                                 f"pip install 'digitcore[image]')")
            data = f.read()
    except FileNotFoundError:
        raise ValueError(f"{fspath}: no such file") from None
    except OSError as exc:  # (a folder: _read_file refused it)
        raise ValueError(f"{fspath}: cannot read image: {exc.strerror or exc}") from None
    if not data:
        raise ValueError(f"{fspath}: the file is empty")
    if not data.startswith(SIGNATURE):
        try:
            _pillow()
        except ImportError as exc:  # (saying how to install it, and which file needs it)
            raise ImportError(f"{fspath} is not a PNG file: {exc}") from None
    try:
        return decode_png(data, wide=True)
    except ValueError as exc:
        msg = str(exc)
        w, h = (struct.unpack(">II", data[16:24]) if len(data) >= 24 else (0, 0))
        if "too large" in msg and w * h > MAX_FILE_PIXELS:  # (Pillow's path refuses it too)
            raise ValueError(_too_many_pixels(fspath, w, h)) from None
        # Pillow reads what this decoder leaves out (interlaced and big pictures, rows too
        # long to unfilter here: that message says so itself), not a damaged file
        if "Pillow reads it" in msg:
            hint = " (pip install 'digitcore[image]')"
        elif "interlaced" in msg or "too large" in msg:
            hint = " (Pillow reads it: pip install 'digitcore[image]')"
        else:
            hint = ""
        raise ValueError(f"{fspath}: cannot read image: {msg}{hint}") from None


def _too_many_pixels(fspath, w, h) -> str:
    return (f"{fspath}: the image is {w}x{h} pixels, more than the {MAX_FILE_PIXELS:,} "
            "digitcore reads (a photo of one digit needs far fewer: shrink it)")


def _too_thin(w: int, h: int) -> bool:
    """Whether a w x h picture is so long and thin that shrinking it to MAX_SIDE would
    leave under a pixel across (_to_float's refusal)."""
    f = -(-max(w, h) // MAX_SIDE)
    return f > 1 and min(w, h) < f


def _thin_message(w: int, h: int) -> str:
    return (f"image of {w}x{h} pixels is too long and thin to hold a digit (more than "
            f"{MAX_SIDE}:1)")


# The bit depths integer pixels are taken to have: the smallest that holds the image's
# largest value (a 12-bit sensor's 4095 is its white, not 6% of 16-bit white).
_BIT_DEPTHS = (8, 10, 12, 14, 16)


def _integer_top(hi: int) -> float:
    """White for integer pixels whose largest value is ``hi``: 2^bits - 1 of the smallest
    of _BIT_DEPTHS that holds it."""
    for bits in _BIT_DEPTHS:
        if hi <= (1 << bits) - 1:
            return float((1 << bits) - 1)
    raise ValueError(f"image pixel values up to {hi}: expected 8- to 16-bit (0-65535)")


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
        return _integer_top(hi)
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
        if _too_thin(arr.shape[1], arr.shape[0]):
            # over MAX_SIDE:1, a strip no digit fits in; shrinking it keeping the aspect
            # would leave under a pixel across, and not shrinking it costs gigabytes
            raise ValueError(_thin_message(arr.shape[1], arr.shape[0]))
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
        # (a batch of one, (1, h, w), is the usual way to get here)
        hint = ("; a batch of one image? pass image[0]"
                if arr.ndim == 3 and arr.shape[0] == 1 and min(arr.shape[1:]) > 4 else "")
        raise ValueError(f"image must have shape (h, w), (h, w, 2), (h, w, 3) or (h, w, 4), "
                         f"got {arr.shape}{hint}")
    x = _to_float(arr)
    alpha = x[:, :, -1] if x.shape[2] in (2, 4) else None
    if x.shape[2] in (1, 2):
        return x[:, :, 0], alpha
    # ITU-R BT.601 luma, what Pillow's convert("L") uses; but ink that is about as light
    # as the paper (yellow on white: 11% of the range) stands out in one colour channel
    grey = x[:, :, 0] * 0.299 + x[:, :, 1] * 0.587 + x[:, :, 2] * 0.114
    # how far each one's levels reach: 99.5th less 0.5th percentile, at most 128 pixels a
    # side (area averaged, so that single noisy pixels do not count; the luma of the
    # averaged channels is the averaged luma)
    small = [_shrink(x[:, :, c], 128) for c in range(3)]
    small.insert(0, small[0] * 0.299 + small[1] * 0.587 + small[2] * 0.114)
    spread = [float(np.subtract(*np.percentile(s, [99.5, 0.5]))) for s in small]
    best = int(np.argmax(spread))
    if best and spread[best] > COLOUR_GAIN * spread[0]:
        grey = x[:, :, best - 1]
    return grey, alpha


def _composite(grey: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Put transparent pixels on a background that contrasts with the visible strokes."""
    if alpha is None or alpha.min() >= 1.0:
        return grey
    weight = alpha.sum()
    if weight == 0:
        raise NoDigitError("blank", "image is blank: every pixel is fully transparent")
    # A drawing with a transparent background: what is opaque is the ink, of one level,
    # so the background is the opposite of the ink's mean level (black strokes -> white
    # paper). A photo or scan on a transparent canvas (padded, rotated, cut out) has paper
    # and ink opaque, two levels far apart: the transparent part takes the level of the
    # opaque part's edge, the paper's (black there made the sheet the ink, a filled shape
    # with the digit as its hole); a digit with a light outline gets the outline's.
    # (A region, not strokes: its edge is a small part of it, of one level. Strokes of
    # two tones on a transparent canvas are mostly edge, of both tones: the rule below.)
    solid = alpha >= 0.5
    opaque = grey[solid]
    if opaque.size >= 16:
        lo, hi = np.percentile(opaque, [2, 98])
        edge = solid & ~_inner(solid, outside=True)  # (the picture's border is no edge)
        rim = grey[edge] if edge.any() else opaque
        e_lo, e_hi = np.percentile(rim, [10, 90])
        if (hi - lo > OPAQUE_SPREAD and e_hi - e_lo < 0.5 * OPAQUE_SPREAD
                and rim.size <= OPAQUE_EDGE * opaque.size):
            return grey * alpha + float(np.median(rim)) * (1.0 - alpha)
    ink_level = float((grey * alpha).sum() / weight)
    background = 1.0 if ink_level < 0.5 else 0.0
    return grey * alpha + background * (1.0 - alpha)


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
    # each output pixel reads a few neighbouring inputs: apply the banded weights as a
    # sum of shifted rows (a dense matrix product costs n_in times more and, in a busy
    # process, an idle BLAS thread pool's wake-up)
    return _apply_band(_apply_band(image, _band(image.shape[0], h)).T,
                       _band(image.shape[1], w)).T


def _band(n_in: int, n_out: int):
    """One axis's resampling as a band: (the inputs each output reads, (n_out, T) indices
    clamped into range; their weights, (n_out, T), 0 past the end). Area averaging where
    the axis shrinks (output o covers inputs [o*scale, (o+1)*scale), each weighted by its
    overlap / scale, which anti-aliases like MNIST's preparation), bilinear with pixel
    centres aligned (the half-pixel convention, like Pillow) where it grows. Built as
    the band alone: a dense (n_out, n_in) matrix took 275 MB for 6000 -> 3000."""
    scale = n_in / n_out
    if n_out <= n_in:
        edges = np.arange(n_out + 1) * scale
        first = np.floor(edges[:-1]).astype(np.intp)
        idx = first[:, None] + np.arange(int(np.ceil(scale)) + 1)
        overlap = np.minimum(idx + 1, edges[1:, None]) - np.maximum(idx, edges[:-1, None])
        weights = np.clip(overlap, 0, None) / scale
    else:
        centres = np.clip((np.arange(n_out) + 0.5) * scale - 0.5, 0, n_in - 1)
        first = np.floor(centres).astype(np.intp)
        frac = centres - first
        idx = first[:, None] + np.arange(2)
        weights = np.zeros((n_out, 2))
        weights[:, 0] += 1 - frac
        last = first + 1 > n_in - 1  # (at the end both taps are the last input)
        weights[last, 0] += frac[last]
        weights[~last, 1] += frac[~last]
    weights[idx > n_in - 1] = 0.0
    return np.minimum(idx, n_in - 1), weights


def _apply_band(x: np.ndarray, band) -> np.ndarray:
    idx, weights = band
    out = np.zeros((idx.shape[0],) + x.shape[1:])
    for t in range(idx.shape[1]):
        out += weights[:, t, None] * x[idx[:, t]]
    return out


def _centre_of_mass(x: np.ndarray) -> tuple[float, float]:
    total = x.sum()
    rows = np.arange(x.shape[0]) @ x.sum(axis=1) / total
    cols = np.arange(x.shape[1]) @ x.sum(axis=0) / total
    return float(rows), float(cols)


def _shrink(x: np.ndarray, side: int) -> np.ndarray:
    """Area-average ``x`` so that its longer side is at most ``side``."""
    h, w = x.shape
    f = max(h, w) / side
    if f <= 1:
        return x
    return resize(x, (max(1, int(round(h / f))), max(1, int(round(w / f)))))


def _running(x: np.ndarray, k: int, axis: int, op) -> np.ndarray:
    """Running max or min (``op`` np.max or np.min) over a centred window of k pixels
    along ``axis``, edges repeated; van Herk / Gil-Werman: three passes whatever k is."""
    if k <= 1:
        return x
    acc = np.maximum if op is np.max else np.minimum
    x = np.moveaxis(x, axis, 0)
    n = x.shape[0]
    lo = (k - 1) // 2
    blocks = -(-(n + k - 1) // k) + 1
    pad = np.concatenate([np.repeat(x[:1], lo, axis=0), x,
                          np.repeat(x[-1:], blocks * k - n - lo, axis=0)])
    b = pad.reshape(blocks, k, *x.shape[1:])
    prefix = acc.accumulate(b, axis=1).reshape(pad.shape)
    suffix = acc.accumulate(b[:, ::-1], axis=1)[:, ::-1].reshape(pad.shape)
    # window [i, i + k): the suffix of i's block and the prefix of the next block
    out = acc(suffix[:n], prefix[k - 1:k - 1 + n])
    return np.moveaxis(out, 0, axis)


def _morph(x: np.ndarray, k: int, op) -> np.ndarray:
    return _running(_running(x, k, 0, op), k, 1, op)


def _disc_filter(x: np.ndarray, radius: float, op) -> np.ndarray:
    """Grey dilation (op=np.maximum) or erosion (np.minimum) by a disc."""
    r = int(np.ceil(radius))
    if r < 1:
        return x
    pad = np.pad(x, r)  # outside the crop is background, for either filter
    out = x.copy()
    h, w = x.shape
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if 0 < dy * dy + dx * dx <= radius * radius + 0.5:
                op(out, pad[r + dy:r + dy + h, r + dx:r + dx + w], out=out)
    return out


def _box3(x: np.ndarray) -> np.ndarray:
    p = np.pad(x, 1, mode="edge")
    rows = p[:-2] + p[1:-1] + p[2:]
    return (rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]) / 9.0


def _paper(x: np.ndarray, dark: bool) -> np.ndarray:
    """Paper level under every pixel: a closing for dark ink, an opening for light ink."""
    k = max(3, int(round(PAPER_WINDOW * min(x.shape))) | 1)
    if min(x.shape) < 8:  # a tiny image is all digit: its paper is its median
        return np.full(x.shape, float(np.median(x)))
    first, second = (np.max, np.min) if dark else (np.min, np.max)
    # pad first: each filter repeating its own input's edge would hold the paper flat
    # for half a window next to an edge where it brightens inwards
    padded = np.pad(x, k, mode="edge")
    return _morph(_morph(padded, k, first), k, second)[k:-k, k:-k]


def _runs(mask: np.ndarray):
    """Row runs of True in ``mask``: (row, start, end) arrays, end exclusive, row-major."""
    m = np.pad(mask.astype(np.int8), ((0, 0), (1, 1)))
    d = np.diff(m, axis=1)
    rows, starts = np.nonzero(d == 1)
    _, ends = np.nonzero(d == -1)
    return rows, starts, ends


def _label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of ``mask``: (labels, count); labels 0..count-1, -1 off."""
    rows, starts, ends = _runs(mask)
    n = len(rows)
    parent = list(range(n))

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    first = np.searchsorted(rows, np.arange(mask.shape[0] + 1))
    rl, sl, el = rows.tolist(), starts.tolist(), ends.tolist()
    for r in range(1, mask.shape[0]):
        i, i_end = int(first[r - 1]), int(first[r])   # runs of the row above
        j, j_end = i_end, int(first[r + 1])           # runs of this row
        while i < i_end and j < j_end:
            if sl[i] <= el[j] and sl[j] <= el[i]:  # touching, diagonals included
                a, b = find(i), find(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            if el[i] < el[j]:
                i += 1
            else:
                j += 1
    del rl
    roots = np.array([find(a) for a in range(n)], dtype=np.int64)
    uniq, comp = np.unique(roots, return_inverse=True)
    labels = np.full(mask.shape, -1, dtype=np.int64)
    labels.flat[np.flatnonzero(mask)] = np.repeat(comp, ends - starts)
    return labels, len(uniq)


def _boxes(labels: np.ndarray, n: int):
    """Bounding boxes of the ``n`` components of :func:`_label`'s ``labels``: arrays of
    first row, end row, first column, end column (ends exclusive)."""
    rows, cols = np.nonzero(labels >= 0)
    which = labels[rows, cols]
    r0, c0 = np.full(n, labels.shape[0]), np.full(n, labels.shape[1])
    r1, c1 = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    np.minimum.at(r0, which, rows)
    np.maximum.at(r1, which, rows + 1)
    np.minimum.at(c0, which, cols)
    np.maximum.at(c1, which, cols + 1)
    return r0, r1, c0, c1


def _inner(mask: np.ndarray, outside: bool = False) -> np.ndarray:
    """The pixels of ``mask`` whose four neighbours are in it too (beyond the picture's
    border: ``outside``); ``mask & ~_inner(mask)`` is its boundary."""
    p = np.pad(mask, 1, constant_values=outside)
    return p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width: 2 * area / boundary length (boundary = pixels with an empty
    4-neighbour). Exact for a long straight stroke; about r for a disc of radius r."""
    boundary = int((mask & ~_inner(mask)).sum())
    return 2.0 * float(mask.sum()) / max(boundary, 1)


def _bbox(mask: np.ndarray):
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _lines(mask: np.ndarray, faint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of ``mask`` on ruled lines, frames and scan borders: rows (columns) where
    at least LINE_COVER of the pixels hold ink at the lower level ``faint`` (a faint
    line's contrast dips below the ink threshold here and there), and so belong to
    something longer than a digit's stroke."""
    rows = faint.mean(axis=1) >= LINE_COVER
    cols = faint.mean(axis=0) >= LINE_COVER
    return mask & rows[:, None], mask & cols[None, :]


def _crossing(removed: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """The parts of a removed horizontal band that a stroke crosses: in each column, a
    stretch of the band with ink right above it and right below it (one pixel of
    slant allowed) belongs to the stroke."""
    near = rest.copy()
    near[:, 1:] |= rest[:, :-1]
    near[:, :-1] |= rest[:, 1:]
    cols, starts, ends = _runs(removed.T)  # vertical stretches of the band, column by column
    h = removed.shape[0]
    above = (starts > 0) & near[np.maximum(starts - 1, 0), cols]
    below = (ends < h) & near[np.minimum(ends, h - 1), cols]
    keep = above & below
    out = np.zeros_like(removed)
    for c, a, b in zip(cols[keep], starts[keep], ends[keep]):
        out[a:b, c] = True
    return out


def _select_digit(mask: np.ndarray, ink: np.ndarray) -> tuple[np.ndarray, float]:
    """The connected marks that make the digit: the largest, and those near it; and the
    ink of each mark left out."""
    labels, n = _label(mask)
    if n == 0:
        return mask, np.zeros(0)
    on = labels >= 0
    lab = labels[on]
    mass = np.bincount(lab, weights=ink[on], minlength=n)
    r0, r1, c0, c1 = _boxes(labels, n)
    # pieces of a broken stroke are longer than wide; a speck is round (2 * area /
    # boundary is a stroke's width, a disc's radius)
    edge = np.bincount(labels[mask & ~_inner(mask)], minlength=n)
    width = 2.0 * np.bincount(lab, minlength=n) / np.maximum(edge, 1)
    long_piece = np.maximum(r1 - r0, c1 - c0) >= PIECE_LENGTH * width
    order = np.argsort(-mass, kind="stable")
    big = order[0]
    keep = np.zeros(n, dtype=bool)
    keep[big] = True
    box = [r0[big], r1[big], c0[big], c1[big]]
    reach = np.full(n, -1.0)  # how far from the kept marks each may lie, in digit sizes
    reach[mass >= INSIDE_FRACTION * mass[big]] = 0.0
    reach[(mass >= NEAR_FRACTION * mass[big])
          | (long_piece & (mass >= PIECE_FRACTION * mass[big]))] = 0.35
    reach[mass >= SPECK_FRACTION * mass[big]] = 1.0
    # a second big part of the digit lies within the digit's size of what is kept so
    # far, a piece of a broken stroke within a third of it, a small piece inside it;
    # specks are smaller still. Repeated while the kept box grows (a stroke broken in
    # several places). A kept mark only grows the box, which only lets more in, so the
    # marks kept do not depend on the order they are tried in: each round takes every
    # mark that fits the box as it is (in NumPy: a grid of 65,000 dots took seconds one
    # mark at a time).
    todo = order[1:][reach[order[1:]] >= 0]
    while todo.size:
        m = reach[todo] * max(box[1] - box[0], box[3] - box[2])
        fits = ((r0[todo] >= box[0] - m) & (r1[todo] <= box[1] + m)
                & (c0[todo] >= box[2] - m) & (c1[todo] <= box[3] + m))
        if not fits.any():
            break
        took = todo[fits]
        keep[took] = True
        box = [min(box[0], r0[took].min()), max(box[1], r1[took].max()),
               min(box[2], c0[took].min()), max(box[3], c1[took].max())]
        todo = todo[~fits]
    return keep[np.maximum(labels, 0)] & on, mass[~keep]


def _field(digit: np.ndarray, ink: np.ndarray) -> np.ndarray:
    """Step 8: the marks ``digit`` (a mask) of ``ink`` as MNIST's uint8 28x28 field."""
    r0, r1, c0, c1 = _bbox(digit)
    x = np.where(digit, ink, 0.0)[r0:r1, c0:c1]
    x /= x.max()
    h, w = x.shape
    scale = BOX / max(h, w)
    x, grown = _normalise_stroke(x, _stroke_width(digit[r0:r1, c0:c1]) * scale)
    if grown:  # thickened strokes reach past the crop: the box holds them as they are
        h, w = x.shape
        scale = BOX / max(h, w)
    # (a thickened stroke keeps at least MNIST's thinnest width across: a 4-pixel bar on
    # a 280-pixel canvas rounded to one row)
    least = int(np.ceil(STROKE_MIN)) if grown else 1
    new_h = min(BOX, max(least, int(round(h * scale))))
    new_w = min(BOX, max(least, int(round(w * scale))))
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


def _second_digit(rest: np.ndarray, ink: np.ndarray, digit: np.ndarray, extent: int) -> bool:
    """Whether a mark of ``rest`` (the marks left out of ``digit``) is another digit: beside
    it (apart across, overlapping half the shorter's height down), at least
    SPECK_FRACTION of the digit's ink (a "1" beside a "6" has a third of it), as dark
    (SECOND_INK of the digit's mean ink: a shadow's edge, a faint patch of texture or of a
    frame is lighter), a stroke (longer than SCATTER_EXTENT stroke widths) at least
    SECOND_EXTENT of the digit's ``extent`` long, and taken for a digit by the shape check
    (step 9) in a field of its own."""
    labels, n = _label(rest)
    on = labels >= 0
    mass = np.bincount(labels[on], weights=ink[on], minlength=n)
    count = np.bincount(labels[on], minlength=n)
    level = SECOND_INK * float(ink[digit].mean())
    d0, d1, d2, d3 = _bbox(digit)
    for c in np.flatnonzero((mass >= SPECK_FRACTION * ink[digit].sum())
                            & (mass >= level * count)):
        other = labels == c
        r0, r1, c0, c1 = _bbox(other)
        size = max(r1 - r0, c1 - c0)
        # beside it, as digits are written in a row: apart across, level with it down (the
        # pieces of a digit broken apart lie one above the other: a 5's bar and its bowl)
        beside = (c1 <= d2 or c0 >= d3) and \
            min(r1, d1) - max(r0, d0) >= 0.5 * min(r1 - r0, d1 - d0)
        if (beside and size >= SECOND_EXTENT * extent
                and size >= SCATTER_EXTENT * _stroke_width(other)
                and not_digit_scores(_field(other, ink))[0] <= _shape_check()[2]):
            return True
    return False


def _dark_ink(x: np.ndarray) -> tuple[bool, bool | None]:
    """Is the ink darker than the paper? Against the paper's level around it (the
    median of a window wider than a stroke, where the ink is a minority: shadows and
    lighting gradients move it), the darkest pixels of dark ink lie farther below it
    than the lightest paper lies above it, and the other way round for chalk on a board.
    The rim of the picture (scan borders) is left out; the picture is looked at at most
    128 pixels a side, its median taken on a grid a quarter window apart.

    Returns that answer, and the whole picture's when its median lies within MEDIAN_END
    of the range from one end and it differs (else None): the ink is the minority of the
    whole picture, rim and all, so the paper's side holds its median. preprocess_image
    then reads the picture both ways and keeps the reading the shape check takes less for
    the paper read as ink: strokes can
    fill the windows of a thick digit cropped close, where the paper then looks like ink,
    but a note on a dark desk or a shadow over most of the sheet moves the median too.
    The same when the answer is light ink but the picture's rim (its outer 1/16, a
    median) lies within MEDIAN_END of the light end and dark marks reach into its outer
    eighth from a side over less than half of it: a bold digit cropped with no margin is
    most of the picture, median and all, but the paper shows along the edges between its
    strokes. A light wall or frame around a dark board has the board's edge along most
    of each side instead; and a scan border or a desk darkens the rim of a sheet with
    dark ink on it, so a dark rim is no evidence. The same when what the answer
    takes for ink covers more than INK_AREA_BOTH of the picture inside its rim: a sheet on
    a surround of the other level, too small to hold the median."""
    h, w = x.shape
    mh, mw = h // 12, w // 12
    inner = x[mh:h - mh, mw:w - mw] if min(h - 2 * mh, w - 2 * mw) >= 8 else x
    small = _shrink(inner, 128)
    sh, sw = small.shape
    if min(sh, sw) < 8:
        lo, hi = np.percentile(small, [0.5, 99.5])
        paper = float(np.median(small))
        return bool(paper - lo > hi - paper), None
    k = max(3, int(round(PAPER_WINDOW * min(sh, sw))))
    step = max(1, k // 4)
    ys, xs = np.arange(0, sh, step), np.arange(0, sw, step)
    grid = np.array([[np.median(small[max(r - k // 2, 0):r + k // 2 + 1,
                                      max(c - k // 2, 0):c + k // 2 + 1]) for c in xs]
                     for r in ys])
    local = resize(grid, (sh, sw))
    smooth = _box3(small) if min(sh, sw) >= 48 else small
    lo, hi = np.percentile(smooth - local, [0.05, 99.95])
    if abs(-lo - hi) > 0.1 * max(-lo, hi):
        dark = bool(-lo > hi)
    else:
        # a tie: thick strokes crowd some windows, where the paper then looks like ink;
        # the ink is still the minority of the inner picture
        paper = float(np.median(smooth))
        lo, hi = np.percentile(smooth, [0.05, 99.95])
        dark = bool(paper - lo > hi - paper)
    whole = _shrink(x, 128)
    whole = _box3(whole) if min(whole.shape) >= 48 else whole
    w_lo, w_mid, w_hi = np.percentile(whole, [0.5, 50, 99.5])
    # (not when under 0.5% of the picture differs from the rest: a dot)
    if w_hi - w_lo > MIN_CONTRAST:
        where = (w_mid - w_lo) / (w_hi - w_lo)
        if min(where, 1.0 - where) < MEDIAN_END and (where > 0.5) != dark:
            return dark, not dark
        level = (whole - w_lo) / (w_hi - w_lo)
        # what would be ink covers much of the picture inside its rim: a sheet (or a
        # board) on a surround of the other level, too small to hold the picture's
        # median, reads as one filled shape of "ink" with the digit a hole in it; read
        # both ways (the rim left out as for the local level: a frame is no sheet)
        bh, bw = level.shape[0] // 12, level.shape[1] // 12
        core = level[bh:level.shape[0] - bh, bw:level.shape[1] - bw]
        if float(np.mean(core < 0.25 if dark else core > 0.75)) > INK_AREA_BOTH:
            return dark, not dark
        band = max(1, min(whole.shape) // 16)
        rim = np.concatenate([level[:band].ravel(), level[-band:].ravel(),
                              level[:, :band].ravel(), level[:, -band:].ravel()])
        if not dark and np.median(rim) > 1.0 - MEDIAN_END:
            # strokes reach into the outer eighth from a side, over less than half of it
            # (a wall or a light frame around a dark board: the board's edge runs along
            # most of every side, a chalk stroke reaching it or not)
            deep = max(1, min(whole.shape) // 8)
            ink = level < MEDIAN_END
            reach = [ink[:deep].any(axis=0), ink[-deep:].any(axis=0),
                     ink[:, :deep].any(axis=1), ink[:, -deep:].any(axis=1)]
            if any(0 < r.sum() < 0.5 * r.size for r in reach):
                return dark, True
    return dark, None


def _paper_pixels(absolute: np.ndarray):
    """Where to measure the paper's level and noise on the ink's contrast ``absolute``:
    every pixel (``...``) while the ink is a minority, as it is but in a thick digit
    cropped close; there, the pixels below the two levels' threshold (Otsu's), when
    those above it are a quarter to four fifths of the picture (INK_SHARE, PAPER_SHARE)
    and stand far above the larger spread of the two sides (INK_SEPARATION)."""
    lo, hi = float(absolute.min()), float(absolute.max())
    if hi - lo < MIN_CONTRAST:
        return ...
    counts, edges = np.histogram(absolute, bins=64, range=(lo, hi))
    sums = counts * (edges[:-1] + edges[1:]) / 2
    n0, s0 = np.cumsum(counts)[:-1], np.cumsum(sums)[:-1]
    n1, s1 = counts.sum() - n0, sums.sum() - s0
    with np.errstate(divide="ignore", invalid="ignore"):  # (an empty side: NaN, skipped)
        between = n0 * n1 * (s0 / n0 - s1 / n1) ** 2
    # (the first and last bins hold the minimum and the maximum: some split has two sides)
    cut = edges[int(np.nanargmax(between)) + 1]
    paper = absolute < cut
    if not PAPER_SHARE <= paper.mean() <= 1.0 - INK_SHARE:
        return ...
    below, above = absolute[paper], absolute[~paper]
    spread = max(1.4826 * float(np.median(np.abs(part - np.median(part))))
                 for part in (below, above))
    if float(np.median(above)) - float(np.median(below)) < INK_SEPARATION * max(spread, 1e-3):
        return ...
    return paper


def _find_ink(x: np.ndarray, where: str, dark: bool):
    """Ink in [0, 1] (light on dark) with the paper removed, where it stands out from the
    paper's noise (mask), where it does at half that level (faint), the paper's level
    (higher towards the ink's) and the ink's absolute contrast; ``dark``: the ink is
    darker than the paper."""
    paper = _paper(x, dark)
    absolute = paper - x if dark else x - paper
    # contrast relative to the paper (to the headroom above a dark board): ink in a
    # shadow is as dark, relative to the paper around it, as ink in the light
    residual = absolute / np.maximum(paper if dark else 1.0 - paper, 0.05)
    sharp = residual  # (before the averaging below: a one-pixel dot keeps its contrast)
    if min(x.shape) >= 48:  # sensor noise and paper grain: average over 3x3 before deciding
        residual, absolute = _box3(residual), _box3(absolute)
    # a closing over noisy paper sits on the noise's peaks: the paper itself is then a
    # little below it, at the residual's median (the paper's pixels' median, where the ink
    # covers much of the picture)
    on_paper = _paper_pixels(absolute)
    absolute -= float(np.median(absolute[on_paper]))
    if float(absolute.max()) < max(MIN_CONTRAST, NOISE_SIGMAS * 1.4826 *
                                   float(np.median(np.abs(absolute[on_paper])))):
        raise NoDigitError("blank", f"{where}image is blank: no ink stands out from the "
                                    "background")
    residual -= float(np.median(residual[on_paper]))
    noise = 1.4826 * float(np.median(np.abs(residual[on_paper])))
    ink = np.clip(residual, 0.0, None)
    peak = float(ink.max())
    if peak < INK_CONTRAST and (float(sharp.max()) - float(np.median(sharp[on_paper]))
                                < INK_CONTRAST):
        # marks stand out from the paper's noise but none is dark enough to be ink, not
        # even one pixel before the averaging: the steps after would find nothing and
        # blame straight lines or specks
        raise NoDigitError("blank", f"{where}image is blank: its marks are too faint to be "
                                    f"ink ({peak:.0%} contrast with the paper around them; "
                                    f"ink has at least {INK_CONTRAST:.0%}): write darker, or "
                                    f"light the page better")
    level = max(NOISE_FLOOR * peak, NOISE_SIGMAS * noise, INK_CONTRAST)
    ink = _flatten_lines(ink, level)
    return ink, ink >= level, ink >= 0.5 * level, (-paper if dark else paper), absolute


def _running_median(v: np.ndarray, k: int) -> np.ndarray:
    pad = np.pad(v, k // 2, mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(pad, k), axis=1)


def _flatten_lines(ink: np.ndarray, level: float) -> np.ndarray:
    """``ink`` without faint straight lines along rows and columns (ruled lines, a pale
    frame): a row whose lower quartile stands above the rows around it holds a line
    across most of its length, which no digit stroke does. Lines as strong as ink are
    left to :func:`_remove_lines`, which keeps the strokes crossing them; a band wider
    than LINE_WIDTH of the side is not a line (a tightly cropped 1)."""
    if min(ink.shape) < 16:
        return ink
    for axis in (1, 0):  # rows, then columns
        prof = np.percentile(ink, 25, axis=axis)
        n = prof.size
        excess = np.clip(prof - _running_median(prof, max(9, (n // 16) | 1)), 0.0, None)
        excess[excess >= level] = 0.0
        on = excess > 0.05 * level
        starts, ends = _runs(on[None, :])[1:]
        for a, b in zip(starts, ends):
            if b - a > max(4, LINE_WIDTH * n):
                excess[a:b] = 0.0
        if not excess.any():
            continue
        e = excess[:, None] if axis == 1 else excess[None, :]
        # a stroke crossing the line is darker than it: keep its full level
        ink = np.where(ink >= e + level, ink, np.clip(ink - e, 0.0, None))
    return ink


def _remove_lines(mask: np.ndarray, faint: np.ndarray) -> np.ndarray:
    """``mask`` without ruled lines, frames and scan borders (see LINE_COVER)."""
    horiz, vert = _lines(mask, faint)
    if not (horiz.any() or vert.any()):
        return mask
    rest = mask & ~horiz & ~vert
    rest |= _crossing(horiz & ~vert, rest)
    rest |= _crossing((vert & ~horiz).T, rest.T).T
    if not rest.any():
        # nothing but edge-to-edge runs: one vertical stroke is a tightly cropped 1,
        # anything else is lines on paper
        if not horiz.any() and _label(vert)[1] == 1:
            return mask
        return rest
    digit, _ = _select_digit(rest, rest.astype(np.float64))
    r0, r1, c0, c1 = _bbox(digit)
    stroke = _stroke_width(digit)
    # a long run that does not reach past the digit on both sides is part of it (the bar
    # of a 7 in a tightly cropped picture), not a line; but a digit has one such bar at
    # most: two or more parallel bands are ruled lines or a frame, even where the digit
    # reaches the picture's edge
    for band, lo, hi, axis, near, far in ((horiz, c0, c1, 1, r0, r1),
                                          (vert, r0, r1, 0, c0, c1)):
        b = band & ~rest
        if not b.any() or len(_runs(band.any(axis=axis)[None, :])[0]) >= 2:
            continue
        idx = np.nonzero(b)
        pos = idx[axis]
        line_of = idx[1 - axis]  # the row of a horizontal run, the column of a vertical one
        n = mask.shape[1 - axis]
        first = np.full(n, 1 << 30)
        last = np.full(n, -1)
        np.minimum.at(first, line_of, pos)
        np.maximum.at(last, line_of, pos)
        # a band as thick as the digit's strokes away from the picture's rim, at one end
        # of the rest of the digit, is a bar of a bold digit when it reaches past the
        # rest by less than BAR_REACH strokes on one side (a 2's base, a 7's top); ruled
        # lines and frames are thin, and a line through the digit's middle is no bar
        across = np.nonzero(band.any(axis=axis))[0]
        slack = 0.0
        if (len(across) >= BAR_THICK * stroke and across[0] > 0
                and across[-1] < mask.shape[1 - axis] - 1
                and (across[-1] < near + stroke or across[0] >= far - stroke)):
            slack = BAR_REACH * stroke
        part = (first > lo - 1 - slack) | (last < hi + slack)
        back = part[line_of]
        rest[idx[0][back], idx[1][back]] = True
    return rest


def _drop_boxes(mask: np.ndarray) -> np.ndarray:
    """``mask`` without a printed box around the digit (a form's field): a mark at least a
    quarter of the picture's shorter side whose ink lies along its own bounding box's four
    sides (at most BOX_INSIDE of it deeper than a tenth of the box in), each side drawn
    along LINE_COVER of its length, with a mark inside it at least BOX_CONTENT of the
    box's height tall. A frame that spans the picture is a ruled line already
    (_remove_lines); a boxy 0 has nothing inside it, a seven-segment 8 only a bar."""
    # (a box's sides are runs along rows and columns; labelling a picture of noise costs
    # tens of milliseconds)
    shortest = 0.25 * LINE_COVER * min(mask.shape)
    for m in (mask, mask.T):
        _, starts, ends = _runs(m)
        if not len(starts) or int((ends - starts).max()) < shortest:
            return mask
    labels, n = _label(mask)
    if n < 2:
        return mask
    top, bottom, left, right = _boxes(labels, n)
    big = np.minimum(bottom - top, right - left) >= 0.25 * min(mask.shape)
    for k in np.nonzero(big)[0]:
        mark = labels == k
        r0, r1, c0, c1 = int(top[k]), int(bottom[k]), int(left[k]), int(right[k])
        h, w = r1 - r0, c1 - c0
        t = max(2, int(0.1 * min(h, w)))
        if min(h, w) <= 2 * t:  # (sides of 2 pixels leave no inside in a mark this small)
            continue
        box = mark[r0:r1, c0:c1]
        if box[t:h - t, t:w - t].sum() > BOX_INSIDE * box.sum():
            continue
        sides = (box[:t].any(axis=0), box[h - t:].any(axis=0), box[:, :t].any(axis=1),
                 box[:, w - t:].any(axis=1))
        if min(float(s.mean()) for s in sides) < LINE_COVER:
            continue
        inside = mask[r0 + t:r1 - t, c0 + t:c1 - t] & ~box[t:h - t, t:w - t]
        if not inside.any():
            continue
        i0, i1, _, _ = _bbox(inside)
        if i1 - i0 >= BOX_CONTENT * (h - 2 * t):
            return mask & ~mark
    return mask


def _on_a_blob(digit: np.ndarray, paper: np.ndarray, contrast: np.ndarray) -> bool:
    """Is what was read as strokes the outline of a filled shape wider than the paper's
    window? Then the paper estimate inside the marks' box is about as far from the paper
    around the box as the ink is: a dark disc leaves only its rim above the paper (read
    as a 0), while shadows and lighting gradients reach around the box as well and
    spread the paper's level there."""
    r0, r1, c0, c1 = _bbox(digit)
    m = max(2, int(0.25 * max(r1 - r0, c1 - c0)))
    R0, R1 = max(r0 - m, 0), min(r1 + m, digit.shape[0])
    C0, C1 = max(c0 - m, 0), min(c1 + m, digit.shape[1])
    ring = np.ones((R1 - R0, C1 - C0), dtype=bool)
    ring[r0 - R0:r1 - R0, c0 - C0:c1 - C0] = False
    if ring.sum() < 8:
        return False
    inside = float(np.median(paper[r0:r1, c0:c1]))
    around = paper[R0:R1, C0:C1][ring]
    lo, mid, hi = np.percentile(around, [10, 50, 90])
    # as far as half the ink's contrast, and well beyond the paper's own spread around
    # the box (a lighting gradient, cut off on one side by the picture's edge)
    return inside - mid > max(0.5 * float(np.percentile(contrast[digit], 90)),
                              2.0 * (hi - lo))


def _normalise_stroke(x: np.ndarray, width: float) -> tuple[np.ndarray, bool]:
    """Thicken or thin strokes whose width in the 20-pixel box (``width``) is outside
    MNIST's range; ``x`` is the cropped digit. Whether it was thickened: a stroke along
    the crop's edge grows past it (a thin minus sign, a 7's top bar), so the crop is
    padded first and the result is cropped to the thickened marks."""
    if STROKE_MIN <= width <= STROKE_MAX:
        return x, False
    # at 4x the box's resolution, a disc's radius is exact to a quarter of a box pixel
    x = _shrink(x, 4 * BOX)
    per_px = BOX / max(x.shape)  # box pixels per pixel of x
    target = STROKE_MIN if width < STROKE_MIN else STROKE_MAX
    radius = abs(target - width) / 2 / per_px
    if radius < 0.5:
        return x, False
    if width > target:
        return _disc_filter(x, radius, np.minimum), False
    pad = int(np.ceil(radius))
    x = _disc_filter(np.pad(x, pad), radius, np.maximum)
    r0, r1, c0, c1 = _bbox(x > 0)
    return x[r0:r1, c0:c1], True


_bundled_check: dict = {}  # the bundled shape check, read once: {file name: check}
_REINSTALL = ("reinstall digitcore: pip install --force-reinstall digitcore; in a source "
              "tree, rebuild it with python benchmarks/train_shape_check.py; or skip the "
              "check: reject_non_digits=False, digitcore predict --any-strokes")


def shape_check_ready() -> None:
    """Read the bundled shape check now (it is read once, on first use): FileNotFoundError
    or ModelFormatError, saying how to get it back, if the installation's copy is missing
    or damaged. ``digitcore predict`` and ``digitcore serve`` call it before reading."""
    _shape_check()


def _shape_check(path=None):
    """Step 9's network as ``(weights, biases, threshold)``, float32 NumPy arrays.
    ``path`` None: the bundled file, read once; another path is read on each call.
    ModelFormatError if the file is damaged or not such a network."""
    if path is not None:
        return _read_shape_check(Path(path))
    if SHAPE_CHECK_FILE not in _bundled_check:
        path = Path(__file__).resolve().parent / "_data" / SHAPE_CHECK_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: preprocess_image's shape check is missing from "
                                    f"this installation ({_REINSTALL})")
        try:
            _bundled_check[SHAPE_CHECK_FILE] = _read_shape_check(path)
        except ModelFormatError as exc:
            raise ModelFormatError(f"{exc} ({_REINSTALL})") from None
    return _bundled_check[SHAPE_CHECK_FILE]


def _read_shape_check(path: Path):
    """The shape check at ``path`` (see _shape_check); not cached."""
    from digitcore._modelfile import decode_training, read_model

    key = os.fspath(path)
    config, meta, weights, biases, _ = read_model(path)
    training = decode_training(meta)
    threshold = training.get("threshold") if isinstance(training, dict) else None
    sizes = config["layer_sizes"]
    if (sizes[0] != FIELD * FIELD or sizes[-1] not in (2, 3) or config["activation"] != "relu"
            or isinstance(threshold, bool) or not isinstance(threshold, (int, float))
            or not 0.0 < threshold < 1.0):
        raise ModelFormatError(
            f"{key}: not a shape check (a {FIELD * FIELD}-input, 2- or 3-class ReLU "
            "network with a threshold in (0, 1) in its training metadata); rebuild it with "
            "benchmarks/train_shape_check.py")
    # the file's standardization (x / 255 - mean) / std, folded into the first layer
    mean, std = config.get("input_mean", 0.0), config.get("input_std", 1.0)
    biases[0] = (biases[0] - mean / std * weights[0].sum(axis=1)).astype(np.float32)
    weights[0] = (weights[0] / (255.0 * std)).astype(np.float32)
    return weights, biases, float(threshold)


def not_digit_scores(images, path=None) -> np.ndarray:
    """Step 9's score of each 28x28 uint8 image (as :func:`preprocess_image` returns
    them): the shape check's probability that it is a stroke drawing that is not a digit
    (of "digit" and "not a digit"; a check's third class, the paper read as ink, is left
    out). ``preprocess_image`` refuses an image whose score is above the check's
    threshold.

    ``images``: uint8 ``(n, 28, 28)`` or ``(28, 28)``; ``path``: another shape check
    file (default: the bundled one). Returns float64 ``(n,)``."""
    return _check_scores(images, path)[0]


def _check_scores(images, path=None):
    """(not_digit_scores, the probability of the check's third class, "the paper read as
    ink", or None for a check without it), from one forward pass."""
    x = np.asarray(images)
    if x.dtype != np.uint8 or x.shape[-2:] != (FIELD, FIELD) or x.ndim not in (2, 3):
        raise ValueError(f"images must be uint8 of shape (n, {FIELD}, {FIELD}) or "
                         f"({FIELD}, {FIELD}), got {x.dtype} {x.shape}")
    from digitcore.ops_ref import dense_forward

    weights, biases, _ = _shape_check(path)
    # the network's forward pass by the kernels' NumPy reference (ReLU hidden layers, then
    # softmax), in float32: imaging sits below network, and it is 0.23M multiply-adds
    h = x.reshape(-1, FIELD * FIELD).astype(np.float32)
    for w, b in zip(weights[:-1], biases[:-1]):
        h = dense_forward(h, w, b, "relu")
    z = dense_forward(h, weights[-1], biases[-1]).astype(np.float64)
    not_digit = np.exp(-np.logaddexp(0.0, z[:, 0] - z[:, 1]))  # class 1 of classes 0, 1
    if z.shape[1] < 3:
        return not_digit, None
    return not_digit, np.exp(z[:, 2] - np.logaddexp.reduce(z, axis=1))


def preprocess_image(image, *, reject_non_digits: bool = True) -> np.ndarray:
    """Prepare a handwritten digit like MNIST: 28x28, light on dark, centred.

    Works on clean drawings and canvases and on photos and scans of paper:
    uneven lighting and shadows, paper texture and noise, specks, ruled lines,
    frames and scan borders, digits of any size anywhere in the picture, thin
    and thick strokes (see the module docstring for the steps).

    Parameters
    ----------
    image : str, os.PathLike or ndarray
        An image file (PNG; other formats need Pillow: ``pip install
        'digitcore[image]'``) or an array of any size: grey ``(h, w)``, grey and
        alpha ``(h, w, 2)``, RGB ``(h, w, 3)`` or RGBA ``(h, w, 4)``, uint8
        (0-255), wider integers (white is 2^bits - 1 for
        the smallest of 8, 10, 12, 14 or 16 bits that holds the largest value)
        or float in [0, 1]. Dark ink on light paper and light ink on dark are
        both fine; transparent pixels count as background. A JPEG file more than
        twice MAX_SIDE (1024) pixels a side is decoded at 1/2, 1/4 or 1/8 scale, no
        smaller than MAX_SIDE (what step 1 would shrink it to anyway).
    reject_non_digits : bool
        Step 9: refuse stroke drawings that the shape check scores as not a digit
        (:func:`not_digit_scores`), and pictures of two digits side by side. False skips
        both, and needs no shape check: where step 2 reads a picture both ways and both
        readings stand, the shape check picks one when its file is there, else the
        paper's local level's is kept.

    Returns
    -------
    ndarray, uint8, shape (28, 28)
        Background 0, strongest ink 255; the digit fits a 20x20 box (its
        longer side is 20 pixels) and its centre of mass is at (14, 14)
        (within a pixel; a digit whose centre of mass is far off its box's
        centre is moved only as far as keeps all its ink in the field).

    Raises
    ------
    NoDigitError (a ValueError)
        When the picture holds no digit: ``reason`` is ``"blank"`` (no ink),
        ``"too_small"`` (only a dot or specks, or a drawing too small to read:
        the message asks for a bigger digit) or ``"not_a_digit"`` (a solid blob,
        scattered specks or noise, strokes that do not look like a digit: a sign, a
        letter, a shape; or, with ``reject_non_digits``, two digits side by side).
    ValueError
        For an unreadable file (the message names the path), a bad array
        shape or dtype.
    """
    if isinstance(image, (str, os.PathLike)):
        if not os.fspath(image):
            raise ValueError("the image path is empty: give a file name")
        arr = _read_file(image, longest=MAX_SIDE)
        where = f"{os.fspath(image)}: "
    else:
        if isinstance(image, (bytes, bytearray)):
            raise ValueError("pass a file path or a NumPy array, not bytes")
        if image is None:
            raise TypeError("image is None: give a file path or an array of pixels")
        if hasattr(image, "read"):
            raise TypeError(f"image is an open file ({type(image).__name__}): give its path, "
                            f"or an array of its pixels")
        if _is_pillow_image(image):
            arr = _pillow_pixels(image)  # (as a file of it is read)
        else:
            arr = np.asarray(image)
        where = ""
    if arr.size == 0:
        raise ValueError(f"{where}image is empty (shape {arr.shape})")
    if arr.dtype.kind in "ui" and arr.max() == 1 and arr.min() == 0:
        # (integers are 0-255 levels, or a higher bit depth's: a 0/1 mask is black)
        raise ValueError(f"{where}the image's integer levels are only 0 and 1, and integer "
                         f"pixels are 0-255: a 0/1 mask? pass it as bool, or times 255")
    try:
        grey, alpha = _grey_and_alpha(arr)
        x = _composite(grey, alpha)
    except NoDigitError as exc:
        raise NoDigitError(exc.reason, f"{where}{exc}") from None
    except ValueError as exc:
        raise ValueError(f"{where}{exc}") from None

    x = _shrink(x, WORK_SIDE)
    dark, other = _dark_ink(x)
    if other is None:
        return _read_digit(x, where, dark, reject_non_digits)[0]
    # the whole picture's median says the other side is ink (see _dark_ink): read it both
    # ways, and keep what the shape check takes less for the paper read as ink
    done, first = [], None
    for side in (dark, other):
        try:
            done.append(_read_digit(x, where, side, reject_non_digits))
        except NoDigitError as exc:
            first = first or exc
    if not done:
        try:
            raise first
        finally:
            first = None  # (no cycle through this frame keeping the picture alive)
    if len(done) == 1:
        return done[0][0]
    if reject_non_digits:  # (each reading scored already, as it passed the check)
        scores = [(score, paper) for _, score, paper in done]
    else:
        try:
            not_digit, paper = _check_scores(np.stack([out for out, _, _ in done]))
            scores = list(zip(not_digit, [None] * len(done) if paper is None else paper))
        except (OSError, ModelFormatError):
            return done[0][0]  # no shape check asked for, and none to be had: the local
            # level's reading
    # the reading the check takes least for the paper read as ink (its third class),
    # else for a drawing that is not a digit
    by = 1 if all(paper is not None for _, paper in scores) else 0
    return done[int(np.argmin([s[by] for s in scores]))][0]


def _read_digit(x: np.ndarray, where: str, dark: bool, reject_non_digits: bool):
    """Steps 3-9 of preprocess_image on the grey picture ``x`` (at most WORK_SIDE a side),
    whose ink is darker than its paper when ``dark``: (the 28x28 image, its shape-check
    score, the check's probability that it is the paper read as ink), the scores None
    when ``reject_non_digits`` is false (and the last for a check without that class)."""
    ink, mask, faint, paper, contrast = _find_ink(x, where, dark)
    marks = mask if mask.any() else faint  # (a dot's smoothed ink can stay below the level)
    mask = _drop_boxes(_remove_lines(mask, faint))
    if not mask.any():
        # what went was straight lines, or a mark too small to tell from one (a dot)
        r0, r1, c0, c1 = _bbox(marks) if marks.any() else (0, x.shape[0], 0, x.shape[1])
        if max(r1 - r0, c1 - c0) < 0.25 * min(x.shape):
            raise NoDigitError("too_small", f"{where}only a dot or specks, too small to be a "
                                            "digit: draw a bigger digit")
        raise NoDigitError("blank", f"{where}image is blank: only straight lines, no digit")
    digit, left_out = _select_digit(mask, ink)

    # a digit is a stroke several times longer than it is wide; a dot, a speck or a
    # filled blob is not
    r0, r1, c0, c1 = _bbox(digit)
    extent = max(r1 - r0, c1 - c0)
    stroke = _stroke_width(digit)
    small = extent < 0.25 * min(x.shape)
    if extent < 3 or (small and extent < MIN_EXTENT * stroke):
        raise NoDigitError("too_small", f"{where}only a dot or specks, too small to be a "
                                        "digit: draw a bigger digit")
    if not small and extent < BLOB_EXTENT * stroke:
        raise NoDigitError("not_a_digit", f"{where}a solid blob, not a digit: write the "
                                          "digit with a pen stroke")
    # nor is a scatter of round specks gathered together: the biggest mark of a digit
    # is a stroke (a piece of a broken one is longer than wide too)
    labels, n = _label(digit)
    biggest = labels == int(np.argmax(np.bincount(labels[digit], minlength=n)))
    b0, b1, b2, b3 = _bbox(biggest)
    if n > 1 and max(b1 - b0, b3 - b2) < PIECE_LENGTH * _stroke_width(biggest):
        raise NoDigitError("too_small", f"{where}only a dot or specks, too small to be a "
                                        "digit: draw a bigger digit")
    # nor is a scatter of specks or noise: a digit outweighs the marks left out of it (a
    # speck beside a digit is a few percent of it) and is at most a few pieces, where
    # the biggest speck of a scatter is short and has rivals of about its ink, and noise
    # dense enough to join into a web keeps hundreds of marks
    heavy = int(np.count_nonzero(left_out >= SCATTER_RATIO * ink[digit].sum()))
    if (heavy >= 2 or (heavy and extent < SCATTER_EXTENT * stroke)
            or n > SCATTER_MARKS):
        raise NoDigitError("not_a_digit", f"{where}scattered specks or noise, not a digit")
    if _on_a_blob(digit, paper, contrast):
        raise NoDigitError("not_a_digit", f"{where}a solid blob, not a digit: only its "
                                          "outline stands out; write the digit with a pen "
                                          "stroke")

    out, score, paper = _field(digit, ink), None, None
    if reject_non_digits:
        scores, papers = _check_scores(out)
        score, paper = float(scores[0]), None if papers is None else float(papers[0])
        if score > _shape_check()[2]:
            raise NoDigitError("not_a_digit", f"{where}strokes that do not look like a digit "
                                              f"(a sign, a letter or a shape? score "
                                              f"{score:.2f}): write one digit")
    # nor is a picture of two digits apart: the other one is left out, and reading the kept
    # one alone would be a confident guess at half the picture (checked last: the checks
    # above have the messages that fit noise and shapes)
    if reject_non_digits and _second_digit(mask & ~digit, ink, digit, extent):
        raise NoDigitError("not_a_digit", f"{where}two digits, or a digit and another mark "
                                          "as big, apart from each other: crop the picture "
                                          "to one digit")
    return out, score, paper
