"""A small PNG decoder (zlib + NumPy), so that ``digitcore serve`` reads drawings and
``preprocess_image`` (``digitcore predict``) reads PNG files without Pillow.

It covers what browsers' ``canvas.toDataURL("image/png")`` produces and the common rest:
non-interlaced PNGs of 8-bit grey, grey+alpha, RGB, RGBA and palette images and 16-bit
grey/colour (reduced to 8 bits, or 16-bit grey kept as uint16 with ``wide``). Anything
else raises :class:`PNGError` with the reason.
Sizes are checked before anything is decompressed, and decompression is bounded, so a
small file cannot expand into a huge allocation; Average- and Paeth-filtered rows, decoded
in Python, are refused when they would take more than about a second (thin strips).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

__all__ = ["PNGError", "decode_png", "encode_png", "MAX_PIXELS"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A drawing pad is at most a few megapixels; more than this is a mistake or an attack.
MAX_PIXELS = 4096 * 4096
# Average and Paeth rows are decoded in Python (_unfilter): at most this many wavefront
# steps (~30 us each), or 120 times as many bytes along rows, ~1 s. A 4096 x 4096 image
# takes 8,192 steps; only strips thousands of times longer than wide come near it.
MAX_FILTER_STEPS = 32768
# _unfilter_blocks's rows at a time: about this many bytes (its sums take a few copies)
_BLOCK_BYTES = 4 << 20
# channels per colour type
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


class PNGError(ValueError):
    """The bytes are not a PNG this decoder handles (the message says why)."""


def _chunks(data: bytes):
    pos = len(SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise PNGError("truncated PNG: missing IEND chunk")
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 8 + length
        if end + 4 > len(data):
            raise PNGError(f"truncated PNG: chunk {ctype!r} runs past the end of the data")
        body = data[pos + 8:end]
        (crc,) = struct.unpack(">I", data[end:end + 4])
        if zlib.crc32(ctype + body) != crc:
            raise PNGError(f"corrupt PNG: bad CRC in chunk {ctype!r}")
        yield ctype, body
        if ctype == b"IEND":
            return
        pos = end + 4


def _unfilter(raw: np.ndarray, height: int, stride: int, bpp: int) -> np.ndarray:
    """Undo the per-row PNG filters; ``raw`` holds height * (1 + stride) bytes."""
    rows = raw.reshape(height, stride + 1)
    filters = rows[:, 0]
    if filters.max(initial=0) > 4:
        raise PNGError(f"corrupt PNG: unknown row filter {int(filters.max())}")
    if filters.max(initial=0) <= 2:  # none, sub and up only: whole blocks of rows at once
        return _unfilter_blocks(rows, filters, bpp)
    # Average and Paeth rows depend on the decoded byte to their left: a loop along the
    # row, ~0.25 us a byte in Python, or _unfilter_wavefront, ~30 us a step for
    # height + width steps: whichever costs less (a thin strip takes the loop).
    sequential = int(np.count_nonzero(filters >= 3)) * stride
    steps = height + stride // bpp
    wavefront = sequential > 120 * steps
    # (a 15 kB PNG of one 2,000,000-pixel RGBA row took 3.3 s and 244 MB of Python lists;
    # the loop also pays a few microseconds a row, ~1/8 of a step: a 32 kB PNG of
    # 16,777,216 one-pixel rows took a minute)
    if (steps if wavefront else sequential / 120 + height / 8) > MAX_FILTER_STEPS:
        raise PNGError(f"unsupported PNG: its {height:,} row(s) of {stride:,} bytes, filtered "
                       f"with Average or Paeth, take this decoder too long (Pillow reads it)")
    if wavefront:
        return _unfilter_wavefront(rows[:, 1:], filters, bpp)
    # a row at a time: none, sub and up from the row above in NumPy
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        f = filters[y]
        line = rows[y, 1:]
        if f == 0:
            cur = line
        elif f == 1:  # sub: a running sum (mod 256) along each byte lane
            cur = np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8).ravel()
        elif f == 2:  # up
            cur = line + prev
        else:
            cur = np.array(_average_or_paeth(f, line.tolist(), prev.tolist(), bpp),
                           dtype=np.uint8)
        out[y] = cur
        prev = out[y]
    return out


def _unfilter_blocks(rows: np.ndarray, filters: np.ndarray, bpp: int) -> np.ndarray:
    """_unfilter for images whose rows are all filtered none (0), sub (1) or up (2), in
    blocks of rows, with no per-row Python (a loop over 16 million one-pixel rows took a
    minute). Sub rows are a running sum along the row; a run of up rows after row r is
    row r plus the running sum of their bytes down the column (mod 256, as uint8 wraps),
    from the cumulative sum of the block less its value before r."""
    height, stride = rows.shape[0], rows.shape[1] - 1
    out = rows[:, 1:].copy()
    sub = filters == 1
    if sub.any():
        out[sub] = np.cumsum(out[sub].reshape(-1, stride // bpp, bpp), axis=1,
                             dtype=np.uint8).reshape(-1, stride)
    up = filters == 2
    if not up.any():
        return out
    block = max(1, _BLOCK_BYTES // max(stride, 1))
    prev = np.zeros((1, stride), dtype=np.uint8)  # (the row above the first: zeros)
    for a in range(0, height, block):
        b = min(height, a + block)
        # the row above the block leads it, as a row that starts a run
        part = np.concatenate([prev, out[a:b]])
        starts = np.concatenate([[True], ~up[a:b]])
        total = np.cumsum(part, axis=0, dtype=np.uint8)
        # for each row, the last row at or above it that starts a run
        first = np.maximum.accumulate(np.where(starts, np.arange(b - a + 1), 0))
        before = np.where((first > 0)[:, None], total[np.maximum(first - 1, 0)], 0)
        out[a:b] = (total - before.astype(np.uint8))[1:]
        prev = out[b - 1:b]
    return out


def _average_or_paeth(f, c: list, up: list, bpp: int) -> list:
    """One average (3) or Paeth (4) row decoded in place, a byte at a time (plain Python
    ints beat per-element NumPy indexing here)."""
    if f == 3:
        for x in range(len(c)):
            left = c[x - bpp] if x >= bpp else 0
            c[x] = (c[x] + ((left + up[x]) >> 1)) & 0xFF
        return c
    for x in range(len(c)):
        if x >= bpp:
            a, b, d = c[x - bpp], up[x], up[x - bpp]
        else:
            a, b, d = 0, up[x], 0
        p = a + b - d
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - d)
        c[x] = (c[x] + (a if pa <= pb and pa <= pc else (b if pb <= pc else d))) & 0xFF
    return c


def _unfilter_wavefront(data: np.ndarray, filters: np.ndarray, bpp: int) -> np.ndarray:
    """_unfilter for images with average or Paeth rows, whose bytes depend on the decoded
    byte to their left (a loop along the row in Python took ~0.25 us a byte: 8 s for a
    4096 x 4096 16-bit picture). Pixel (y, j), its ``bpp`` bytes, depends only on
    (y, j - 1), (y - 1, j) and (y - 1, j - 1), so all pixels of one anti-diagonal
    y + j = d are decoded at once from the two diagonals before it: height + width steps of
    NumPy operations on a diagonal's pixels, every filter kind computed and each row's
    chosen."""
    height, stride = data.shape
    width = stride // bpp  # (bpp divides the stride: bpp is 1 below 8 bits a sample)
    pixels = data.reshape(height, width, bpp)
    out = np.empty((height, width, bpp), dtype=np.uint8)
    kinds = filters.astype(np.intp)[:, None]
    rows = np.arange(height)
    # the two diagonals before this one: entry y + 1 holds pixel (y, d - y); entries of
    # pixels outside the image (and entry 0, row -1) are 0, as PNG's edges are
    before = np.zeros((height + 1, bpp), np.int16)
    last = np.zeros((height + 1, bpp), np.int16)
    for d in range(height + width - 1):
        lo, hi = max(0, d - width + 1), min(height - 1, d) + 1
        ys = rows[lo:hi]
        a = last[lo + 1:hi + 1]  # left: (y, j - 1)
        b = last[lo:hi]  # up: (y - 1, j)
        c = before[lo:hi]  # up-left: (y - 1, j - 1)
        pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        pred = np.choose(kinds[lo:hi], [np.zeros_like(a), a, b, (a + b) >> 1, paeth])
        value = (pixels[ys, d - ys] + pred) & 0xFF
        out[ys, d - ys] = value
        before, last = last, np.zeros_like(last)
        last[lo + 1:hi + 1] = value
    return out.reshape(height, stride)


def _check_header(width, height, depth, ctype_, comp, filt, interlace, max_pixels=MAX_PIXELS):
    if width == 0 or height == 0:
        raise PNGError("PNG has zero width or height")
    if width * height > max_pixels:
        raise PNGError(f"PNG is too large ({width}x{height}); the limit is {max_pixels:,} pixels")
    if ctype_ not in _CHANNELS or comp != 0 or filt != 0:
        raise PNGError(f"unsupported PNG (colour type {ctype_}, compression {comp}, filter {filt})")
    if interlace != 0:
        raise PNGError("unsupported PNG: interlaced images are not handled")
    allowed = {0: (1, 2, 4, 8, 16), 3: (1, 2, 4, 8)}.get(ctype_, (8, 16))
    if depth not in allowed:
        raise PNGError(f"invalid PNG bit depth {depth} for colour type {ctype_}")


def decode_png(data: bytes, wide: bool = False, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode PNG bytes into a uint8 array (uint16 for 16-bit grey with ``wide``); a PNG
    declaring more than ``max_pixels`` pixels is refused from its header, before any
    image data is read.

    16-bit images are reduced to their high byte; with ``wide``, a 16-bit grey image
    is returned as uint16 instead (as Pillow reads it: preprocess_image then finds its
    bit depth from its largest value, a 12-bit scan's 4095 being white).

    Returns
    -------
    ndarray, uint8 (uint16: ``wide`` and 16-bit grey)
        ``(h, w)`` grey, ``(h, w, 2)`` grey+alpha, ``(h, w, 3)`` RGB or ``(h, w, 4)`` RGBA
        (palette images become RGB, or RGBA when they have a tRNS chunk; grey and RGB
        images with a tRNS chunk, its colour transparent, grey+alpha and RGBA), turned as
        the file's EXIF orientation says (an eXIf chunk's tag 274), as viewers show it
        and as Pillow's ``ImageOps.exif_transpose`` turns it.

    Raises
    ------
    PNGError
        For anything that is not a well-formed PNG of a supported kind.
    """
    data = bytes(data)
    if not data.startswith(SIGNATURE):
        raise PNGError("not a PNG file (bad signature)")
    header = None
    palette = trns = None
    orientation = 1
    idat = []
    for ctype, body in _chunks(data):
        if header is None and ctype != b"IHDR":
            raise PNGError("corrupt PNG: the first chunk is not IHDR")
        if ctype == b"IHDR":
            if header is not None or len(body) != 13:
                raise PNGError("corrupt PNG: bad IHDR chunk")
            header = struct.unpack(">IIBBBBB", body)
            _check_header(*header, max_pixels)  # before reading on: refuse huge images early
        elif ctype == b"PLTE":
            if len(body) % 3 or not body:
                raise PNGError("corrupt PNG: PLTE length is not a multiple of 3")
            palette = np.frombuffer(body, dtype=np.uint8).reshape(-1, 3)
        elif ctype == b"tRNS":
            trns = np.frombuffer(body, dtype=np.uint8)
        elif ctype == b"IDAT":
            idat.append(body)
        elif ctype == b"eXIf":
            orientation = exif_orientation(body)
    if header is None:
        raise PNGError("corrupt PNG: no IHDR chunk")
    width, height, depth, ctype_, comp, filt, interlace = header
    if not idat:
        raise PNGError("corrupt PNG: no image data")
    channels = _CHANNELS[ctype_]
    bpp = max(1, channels * depth // 8)
    stride = (width * channels * depth + 7) // 8
    expected = height * (stride + 1)
    dec = zlib.decompressobj()
    try:
        raw = dec.decompress(b"".join(idat), expected + 1)
    except zlib.error as exc:
        raise PNGError(f"corrupt PNG: bad compressed data ({exc})") from None
    if len(raw) != expected:
        raise PNGError(f"corrupt PNG: image data has {len(raw)} bytes, expected {expected}")
    pixels = _unfilter(np.frombuffer(raw, dtype=np.uint8), height, stride, bpp)
    # a grey or RGB image's tRNS chunk: the one colour (2 bytes a sample, whatever the
    # depth) that is transparent; another length is ignored, as Pillow does
    key = None
    if trns is not None and ctype_ in (0, 2) and len(trns) == 2 * channels:
        key = np.frombuffer(trns.tobytes(), dtype=">u2").astype(np.int64)
    keyed = None  # (height, width) bool: the pixels of that colour
    if depth == 16:
        samples = pixels.reshape(height, width * channels, 2)
        if key is not None:
            keyed = (samples.view(">u2")[:, :, 0].reshape(height, width, channels)
                     == key).all(axis=2)
        if wide and channels == 1 and key is None:
            pixels = samples.view(">u2")[:, :, 0].astype(np.uint16)
        else:
            pixels = samples[:, :, 0]  # keep the high byte
    elif depth < 8:  # 1, 2 or 4 bits per pixel, packed from the most significant bit
        shifts = np.arange(8 - depth, -1, -depth, dtype=np.uint8)
        pixels = ((pixels[:, :, None] >> shifts) & ((1 << depth) - 1)).reshape(height, -1)
        pixels = pixels[:, :width].astype(np.uint8)
        if key is not None:
            keyed = pixels == key[0]
        if ctype_ == 0:  # grey levels scale to 0-255; palette indices stay indices
            pixels = pixels * np.uint8(255 // ((1 << depth) - 1))
    elif key is not None:
        keyed = (pixels.reshape(height, width, channels) == key).all(axis=2)
    img = pixels.reshape(height, width, channels)
    if keyed is not None:  # grey + alpha, or RGBA
        alpha = np.where(keyed, np.uint8(0), np.uint8(255))
        return orient(np.dstack([img, alpha]), orientation)
    if ctype_ == 3:
        if palette is None:
            raise PNGError("corrupt PNG: palette image without a valid PLTE chunk")
        index = img[:, :, 0]
        if int(index.max()) >= len(palette):
            raise PNGError("corrupt PNG: palette index out of range")
        rgb = palette[index]
        if trns is None:
            return orient(rgb, orientation)
        alpha = np.full(len(palette), 255, dtype=np.uint8)
        alpha[:min(len(trns), len(palette))] = trns[:len(palette)]
        return orient(np.dstack([rgb, alpha[index]]), orientation)
    return orient(img[:, :, 0] if channels == 1 else img, orientation)


def exif_orientation(exif: bytes) -> int:
    """The orientation (1-8, tag 274 of the first IFD) in EXIF data as a PNG's eXIf chunk
    holds it (a TIFF header, "II*\\0" or "MM\\0*", then the IFDs); 1, upright, when it
    has none or cannot be read (a damaged tag must not hide a readable image)."""
    if len(exif) < 8 or exif[:4] not in (b"II*\x00", b"MM\x00*"):
        return 1
    e = "<" if exif[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(e + "I", exif, 4)
    if ifd + 2 > len(exif):
        return 1
    (count,) = struct.unpack_from(e + "H", exif, ifd)
    for k in range(count):
        at = ifd + 2 + 12 * k
        if at + 12 > len(exif):
            break
        tag, kind, n = struct.unpack_from(e + "HHI", exif, at)
        if tag == 274 and kind == 3 and n >= 1:  # SHORT, in the entry's value field
            (value,) = struct.unpack_from(e + "H", exif, at + 8)
            return value if 1 <= value <= 8 else 1
    return 1


def orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """``img`` (rows, columns[, channels]) as EXIF ``orientation`` says to show it."""
    if orientation in (5, 6, 7, 8):
        img = img.swapaxes(0, 1)  # 5: transposed; 6, 7, 8 then flipped below
    if orientation in (2, 3, 6, 7):
        img = img[:, ::-1]
    if orientation in (3, 4, 7, 8):
        img = img[::-1]
    return np.ascontiguousarray(img)


def _filter_row(kind: int, cur: list, up: list, bpp: int) -> list:
    out = []
    for x, v in enumerate(cur):
        a = cur[x - bpp] if x >= bpp else 0
        b = up[x]
        c = up[x - bpp] if x >= bpp else 0
        if kind == 0:
            pred = 0
        elif kind == 1:
            pred = a
        elif kind == 2:
            pred = b
        elif kind == 3:
            pred = (a + b) >> 1
        else:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        out.append((v - pred) & 0xFF)
    return out


def encode_png(image: np.ndarray, filters=(0,)) -> bytes:
    """Encode a uint8 ``(h, w)``, ``(h, w, 2|3|4)`` array as an 8-bit PNG.

    Row ``y`` uses PNG filter ``filters[y % len(filters)]`` (0 none, 1 sub, 2 up,
    3 average, 4 Paeth); the default, no filtering, is fast. Used by the tests and
    as the reference the decoder is checked against.
    """
    img = np.ascontiguousarray(image, dtype=np.uint8)
    if img.ndim == 2:
        ctype = 0
        img = img[:, :, None]
    elif img.ndim == 3 and img.shape[2] in (2, 3, 4):
        ctype = {2: 4, 3: 2, 4: 6}[img.shape[2]]
    else:
        raise ValueError(f"encode_png takes (h, w), (h, w, 2|3|4) uint8, got shape {img.shape}")
    h, w = img.shape[:2]
    raw = np.zeros((h, 1 + w * img.shape[2]), dtype=np.uint8)
    rows = img.reshape(h, -1)
    if tuple(filters) == (0,):
        raw[:, 1:] = rows
    else:
        prev = [0] * rows.shape[1]
        for y in range(h):
            kind = int(filters[y % len(filters)])
            if kind not in (0, 1, 2, 3, 4):
                raise ValueError(f"PNG filter types are 0-4, got {kind}")
            cur = rows[y].tolist()
            raw[y, 0] = kind
            raw[y, 1:] = _filter_row(kind, cur, prev, img.shape[2])
            prev = cur

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body))

    return (SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, ctype, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b""))
