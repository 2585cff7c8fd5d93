"""Photograph-like digits for testing ``preprocess_image`` on real-world input.

A seeded generator, NumPy only: each MNIST digit (28x28, light on dark) is enlarged to a
random size, given a pen stroke of random width, put off-centre on a larger sheet of
paper, and then corrupted the way phone photos and scans are: uneven lighting and
shadows, paper texture and sensor noise, blur, specks, a scan border or a drawn frame,
ruled notebook lines, coloured ink, dark boards with light chalk. Each corruption is
drawn independently, so most images carry several.

``photo_set(images, labels, seed)`` returns the pictures, their labels and what was done
to each; ``tight_crop(digit, rng)`` a broad-marker digit cropped close; ``non_digits(seed)``
returns pictures with no digit in them (blank paper, specks, a dot, ruled lines, a blob,
noise), and ``non_digit_strokes(seed)`` drawings made of pen strokes that are not digits
(signs, letters, shapes: STROKE_SHAPES). Used by tests/test_imaging_photos.py,
benchmarks/bench_real_images.py and benchmarks/train_shape_check.py (which trains
preprocess_image's shape check on them); ``python photo_digits.py OUT_DIR`` writes a sample as
PNG files (needs Pillow) to look at.
"""

from __future__ import annotations

import numpy as np

CORRUPTIONS = ("lighting", "shadow", "texture", "noise", "blur", "specks", "border", "frame",
               "corner_pixels", "ruled", "thin", "thick", "colour", "inverted")


def _interp_axis(n_in, n_out):
    """(n_out, n_in) bilinear resampling matrix with half-pixel centres."""
    c = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    i0 = np.floor(c).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w = np.zeros((n_out, n_in))
    w[np.arange(n_out), i0] += 1 - (c - i0)
    w[np.arange(n_out), i1] += c - i0
    return w


def _enlarge(x, h, w):
    return _interp_axis(x.shape[0], h) @ x @ _interp_axis(x.shape[1], w).T


def _blur(x, sigma):
    if sigma < 0.3:
        return x
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    pad = np.pad(x, r, mode="edge")
    rows = np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), 1, pad)
    return np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), 0, rows)


def _max_filter(x, r):
    """Grey dilation by a disc of radius r pixels (r >= 1)."""
    out = x.copy()
    ri = int(np.ceil(r))
    pad = np.pad(x, ri)
    h, w = x.shape
    for dy in range(-ri, ri + 1):
        for dx in range(-ri, ri + 1):
            if dy * dy + dx * dx <= r * r:
                np.maximum(out, pad[ri + dy:ri + dy + h, ri + dx:ri + dx + w], out=out)
    return out


def _smooth_field(rng, h, w, cells=6):
    """Low-frequency noise in about [-1, 1]: a coarse random grid, enlarged."""
    return _enlarge(rng.uniform(-1, 1, (cells, cells)), h, w)


def _disc(canvas, cy, cx, r, value):
    h, w = canvas.shape
    yy, xx = np.ogrid[0:h, 0:w]
    cover = np.clip(r + 0.5 - np.hypot(yy - cy, xx - cx), 0, 1)
    np.maximum(canvas, cover * value, out=canvas)


