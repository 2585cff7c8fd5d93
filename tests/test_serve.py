"""digitcore serve: the JSON API and static files over a real server on 127.0.0.1.

Every request goes to a server on an ephemeral loopback port; nothing else is contacted.
"""

import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import digitcore
from digitcore.datasets import load_mnist_mini
from digitcore.imaging import preprocess_image
from digitcore.serve import MAX_BODY, default_model, make_server
from digitcore.serve.app import decode_png_bytes, is_loopback
from digitcore.png import PNGError, decode_png, encode_png

from serving import port_of, running_server, serve_process

try:
    import PIL  # noqa: F401
    HAVE_PILLOW = True
except ImportError:
    HAVE_PILLOW = False


# ---------------------------------------------------------------------------- fixtures

def _trained_network():
    """784-32-10, two epochs on mnist-mini: well under a second, about 85% accurate."""
    (x, y), _ = load_mnist_mini()
    threads = digitcore.get_num_threads()
    digitcore.set_num_threads(1)  # tiny work: threads only add contention on a busy CI box
    try:
        net = digitcore.Network([784, 32, 10], seed=0)
        digitcore.Trainer(net, optimizer="adam", lr=3e-3, epochs=2, seed=0, verbose=0).fit(x, y)
    finally:
        digitcore.set_num_threads(threads)
    return net


@pytest.fixture(scope="module")
def net():
    return _trained_network()


@pytest.fixture(scope="module")
def test_images():
    _, (x_te, y_te) = load_mnist_mini()
    return x_te[:40], y_te[:40]


@pytest.fixture(scope="module")
def server(net):
    with running_server(net) as srv:
        yield srv


def _request(server, method, path, body=None, headers=None, timeout=10):
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        hdrs.update(headers or {})
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, dict(resp.getheaders()), data
    finally:
        conn.close()


def _json(server, method, path, body=None, headers=None):
    status, hdrs, data = _request(server, method, path, body, headers)
    assert hdrs["Content-Type"] == "application/json", (status, data[:200])
    return status, json.loads(data)


def _predict(server, body):
    return _json(server, "POST", "/api/predict", body)


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _expected(net, image):
    img28 = preprocess_image(image)
    proba = net.predict_proba(img28.reshape(1, -1))[0]
    return int(np.argmax(proba)), proba, img28


# ---------------------------------------------------------------------------- good requests

def test_page_and_static_files(server):
    status, hdrs, body = _request(server, "GET", "/")
    assert status == 200 and hdrs["Content-Type"].startswith("text/html")
    assert b'<canvas id="pad"' in body and b'src="static/app.js"' in body
    # every URL the page uses is relative, so it works under a proxy's path prefix
    # (location /digits/ { proxy_pass http://127.0.0.1:8000/; }) as at the root
    page = body.decode()
    script = _request(server, "GET", "/static/app.js")[2].decode()
    assert '"/static' not in page and "fetch(\"/" not in script and "fetch('/" not in script
    assert 'fetch("api/predict' in script and 'fetch("api/model")' in script
    assert "default-src 'none'" in hdrs["Content-Security-Policy"]
    assert hdrs["X-Content-Type-Options"] == "nosniff"
    assert b"http://" not in body and b"https://" not in body  # no CDN, nothing external
    for path, ctype in [("/static/app.css", "text/css"), ("/static/app.js", "text/javascript")]:
        status, hdrs, body = _request(server, "GET", path)
        assert status == 200 and hdrs["Content-Type"].startswith(ctype) and len(body) > 500
        assert b"http://" not in body and b"https://" not in body
    status, hdrs, body = _request(server, "HEAD", "/index.html")
    assert status == 200 and body == b"" and int(hdrs["Content-Length"]) > 500
    status, _, _ = _request(server, "GET", "/?from=bookmark")
    assert status == 200


def test_healthz_and_model(server, net):
    assert _json(server, "GET", "/healthz") == (200, {"status": "ok"})
    status, info = _json(server, "GET", "/api/model")
    assert status == 200
    assert info["layer_sizes"] == [784, 32, 10]
    assert info["architecture"] == "784-32-10 relu" and info["members"] == 1
    assert info["n_params"] == net.n_params
    assert info["config"] == net.get_config()
    assert info["digitcore_version"] == digitcore.__version__


def test_predict_pixels_matches_predict_image(server, net, test_images):
    x, y = test_images
    correct = 0
    for img, label in zip(x[:10], y[:10]):
        status, r = _predict(server, {"pixels": img.ravel().tolist()})
        assert status == 200, r
        digit, proba, img28 = _expected(net, img)
        assert r["digit"] == digit == net.predict_image(img)[0]
        assert len(r["probabilities"]) == 10
        np.testing.assert_allclose(r["probabilities"], proba, atol=1e-5)
        assert abs(sum(r["probabilities"]) - 1) < 1e-4
        assert r["input28"] == img28.ravel().tolist()
        correct += r["digit"] == label
    assert correct >= 7


def test_predict_pixels_other_size_and_floats(server, net, test_images):
    x, _ = test_images
    big = np.kron(255 - x[3], np.ones((4, 4), dtype=np.uint8))  # 112x112, dark ink on white
    status, r = _predict(server, {"pixels": big.ravel().tolist(), "width": 112, "height": 112})
    assert status == 200
    assert r["digit"] == _expected(net, big)[0]
    status, r2 = _predict(server, {"pixels": [float(v) for v in x[3].ravel()]})
    assert status == 200 and r2["input28"] == preprocess_image(x[3]).ravel().tolist()


@pytest.mark.parametrize("mode", ["grey", "rgba_transparent", "rgb"])
def test_predict_png_data_url(server, net, test_images, mode):
    img = test_images[0][5]
    if mode == "grey":
        arr = 255 - img
    elif mode == "rgb":
        arr = np.repeat((255 - img)[:, :, None], 3, axis=2)
    else:  # what a canvas with a transparent background gives: black ink, alpha = ink
        arr = np.zeros((28, 28, 4), dtype=np.uint8)
        arr[:, :, 3] = img
    status, r = _predict(server, {"image": _data_url(encode_png(arr, filters=(0, 1, 2, 3, 4)))})
    assert status == 200, r
    digit, proba, img28 = _expected(net, arr)
    assert r["digit"] == digit
    assert r["input28"] == img28.ravel().tolist()


# ---------------------------------------------------------------------------- PNG decoding

@pytest.mark.parametrize("shape", [(1, 1), (9, 11), (7, 5, 2), (9, 11, 3), (13, 6, 4)])
def test_png_decoder_round_trip_all_filters(rng, shape):
    arr = rng.integers(0, 256, size=shape, dtype=np.uint8)
    for filters in [(0,), (1,), (2,), (3,), (4,), (4, 3, 2, 1, 0)]:
        np.testing.assert_array_equal(decode_png(encode_png(arr, filters)), arr)
        np.testing.assert_array_equal(decode_png_bytes(encode_png(arr, filters), False), arr)


