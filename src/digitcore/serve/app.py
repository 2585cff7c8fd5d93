"""The HTTP side of ``digitcore serve``: a drawing page and a small JSON API.

Standard library only (``http.server.ThreadingHTTPServer``); NumPy and the network
come from digitcore. Routes:

=======================  =====================================================
``GET /``                the page (``static/index.html``)
``GET /static/<name>``   ``app.css`` and ``app.js``, nothing else
``POST /api/predict``    ``{"image": "data:image/png;base64,..."}`` or
                         ``{"pixels": [...], "width": 28, "height": 28}``
                         -> ``{"digit", "probabilities", "input28"}``; a drawing
                         with no digit to read is a 422, or with
                         ``?drawing=1`` (a drawing still being made, the page's
                         requests) a 200 with ``"digit": null`` and ``"reason"``
``GET /api/model``       architecture and metadata of the served network
``GET /healthz``         ``{"status": "ok"}``
=======================  =====================================================

Drawings go through :func:`digitcore.imaging.preprocess_image`, exactly like
``Network.predict_image``. The page sends its canvas as a grey ``pixels`` array
(downsampled in the browser), so no image library is needed anywhere; PNG data URLs
are decoded with Pillow when it is installed and otherwise with the small decoder in
:mod:`digitcore.png`.

Safety: the page's files are an in-memory table read once at start-up (no file system
paths are ever built from a URL, so no traversal and no listings); request bodies are
limited to :data:`MAX_BODY` bytes and PNGs to :data:`MAX_IMAGE_PIXELS` (checked before
decoding); every malformed request gets a 4xx JSON error; when bound to a loopback
address, requests whose ``Host`` header is not a loopback name are refused (a defence
against DNS rebinding); a prediction must be sent as ``application/json`` and not from
another site's page (``Sec-Fetch-Site``, else ``Origin`` against ``Host``); at
most :data:`MAX_CONCURRENT` predictions run at once (the rest wait, then get a 503); the
network is a private copy that is only ever read, and its forward pass allocates its own
scratch, so threads can share it.
"""

from __future__ import annotations

import base64
import binascii
import importlib.resources
import io
import ipaddress
import json
import math
import os
import re
import sys
import threading
import time
import traceback
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

__all__ = ["make_server", "DigitServer", "RequestError", "parse_predict_request",
           "predict_json", "decode_png_bytes", "model_description", "is_loopback",
           "MAX_BODY", "MAX_SIDE", "MAX_IMAGE_PIXELS", "MAX_CONNECTIONS"]

MAX_BODY = 1 << 20  # 1 MiB: a 280x280 drawing is about 50 kB as pixels, 10-30 kB as PNG
MAX_SIDE = 1024  # largest width/height accepted for a "pixels" drawing
# Largest PNG accepted, in pixels, checked against its header before it is decoded: a flat
# 4096 x 4096 PNG fits in 70 kB and decodes to 64 MiB of RGBA (and copies of it)
MAX_IMAGE_PIXELS = 2048 * 2048
# Predictions running at once; more requests wait up to BUSY_WAIT seconds, then get a 503
# (every connection has a thread of its own: without a bound, many big uploads at once
# would hold as many decoded images)
MAX_CONCURRENT = max(2, os.cpu_count() or 1)
BUSY_WAIT = 10.0
# Connections open at once, each with a thread of its own; one more is answered with a
# 503 and closed at once, without a thread (an idle keep-alive connection is dropped
# after REQUEST_TIMEOUT, so a browser's few are let go soon)
MAX_CONNECTIONS = 64
# Reading and discarding an oversized body lets the client see the 413 instead of a reset
# connection; beyond this the connection is simply closed.
MAX_DRAIN = 8 * MAX_BODY
REQUEST_TIMEOUT = 15.0  # seconds a client may stay silent mid-request (each read)
# Seconds a whole request may take to arrive, request line to the body's last byte (one
# that trickles a byte at a time held its thread for as long as it kept trickling): at
# least 17 kB/s for the largest body
REQUEST_DEADLINE = 60.0
DATA_URL_PREFIX = "data:image/png;base64,"