def photo_digit(digit, rng, corruptions=None):
    """One MNIST digit (uint8 28x28, light on dark) as a photo of ink on paper.

    Parameters
    ----------
    digit : ndarray uint8 (28, 28)
    rng : numpy Generator
    corruptions : set of str, optional
        Which of :data:`CORRUPTIONS` to apply; default: each with probability 0.35
        (``thin`` and ``thick`` exclusive, ``inverted`` 0.15).

    Returns
    -------
    image : ndarray uint8, (h, w) or (h, w, 3)
    applied : list of str
    """
    if corruptions is None:
        corruptions = {c for c in CORRUPTIONS if rng.random() < 0.35}
        if "inverted" in corruptions and rng.random() < 0.6:
            corruptions.discard("inverted")
        if {"thin", "thick"} <= corruptions:
            corruptions.discard("thick" if rng.random() < 0.5 else "thin")
    applied = sorted(corruptions)
    s = int(rng.integers(40, 161))       # side of the digit's 28x28 field, in pixels
    px = s / 28.0                        # one MNIST pixel, in pixels of the photo
    field = _enlarge(digit.astype(np.float64) / 255.0, s, s)
    # MNIST strokes are anti-aliased; a pen stroke is solid with a soft edge. The level
    # at which the enlarged grey ramp is cut sets the stroke width.
    cut = 0.45
    if "thin" in corruptions:  # (cutting above 0.75 breaks MNIST's fainter strokes apart)
        cut = rng.uniform(0.6, 0.75)
    ink = np.clip((field - cut) / 0.2 + 0.5, 0, 1)
    if "thick" in corruptions:
        ink = _max_filter(ink, rng.uniform(0.6, 1.3) * px)
    # sheet of paper: the digit's field covers 35-90% of its shorter side
    frac = rng.uniform(0.35, 0.9)
    h = int(s / frac * rng.uniform(1.0, 1.4))
    w = int(s / frac * rng.uniform(1.0, 1.4))
    sheet = np.zeros((h, w))
    top, left = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
    sheet[top:top + s, left:left + s] = ink
    if "specks" in corruptions:
        for _ in range(int(rng.integers(1, 9))):
            _disc(sheet, rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.2, 0.6) * px,
                  rng.uniform(0.5, 1.0))
    lines = np.zeros((h, w))
    if "ruled" in corruptions:
        gap = rng.uniform(0.3, 0.6) * s
        y = rng.uniform(0, gap)
        thick = max(1.0, rng.uniform(0.08, 0.2) * px)
        while y < h:
            y0, y1 = int(y), int(y + thick) + 1
            lines[y0:y1, :] = 1.0
            y += gap
        if rng.random() < 0.5:  # a margin line
            x0 = int(rng.uniform(0.05, 0.2) * w)
            lines[:, x0:x0 + int(thick) + 1] = np.maximum(lines[:, x0:x0 + int(thick) + 1], 1.0)
    frame = np.zeros((h, w))
    if "frame" in corruptions:  # a rectangle drawn around the digit or along the edges
        inset = int(rng.uniform(0.0, 0.08) * min(h, w))
        t = max(1, int(rng.uniform(0.1, 0.3) * px))
        frame[inset:h - inset, inset:inset + t] = 1
        frame[inset:h - inset, w - inset - t:w - inset] = 1
        frame[inset:inset + t, inset:w - inset] = 1
        frame[h - inset - t:h - inset, inset:w - inset] = 1
    if "blur" in corruptions:
        sigma = rng.uniform(0.3, 0.8) * px
        sheet, lines, frame = _blur(sheet, sigma), _blur(lines, sigma), _blur(frame, sigma)

    paper = rng.uniform(0.7, 0.97)
    ink_level = rng.uniform(0.0, 0.3)
    line_level = paper - rng.uniform(0.15, 0.35) * (paper - ink_level)  # fainter than ink
    grey = paper - (paper - ink_level) * sheet
    grey = grey - (grey - line_level).clip(0) * lines
    grey = grey - (grey - ink_level).clip(0) * frame
    if "colour" in corruptions:  # blue or red pen, light blue ruled lines
        pen = np.array([0.15, 0.25, 0.8]) if rng.random() < 0.5 else np.array([0.8, 0.15, 0.15])
        rule = np.array([0.55, 0.7, 0.95])
        rgb = (paper - (paper - pen * paper) * sheet[:, :, None])
        rgb = rgb - (rgb - rule * paper).clip(0) * 0.6 * lines[:, :, None]
        rgb = rgb - (rgb - ink_level).clip(0) * frame[:, :, None]
        img = rgb
    else:
        img = grey
    if "inverted" in corruptions:  # chalk on a dark board
        img = 1.0 - img
    light = np.ones((h, w))
    if "lighting" in corruptions:
        ang = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w]
        ramp = ((yy / h - 0.5) * np.sin(ang) + (xx / w - 0.5) * np.cos(ang))
        light *= 1 - rng.uniform(0.2, 0.5) * (ramp + 0.5)
        r2 = ((yy / h - 0.5) ** 2 + (xx / w - 0.5) ** 2) * 2
        light *= 1 - rng.uniform(0.0, 0.35) * r2
    if "shadow" in corruptions:  # a soft-edged shadow over part of the sheet
        ang = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w]
        d = (yy - h / 2) * np.sin(ang) + (xx - w / 2) * np.cos(ang) - rng.uniform(-0.3, 0.3) * s
        light *= 1 - rng.uniform(0.2, 0.45) / (1 + np.exp(-d / (0.08 * s)))
    if "texture" in corruptions:
        light *= 1 + rng.uniform(0.02, 0.06) * _smooth_field(rng, h, w, int(rng.integers(4, 12)))
    img = img * (light[:, :, None] if img.ndim == 3 else light)
    if "noise" in corruptions:
        img = img + rng.normal(0, rng.uniform(0.01, 0.04), img.shape)
    if "border" in corruptions:  # the dark edge of a scanner lid or the table around a sheet
        level = rng.uniform(0.05, 0.3)
        for side in rng.permutation(4)[:int(rng.integers(1, 5))]:
            b = int(rng.uniform(0.01, 0.05) * (h if side < 2 else w)) + 1
            sl = [(slice(0, b), slice(None)), (slice(h - b, h), slice(None)),
                  (slice(None), slice(0, b)), (slice(None), slice(w - b, w))][side]
            img[sl] = level
    if "corner_pixels" in corruptions:  # four grey pixels, one in each corner
        for y, x in ((0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1)):
            img[y, x] = 0.5
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8), applied