def _unfilter_by_definition(rows, bpp):
    """The PNG specification's reconstruction, a byte at a time (rows: filter byte first)."""
    out, prev = [], [0] * (rows.shape[1] - 1)
    for row in rows:
        kind, cur = int(row[0]), row[1:].tolist()
        for x in range(len(cur)):
            a = cur[x - bpp] if x >= bpp else 0
            b, c = prev[x], (prev[x - bpp] if x >= bpp else 0)
            p = a + b - c
            paeth = a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else (
                b if abs(p - b) <= abs(p - c) else c)
            cur[x] = (cur[x] + (0, a, b, (a + b) >> 1, paeth)[kind]) & 0xFF
        out.append(cur)
        prev = cur
    return np.array(out, dtype=np.uint8).reshape(rows.shape[0], -1)


@pytest.mark.parametrize("bpp", [1, 2, 3, 4, 6, 8])
def test_png_unfilter_is_the_specifications(rng, bpp):
    # average and Paeth rows are decoded a row at a time or a diagonal at a time
    # (png._unfilter_wavefront, for all but thin pictures): both ways, every mix of the
    # five filters, 16-bit pixels (bpp 2, 6, 8) included, and values at the predictors'
    # ties (0, 127, 128, 255)
    from digitcore import png

    for trial in range(40):
        h, w = int(rng.integers(1, 10)), int(rng.integers(1, 10))
        rows = rng.integers(0, 256, (h, 1 + w * bpp), dtype=np.uint8)
        if trial % 3 == 0:
            rows[:, 1:] = rng.choice(np.array([0, 127, 128, 255], np.uint8), (h, w * bpp))
        rows[:, 0] = rng.integers(0, 5, h)
        if trial % 4 == 0:
            rows[:, 0] = rng.integers(3, 5, h)
        want = _unfilter_by_definition(rows, bpp)
        np.testing.assert_array_equal(png._unfilter(rows.ravel(), h, w * bpp, bpp), want)
        np.testing.assert_array_equal(png._unfilter_wavefront(rows[:, 1:], rows[:, 0], bpp),
                                      want)


@pytest.mark.parametrize("bpp", [1, 2, 3, 4, 6, 8])
def test_png_none_sub_and_up_rows_decode_in_blocks_as_specified(rng, bpp, monkeypatch):
    # images filtered with none, sub and up only are decoded whole blocks of rows at a time
    # (png._unfilter_blocks), here blocks of a few rows, so runs of up rows cross them
    from digitcore import png

    for block_bytes in (1, 3 * bpp, 1 << 20):
        monkeypatch.setattr(png, "_BLOCK_BYTES", block_bytes)
        for trial in range(20):
            h, w = int(rng.integers(1, 14)), int(rng.integers(1, 9))
            rows = rng.integers(0, 256, (h, 1 + w * bpp), dtype=np.uint8)
            rows[:, 0] = rng.choice([0, 1, 2, 2, 2], h)
            want = _unfilter_by_definition(rows, bpp)
            np.testing.assert_array_equal(png._unfilter(rows.ravel(), h, w * bpp, bpp), want)


def test_a_tall_png_of_rows_filtered_without_average_or_paeth_decodes_in_blocks(monkeypatch):
    """A 32 kB PNG of 16,777,216 one-pixel rows filtered Sub took a minute to decode,
    NumPy called row by row (only Average and Paeth rows counted against the decoder's
    budget), before the picture was refused as too thin: such rows are decoded in blocks
    now, and a mix with Average or Paeth rows pays for its rows."""
    import struct
    import zlib

    from digitcore import png

    def tall_png(filters, h):
        raw = np.zeros((h, 2), np.uint8)
        raw[:, 0] = filters[np.arange(h) % len(filters)]
        raw[::7, 1] = 200
        ihdr = struct.pack(">IIBBBBB", 1, h, 8, 0, 0, 0, 0)

        def chunk(kind, body):
            return (struct.pack(">I", len(body)) + kind + body
                    + struct.pack(">I", zlib.crc32(kind + body)))

        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                + chunk(b"IDAT", zlib.compress(raw.tobytes(), 9)) + chunk(b"IEND", b"")), raw

    looped = []
    real = png._average_or_paeth
    monkeypatch.setattr(png, "_average_or_paeth",
                        lambda *a: looped.append(1) or real(*a))
    h = 4_000_000
    data, raw = tall_png(np.array([2], np.uint8), h)  # every row Up: a running sum down
    assert len(data) < 50_000
    np.testing.assert_array_equal(decode_png(data)[:, 0],
                                  np.cumsum(raw[:, 1], dtype=np.uint8))
    data, raw = tall_png(np.array([1, 0, 2], np.uint8), h)  # sub, none, up, ...
    out = decode_png(data)[:, 0]
    want = raw[:, 1].copy()
    want[2::3] += want[1::3]  # (each up row adds the none row above it)
    np.testing.assert_array_equal(out, want)
    data, _ = tall_png(np.array([4, 0, 1, 2], np.uint8), h)  # Paeth rows: the row loop
    with pytest.raises(PNGError, match="4,000,000 row.s. of 1 bytes.*Pillow reads it"):
        decode_png(data)
    assert looped == []  # refused before any row is decoded


@pytest.mark.skipif(not HAVE_PILLOW, reason="Pillow is not installed (it writes the test PNG)")
@pytest.mark.parametrize("use_pillow", [None, False])
def test_a_16_bit_png_reads_in_serve_as_in_predict(tmp_path, test_images, use_pillow):
    # a 12-bit scan (paper 3800, ink 200): serve kept the high byte (0-14), a blank page,
    # where load_image (`digitcore predict`) takes 4095 as white and reads the digit
    from PIL import Image

    from digitcore.imaging import preprocess_image

    digit = test_images[0][0].reshape(28, 28).astype(np.float64) / 255
    scan = np.round(3800 - 3600 * np.kron(digit, np.ones((2, 2)))).astype(np.uint16)
    Image.fromarray(scan).save(tmp_path / "scan.png")
    data = (tmp_path / "scan.png").read_bytes()
    np.testing.assert_array_equal(preprocess_image(decode_png_bytes(data, use_pillow)),
                                  preprocess_image(tmp_path / "scan.png"))


@pytest.mark.skipif(not HAVE_PILLOW, reason="Pillow is not installed (it writes the test PNGs)")
@pytest.mark.parametrize("mode", ["1", "L", "LA", "RGB", "RGBA", "P", "I;16"])
def test_png_decoder_agrees_with_pillow(rng, mode):
    import io

    from PIL import Image

    base = rng.integers(0, 256, size=(23, 31, 4), dtype=np.uint8)
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65536, size=(23, 31), dtype=np.uint16))
    elif mode == "P":
        im = Image.fromarray(base[:, :, :3]).convert("P", palette=Image.ADAPTIVE, colors=200)
    else:
        im = Image.fromarray(base).convert(mode)
    buf = io.BytesIO()
    im.save(buf, "PNG", optimize=True)
    data = buf.getvalue()
    ours = decode_png(data)
    if mode == "I;16":
        np.testing.assert_array_equal(ours, (np.asarray(im).astype(np.uint32) >> 8))
        return
    ref = {"1": "L", "P": "RGB"}.get(mode, mode)
    np.testing.assert_array_equal(ours, np.asarray(Image.open(io.BytesIO(data)).convert(ref)))
    np.testing.assert_array_equal(decode_png_bytes(data), ours)


