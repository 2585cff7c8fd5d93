"""Fuzz digitcore.imaging.preprocess_image on arrays and on image files.

Documented rejection: ValueError (unreadable file, bad shape or dtype, values out of
range, NaN, blank image). Whatever is accepted must come out uint8 (28, 28) with ink
(max 255), since a blank image is an error.

Input layout: byte 0 chooses a mode. mode & 1: the rest is written to a file and passed
by path (Pillow decodes it; the corpus holds small PNG/BMP/GIF/JPEG files). Otherwise
bytes 1..4 pick dtype, rank, height and width/channels and the rest fills an array.

    python fuzz/fuzz_image.py fuzz/corpus/image -max_total_time=60
"""

import sys
import warnings

import atheris

import _common
import numpy as np

with atheris.instrument_imports(include=["digitcore"]):
    from digitcore.imaging import preprocess_image

EXPECTED = (ValueError,)
DTYPES = [np.uint8, np.uint16, np.int16, np.int32, np.int64, np.float32, np.float64, np.bool_,
          np.int8, np.float16, np.complex64, np.uint64]
# Pillow warns (DecompressionBombWarning) before it refuses; a warning is not a finding
warnings.simplefilter("ignore")
try:  # keep the decoder's work per input small: a fuzzed header can claim 2**31 pixels
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = 4_000_000
except ImportError:  # pragma: no cover
    pass


def _array(data: bytes):
    if len(data) < 4:
        return None
    dtype = np.dtype(DTYPES[data[0] % len(DTYPES)])
    ndim = 2 + data[1] % 2
    h = 1 + data[2] % 64
    w = 1 + data[3] % 64
    chans = 1 + data[1] // 2 % 5
    shape = (h, w) if ndim == 2 else (h, w, chans)
    body = data[4:]
    n = int(np.prod(shape))
    raw = (body * (-(-n * dtype.itemsize // max(len(body), 1)))) if body else b""
    raw = raw[:n * dtype.itemsize]
    if len(raw) < n * dtype.itemsize:
        return np.zeros((0, 0), dtype)
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def TestOneInput(data: bytes):
    if not data:
        return
    mode, payload = data[0], data[1:]
    if mode & 1:
        with _common.scratch(payload, ".png") as path:
            try:
                out = preprocess_image(path)
            except EXPECTED:
                return
    else:
        image = _array(payload)
        if image is None:
            return
        try:
            out = preprocess_image(image)
        except EXPECTED:
            return
    assert out.dtype == np.uint8 and out.shape == (28, 28), (out.dtype, out.shape)
    assert out.max() == 255, out.max()


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