def photo_set(images, labels, seed=0):
    """Photo-like versions of ``images`` (uint8 (n, 28, 28)): (pictures, labels, applied)."""
    rng = np.random.default_rng(seed)
    out, applied = [], []
    for d in images:
        img, a = photo_digit(np.asarray(d), rng)
        out.append(img)
        applied.append(a)
    return out, np.asarray(labels), applied


def tight_crop(digit, rng, margin=0.05, weight=(0.6, 1.4)):
    """One MNIST digit written with a broad marker (its strokes widened by ``weight``
    MNIST pixels, drawn uniformly, on each side: about twice MNIST's width) and
    photographed, the picture cropped to the digit with ``margin`` of its height around
    it: the ink covers a quarter to a half of the picture. uint8 ``(h, w)``."""
    s = int(rng.integers(120, 201))
    px = s / 28.0
    field = _enlarge(digit.astype(np.float64) / 255.0, s, s)
    ink = _max_filter(np.clip((field - 0.45) / 0.2 + 0.5, 0, 1), rng.uniform(*weight) * px)
    rows, cols = np.nonzero(ink > 0.5)
    m = int(margin * (rows.max() - rows.min()))
    pad = np.pad(ink, m)
    ink = pad[rows.min():rows.max() + 2 * m + 1, cols.min():cols.max() + 2 * m + 1]
    paper, ink_level = rng.uniform(0.75, 0.95), rng.uniform(0.02, 0.2)
    img = paper - (paper - ink_level) * ink + rng.normal(0, 0.015, ink.shape)
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


# Drawings made of pen strokes that are not digits: signs, letters and shapes. Each is a
# list of strokes (polylines) in a [-1, 1] square, (y, x), y down.
def _arc(n, cy, cx, ry, rx, a0, a1):
    t = np.linspace(a0, a1, n)
    return [(cy + ry * np.sin(u), cx + rx * np.cos(u)) for u in t]