def _keyed_png(pixels, ctype, depth, key):
    """A PNG of ``pixels`` (samples as stored, one row per image row) whose tRNS chunk
    makes the colour ``key`` (a sample value per channel) transparent."""
    import struct
    import zlib

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    h, w = pixels.shape[:2]
    if depth < 8:
        per = 8 // depth
        padded = np.zeros((h, -(-w // per) * per), np.uint8)
        padded[:, :w] = pixels
        rows = np.zeros((h, padded.shape[1] // per), np.uint8)
        for k in range(per):
            rows |= padded[:, k::per] << np.uint8(8 - depth * (k + 1))
    else:
        rows = pixels.astype(">u2" if depth == 16 else np.uint8).reshape(h, -1)
        rows = rows.view(np.uint8).reshape(h, -1)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0)
    trns = struct.pack(">" + "H" * len(key), *key)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"tRNS", trns)
            + chunk(b"IDAT", zlib.compress(raw.tobytes())) + chunk(b"IEND", b""))


@pytest.mark.parametrize("ctype,depth", [(0, 1), (0, 2), (0, 4), (0, 8), (0, 16), (2, 8),
                                         (2, 16)])
def test_a_grey_or_rgb_png_with_a_transparent_colour_gets_its_alpha(rng, ctype, depth):
    """A tRNS chunk in a grey or RGB PNG names the colour that is transparent: the
    decoder applied it to palette images only (and load_image, with Pillow, to RGB
    only), so a dark digit on a transparent background of a dark grey level read as a
    blank picture."""
    channels = 1 if ctype == 0 else 3
    pixels = rng.integers(0, 1 << depth, (6, 7, channels))
    key = [int(v) for v in pixels[2, 3]]
    pixels[0, 0] = key
    want_alpha = np.where((pixels == key).all(axis=2), 0, 255)
    data = _keyed_png(pixels if ctype else pixels[:, :, 0], ctype, depth, key)
    for got in (decode_png(data), decode_png(data, wide=True), decode_png_bytes(data, False)):
        assert got.shape == (6, 7, channels + 1) and got.dtype == np.uint8
        np.testing.assert_array_equal(got[:, :, -1], want_alpha)
        top = pixels >> (depth - 8) if depth == 16 else (
            pixels * (255 // ((1 << depth) - 1)) if depth < 8 else pixels)
        np.testing.assert_array_equal(got[:, :, :-1], top)
    if HAVE_PILLOW:
        import io

        from PIL import Image

        if depth == 8:  # (Pillow's convert keys 8-bit samples only)
            ref = np.asarray(Image.open(io.BytesIO(data)).convert("LA" if ctype == 0
                                                                   else "RGBA"))
            np.testing.assert_array_equal(decode_png(data), ref)


@pytest.mark.parametrize("use_pillow", [None, False])
def test_a_digit_on_a_transparent_grey_background_is_read(tmp_path, test_images,
                                                          use_pillow, hide_pillow):
    from digitcore.imaging import preprocess_image

    if use_pillow is None and not HAVE_PILLOW:
        pytest.skip("Pillow is not installed")
    digit = test_images[0][0].reshape(28, 28)
    picture = np.where(digit > 128, 0, 12).astype(np.uint8)  # black ink, grey 12 keyed
    big = np.kron(picture, np.ones((3, 3), np.uint8))
    data = _keyed_png(big, 0, 8, [12])
    (tmp_path / "k.png").write_bytes(data)
    # read as the same ink on paper: a transparent background is the page
    plain = preprocess_image(np.where(big == 0, 0, 255).astype(np.uint8))
    assert 10 < np.count_nonzero(plain) < 400  # (a digit, not a blank or a full square)
    if use_pillow is False:
        hide_pillow()
    np.testing.assert_array_equal(preprocess_image(tmp_path / "k.png"), plain)
    np.testing.assert_array_equal(preprocess_image(decode_png_bytes(data, use_pillow)), plain)


def test_png_decoder_rejects_bad_files():
    good = encode_png(np.zeros((4, 4), dtype=np.uint8))
    bad = [b"", b"GIF89a", good[:20], good[:-5],
           good[:30] + bytes([good[30] ^ 1]) + good[31:],          # CRC mismatch
           good.replace(b"IDAT", b"IDAX")]
    for data in bad:
        with pytest.raises(PNGError):
            decode_png(data)
    # a 100000 x 100000 header is refused before anything is decompressed
    import struct
    import zlib
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    with pytest.raises(PNGError, match="too large"):
        decode_png(b"\x89PNG\r\n\x1a\n" + chunk)


def test_png_filter_work_is_bounded(monkeypatch):
    """A 15 kB PNG of one 2,000,000-pixel RGBA row with Paeth filtering took 3.3 s and
    244 MB (a row's bytes decoded one at a time in Python): refused now, before any row
    is decoded, while a 4096-wide row and a square picture filtered the same way still
    decode."""
    from digitcore import png

    strip = np.zeros((1, 1_000_000, 4), np.uint8)
    strip[0, ::7] = 200
    data = encode_png(strip, filters=(4,))
    assert len(data) < 50_000
    decoded = []
    for name in ("_average_or_paeth", "_unfilter_wavefront"):
        real = getattr(png, name)
        monkeypatch.setattr(png, name, lambda *a, _real=real, _name=name:
                            decoded.append(_name) or _real(*a))
    with pytest.raises(PNGError, match="1 row.s. of 4,000,000 bytes.*Pillow reads it"):
        decode_png(data)
    assert decoded == []  # refused before the rows are decoded
    for shape in ((1, 4096, 4), (300, 300, 4)):
        img = (np.arange(np.prod(shape)) % 251).astype(np.uint8).reshape(shape)
        np.testing.assert_array_equal(decode_png(encode_png(img, filters=(4, 3))), img)
    assert set(decoded) == {"_average_or_paeth", "_unfilter_wavefront"}  # (the spies see)


@pytest.mark.parametrize("palette_header", [False, True])
@pytest.mark.parametrize("trns_len", [0, 2, 6, 12, 768])
def test_a_malformed_transparency_chunk_is_a_png_error_or_decodes(trns_len, palette_header):
    """An RGB PNG with a tRNS chunk after its image data, of the wrong length (a colour key
    is 6 bytes), optionally after a second IHDR saying "palette": Pillow kept the chunk as
    raw bytes and its convert() then raised TypeError (found by the fuzzer), which escaped
    as a 500. Both decoders must either decode the image or raise PNGError."""
    import struct
    import zlib

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    rgb = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    good = encode_png(rgb)
    iend = good.index(b"IEND") - 4
    extra = chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 3, 0, 0, 0)) if palette_header else b""
    extra += chunk(b"tRNS", bytes(i % 256 for i in range(trns_len)))
    data = good[:iend] + extra + good[iend:]
    for use_pillow in (None, False):
        try:
            arr = decode_png_bytes(data, use_pillow)
        except PNGError:
            continue
        assert arr.dtype == np.uint8 and arr.shape[:2] == (4, 4)
        np.testing.assert_array_equal(arr[:, :, :3], rgb)


# ---------------------------------------------------------------------------- bad requests

def _assert_error(status, body, want):
    assert status == want, body
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]


@pytest.mark.parametrize("raw", [
    b"", b"{", b"not json", b"\xff\xfe", b"[1, 2, 3]", b'"pixels"', b"{}",
    b'{"pixels": [0], "image": "data:image/png;base64,AAAA"}',
    b"[" * 100_000 + b"]" * 100_000,  # (a 500 with a logged RecursionError traceback)
    b'{"pixels": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"pixels": [1' + b"0" * 400 + b'], "width": 1, "height": 1}',  # (a 500: OverflowError)
])
def test_malformed_json_is_400(server, raw):
    _assert_error(*_predict(server, raw), 400)


@pytest.mark.parametrize("url", [
    "data:image/jpeg;base64,AAAA", "http://127.0.0.1/x.png", "AAAA", 42, None,
    "data:image/png;base64,", "data:image/png;base64,@@@@", "data:image/png;base64,AAA",
    "data:image/png;base64," + base64.b64encode(b"not a png at all").decode(),
    "data:image/png;base64," + base64.b64encode(encode_png(np.zeros((3, 3), np.uint8))[:40])
    .decode(),
])
def test_bad_data_url_is_400(server, url):
    status, body = _predict(server, {"image": url})
    _assert_error(status, body, 400)
    # no Python object reprs like "<_io.BytesIO object at 0x7f...>" in the message
    assert " object at 0x" not in body["error"] and "<_io" not in body["error"], body


def test_model_description_unwraps_training_and_hides_the_path(net, tmp_path):
    from digitcore.modelio import read_model_info
    from digitcore.serve.app import model_description

    path = tmp_path / "private" / "digits.safetensors"
    path.parent.mkdir()
    summary = {"dataset": "mnist", "test_accuracy": 0.98, "epochs": 3}
    for metadata in ({"training": summary}, summary):  # as saved before and after the fix
        net.save(path, metadata=metadata)
        desc = model_description(digitcore.load_model(path), read_model_info(path))
        assert desc["training"] == summary and desc["metadata"]["training"] == summary
        assert desc["file"] == "digits.safetensors" and "path" not in desc
        assert str(tmp_path) not in json.dumps(desc)
    # a user's own data is named by its folder's last part, in a committee's members too
    own = dict(summary, dataset=f"IDX files in {tmp_path / 'private' / 'mine'}")
    net.save(path, metadata={"members": [own, own], **own})
    desc = model_description(digitcore.load_model(path), read_model_info(path))
    assert desc["training"]["dataset"] == "IDX files in mine"
    assert desc["training"]["members"][1]["dataset"] == "IDX files in mine"
    assert str(tmp_path) not in json.dumps(desc)


def test_cli_train_out_stores_the_summary_once(tmp_path):
    from digitcore.modelio import read_model_info

    out = tmp_path / "m.safetensors"
    r = subprocess.run([sys.executable, "-m", "digitcore", "train", "--dataset", "mnist-mini",
                        "--hidden", "8", "--epochs", "1", "--quiet", "--out", str(out)],
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, DIGITCORE_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr
    training = read_model_info(out)["metadata"]["training"]
    assert training["dataset"] == "mnist-mini" and 0 < training["test_accuracy"] <= 1


def _reset(sock):
    import struct

    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize("debug", [False, True])
def test_disconnects_log_one_line(net, capfd, debug):
    with running_server(net, debug=debug) as srv:
        addr = srv.server_address[:2]
        # reset in the middle of the request line, and in the middle of a body
        s = socket.create_connection(addr)
        s.sendall(b"GET / HT")
        time.sleep(0.2)
        _reset(s)
        s = socket.create_connection(addr)
        s.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Length: 5000\r\n\r\n{\"pixels\": [")
        time.sleep(0.2)
        _reset(s)
        deadline = time.monotonic() + 10
        err = ""
        while time.monotonic() < deadline and err.count("ConnectionResetError") < 2:
            time.sleep(0.05)
            err += capfd.readouterr().err
        assert _json(srv, "GET", "/healthz") == (200, {"status": "ok"})  # still serving
    assert err.count("ConnectionResetError") == 2, err
    if debug:
        assert err.count("Traceback") == 2, err
    else:
        assert "Traceback" not in err
        lines = err.strip().splitlines()
        assert len(lines) == 2 and all("disconnected mid-request" in ln for ln in lines), err


@pytest.mark.parametrize("pixels", [[0] * 783, [0] * 785, [], [[0] * 28] * 28])
def test_wrong_length_is_400(server, pixels):
    status, body = _predict(server, {"pixels": pixels})
    _assert_error(status, body, 400)


@pytest.mark.parametrize("body", [
    {"pixels": [0] * 100, "width": 10, "height": 11},
    {"pixels": [0] * 4, "width": 2.0, "height": 2},
    {"pixels": [0] * 4, "width": True, "height": 4},
    {"pixels": [0], "width": 0, "height": 1},
    {"pixels": [0] * 2048, "width": 2048, "height": 1},
    {"pixels": "0" * 784},
])
def test_bad_sizes_are_400(server, body):
    _assert_error(*_predict(server, body), 400)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
def test_non_finite_values_are_400(server, text):
    raw = ('{"pixels": [' + ", ".join(["0"] * 400 + [text] + ["0"] * 383) + "]}").encode()
    status, body = _predict(server, raw)
    _assert_error(status, body, 400)


@pytest.mark.parametrize("value", [-1, 256, 1e6, "12", True, None, [1]])
def test_bad_pixel_values_are_400(server, value):
    _assert_error(*_predict(server, {"pixels": [0] * 783 + [value]}), 400)


def test_blank_drawing_is_422(server):
    _assert_error(*_predict(server, {"pixels": [255] * 784}), 422)


@pytest.mark.parametrize("pixels, reason", [([255] * 784, "blank"),
                                             ([255] * 400 + [0] + [255] * 383, "too_small")])
def test_a_drawing_in_progress_with_nothing_to_read_is_an_answer(server, pixels, reason):
    """The page's requests (?drawing=1) are made while the digit is being drawn, where a
    dot or an empty canvas is a normal state: a 200 with no digit and the reason, not a
    422 (which the browser logs as a failed request). Other clients keep the 422, and a
    malformed drawing is still a 400."""
    status, body = _json(server, "POST", "/api/predict?drawing=1", {"pixels": pixels})
    assert status == 200 and body["digit"] is None and body["reason"] == reason
    assert "draw" in body["message"] and "probabilities" not in body
    for path in ("/api/predict?drawing=0", "/api/predict?drawings=1", "/api/predict"):
        _assert_error(*_json(server, "POST", path, {"pixels": pixels}), 422)
    _assert_error(*_json(server, "POST", "/api/predict?drawing=1", {"pixels": [0] * 5}), 400)
    # a digit is answered as without the flag
    ring = np.where(np.abs(np.hypot(*(np.mgrid[0:28, 0:28] - 14) / 8) - 1) < 0.2, 0, 255)
    a = _json(server, "POST", "/api/predict?drawing=1", {"pixels": ring.ravel().tolist()})[1]
    b = _predict(server, {"pixels": ring.ravel().tolist()})[1]
    assert a["digit"] == b["digit"] and a["probabilities"] == b["probabilities"]


def test_a_drawn_plus_is_not_a_digit(server):
    """A plus drawn on the page: a 422 naming the problem, or while drawing an answer
    with no digit and the reason."""
    from photo_digits import stroke_shape

    plus = 255 - stroke_shape("plus", np.random.default_rng(0))  # dark on white, like the page
    status, body = _predict(server, {"pixels": plus.ravel().tolist()})
    _assert_error(status, body, 422)
    assert "do not look like a digit" in body["error"]
    status, body = _json(server, "POST", "/api/predict?drawing=1",
                         {"pixels": plus.ravel().tolist()})
    assert status == 200 and body["digit"] is None and body["reason"] == "not_a_digit"


def test_a_broken_installation_fails_at_start_not_per_drawing(net, monkeypatch, tmp_path):
    from digitcore import imaging

    monkeypatch.setattr(imaging, "SHAPE_CHECK_FILE", str(tmp_path / "gone.safetensors"))
    with pytest.raises(FileNotFoundError, match="shape check is missing.*reinstall"):
        make_server(net, port=0)


def test_a_click_is_too_small_not_a_digit(server):
    """One click on the page (the brush's dot, 20 px of 280, sent at 112 px) used to be
    read as a 0 at 55%; four grey corner pixels no longer change a clean digit's answer."""
    side = 112
    yy, xx = np.mgrid[0:side, 0:side]
    dot = np.where(np.hypot(yy - 40, xx - 60) < 4, 0, 255)
    status, body = _predict(server, {"pixels": dot.ravel().tolist(), "width": side,
                                     "height": side})
    _assert_error(status, body, 422)
    assert "draw a bigger digit" in body["error"]
    ring = np.abs(np.hypot((yy - 56) / 40, (xx - 56) / 30) - 1) < 0.12
    zero = np.where(ring, 0, 255)
    status, clean = _predict(server, {"pixels": zero.ravel().tolist(), "width": side,
                                      "height": side})
    assert status == 200
    for y, x in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        zero[y, x] = 128
    status, framed = _predict(server, {"pixels": zero.ravel().tolist(), "width": side,
                                       "height": side})
    assert status == 200 and framed["input28"] == clean["input28"]
    assert framed["probabilities"] == clean["probabilities"]


def test_body_over_limit_is_413(server):
    # announced too big: answered before the body is read
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.putrequest("POST", "/api/predict")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(50 * MAX_BODY))
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 413 and "limit" in json.loads(resp.read())["error"]
    conn.close()
    # actually sent: the client still gets a clean 413, not a reset connection
    body = b'{"pixels": [' + b"0, " * (MAX_BODY // 3) + b"0]}"
    assert len(body) > MAX_BODY
    _assert_error(*_predict(server, body), 413)
    # exactly at the limit is fine (and still a bad request for other reasons)
    body = b'{"pixels": [0]}'.ljust(MAX_BODY, b" ")
    _assert_error(*_predict(server, body), 400)


def test_missing_or_bad_content_length(server):
    host, port = server.server_address[:2]
    for headers, want in [({}, 411), ({"Content-Length": "12x"}, 400),
                          ({"Transfer-Encoding": "chunked"}, 411)]:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.putrequest("POST", "/api/predict")
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        assert resp.status == want, headers
        assert "error" in json.loads(resp.read())
        conn.close()


@pytest.mark.parametrize("path", [
    "/nope", "/api", "/api/", "/api/predict/extra", "/static/", "/static", "/static/app.py",
    "/static/../app.py", "/static/..%2fapp.py", "/../../../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd", "//etc/passwd", "/static//app.js", "/static/APP.JS",
    "/index.html/", "/serve/static/app.js", "/__init__.py", "/static/app.js%00.html",
])
def test_unknown_paths_and_traversal_are_404(server, path):
    status, hdrs, body = _request(server, "GET", path)
    assert status == 404
    assert hdrs["Content-Type"] == "application/json"
    assert b"import" not in body and b"root:" not in body


def test_wrong_methods(server):
    status, hdrs, body = _request(server, "GET", "/api/predict")
    assert status == 405 and hdrs["Allow"] == "POST"
    status, hdrs, body = _request(server, "POST", "/api/model", b"{}")
    assert status == 405 and "GET" in hdrs["Allow"]
    for method in ("PUT", "DELETE", "PATCH"):
        assert _request(server, method, "/api/predict", b"{}")[0] == 405
    # the page exists: other methods on it are 405, not "no such page"
    for path in ("/", "/static/app.js"):
        status, hdrs, body = _request(server, "POST", path, b"{}")
        assert status == 405 and hdrs["Allow"] == "GET, HEAD", (status, body)
        assert "GET or HEAD" in json.loads(body)["error"]
    assert _request(server, "POST", "/nope", b"{}")[0] == 404


def test_foreign_host_header_is_refused(server):
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 must not get answers."""
    for host in ("evil.example", "evil.example:8000", "10.1.2.3"):
        status, body = _json(server, "GET", "/api/model", headers={"Host": host})
        _assert_error(status, body, 403)
    for host in ("localhost:1234", "127.0.0.1", "[::1]:80"):
        assert _json(server, "GET", "/healthz", headers={"Host": host})[0] == 200


def test_a_reverse_proxys_host_name_is_answered_when_allowed(net):
    """Behind nginx's `proxy_set_header Host $host` (or Caddy, which passes Host on),
    every request carried the public name and got a 403: allowed_hosts (--allow-host)
    names it; other names are still refused, and the page's own requests pass the
    cross-origin check under that name."""
    with running_server(net, allowed_hosts=["Digits.Example.com", "[2001:db8::1]"]) as srv:
        for host in ("digits.example.com", "DIGITS.example.com:443", "[2001:db8::1]:8080",
                     "localhost"):
            assert _json(srv, "GET", "/healthz", headers={"Host": host})[0] == 200, host
        status, body = _json(srv, "GET", "/api/model", headers={"Host": "evil.example"})
        _assert_error(status, body, 403)
        assert "--allow-host" in body["error"]
        status, body = _predict_with(srv, {"Host": "digits.example.com",
                                           "Origin": "https://digits.example.com"})
        assert status == 200, body
        status, body = _predict_with(srv, {"Host": "digits.example.com",
                                           "Origin": "https://evil.example"})
        assert status == 403, body
    for bad in ("https://digits.example.com", "digits.example.com:8000", "a/b", "", " "):
        with pytest.raises(ValueError, match="--allow-host takes a host name"):
            make_server(net, "127.0.0.1", 0, allowed_hosts=[bad])


def _predict_with(srv, headers):
    # (?drawing=1: a 200 whatever the strokes, once the Host and Origin checks pass)
    return _json(srv, "POST", "/api/predict?drawing=1", {"pixels": [0] * 784},
                 headers=headers)


def test_a_refused_host_s_body_is_not_taken_as_the_next_request(server):
    # the 403 left the body unread on a kept-alive connection, where it was read as the
    # next request: a rebinding page could have a request with a good Host answered
    import socket

    inner = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    outer = (b"POST /api/predict HTTP/1.1\r\nHost: evil.example\r\nContent-Length: %d\r\n\r\n"
             % len(inner))
    with socket.create_connection(server.server_address[:2], timeout=10) as s:
        s.sendall(outer + inner)
        got = b""
        while chunk := s.recv(65536):  # (the server closes the connection after the 403)
            got += chunk
    assert got.startswith(b"HTTP/1.1 403") and got.count(b"HTTP/1.1 ") == 1, got
    assert b"Connection: close" in got


def test_a_client_that_trickles_its_request_is_cut_off(net, monkeypatch):
    """A byte every few seconds never let the 15-second read timeout fire, so such a
    client held its thread for as long as it liked: a whole request now has
    REQUEST_DEADLINE to arrive (here 1.5 s), headers or body, and a prompt one after it
    on a new connection is answered."""
    import socket

    import digitcore.serve.app as app

    monkeypatch.setattr(app, "REQUEST_DEADLINE", 1.5)
    with running_server(net) as srv:
        for head in (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n",  # headers
                     b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                     b"application/json\r\nContent-Length: 5000\r\n\r\n"):  # a body
            with socket.create_connection(srv.server_address[:2], timeout=10) as s:
                s.sendall(head)
                t0, closed = time.monotonic(), False
                while time.monotonic() - t0 < 8:
                    try:
                        s.sendall(b"x")
                        s.settimeout(0.3)
                        if s.recv(65536) == b"":
                            closed = True
                            break
                    except socket.timeout:
                        continue
                    except OSError:  # (reset: closed too)
                        closed = True
                        break
                assert closed and time.monotonic() - t0 < 5, head
        assert _json(srv, "GET", "/healthz")[0] == 200


def test_connections_past_the_cap_get_a_503_without_a_thread(net, monkeypatch):
    """Every connection held a thread and they were not capped: past MAX_CONNECTIONS
    open at once (here 2), one more is answered 503 and closed, and once one of them
    closes a new one is served again."""
    import socket

    import digitcore.serve.app as app

    monkeypatch.setattr(app, "MAX_CONNECTIONS", 2)

    def wait_for(srv, count):
        t0 = time.monotonic()
        while srv.connections != count:
            assert time.monotonic() - t0 < 10, (srv.connections, count)
            time.sleep(0.01)

    with running_server(net) as srv:
        idle = [socket.create_connection(srv.server_address[:2], timeout=10)
                for _ in range(2)]
        wait_for(srv, 2)
        threads = threading.active_count()
        with socket.create_connection(srv.server_address[:2], timeout=10) as s:
            got = b""
            while chunk := s.recv(65536):
                got += chunk
        assert got.startswith(b"HTTP/1.1 503 "), got
        assert b"Retry-After: 5" in got and b"2 connections open" in got
        head, _, body = got.partition(b"\r\n\r\n")
        assert json.loads(body)["error"].startswith("the server has 2 connections open")
        assert threading.active_count() == threads and srv.connections == 2
        idle[0].close()
        wait_for(srv, 1)
        assert _json(srv, "GET", "/healthz")[0] == 200
        idle[1].close()
        wait_for(srv, 0)


def test_another_transfer_coding_is_refused_and_closes_the_connection(server):
    """Transfer-Encoding: gzip with a Content-Length: the body was framed by the length
    and the connection kept, so a pipelined request behind it was answered; a front end
    that framed it otherwise would have let it through (request smuggling). RFC 9112
    6.3: a 400, then close."""
    import socket

    body = b'{"pixels": [0]}'
    first = (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
             b"application/json\r\nTransfer-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
             % len(body)) + body
    last = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(server.server_address[:2], timeout=10) as s:
        s.sendall(first + last)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    assert got.startswith(b"HTTP/1.1 400") and got.count(b"HTTP/1.1 ") == 1, got
    assert b"transfer encoding 'gzip' is not accepted" in got


@pytest.mark.parametrize("path", ["/healthz", "/api/model", "/"])
def test_a_get_s_body_is_not_taken_as_the_next_request(server, path):
    # a body sent with a GET that answers 200 was read as the next request (a smuggled
    # one answered too); it is read and dropped now, and the next request is answered
    import socket

    inner = b"GET /nope-smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    first = (b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n"
             % (path.encode(), len(inner)))
    last = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    with socket.create_connection(server.server_address[:2], timeout=10) as s:
        s.sendall(first + inner + last)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    # (answered, then the connection closes: the body is never read as a request)
    assert got.count(b"HTTP/1.1 ") == 1 and got.startswith(b"HTTP/1.1 200"), got[:300]
    assert b"Connection: close" in got


def test_a_get_that_announces_a_body_it_never_sends_is_answered_at_once(server):
    import socket
    import time

    req = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\n"
    t0 = time.monotonic()
    with socket.create_connection(server.server_address[:2], timeout=10) as s:
        s.sendall(req)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    assert got.startswith(b"HTTP/1.1 200") and time.monotonic() - t0 < 5, got[:200]


def test_conflicting_content_lengths_are_400(server):
    import socket

    req = (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n"
           b"Content-Length: 5\r\n\r\n{}xyz")
    with socket.create_connection(server.server_address[:2], timeout=10) as s:
        s.sendall(req)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    assert got.startswith(b"HTTP/1.1 400") and b"conflicting Content-Length" in got, got


def test_pixels_scaled_to_one_are_named(server, test_images):
    # read as 0-255 they were a blank page: "the drawing is blank: draw a digit first"
    x, _ = test_images
    status, r = _predict(server, {"pixels": (x[3].ravel() / 255.0).tolist()})
    assert status == 400 and "scaled to [0, 1]" in r["error"], r
    # a 0/1 mask: a message for JSON (preprocess_image's speaks of NumPy's bool)
    status, r = _predict(server, {"pixels": (x[3].ravel() > 128).astype(int).tolist()})
    assert status == 400 and "only 0 and 1, a mask: send grey values 0-255" in r["error"], r


def test_garbage_request_line_gets_json_400(server):
    import socket

    with socket.create_connection(server.server_address[:2], timeout=10) as s:
        s.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 400 " in head.split(b"\r\n")[0]
    assert "error" in json.loads(body)


def test_keep_alive_connection_serves_several_requests(server, test_images):
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        for img in test_images[0][:3]:
            conn.request("POST", "/api/predict", json.dumps({"pixels": img.ravel().tolist()}),
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
            assert resp.status == 200 and "digit" in json.loads(resp.read())
        conn.request("POST", "/api/predict", b"{bad", {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 400
        resp.read()
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
    finally:
        conn.close()


# ---------------------------------------------------------------------------- concurrency

def test_twenty_concurrent_clients(server, net, test_images):
    x, _ = test_images
    expected = [_expected(net, img) for img in x[:20]]

    def client(i):
        out = []
        for k in range(3):
            j = (i + k) % 20
            if k == 2:  # a bad request in the mix must not disturb the others
                out.append((None, _predict(server, {"pixels": [1] * 5})[0]))
                continue
            status, r = _predict(server, {"pixels": x[j].ravel().tolist()})
            out.append((j, status, r))
        return out

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(client, range(20)))
    n = 0
    for per_client in results:
        for item in per_client:
            if item[0] is None:
                assert item[1] == 400
                continue
            j, status, r = item
            assert status == 200
            digit, proba, img28 = expected[j]
            assert r["digit"] == digit
            np.testing.assert_allclose(r["probabilities"], proba, atol=1e-5)
            assert r["input28"] == img28.ravel().tolist()
            n += 1
    assert n == 40


def test_server_serves_a_copy(net, test_images):
    """Changing the caller's network afterwards does not change what is served."""
    other = net.copy()
    with running_server(other) as srv:
        img = test_images[0][0]
        before = _predict(srv, {"pixels": img.ravel().tolist()})[1]
        other.flat_parameters[...] = 0.0
        after = _predict(srv, {"pixels": img.ravel().tolist()})[1]
        assert before == {**after, "milliseconds": before["milliseconds"]}


def test_make_server_rejects_other_input_sizes():
    with pytest.raises(ValueError, match="784"):
        make_server(digitcore.Network([10, 4, 3], seed=0), "127.0.0.1", 0)


# ---------------------------------------------------------------------------- serve() itself

def test_is_loopback():
    for host in ("127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]", "LOCALHOST"):
        assert is_loopback(host)
    for host in ("0.0.0.0", "::", "", "192.168.1.10", "example.com", "10.0.0.1"):
        assert not is_loopback(host)


@pytest.fixture
def one_thread():
    threads = digitcore.get_num_threads()
    digitcore.set_num_threads(1)
    yield
    digitcore.set_num_threads(threads)


def test_default_model_trains_once_then_uses_the_cache(capsys, one_thread):
    from digitcore.datasets import get_cache_dir

    # the conftest points the cache at a fresh temporary folder; keep training short
    fast = {"hidden": [16], "epochs": 1}
    net1, info1 = default_model(preset_overrides=fast)
    path = get_cache_dir() / "serve-default.safetensors"
    assert path.is_file() and info1["path"] == str(path)
    assert "training" in capsys.readouterr().err
    net2, info2 = default_model(preset_overrides=fast)
    assert "cached" in capsys.readouterr().err
    np.testing.assert_array_equal(net1.flat_parameters, net2.flat_parameters)
    assert info2["metadata"]["training"]["preset"] == "default"
    path.write_bytes(b"garbage")  # a broken cache is replaced, not fatal
    net3, _ = default_model(preset_overrides=fast, quiet=True)
    np.testing.assert_array_equal(net1.flat_parameters, net3.flat_parameters)


def test_default_model_interrupted_training_is_not_cached(monkeypatch, one_thread):
    from digitcore.datasets import get_cache_dir
    from digitcore.trainer import Trainer

    real_fit = Trainer.fit

    def ctrl_c_fit(self, *args, **kwargs):  # what the Trainer does with Ctrl-C
        history = real_fit(self, *args, **kwargs)
        history.interrupted = True
        return history

    monkeypatch.setattr(Trainer, "fit", ctrl_c_fit)
    with pytest.raises(KeyboardInterrupt):
        default_model(preset_overrides={"hidden": [8], "epochs": 1}, quiet=True)
    assert not (get_cache_dir() / "serve-default.safetensors").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_cli_serve_prints_url_and_stops_cleanly_on_ctrl_c(net, tmp_path, sigint_deliverable):
    model = tmp_path / "m.safetensors"
    net.save(model)
    with serve_process([str(model), "--port", "0", "--allow-host", "digits.example.com"]) \
            as (proc, url):
        assert url.startswith("http://127.0.0.1:")
        conn = http.client.HTTPConnection("127.0.0.1", port_of(url), timeout=10)
        conn.request("GET", "/api/model")
        info = json.loads(conn.getresponse().read())
        # (--allow-host: a reverse proxy's name is answered, another is not)
        for host, status in (("digits.example.com", 200), ("evil.example", 403)):
            conn.request("GET", "/healthz", headers={"Host": host})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == status, host
            if status == 403:  # (a refused request closes the connection)
                conn.close()
        conn.close()
        assert info["layer_sizes"] == [784, 32, 10] and info["file"] == "m.safetensors"
        assert str(tmp_path) not in json.dumps(info)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "stopped" in err and "Traceback" not in err


def test_cli_serve_errors_are_one_line(tmp_path):
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-m", "digitcore", "serve",
                           str(tmp_path / "missing.safetensors"), "--port", "0"],
                          capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no such file" in proc.stderr


def test_a_committee_is_described_as_one():
    # /api/model said "784-800-128-10 relu" for the bundled two-member committee
    from digitcore.serve.app import model_description

    c = digitcore.Committee([digitcore.Network([784, 16, 10], seed=s) for s in (0, 1, 2)])
    info = model_description(c)
    assert info["architecture"] == "committee of 3 x 784-16-10 relu"
    assert info["members"] == 3 and info["n_params"] == c.n_params
    # members that differ were all described as the first one ("2 x 784-32-10")
    mixed = digitcore.Committee([digitcore.Network([784, 32, 10], seed=0),
                                 digitcore.Network([784, 16, 16, 10], activation="tanh", seed=1)])
    assert (model_description(mixed)["architecture"]
            == "committee of 2: 784-32-10 relu, 784-16-16-10 tanh")


# ---------------------------------------------------------------------------- other sites

def _pixels_body(test_images):
    return json.dumps({"pixels": test_images[0][0].ravel().tolist()}).encode()


def test_predictions_must_be_sent_as_json(server, test_images):
    """A page on another site can POST text/plain, form data or multipart without the
    browser asking first; the server must not do the work for such requests."""
    body = _pixels_body(test_images)
    for ctype in ("text/plain", "application/x-www-form-urlencoded",
                  "multipart/form-data; boundary=x", None):
        headers = {"Content-Type": ctype} if ctype else {}
        host, port = server.server_address[:2]
        conn = http.client.HTTPConnection(host, port, timeout=10)
        try:
            conn.putrequest("POST", "/api/predict", skip_accept_encoding=True)
            for k, v in headers.items():
                conn.putheader(k, v)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            data = json.loads(resp.read())
        finally:
            conn.close()
        assert resp.status == 415, (ctype, resp.status, data)
        assert "application/json" in data["error"]
    # a parameter after the media type is fine
    status, data = _json(server, "POST", "/api/predict", body,
                         {"Content-Type": "Application/JSON; charset=utf-8"})
    assert status == 200 and 0 <= data["digit"] <= 9, data


def test_requests_from_another_sites_page_are_refused(server, test_images):
    host, port = server.server_address[:2]
    body = _pixels_body(test_images)
    for origin in ("https://evil.example", "null", f"http://localhost.evil.example:{port}",
                   f"http://{host}:{port + 1}"):
        status, data = _json(server, "POST", "/api/predict", body, {"Origin": origin})
        _assert_error(status, data, 403)
        assert "refused" in data["error"]
    # the server's own page (the browser sends Origin on a same-origin POST)
    for origin in (f"http://{host}:{port}", f"HTTP://{host}:{port}"):
        status, data = _json(server, "POST", "/api/predict", body, {"Origin": origin})
        assert status == 200 and 0 <= data["digit"] <= 9, data
    # Sec-Fetch-Site, which a page cannot set, decides where browsers send it: behind a
    # proxy that rewrites Host, the page's own requests still work
    for site, origin, want in (("same-origin", "https://digits.example.org", 200),
                               ("none", None, 200), ("cross-site", "https://evil.example", 403),
                               ("same-site", f"http://{host}:{port}", 403)):
        headers = {"Sec-Fetch-Site": site, **({"Origin": origin} if origin else {})}
        status, data = _json(server, "POST", "/api/predict", body, headers)
        assert status == want, (site, origin, data)
    status, data = _json(server, "POST", "/api/predict", body, {"Sec-Fetch-Site": "cross-site"})
    _assert_error(status, data, 403)
    assert "another site's page (Sec-Fetch-Site: cross-site)" in data["error"], data


def _chunk(kind, body):
    import struct
    import zlib

    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _ihdr(w, h):
    import struct

    return _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))


