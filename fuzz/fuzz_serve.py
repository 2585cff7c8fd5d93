"""Fuzz the serve API's request parsing: digitcore.serve.app.parse_predict_request,
then predict_json on what it returns, and the built-in PNG decoder.

Documented rejection: RequestError (4xx, turned into a JSON error by the handler) from
the request functions; PNGError (a ValueError) from decode_png. Anything else would be
a 500 "internal server error" for a client's bad request, i.e. a finding.

Input layout, byte 0 % 4:
  0  the rest is the raw request body;
  1  the rest is PNG bytes, sent as {"image": "data:image/png;base64,..."} (Pillow path
     when Pillow is installed);
  2  the rest is PNG bytes given to the NumPy decoder (use_pillow=False) after the
     harness recomputes every chunk CRC (the fuzzer cannot forge CRC-32s itself);
  3  bytes 1-2 are width and height, the rest pixel values, sent as {"pixels": ...}.

    python fuzz/fuzz_serve.py fuzz/corpus/serve -max_total_time=60
"""

import base64
import json
import struct
import sys
import warnings
import zlib

import atheris

import _common  # noqa: F401  (sys.path)
import numpy as np

with atheris.instrument_imports(include=["digitcore.serve", "digitcore.png"]):
    from digitcore.serve.app import RequestError, decode_png_bytes, parse_predict_request, \
        predict_json
    from digitcore.png import PNGError

import digitcore  # noqa: E402

NET = digitcore.Network([784, 16, 10], seed=0)
warnings.simplefilter("ignore")  # Pillow's DecompressionBombWarning: the size check follows
SIG = b"\x89PNG\r\n\x1a\n"


def fix_crcs(data: bytes) -> bytes:
    """Rewrite the CRC of every chunk of a (possibly mangled) PNG."""
    if not data.startswith(SIG):
        return data
    out, pos = [SIG], len(SIG)
    while pos + 8 <= len(data):
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        ctype = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        out.append(struct.pack(">I", length) + ctype + body
                   + struct.pack(">I", zlib.crc32(ctype + body)))
        pos += 12 + length
    return b"".join(out)


def _check_decoded(image):
    """uint8 grey or colour, or a 16-bit grey PNG's levels as they are (uint16 from the
    built-in decoder, Pillow's uint16 or int32)."""
    assert isinstance(image, np.ndarray), type(image)
    if image.dtype == np.uint8:
        assert image.ndim in (2, 3), image.shape
    else:
        assert image.dtype in (np.uint16, np.int32) and image.ndim == 2, (image.dtype,
                                                                          image.shape)


def _request(raw: bytes):
    try:
        image = parse_predict_request(raw)
    except RequestError as exc:
        assert 400 <= exc.status < 500, exc.status
        return
    _check_decoded(image)
    try:
        result = predict_json(NET, image)
    except RequestError as exc:
        assert 400 <= exc.status < 500, exc.status
        return
    assert 0 <= result["digit"] <= 9
    json.dumps(result, allow_nan=False)  # what the handler sends must be strict JSON


def TestOneInput(data: bytes):
    if not data:
        return
    mode, payload = data[0] % 4, data[1:]
    if mode == 0:
        _request(payload)
    elif mode == 1:
        url = "data:image/png;base64," + base64.b64encode(fix_crcs(payload)).decode()
        _request(json.dumps({"image": url}).encode())
    elif mode == 2:
        try:
            arr = decode_png_bytes(fix_crcs(payload), use_pillow=False)
        except PNGError:
            return
        _check_decoded(arr)
    else:
        if len(payload) < 2:
            return
        w, h = 1 + payload[0] % 40, 1 + payload[1] % 40
        values = list(payload[2:2 + w * h])
        if len(payload) > 2 and payload[2] & 0x80:  # sometimes floats and strays
            values = [v / 3.0 if v % 7 else (-v if v % 2 else 300 + v) for v in values]
        _request(json.dumps({"pixels": values, "width": w, "height": h}).encode())


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