STROKE_SHAPES = {
    "plus": [[(-1, 0), (1, 0)], [(0, -1), (0, 1)]],
    "minus": [[(0, -1), (0, 1)]],
    "x": [[(-1, -1), (1, 1)], [(-1, 1), (1, -1)]],
    "triangle": [[(-1, 0), (0.8, -1), (0.8, 1), (-1, 0)]],
    "square": [[(-1, -1), (-1, 1), (1, 1), (1, -1), (-1, -1)]],
    "equals": [[(-0.35, -1), (-0.35, 1)], [(0.35, -1), (0.35, 1)]],
    "hash": [[(-0.35, -1), (-0.35, 1)], [(0.35, -1), (0.35, 1)], [(-1, -0.35), (1, -0.35)],
             [(-1, 0.35), (1, 0.35)]],
    "star": [[(-np.cos(0.8 * np.pi * k), np.sin(0.8 * np.pi * k)) for k in range(6)]],
    "asterisk": [[(-1, 0), (1, 0)], [(-0.5, -0.87), (0.5, 0.87)], [(-0.5, 0.87), (0.5, -0.87)]],
    "check": [[(0.1, -1), (0.9, -0.3), (-1, 1)]],
    "arrow": [[(0, -1), (0, 1)], [(-0.6, 0.4), (0, 1), (0.6, 0.4)]],
    "smiley": [_arc(30, 0, 0, 1, 1, 0, 2 * np.pi), [(-0.3, -0.35), (-0.2, -0.35)],
               [(-0.3, 0.35), (-0.2, 0.35)], _arc(10, 0.1, 0, 0.45, 0.5, 0.3, np.pi - 0.3)],
    "spiral": [[(0.12 * t * np.sin(t), 0.12 * t * np.cos(t)) for t in np.linspace(0, 8, 60)]],
    "zigzag": [[(-0.5 + (k % 2), -1 + 0.4 * k) for k in range(6)]],
    "wave": [[(0.4 * np.sin(3 * t), t / 1.6) for t in np.linspace(-1.6, 1.6, 40)]],
    "A": [[(1, -0.8), (-1, 0), (1, 0.8)], [(0.3, -0.5), (0.3, 0.5)]],
    "E": [[(-1, 0.7), (-1, -0.7), (1, -0.7), (1, 0.7)], [(0, -0.7), (0, 0.5)]],
    "F": [[(-1, 0.7), (-1, -0.7), (1, -0.7)], [(0, -0.7), (0, 0.5)]],
    "H": [[(-1, -0.7), (1, -0.7)], [(-1, 0.7), (1, 0.7)], [(0, -0.7), (0, 0.7)]],
    "K": [[(-1, -0.6), (1, -0.6)], [(-1, 0.7), (0, -0.6), (1, 0.7)]],
    "M": [[(1, -0.9), (-1, -0.7), (0.2, 0), (-1, 0.7), (1, 0.9)]],
    "N": [[(1, -0.7), (-1, -0.7), (1, 0.7), (-1, 0.7)]],
    "R": [[(1, -0.7), (-1, -0.7), (-1, 0.2)] + _arc(9, -0.5, 0.2, 0.5, 0.5, -np.pi / 2,
                                                     np.pi / 2) + [(0, -0.7), (0, 0), (1, 0.7)]],
    "W": [[(-1, -0.9), (1, -0.45), (-0.3, 0), (1, 0.45), (-1, 0.9)]],
    "heart": [_arc(12, -0.45, -0.45, 0.45, 0.45, np.pi, 2 * np.pi)
              + _arc(12, -0.45, 0.45, 0.45, 0.45, np.pi, 2 * np.pi) + [(1, 0), (-0.45, -0.9)]],
    "less": [[(-0.9, 0.7), (0, -0.7), (0.9, 0.7)]],
    "greater": [[(-0.9, -0.7), (0, 0.7), (0.9, -0.7)]],
    "percent": [[(-1, 0.7), (1, -0.7)], _arc(12, -0.6, -0.45, 0.3, 0.25, 0, 2 * np.pi),
                _arc(12, 0.6, 0.45, 0.3, 0.25, 0, 2 * np.pi)],
    "at": [_arc(12, 0, 0.05, 0.35, 0.3, 0, 2 * np.pi),
           [(-0.3, 0.35), (0.35, 0.45)] + _arc(20, 0, 0, 1, 1, 0.4, 2 * np.pi - 0.2)],
    "C": [_arc(16, 0, 0, 1, 0.8, 0.25 * np.pi, 1.75 * np.pi)],
    "D": [[(-1, -0.7), (1, -0.7)], [(-1, -0.7)] + _arc(14, 0, -0.2, 1, 0.9, -np.pi / 2,
                                                        np.pi / 2) + [(1, -0.7)]],
    "G": [_arc(16, 0, 0, 1, 0.8, 1.75 * np.pi, 0.25 * np.pi) + [(0, 0.8), (0, 0.1)]],
    "L": [[(-1, -0.6), (1, -0.6), (1, 0.7)]],
    "P": [[(1, -0.7), (-1, -0.7)] + _arc(10, -0.5, -0.2, 0.5, 0.8, -np.pi / 2, np.pi / 2)
          + [(0, -0.7)]],
    "T": [[(-1, -0.9), (-1, 0.9)], [(-1, 0), (1, 0)]],
    "U": [[(-1, -0.7)] + _arc(12, 0.3, 0, 0.7, 0.7, np.pi, 0) + [(-1, 0.7)]],
    "V": [[(-1, -0.8), (1, 0), (-1, 0.8)]],
    "Y": [[(-1, -0.8), (0, 0), (-1, 0.8)], [(0, 0), (1, 0)]],
    "e": [[(0, -0.8), (0, 0.8)] + _arc(16, 0, 0, 0.9, 0.8, 0, -1.75 * np.pi)],
    "h": [[(-1, -0.6), (1, -0.6)], [(1, 0.6), (0, 0.6)] + _arc(8, 0, 0, 0.6, 0.6, 0, -np.pi)
          + [(0.2, -0.6)]],
    "m": [[(1, -0.9), (-0.3, -0.9)], [(1, 0), (-0.1, 0)] + _arc(6, -0.1, -0.45, 0.45, 0.45, 0,
                                                                   -np.pi) + [(-0.3, -0.9)],
          [(1, 0.9), (-0.1, 0.9)] + _arc(6, -0.1, 0.45, 0.45, 0.45, 0, -np.pi)],
    "n": [[(1, -0.7), (-0.5, -0.7)], [(1, 0.7), (-0.1, 0.7)] + _arc(8, -0.1, 0, 0.6, 0.7, 0,
                                                                     -np.pi) + [(-0.2, -0.7)]],
    "r": [[(1, -0.5), (-0.6, -0.5)], [(-0.1, -0.5)] + _arc(6, -0.1, 0.1, 0.6, 0.6, np.pi,
                                                           1.75 * np.pi)],
    "u": [[(-0.7, -0.7), (0.4, -0.7)] + _arc(8, 0.4, 0, 0.6, 0.7, np.pi, 0)[1:]
          + [(-0.7, 0.7)], [(-0.7, 0.7), (1, 0.7)]],
}