@pytest.mark.parametrize("use_pillow", [False, pytest.param(True, marks=pytest.mark.skipif(
    not HAVE_PILLOW, reason="Pillow is not installed"))])
def test_a_png_is_turned_as_its_exif_orientation_says(use_pillow):
    """A phone's PNG stored upside down with EXIF orientation 3 read as "7" through
    `digitcore predict` with Pillow (which turned it), but as no digit through serve and
    through the built-in decoder: both turn it now, all eight orientations, either byte
    order."""
    import struct
    import zlib

    import digitcore.serve.app as app

    a = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    want = {1: a, 2: np.fliplr(a), 3: np.rot90(a, 2), 4: np.flipud(a), 5: a.T,
            6: np.rot90(a, -1), 7: np.rot90(a, 2).T, 8: np.rot90(a, 1)}
    raw = b"".join(b"\0" + row.tobytes() for row in a)
    for o in range(1, 9):
        for e, magic in (("<", b"II*\0"), (">", b"MM\0*")):
            exif = (magic + struct.pack(e + "IH", 8, 1) + struct.pack(e + "HHIHH", 274, 3, 1, o, 0)
                    + struct.pack(e + "I", 0))
            png = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 3, 8, 0, 0, 0, 0))
                   + _chunk(b"eXIf", exif) + _chunk(b"IDAT", zlib.compress(raw))
                   + _chunk(b"IEND", b""))
            np.testing.assert_array_equal(app.decode_png_bytes(png, use_pillow), want[o],
                                          err_msg=f"orientation {o} ({e})")
    # a damaged orientation tag reads the image as stored
    png = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 3, 8, 0, 0, 0, 0))
           + _chunk(b"eXIf", b"II*\0" + struct.pack("<I", 999)) + _chunk(b"IDAT", zlib.compress(raw))
           + _chunk(b"IEND", b""))
    np.testing.assert_array_equal(app.decode_png_bytes(png, use_pillow), a)