STATIC_FILES = {  # URL path -> (file in static/, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
}
API_ROUTES = {"/api/predict": "POST", "/api/model": "GET", "/healthz": "GET"}

SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
                                "form-action 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class RequestError(Exception):
    """A client mistake: answered with ``status`` and ``{"error": message}`` (and the
    response headers ``headers``, e.g. a 503's ``Retry-After``)."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = int(status)
        self.message = message
        self.headers = dict(headers or {})


# ---------------------------------------------------------------------------- decoding

def _pillow_decode(data: bytes, max_pixels: int):
    """PNG bytes -> array with Pillow, or None when Pillow is absent. The size Pillow
    found in the header (the last IHDR, wherever it is) is checked before decoding."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        return None
    import io

    from digitcore.imaging import exif_upright
    from digitcore.png import PNGError

    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise PNGError(f"PNG is too large ({w}x{h}); the limit is {max_pixels:,} pixels")
            img.load()
            img = exif_upright(img)  # (as `digitcore predict` reads a file, and viewers)
            if img.mode.startswith(("I", "F")):
                # 16-bit grey as it is: preprocess_image takes its bit depth from its
                # largest value, as for the same file given to `digitcore predict`
                return np.asarray(img)
            if img.mode in ("1", "L") and "transparency" not in img.info:
                return np.asarray(img.convert("L"), dtype=np.uint8)
            if img.mode == "LA":
                return np.asarray(img, dtype=np.uint8)
            alpha = img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info
            return np.asarray(img.convert("RGBA" if alpha else "RGB"), dtype=np.uint8)
    except PNGError:
        raise
    except UnidentifiedImageError:
        # (Pillow's message names the BytesIO object: "<_io.BytesIO object at 0x...>")
        raise PNGError("the data is not a PNG image Pillow can read") from None
    except (OSError, ValueError, SyntaxError, TypeError) as exc:
        # (TypeError: Pillow's convert() on malformed metadata it kept, e.g. a tRNS chunk
        # of the wrong length after a second IHDR)
        raise PNGError(f"cannot read the PNG: {_no_reprs(str(exc))}") from None
    except Image.DecompressionBombError as exc:  # pragma: no cover - caught by the size check
        raise PNGError(str(exc)) from None


def _no_reprs(text: str) -> str:
    """A message without Python object reprs like ``<_io.BytesIO object at 0x7f...>``."""
    import re

    return re.sub(r"<[\w.]+ object at 0x[0-9a-fA-F]+>", "the image", text)