def _segment(canvas, p, q, r):
    """Draw a round-ended pen stroke of radius r from p to q (anti-aliased, max-combined)."""
    h, w = canvas.shape
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.subtract(q, p, dtype=float)
    t = np.clip(((yy - p[0]) * d[0] + (xx - p[1]) * d[1]) / max(d @ d, 1e-9), 0, 1)
    dist = np.hypot(yy - (p[0] + t * d[0]), xx - (p[1] + t * d[1]))
    np.maximum(canvas, np.clip(r + 0.5 - dist, 0, 1), out=canvas)


def _render_strokes(strokes, r):
    """Polylines in 112x112 pixels drawn with a pen of radius r, averaged down to an
    MNIST-like uint8 28x28 (light on dark)."""
    big = np.zeros((112, 112))
    for stroke in strokes:
        for p, q in zip(stroke[:-1], stroke[1:]):
            _segment(big, p, q, r)
    return np.round(big.reshape(28, 4, 28, 4).mean(axis=(1, 3)) * 255).astype(np.uint8)


def stroke_shape(name, rng):
    """Shape ``name`` of :data:`STROKE_SHAPES` (or ``"scribble"``: 1-3 random polylines of
    3-7 points) as an MNIST-like uint8 28x28, drawn by hand: a wobble on each point, a tilt
    up to 15 degrees, its own height and width, a pen 1.6-3.2 MNIST pixels wide."""
    r = rng.uniform(3.2, 6.4)  # in the 112-pixel drawing: 1.6-3.2 MNIST pixels wide
    if name == "scribble":
        strokes = [[tuple(p) for p in rng.uniform(24, 88, (int(rng.integers(3, 8)), 2))]
                   for _ in range(int(rng.integers(1, 4)))]
        return _render_strokes(strokes, r)
    ang = rng.uniform(-0.26, 0.26)
    ca, sa = np.cos(ang), np.sin(ang)
    sy, sx = rng.uniform(0.5, 1.0, 2) * 40  # half height and width, of a 40-pixel half box
    strokes = []
    for stroke in STROKE_SHAPES[name]:
        pts = []
        for y, x in stroke:
            y, x = y + rng.normal(0, 0.04), x + rng.normal(0, 0.04)
            pts.append((56 + sy * (ca * y - sa * x), 56 + sx * (sa * y + ca * x)))
        strokes.append(pts)
    return _render_strokes(strokes, r)