@pytest.mark.parametrize("use_pillow", [False, pytest.param(True, marks=pytest.mark.skipif(
    not HAVE_PILLOW, reason="Pillow is not installed"))])
def test_a_huge_flat_png_is_refused_before_decoding(server, monkeypatch, use_pillow):
    """A flat 2049 x 2049 PNG is ~20 kB but decodes to 4 MP (RGBA: 16 MiB, and copies):
    refused from its header, also when the header is not the first chunk or a second
    IHDR follows a small one (Pillow reads such files, and takes the last IHDR)."""
    import zlib

    import digitcore.serve.app as app

    big = encode_png(np.full((2049, 2049), 255, dtype=np.uint8))
    assert len(big) < 100_000
    idat = _chunk(b"IDAT", zlib.compress(b"\0" * 2050 * 2049))
    sig, end = b"\x89PNG\r\n\x1a\n", _chunk(b"IEND", b"")
    crafted = [big, sig + _ihdr(28, 28) + _ihdr(2049, 2049) + idat + end]
    if use_pillow:  # (the built-in decoder refuses any chunk before IHDR)
        crafted.append(sig + _chunk(b"tEXt", b"a\0b") + _ihdr(2049, 2049) + idat + end)
    real = app.decode_png_bytes
    if use_pillow:
        from PIL import ImageFile

        def load(self):
            raise AssertionError("decoded a PNG past the size limit")

        monkeypatch.setattr(ImageFile.ImageFile, "load", load)  # (a PNG's load)
    else:
        monkeypatch.setattr(app, "decode_png_bytes",
                            lambda data, *a, **k: real(data, False, *a, **k))
        monkeypatch.setattr(app, "_pillow_decode", lambda *a: pytest.fail("used Pillow"))
    for png in crafted:
        status, data = _predict(server, {"image": _data_url(png)})
        _assert_error(status, data, 400)
        assert ("2049x2049" in data["error"] and f"{app.MAX_IMAGE_PIXELS:,}" in data["error"]
                or not use_pillow and "IHDR" in data["error"]), data