def decode_png_bytes(data: bytes, use_pillow: bool | None = None,
                     max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode PNG bytes to an array for ``preprocess_image``: Pillow when installed, else
    the NumPy decoder. uint8, but a 16-bit grey PNG's levels as they are (uint16, or
    Pillow's int32), so that a 12-bit scan's 4095 reads as white, as ``load_image`` reads
    the file. A PNG of more than ``max_pixels`` pixels is refused before it is decoded.

    ``use_pillow=False`` forces the built-in decoder (the tests run both).
    Raises :class:`digitcore.png.PNGError` (a ValueError) for a bad PNG.
    """
    from digitcore.png import decode_png

    if use_pillow is not False:
        arr = _pillow_decode(data, max_pixels)
        if arr is not None:
            return arr
    return decode_png(data, wide=True, max_pixels=max_pixels)


def _strict_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _is_number(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool))


def _side(body: dict, key: str) -> int:
    v = body.get(key, 28)
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_SIDE:
        raise RequestError(400, f"{key} must be an integer from 1 to {MAX_SIDE}, got {v!r}")
    return v


def parse_predict_request(raw: bytes) -> np.ndarray:
    """The drawing in a ``/api/predict`` body, as an array for ``preprocess_image``.

    Parameters
    ----------
    raw : bytes
        UTF-8 JSON object with either ``image`` (a ``data:image/png;base64,`` URL) or
        ``pixels`` (``width * height`` grey values 0-255, row by row; ``width`` and
        ``height`` default to 28, so a bare 784-value list is a 28x28 drawing).

    Returns
    -------
    ndarray: uint8 ``(h, w)`` grey, or ``(h, w, 2|3|4)`` from a PNG; a 16-bit grey PNG's
    levels as they are (uint16 or int32 ``(h, w)``, see :func:`decode_png_bytes`).

    Raises
    ------
    RequestError
        Status 400 with a message for anything malformed.
    """
    try:
        text = raw.decode("utf-8")
        body = json.loads(text, parse_constant=_strict_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestError(400, f"the request body is not valid JSON: {exc}") from None
    except RecursionError:  # (json's decoder recurses once per nested array or object)
        raise RequestError(400, "the request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object with 'image' or 'pixels'")
    has_image, has_pixels = "image" in body, "pixels" in body
    if has_image == has_pixels:
        raise RequestError(400, "send exactly one of 'image' (a PNG data URL) or 'pixels' "
                                "(grey values 0-255)")
    if has_image:
        url = body["image"]
        if not isinstance(url, str) or not url[:len(DATA_URL_PREFIX)].lower() == DATA_URL_PREFIX:
            raise RequestError(400, f"'image' must be a data URL starting with "
                                    f"{DATA_URL_PREFIX!r}")
        try:
            data = base64.b64decode(url[len(DATA_URL_PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(400, "'image' is not valid base64 after the data URL prefix") \
                from None
        if not data:
            raise RequestError(400, "'image' holds no data")
        try:
            return decode_png_bytes(data)
        except ValueError as exc:  # PNGError
            raise RequestError(400, f"'image' is not a readable PNG: {exc}") from None
    pixels = body["pixels"]
    width, height = _side(body, "width"), _side(body, "height")
    if not isinstance(pixels, list):
        raise RequestError(400, "'pixels' must be a JSON array of numbers")
    if len(pixels) != width * height:
        raise RequestError(400, f"'pixels' must hold width*height = {width}*{height} = "
                                f"{width * height} values, got {len(pixels)}")
    if not all(map(_is_number, pixels)):
        bad = next(v for v in pixels if not _is_number(v))
        raise RequestError(400, f"'pixels' must hold only numbers, found {bad!r}")
    try:
        arr = np.asarray(pixels, dtype=np.float64)
    except OverflowError:  # an integer past float's range (JSON has no limit on digits)
        raise RequestError(400, "'pixels' values must be in 0-255, found an integer too large "
                                "for a number") from None
    if not np.isfinite(arr).all():
        raise RequestError(400, "'pixels' holds non-finite values")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise RequestError(400, f"'pixels' values must be in 0-255, got range "
                                f"[{arr.min():g}, {arr.max():g}]")
    if arr.size and arr.max() <= 1 and (arr != np.round(arr)).any():
        # (read as 0-255 they are a blank page: say what they look like instead)
        raise RequestError(400, "'pixels' look like values scaled to [0, 1] (none above 1, "
                                "some fractional): send grey values 0-255 (times 255)")
    if arr.size and arr.max() == 1 and arr.min() == 0:
        # (preprocess_image refuses a 0/1 mask too, with advice for NumPy users)
        raise RequestError(400, "'pixels' hold only 0 and 1, a mask: send grey values 0-255 "
                                "(times 255)")
    return np.round(arr).astype(np.uint8).reshape(height, width)


def predict_json(network, image: np.ndarray, drawing: bool = False, tta=None) -> dict:
    """Preprocess ``image`` like ``Network.predict_image`` and describe the prediction
    (with test-time augmentation ``tta``, as ``predict_image`` takes it).

    An image with no digit to read (blank, a dot, a speck, strokes that are not a digit)
    is a 422 ``RequestError``, or with ``drawing`` (a drawing still being made, where that
    is a normal state) the answer ``{"digit": None, "reason": ..., "message": ...}``."""
    from digitcore.imaging import NoDigitError, preprocess_image
    from digitcore.network import picture_row

    try:
        img28 = preprocess_image(image)
    except NoDigitError as exc:
        # not a client error: nothing to read yet (a dot, a speck, a blank canvas)
        if exc.reason == "too_small":
            message = "too small to read: draw a bigger digit"
        elif exc.reason == "blank":
            message = "the drawing is blank: draw a digit first"
        else:
            message = f"no digit to read: {exc}"
        if drawing:
            return {"digit": None, "reason": exc.reason, "message": message}
        raise RequestError(422, message) from None
    except ValueError as exc:
        raise RequestError(400, f"cannot use the drawing: {exc}") from None
    proba = network.predict_proba(picture_row(network, img28), tta=tta)[0]
    return {"digit": int(np.argmax(proba)),
            "probabilities": [round(float(p), 6) for p in proba],
            "input28": img28.ravel().tolist()}


def _finite(obj):
    """A copy of a JSON-like object with NaN/inf floats as None (strict JSON has neither)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.generic):
        return _finite(obj.item())
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