def non_digit_strokes(seed=0, per_shape=1, shapes=None, clean=0.5):
    """Stroke drawings that are not digits: ``[(name, picture)]``, ``per_shape`` of each of
    ``shapes`` (default: all of :data:`STROKE_SHAPES`), each drawn by :func:`stroke_shape`
    and put on paper by :func:`photo_digit`, on clean paper with probability ``clean``,
    else with photo corruptions as a digit would get them."""
    rng = np.random.default_rng(seed)
    out = []
    for name in (STROKE_SHAPES if shapes is None else shapes):
        for _ in range(per_shape):
            shape = stroke_shape(name, rng)
            out.append((name, photo_digit(shape, rng, set() if rng.random() < clean else None)[0]))
    return out


def non_digits(seed=0):
    """Pictures without a digit: ``[(name, image)]``; each should not be read as one."""
    rng = np.random.default_rng(seed)
    h, w = 200, 160
    yy, xx = np.mgrid[0:h, 0:w]
    paper = 0.85 * (1 - 0.3 * xx / w) * (1 + 0.03 * _smooth_field(rng, h, w))
    out = []

    def u8(x):
        return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)

    out.append(("blank paper with a shadow and texture", u8(paper)))
    out.append(("noisy blank paper", u8(paper + rng.normal(0, 0.03, (h, w)))))
    specks = np.zeros((h, w))
    for _ in range(12):
        _disc(specks, rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.5, 2.0), 1.0)
    out.append(("specks on paper", u8(paper * (1 - 0.8 * specks))))
    dot = np.zeros((h, w))
    _disc(dot, 90, 70, 6, 1.0)
    out.append(("one dot", u8(1 - dot)))
    canvas = np.zeros((112, 112))
    _disc(canvas, 40, 60, 4, 1.0)  # a click on the draw page: brush 20 px of 280, at 112
    out.append(("a click on the draw page", u8(1 - canvas)))
    ruled = np.ones((h, w)) * 0.9
    ruled[20::40, :] = 0.6
    out.append(("ruled lines only", u8(ruled)))
    blob = np.zeros((h, w))
    _disc(blob, 100, 80, 45, 1.0)
    out.append(("a filled disc", u8(1 - 0.9 * blob)))
    square = np.ones((h, w))
    square[50:150, 30:130] = 0.1
    out.append(("a filled square", u8(square)))
    out.append(("salt and pepper noise", u8(np.where(rng.random((h, w)) < 0.05, 0.0, 0.9))))
    return out


if __name__ == "__main__":  # pragma: no cover - a sample to look at
    import sys
    from pathlib import Path

    from PIL import Image

    from digitcore.datasets import load_mnist_mini

    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "photo_digits")
    out_dir.mkdir(parents=True, exist_ok=True)
    _, (xt, yt) = load_mnist_mini()
    pics, labels, applied = photo_set(xt[:40], yt[:40], seed=0)
    for i, (p, y, a) in enumerate(zip(pics, labels, applied)):
        Image.fromarray(p).save(out_dir / f"{i:03d}_{y}_{'-'.join(a) or 'clean'}.png")
    for name, p in non_digits():
        Image.fromarray(p).save(out_dir / f"none_{name.replace(' ', '_')}.png")
    print(f"wrote {len(pics)} digits and {len(non_digits())} non-digits to {out_dir}")