def test_a_busy_server_answers_503_after_a_wait(server, test_images, monkeypatch):
    import digitcore.serve.app as app

    monkeypatch.setattr(app, "BUSY_WAIT", 0.2)
    taken = 0
    while server.slots.acquire(blocking=False):
        taken += 1
    try:
        assert taken == app.MAX_CONCURRENT
        t0 = time.monotonic()
        status, hdrs, data = _request(server, "POST", "/api/predict", _pixels_body(test_images))
        assert status == 503 and hdrs["Retry-After"] == "1", (status, data)
        assert "busy" in json.loads(data)["error"] and time.monotonic() - t0 >= 0.2
    finally:
        for _ in range(taken):
            server.slots.release()
    status, data = _json(server, "POST", "/api/predict", _pixels_body(test_images))
    assert status == 200, data


@pytest.mark.parametrize("value", ["\u00b2", "\u00b9", "1" * 5000, "+5", "5 5", "0x10"])
def test_odd_content_lengths_are_400_not_500(server, value, capfd):
    import socket

    req = (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
           b"\r\nContent-Length: " + value.encode("latin-1", "replace") + b"\r\n\r\n{}")
    with socket.create_connection(server.server_address[:2], timeout=10) as s:
        s.sendall(req)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    if len(value) > 1000:  # (http.server may refuse the long header line itself)
        assert got.startswith((b"HTTP/1.1 400", b"HTTP/1.0 431", b"HTTP/1.1 431")), got[:200]
    else:
        assert got.startswith(b"HTTP/1.1 400") and b"Content-Length" in got, got[:300]
    assert "Traceback" not in capfd.readouterr().err