_OWN_DATA = "IDX files in "  # (datasets.resolve_default_dataset's name for a user's folder)


def _training(summary):
    """A training summary, unwrapped from the ``{"training": {...}}`` that ``digitcore
    train --out`` wrote into model files before it stored the summary itself, with the
    folder of a user's own data named by its last part only (as the model file is)."""
    while (isinstance(summary, dict) and len(summary) == 1
           and isinstance(summary.get("training"), dict)):
        summary = summary["training"]
    return _no_folders(summary)


def _no_folders(obj):
    """``obj`` with every ``"dataset": "IDX files in /a/b/c"`` as ``"IDX files in c"``."""
    if isinstance(obj, list):
        return [_no_folders(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    out = {k: _no_folders(v) for k, v in obj.items()}
    name = out.get("dataset")
    if isinstance(name, str) and name.startswith(_OWN_DATA):
        folder = name[len(_OWN_DATA):].rstrip("/\\")
        out["dataset"] = _OWN_DATA + re.split(r"[/\\]", folder)[-1]
    return out


def model_description(network, model_info: dict | None = None, tta=None) -> dict:
    """What ``GET /api/model`` answers: architecture, parameters, training metadata, and
    the test-time augmentation ``tta`` drawings are read with.

    The model file is named by its file name only: the server's folders are nobody
    else's business.
    """
    from digitcore._version import __version__

    from digitcore.modelio import architecture_text

    config = network.get_config()
    members = getattr(network, "members", None)  # a Committee: say so, and how many
    arch = architecture_text([(n.layer_sizes, n.activation) for n in members or [network]],
                             committee=members is not None)
    desc = {
        "architecture": arch,
        "members": 1 if members is None else len(members),
        "layer_sizes": list(network.layer_sizes),
        "activation": network.activation,
        "n_params": int(network.n_params),
        "config": config,
        "training": network.training_summary,
        "tta": tta,
        "metadata": {},
        "source": "in-memory network",
        "digitcore_version": __version__,
    }
    try:
        from digitcore._config import kernel_path

        desc["kernel"] = kernel_path()
    except Exception:  # informational only
        pass
    if model_info:
        for key in ("file_size", "metadata", "source"):
            if key in model_info:
                desc[key] = model_info[key]
        if model_info.get("path"):
            desc["file"] = os.path.basename(os.fspath(model_info["path"]))
        if isinstance(model_info.get("metadata"), dict):
            desc["metadata"] = dict(model_info["metadata"])
            if "training" in desc["metadata"]:
                desc["metadata"]["training"] = _training(desc["metadata"]["training"])
            if desc["training"] is None:
                desc["training"] = desc["metadata"].get("training")
    desc["training"] = _training(desc["training"])
    return _finite(desc)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_allowed_hosts(names) -> frozenset:
    """The host names (lowercase) a server on a loopback address also answers, besides
    localhost: a reverse proxy that passes its own Host header (nginx's ``proxy_set_header
    Host $host``, Caddy's default). Each a bare name or address, no scheme, port or path."""
    if isinstance(names, str):
        names = [names]
    out = set()
    for name in names:
        n = str(name).strip().lower()
        if n.startswith("[") and n.endswith("]"):
            n = n[1:-1]
        if not n or any(c in n for c in "/?#@ \t") or (":" in n and not _is_ip(n)):
            raise ValueError(f"--allow-host takes a host name such as digits.example.com "
                             f"(no scheme, port or path), got {name!r}")
        out.add(n)
    return frozenset(out)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    """The name in a Host header: ``127.0.0.1:8000`` -> ``127.0.0.1``, ``[::1]:80`` -> ``::1``."""
    h = host_header.strip()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


# ---------------------------------------------------------------------------- HTTP

class _DeadlineSocket(io.RawIOBase):
    """The connection's reading side, each read given at most what is left of the
    handler's current request deadline (and at most REQUEST_TIMEOUT): socket.timeout,
    a TimeoutError, once it has passed."""

    def __init__(self, sock, handler):
        self._sock, self._handler = sock, handler

    def readable(self):
        return True

    def readinto(self, b):
        left = self._handler.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the request took more than {REQUEST_DEADLINE:g} s to arrive")
        self._sock.settimeout(min(REQUEST_TIMEOUT, left))
        return self._sock.recv_into(b)


class Handler(BaseHTTPRequestHandler):
    server_version = "digitcore-serve"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT  # applied to the socket: a stalled client frees its thread
    deadline = math.inf

    def setup(self):
        super().setup()
        # reads through the request deadline (handle_one_request sets it)
        self.rfile = io.BufferedReader(_DeadlineSocket(self.connection, self), 65536)

    def handle_one_request(self):
        self.deadline = time.monotonic() + REQUEST_DEADLINE
        super().handle_one_request()

    # -- responses ---------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str, extra=None):
        # (the reads left the socket's timeout at what remained of the request deadline,
        # perhaps a fraction of a second: the answer gets the usual one)
        self.connection.settimeout(REQUEST_TIMEOUT)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in SECURITY_HEADERS.items():
            self.send_header(k, v)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj, extra=None):
        body = json.dumps(obj, allow_nan=False, separators=(",", ":")).encode()
        headers = {"Cache-Control": "no-store"}
        headers.update(extra or {})
        self._send(status, body, "application/json", headers)

    def send_error(self, code, message=None, explain=None):
        """Errors found by http.server itself (bad request line, huge headers) as JSON."""
        try:
            short = HTTPStatus(code).phrase
        except ValueError:
            short = "error"
        self.close_connection = True
        if not hasattr(self, "command") or self.command is None:
            self.command = ""
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # nobody speaks 0.9: always send headers
        self._json(code, {"error": message or short})

    def log_message(self, format, *args):  # noqa: A002 - http.server's signature
        if getattr(self.server, "verbose", False):
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    # -- routing -----------------------------------------------------------------------

    def _path(self) -> str:
        return self.path.split("?", 1)[0].split("#", 1)[0]

    def _query(self) -> dict:
        """The request's query parameters, each name to its list of values."""
        return urllib.parse.parse_qs(self.path.split("#", 1)[0].partition("?")[2])

    def _check_host(self) -> bool:
        if not self.server.loopback_only:
            return True
        host = self.headers.get("Host")
        if host is None:
            return True
        name = _host_name(host)
        if is_loopback(name) or name.lower() in self.server.allowed_hosts:
            return True
        # the body is not read, so the connection closes: left on it, the body would be
        # taken as the next request (which a rebinding page could write with a good Host)
        self.close_connection = True
        self._json(403, {"error": f"unexpected Host header {host!r}: this server only answers "
                                  "requests addressed to localhost, or to a name given "
                                  "with --allow-host (a reverse proxy's)"})
        return False

    def _dispatch(self, method: str):
        try:
            if not self._check_host():
                return
            path = self._path()
            if method in ("GET", "HEAD") and path in STATIC_FILES:
                self._no_body_expected()
                body, ctype = self.server.static[path]
                self._send(200, body, ctype, {"Cache-Control": "no-cache"})
            elif path in STATIC_FILES:  # the page exists; other methods do not apply
                self._drain_body()
                self._json(405, {"error": f"{path} takes GET or HEAD requests, not {method}"},
                           {"Allow": "GET, HEAD"})
            elif path in API_ROUTES:
                allowed = API_ROUTES[path]
                want = "GET" if method == "HEAD" else method
                if want != allowed:
                    self._drain_body()
                    self._json(405, {"error": f"{path} takes {allowed} requests, not {method}"},
                               {"Allow": allowed + (", HEAD" if allowed == "GET" else "")})
                elif path == "/api/predict":
                    self._predict()
                elif path == "/api/model":
                    self._no_body_expected()
                    self._json(200, self.server.model_info)
                else:
                    self._no_body_expected()
                    self._json(200, {"status": "ok"})
            else:
                self._drain_body()
                self._json(404, {"error": f"no such page: {path[:200]}"})
        except RequestError as exc:
            self._json(exc.status, {"error": exc.message}, exc.headers)
        except (ConnectionError, TimeoutError) as exc:  # the client went away
            self.close_connection = True
            self.server.log_disconnect(self.client_address, exc)
        except Exception:  # a bug: tell the client briefly, the console fully
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            try:
                self._json(500, {"error": "internal server error"})
            except OSError:
                pass

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_OPTIONS(self):
        self._dispatch("OPTIONS")

    # -- bodies ------------------------------------------------------------------------

    def _content_length(self) -> int | None:
        encodings = self.headers.get_all("Transfer-Encoding") or []
        if any("chunked" in e.lower() for e in encodings):
            self.close_connection = True
            raise RequestError(411, "send the body with a Content-Length header "
                                    "(chunked transfer encoding is not accepted)")
        if encodings:
            # any other transfer coding (RFC 9112 6.3: a 400, then close): framing the
            # body by Content-Length while a front end reads it otherwise is how requests
            # get smuggled past it
            self.close_connection = True
            raise RequestError(400, f"transfer encoding {encodings[0][:40]!r} is not "
                                    f"accepted: send the body as is, with a Content-Length")
        values = self.headers.get_all("Content-Length") or []
        if len({v.strip() for v in values}) > 1:  # (which one frames the body?)
            self.close_connection = True
            raise RequestError(400, f"conflicting Content-Length headers {values!r}")
        text = values[0] if values else None
        if text is None:
            return None
        if not re.fullmatch(r"[0-9]{1,18}", text.strip(), re.ASCII):
            # (not str.isdigit, which takes "²" and other digits int() refuses)
            self.close_connection = True
            raise RequestError(400, f"bad Content-Length header {text[:40]!r}")
        return int(text.strip())

    def _no_body_expected(self):
        """A GET or HEAD that says it has a body (Content-Length, chunks): answered, then
        the connection closes. Left unread on it, the body would be taken as the next
        request; read, a client that never sends it would hold the answer."""
        if self.headers.get("Content-Length", "0").strip() not in ("", "0") \
                or "Transfer-Encoding" in self.headers:
            self.close_connection = True

    def _drain_body(self):
        """Read and drop a body we won't use, so the connection stays in sync."""
        try:
            n = self._content_length()
        except RequestError:
            return
        if n and n <= MAX_DRAIN:
            while n > 0:
                chunk = self.rfile.read(min(n, 65536))
                if not chunk:
                    break
                n -= len(chunk)
        elif n:
            self.close_connection = True

    def _read_body(self) -> bytes:
        n = self._content_length()
        if n is None:
            self.close_connection = True
            raise RequestError(411, "a Content-Length header is required")
        if n > MAX_BODY:
            self._drain_body()
            self.close_connection = True
            raise RequestError(413, f"the request body is {n:,} bytes; the limit is "
                                    f"{MAX_BODY:,} bytes")
        body = self.rfile.read(n)
        if len(body) != n:
            self.close_connection = True
            raise RequestError(400, f"the request body ended after {len(body)} of {n} bytes")
        return body

    def _check_sender(self):
        """A prediction is asked for by this server's own page or by a program, not by
        another site's page. The browser says where a request comes from: with
        ``Sec-Fetch-Site`` (which a page cannot set), only "same-origin" and "none" are
        answered; without it, an ``Origin`` must name the ``Host`` asked for (behind a
        proxy that rewrites Host, browsers that send Sec-Fetch-Site still work). The body
        must be declared JSON: a page elsewhere can send a cross-site POST without
        asking first only as text/plain, form data or multipart (any other type makes
        the browser ask with OPTIONS, which is refused)."""
        site = self.headers.get("Sec-Fetch-Site")
        origin = self.headers.get("Origin")
        host = self.headers.get("Host")
        if site is not None:
            foreign = site.strip().lower() not in ("same-origin", "none")
        else:
            foreign = origin is not None and (host is None or origin.strip().lower() not in {
                f"{scheme}://{host.strip().lower()}" for scheme in ("http", "https")})
        if foreign:
            where = f"the page at {origin[:100]!r}" if origin is not None else \
                f"another site's page (Sec-Fetch-Site: {site.strip()[:20]})"
            raise RequestError(403, f"requests from {where} are refused: this server "
                                    "answers its own page and programs")
        ctype = self.headers.get("Content-Type", "")
        if ctype.split(";", 1)[0].strip().lower() != "application/json":
            raise RequestError(415, "send the body as JSON, with the header 'Content-Type: "
                                    f"application/json' (got {ctype[:60]!r})")

    def _predict(self):
        t0 = time.perf_counter()
        body = self._read_body()
        self._check_sender()
        if not self.server.slots.acquire(timeout=BUSY_WAIT):
            raise RequestError(503, f"the server is busy ({MAX_CONCURRENT} predictions "
                                    "running): try again shortly", {"Retry-After": "1"})
        try:
            image = parse_predict_request(body)
            result = predict_json(self.server.network, image,
                                  drawing="1" in self._query().get("drawing", []),
                                  tta=self.server.tta)
        finally:
            self.server.slots.release()
        result["milliseconds"] = round((time.perf_counter() - t0) * 1000, 2)
        self._json(200, result)


class DigitServer(ThreadingHTTPServer):
    """ThreadingHTTPServer holding the network, its description and the page's files."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address, network, model_info=None, verbose=False, debug=False,
                 tta=None, allowed_hosts=()):
        import socket

        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.verbose = verbose
        self.debug = debug
        self.network = network
        self.tta = tta
        self.loopback_only = is_loopback(address[0])
        self.allowed_hosts = check_allowed_hosts(allowed_hosts)
        self.static = _load_static()
        self.model_info = model_description(network, model_info, tta)
        self.slots = threading.BoundedSemaphore(MAX_CONCURRENT)
        self.max_connections = MAX_CONNECTIONS
        self.connections = 0  # open ones, each on its thread (under _connections_lock)
        self._connections_lock = threading.Lock()
        super().__init__(address, Handler)

    def process_request(self, request, client_address):
        """A thread for the connection, or, past ``max_connections`` open at once, a 503
        written without blocking and the connection closed (the accepting loop never
        waits on a client)."""
        with self._connections_lock:
            full = self.connections >= self.max_connections
            if not full:
                self.connections += 1
        if full:
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # (no thread started: the count is not the thread's)
            self._connection_done()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connection_done()

    def _connection_done(self):
        with self._connections_lock:
            self.connections -= 1

    def _refuse(self, request):
        body = json.dumps({"error": f"the server has {self.max_connections} connections "
                                    "open; try again in a few seconds"}).encode()
        head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nRetry-After: 5\r\nConnection: close\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in SECURITY_HEADERS.items()) + "\r\n")
        try:
            request.setblocking(False)  # (a few hundred bytes: the send buffer takes them)
            request.send(head.encode() + body)
        except OSError:
            pass
        self.shutdown_request(request)

    def log_disconnect(self, client_address, exc):
        """One line for a client that hung up mid-request (a traceback with debug)."""
        if self.debug:
            traceback.print_exception(exc, file=sys.stderr)
            return
        who = ":".join(map(str, client_address[:2])) if client_address else "a client"
        reason = getattr(exc, "strerror", None) or str(exc) or "connection lost"
        sys.stderr.write(f"digitcore serve: {who} disconnected mid-request "
                         f"({type(exc).__name__}: {reason})\n")

    def handle_error(self, request, client_address):
        # socketserver's default prints a traceback for anything a handler raises; a
        # client hanging up while its request line is read or the reply flushed is no bug
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            self.log_disconnect(client_address, exc)
        else:
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}/"


def _load_static() -> dict:
    root = importlib.resources.files("digitcore.serve").joinpath("static")
    out = {}
    for url, (name, ctype) in STATIC_FILES.items():
        try:
            body = root.joinpath(name).read_bytes()
        except OSError as exc:
            raise OSError(f"the page file digitcore/serve/static/{name} is missing: the "
                          f"package was installed without its data files ({exc})") from exc
        out[url] = (body, ctype)
    return out


def make_server(network, host="127.0.0.1", port=8000, *, model_info=None, verbose=False,
                debug=False, tta=None, allowed_hosts=()):
    """Bind a :class:`DigitServer` for ``network`` (not started: call ``serve_forever()``).

    Parameters
    ----------
    network : Network
        Must read 28x28 images (784 features). A private copy is served, so later
        changes to ``network`` do not reach the server.
    host, port : str, int
        Where to listen; port 0 picks a free port (see ``server.server_address``).
    model_info : dict, optional
        ``read_model_info`` output (path, metadata) to show in ``GET /api/model``.
    verbose : bool
        Log every request to stderr.
    debug : bool
        Print a traceback, not one line, when a client disconnects mid-request.
    tta : None or str
        Test-time augmentation of each drawing (a name of ``digitcore.augment.TTA``, or
        "none"); None reads with the one the network was trained to be scored with
        (``digitcore.augment.model_tta``).
    allowed_hosts : iterable of str
        Host names answered besides localhost when ``host`` is a loopback address (which
        otherwise refuses any other Host header, against DNS rebinding): the name a
        reverse proxy in front passes on, e.g. ``["digits.example.com"]``.

    Returns
    -------
    DigitServer
        With ``server_address``, ``url``, ``serve_forever()``, ``shutdown()`` and
        ``server_close()``.
    """
    if getattr(network, "n_features", None) != 784:
        raise ValueError(f"serve needs a network that reads 28x28 images (784 inputs), got "
                         f"{network!r}")
    from digitcore.augment import model_tta
    from digitcore.imaging import shape_check_ready

    tta = model_tta(network, tta)
    shape_check_ready()  # a broken installation fails here, not on every drawing
    net = network.copy()
    net.predict_proba(np.zeros((1, 784), dtype=np.uint8))  # build the C view before threads
    return DigitServer((host, int(port)), net, model_info=model_info, verbose=verbose,
                       debug=debug, tta=tta, allowed_hosts=allowed_hosts)