def test_serve_takes_a_bracketed_ipv6_host_and_names_a_file_s_unknown_tta(monkeypatch, tmp_path,
                                                                           capsys):
    """--host [::1] failed ("Name or service not known") though URLs write it so; --host ''
    warned of "listening on ,"; a model file recording a test-time augmentation this
    version does not know was refused without naming the file."""
    import digitcore.serve as serve_mod

    seen = {}

    class Fake:
        url, tta, server_address = "http://x/", None, ("", 1)
        model_info = {"architecture": "784-10"}

        def serve_forever(self, poll_interval):
            raise KeyboardInterrupt

        def server_close(self):
            pass

    def fake_make_server(net, host, port, **kw):
        from digitcore.augment import model_tta

        seen["host"] = host
        seen["tta"] = model_tta(net, kw["tta"])  # (as make_server reads it)
        return Fake()

    monkeypatch.setattr(serve_mod, "make_server", fake_make_server)
    net = digitcore.Network([784, 10], seed=0)
    path = tmp_path / "m.safetensors"
    net.save(path)
    assert serve_mod.serve(path, host="[::1]", port=0, open_browser=False) == 0
    assert seen["host"] == "::1"
    serve_mod.serve(path, host="", port=0, open_browser=False)
    assert "listening on every address" in capsys.readouterr().err
    net.save(path, metadata={"tta": "rot90"})
    with pytest.raises(ValueError, match=r"m\.safetensors: .*rot90.*serve it with --tta none"):
        serve_mod.serve(path, port=0, open_browser=False)
    net.save(path, metadata={"tta": "shift"})  # (a file's own; --tta none reads without)
    for tta, want in ((None, "shift"), ("none", None), ("shift", "shift")):
        serve_mod.serve(path, port=0, open_browser=False, tta=tta)
        assert seen["tta"] == want, tta
