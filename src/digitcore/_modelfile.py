"""The model file format: a network's config, weights and biases as safetensors.

This module knows the bytes and nothing of :class:`~digitcore.network.Network`: the
network writes itself with it (``Network.save``), and :mod:`digitcore.modelio` (the public
API: save_model, load_model, read_model_info, to_torch) builds Networks from what it reads.

Format (https://github.com/huggingface/safetensors, written and read here with
NumPy only; the safetensors package is not needed and nothing is unpickled)::

    8 bytes   N, unsigned 64-bit little-endian: length of the header
    N bytes   UTF-8 JSON header, padded with spaces to a multiple of 8 bytes
    rest      raw little-endian tensor data, addressed by the header's offsets

The header maps tensor names to ``{"dtype": "F32", "shape": [...],
"data_offsets": [begin, end]}`` (offsets relative to the data buffer); ``"F16"`` tensors
(``save(..., dtype="float16")``, half the size: the bundled pretrained model) are read
back as float32. Names
follow a PyTorch ``nn.Sequential(Linear, Act, Linear, Act, ..., Linear)``
state dict: layer ``i`` is ``"{2*i}.weight"`` shaped ``(out, in)`` and
``"{2*i}.bias"`` shaped ``(out,)``, so ``Sequential.load_state_dict(
safetensors.torch.load_file(path))`` works. ``"__metadata__"`` holds strings:
``format = "digitcore"``, ``config`` (JSON of ``Network.get_config()``),
``digitcore_version`` and optionally ``training`` (JSON summary).

A committee (:class:`digitcore.committee.Committee`, several networks whose averaged
probabilities are the answer) is one file of the same kind: member ``m``'s tensors are
named ``"members.{m}.{2*i}.weight"`` / ``"members.{m}.{2*i}.bias"`` (the state dict of a
PyTorch module holding an ``nn.ModuleList`` called ``members``), and instead of
``config`` the metadata holds ``committee``: JSON ``{"combine": "mean_proba",
"members": [config, ...]}``. :func:`read_models` reads either kind; :func:`read_model`
reads one network and refuses a committee file by name.

The network's input normalisation (``input_mean``, ``input_std`` in the
config) is not part of the tensors: a PyTorch model loaded from the file
expects inputs already scaled to [0, 1] and normalised as
``(x - input_mean) / input_std``. :func:`digitcore.modelio.to_torch` folds it into the first
layer instead.
"""

from __future__ import annotations

import json
import math
import os
import struct
from typing import Any, Callable

import numpy as np

from digitcore._atomic import NotAFile, atomic_write_bytes, seekable
from digitcore._checks import standardization_problem
from digitcore._version import __version__
from digitcore.errors import ModelFormatError

__all__ = ["write_model", "write_committee", "read_model", "read_models", "decode_training",
           "FORMAT_NAME", "STORAGE_DTYPES", "COMBINE", "MAX_MEMBERS"]

FORMAT_NAME = "digitcore"
# The header is JSON describing a few tensors; the safetensors library itself caps
# it at 100 MB. Ours are a few KB, so a much smaller cap refuses garbage early.
MAX_HEADER_BYTES = 16 * 1024 * 1024
# What a model read from a pipe may hold (a file has its size; a pipe may never end).
MAX_PIPE_BYTES = 1 << 30

# Largest layer width / depth a config may ask for, checked before anything is allocated.
MAX_LAYER_SIZE = 1 << 20
MAX_LAYERS = 1024
# A committee's member count is checked before anything is allocated.
MAX_MEMBERS = 1024
# How a committee file's members combine: the mean of their probabilities.
COMBINE = "mean_proba"
_TENSOR_KEYS = {"dtype", "shape", "data_offsets"}
_SAFETENSORS_DTYPES = {"BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16",
                       "BF16", "I32", "U32", "F32", "F64", "I64", "U64"}
# storage dtypes a model file may use: name in the header -> little-endian NumPy dtype
_STORAGE = {"F32": "<f4", "F16": "<f2"}
# what write_model's `dtype` accepts -> header name
STORAGE_DTYPES = {"float32": "F32", "float16": "F16"}


# ----------------------------------------------------------------------------
# writing

def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "history") and isinstance(obj.history, dict):  # a trainer History
        return obj.history
    raise TypeError(f"metadata value of type {type(obj).__name__} is not JSON serialisable")


def _serialize(tensors: list[tuple[str, np.ndarray]], metadata: dict[str, str],
               dtype: str = "F32") -> bytes:
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    blobs = []
    for name, arr in tensors:
        blob = np.ascontiguousarray(arr, dtype=_STORAGE[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the spec pads the header with spaces to 8 bytes
    return b"".join([struct.pack("<Q", len(raw)), raw, *blobs])


def _layer_tensors(config, weights, biases, prefix=""):
    """``[(name, array), ...]`` of one network, checked against its ``layer_sizes``."""
    sizes = [int(s) for s in config["layer_sizes"]]
    weights, biases = list(weights), list(biases)
    if len(weights) != len(sizes) - 1 or len(biases) != len(sizes) - 1:
        raise ValueError(
            f"network has {len(weights)} weights and {len(biases)} biases for "
            f"layer_sizes {sizes}")
    tensors = []
    for i, (w, b) in enumerate(zip(weights, biases)):
        w, b = np.asarray(w), np.asarray(b)
        want_w, want_b = (sizes[i + 1], sizes[i]), (sizes[i + 1],)
        if w.shape != want_w or b.shape != want_b:
            raise ValueError(
                f"layer {i}: weight shape {w.shape} and bias shape {b.shape}, expected "
                f"{want_w} and {want_b} from layer_sizes {sizes}")
        tensors += [(f"{prefix}{2 * i}.weight", w), (f"{prefix}{2 * i}.bias", b)]
    return tensors


def _writable_config(config, what="") -> str:
    """config as the file stores it (JSON), after the checks read_models makes of it: a
    file that saves must load (ValueError otherwise, before anything is written)."""
    text = json.dumps(config, sort_keys=True, default=_json_default)
    _check_config(json.loads(text), lambda problem: ValueError(f"{what}{problem}"))
    return text


def _write(path, tensors, meta, metadata, dtype):
    """Check the values, storage dtype and metadata, then write the file atomically."""
    for name, arr in tensors:
        if not np.isfinite(np.asarray(arr, dtype=np.float32)).all():
            raise ValueError(f"tensor {name} contains NaN or infinite values (a model file "
                             "holding them could not be loaded)")
    if dtype == "float16":
        limit = float(np.finfo(np.float16).max)
        for name, arr in tensors:
            big = np.abs(np.asarray(arr, dtype=np.float64)).max(initial=0.0)
            if not big <= limit:  # also catches NaN
                raise ValueError(f"tensor {name}: a value of magnitude {big:.6g} does not fit "
                                 f"float16 (largest {limit:g}); save it as float32")
    meta = {"format": FORMAT_NAME, **meta, "digitcore_version": __version__}
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise ValueError(f"metadata must be a dict, got {type(metadata).__name__}")
        try:
            meta["training"] = json.dumps(metadata, sort_keys=True, default=_json_default,
                                          allow_nan=True)
        except (TypeError, ValueError, RecursionError) as exc:
            raise ValueError(f"metadata is not JSON serialisable: {_json_problem(exc)}") \
                from None
    blob = _serialize(tensors, meta, STORAGE_DTYPES[dtype])
    header = int.from_bytes(blob[:8], "little")
    if header > MAX_HEADER_BYTES:
        raise ValueError(f"the file's header would be {header} bytes, over the "
                         f"{MAX_HEADER_BYTES}-byte limit of model files (metadata too large)")
    atomic_write_bytes(path, blob)


def write_model(path, config, weights, biases, metadata=None, dtype="float32") -> None:
    """Write ``config`` (``Network.get_config()``), ``weights`` ((out, in) arrays) and
    ``biases`` ((out,) arrays) to a safetensors file at ``path``, atomically, with
    ``metadata`` (a JSON-serialisable dict, or None) as the ``training`` string.
    ``dtype`` is the storage of the tensors: ``"float32"`` (exact) or ``"float16"``
    (half the bytes, each value rounded to the nearest float16).

    ValueError if the arrays do not match config's layer sizes, the metadata is not
    JSON-serialisable, or a value does not fit the storage dtype; OSError if the file
    cannot be written (an old file is intact). :func:`digitcore.modelio.save_model`
    documents the same for users.
    """
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(STORAGE_DTYPES)}, got {dtype!r}")
    tensors = _layer_tensors(config, weights, biases)
    _write(path, tensors, {"config": _writable_config(config)}, metadata, dtype)


def write_committee(path, members, metadata=None, dtype="float32") -> None:
    """Write a committee: ``members`` is a list of ``(config, weights, biases)``, one per
    network, in the order their probabilities are summed. Same contract as
    :func:`write_model` (atomic; ValueError on shapes, metadata or float16 range)."""
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(STORAGE_DTYPES)}, got {dtype!r}")
    members = list(members)
    if not 1 <= len(members) <= MAX_MEMBERS:
        raise ValueError(f"a committee holds 1 to {MAX_MEMBERS} networks, got {len(members)}")
    tensors, configs = [], []
    for m, (config, weights, biases) in enumerate(members):
        try:
            tensors += _layer_tensors(config, weights, biases, f"members.{m}.")
        except ValueError as exc:
            raise ValueError(f"member {m}: {exc}") from None
        _writable_config(config, f"member {m}: ")
        configs.append(config)
    committee = {"combine": COMBINE, "members": configs}
    _write(path, tensors,
           {"committee": json.dumps(committee, sort_keys=True, default=_json_default)},
           metadata, dtype)


# ----------------------------------------------------------------------------
# reading and validation

def _json_problem(exc) -> str:
    """What json.loads found wrong: its message, or that the nesting is too deep."""
    return "nested too deeply" if isinstance(exc, RecursionError) else str(exc)


def _no_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_config(config, fail: Callable[[str], ModelFormatError]) -> dict:
    """Validate the values of a decoded config before anything is built."""
    if not isinstance(config, dict):
        raise fail(f"metadata config is a JSON {type(config).__name__}, expected an object")
    sizes = config.get("layer_sizes")
    if (not isinstance(sizes, list) or not 2 <= len(sizes) <= MAX_LAYERS
            or not all(_is_int(s) and 1 <= s <= MAX_LAYER_SIZE for s in sizes)):
        raise fail(
            f"config layer_sizes must be a list of 2 to {MAX_LAYERS} integers in "
            f"[1, {MAX_LAYER_SIZE}], got {sizes!r:.200}")
    for key in ("activation", "init"):
        if key in config and (not isinstance(config[key], str) or not config[key]):
            raise fail(f"config {key} must be a non-empty string, got {config[key]!r:.100}")
    if "activation" not in config:
        raise fail("config has no activation")
    if "dropout" in config:
        d = config["dropout"]
        if not isinstance(d, (int, float)) or isinstance(d, bool) or not 0.0 <= d < 1.0:
            raise fail(f"config dropout must be a number in [0, 1), got {d!r:.100}")
    for key in ("input_mean", "input_std"):
        v = config.get(key, 0.0)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise fail(f"config {key} must be a number, got {v!r:.100}")
    # finite, std > 0, and in float32's range as the kernels take them
    problem = standardization_problem(config.get("input_mean", 0.0),
                                      config.get("input_std", 1.0))
    if problem:
        raise fail(f"config {problem}")
    return config


def _other_format(prefix: bytes, path: str) -> str | None:
    """What a file that is not a safetensors model file looks like it is, from its first
    bytes, as advice for the error; None when nothing is recognised."""
    if prefix.startswith(b"\x89PNG"):
        return "this is a PNG image, not a model file"
    if prefix.startswith(b"PK\x03\x04"):
        return "this is a zip archive (a PyTorch .pt file?), not a digitcore model file"
    if prefix.startswith(b"\x1f\x8b"):
        return "this is a gzip file, not a model file"
    # an ONNX ModelProto begins with field 1 (ir_version, 3 to 20), then a short string
    # field (producer_name or _version) of printable text, or the graph (field 7) whose
    # first node (field 1) follows its length; a safetensors header's length, read from
    # those bytes, has zeros there
    ir = prefix[0] == 0x08 and 3 <= prefix[1] <= 20
    text = prefix[2] in (0x12, 0x1A) and prefix[3] < 0x80 and all(
        32 <= c < 127 for c in prefix[4:4 + min(4, prefix[3])]) and prefix[3] > 0
    graph = prefix[2] == 0x3A and (prefix[4] == 0x0A if prefix[3] < 0x80 else
                                   prefix[4] < 0x80 and prefix[5] == 0x0A)
    if path.lower().endswith(".onnx") or (ir and (text or graph)):
        return ("this looks like an ONNX file: digitcore writes ONNX (digitcore export) "
                "but reads only its own .safetensors model files")
    return None


def read_model(path) -> tuple[dict, dict, list[np.ndarray], list[np.ndarray], int]:
    """Read and fully validate a model file of one network.

    Returns ``(config, metadata, weights, biases, file_size)``; raises
    ModelFormatError naming the file and the problem (a committee file included:
    :func:`read_models` reads those).
    """
    members, meta, size = read_models(path)
    if "committee" in meta:
        raise ModelFormatError(
            f"{os.fspath(path)}: holds a committee of {len(members)} networks, not one "
            "network (load it with digitcore.load_model)")
    config, weights, biases = members[0]
    return config, meta, weights, biases, size


def read_models(path) -> tuple[list[tuple[dict, list, list]], dict, int]:
    """Read and fully validate a model file: one network, or a committee of them.

    Returns ``(members, metadata, file_size)`` with ``members`` a list of ``(config,
    weights, biases)``: one entry for a network's file, several for a committee's (whose
    ``metadata`` has a ``committee`` entry). Raises ModelFormatError naming the file and
    the problem.
    """
    fspath = os.fspath(path)

    def fail(problem: str) -> ModelFormatError:
        return ModelFormatError(f"{fspath}: {problem}")

    try:
        with open(fspath, "rb") as f:
            try:  # (a pipe, `cat m.safetensors | digitcore info /dev/stdin`, read whole)
                f, size = seekable(f, MAX_PIPE_BYTES, "a model file")
            except NotAFile as exc:
                raise fail(str(exc)) from None
            prefix = f.read(8)
            if len(prefix) < 8:
                raise fail(f"file is {len(prefix)} bytes, too short for a safetensors "
                           "header (truncated or not a model file)")
            (n,) = struct.unpack("<Q", prefix)
            if n > MAX_HEADER_BYTES:
                raise fail(_other_format(prefix, fspath) or
                           f"header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit "
                           "(not a model file?)")
            if 8 + n > size:
                raise fail(_other_format(prefix, fspath) or
                           f"header length {n} runs past the end of the {size}-byte file "
                           "(truncated?)")
            raw_header = f.read(n)
            data = f.read()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise fail(f"cannot read file: {exc.strerror or exc}") from exc
    if len(raw_header) != n:
        raise fail("file changed while reading")

    try:
        text = raw_header.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"header is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not text.startswith("{"):
        raise fail("header is not a JSON object")
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:
        raise fail(f"header is not valid JSON: {_json_problem(exc)}") from None
    if not isinstance(header, dict):
        raise fail("header is not a JSON object")

    # metadata and config first: they say which tensors must be there
    meta = header.pop("__metadata__", None)
    if meta is None:
        raise fail("no __metadata__ in header (not a digitcore model file)")
    if not isinstance(meta, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise fail("__metadata__ must map strings to strings")
    if meta.get("format") != FORMAT_NAME:
        raise fail(f"metadata format is {meta.get('format')!r:.100}, expected "
                   f"{FORMAT_NAME!r} (not a digitcore model file)")
    if "committee" in meta:
        if "config" in meta:
            raise fail("metadata has both config and committee (one network or a "
                       "committee, not both)")
        try:
            committee = json.loads(meta["committee"], object_pairs_hook=_no_duplicates)
        except (ValueError, RecursionError) as exc:
            raise fail(f"metadata committee is not valid JSON: {_json_problem(exc)}") from None
        if not isinstance(committee, dict) or set(committee) != {"combine", "members"}:
            raise fail("metadata committee must be a JSON object with exactly the keys "
                       "combine and members")
        if committee["combine"] != COMBINE:
            raise fail(f"metadata committee combine is {committee['combine']!r:.100}, "
                       f"expected {COMBINE!r}")
        configs = committee["members"]
        if not isinstance(configs, list) or not 1 <= len(configs) <= MAX_MEMBERS:
            raise fail(f"metadata committee members must be a list of 1 to {MAX_MEMBERS} "
                       "network configs")
        prefixes = [f"members.{m}." for m in range(len(configs))]

        def member_fail(m):
            return lambda problem: fail(f"committee member {m}: {problem}")

        configs = [_check_config(c, member_fail(m)) for m, c in enumerate(configs)]
        shapes = {(c["layer_sizes"][0], c["layer_sizes"][-1]) for c in configs}
        if len(shapes) > 1:
            raise fail(f"committee members differ in their input or output widths "
                       f"({sorted(shapes)}): their probabilities cannot be averaged")
    else:
        if "config" not in meta:
            raise fail("metadata has no config")
        try:
            config = json.loads(meta["config"], object_pairs_hook=_no_duplicates)
        except (ValueError, RecursionError) as exc:
            raise fail(f"metadata config is not valid JSON: {_json_problem(exc)}") from None
        configs, prefixes = [_check_config(config, fail)], [""]

    expected: dict[str, tuple[int, ...]] = {}
    for config, prefix in zip(configs, prefixes):
        sizes = config["layer_sizes"]
        for i in range(len(sizes) - 1):
            expected[f"{prefix}{2 * i}.weight"] = (sizes[i + 1], sizes[i])
            expected[f"{prefix}{2 * i}.bias"] = (sizes[i + 1],)
    what = (f"layer_sizes {configs[0]['layer_sizes']}" if len(prefixes) == 1 and
            not prefixes[0] else f"a committee of {len(configs)} networks")
    missing = [k for k in expected if k not in header]
    if missing:
        raise fail(f"missing tensor(s) {', '.join(missing[:5])} for {what}")
    extra = sorted(k for k in header if k not in expected)
    if extra:
        raise fail(f"unexpected tensor(s) {', '.join(map(repr, extra[:5]))} for {what}")

    spans = []
    for name, shape in expected.items():
        info = header[name]
        if not isinstance(info, dict) or set(info) != _TENSOR_KEYS:
            raise fail(f"tensor {name}: entry must have exactly the keys dtype, shape, "
                       "data_offsets")
        dtype = info["dtype"]
        if not isinstance(dtype, str) or dtype not in _STORAGE:
            kind = ("unsupported" if isinstance(dtype, str) and dtype in _SAFETENSORS_DTYPES
                    else "unknown")
            raise fail(f"tensor {name}: {kind} dtype {dtype!r:.20}, expected F32 or F16")
        got = info["shape"]
        if not isinstance(got, list) or not all(_is_int(s) and s >= 0 for s in got):
            raise fail(f"tensor {name}: shape {got!r:.100} is not a list of non-negative ints")
        if tuple(got) != shape:
            raise fail(f"tensor {name}: shape {tuple(got)}, expected {shape} from "
                       f"the layer_sizes of its config")
        offs = info["data_offsets"]
        if (not isinstance(offs, list) or len(offs) != 2
                or not all(_is_int(o) for o in offs)):
            raise fail(f"tensor {name}: data_offsets {offs!r:.100} is not [begin, end]")
        begin, end = offs
        nbytes = np.dtype(_STORAGE[dtype]).itemsize * math.prod(shape)
        if not 0 <= begin <= end or end - begin != nbytes:
            raise fail(f"tensor {name}: data_offsets [{begin}, {end}] do not hold "
                       f"{nbytes} bytes for shape {shape}")
        if end > len(data):
            raise fail(f"tensor {name}: data_offsets [{begin}, {end}] run past the "
                       f"{len(data)}-byte data buffer (truncated?)")
        spans.append((begin, end, name))

    # the tensors must tile the data buffer exactly: no gap, no overlap, nothing after
    spans.sort()
    pos = 0
    for begin, end, name in spans:
        if begin < pos:
            raise fail(f"tensor {name}: data_offsets [{begin}, {end}] overlap the "
                       "previous tensor")
        if begin > pos:
            raise fail(f"tensor {name}: gap of {begin - pos} unused bytes before it")
        pos = end
    if pos != len(data):
        raise fail(f"{len(data) - pos} unused bytes after the last tensor")

    def tensor(name):
        begin, end = header[name]["data_offsets"]
        stored = np.dtype(_STORAGE[header[name]["dtype"]])
        arr = np.frombuffer(data, dtype=stored, count=(end - begin) // stored.itemsize,
                            offset=begin)
        if not np.isfinite(arr).all():
            raise fail(f"tensor {name} contains NaN or infinite values")
        return arr.astype(np.float32).reshape(expected[name])  # native-endian copy

    members = []
    for config, prefix in zip(configs, prefixes):
        n_layers = len(config["layer_sizes"]) - 1
        members.append((config, [tensor(f"{prefix}{2 * i}.weight") for i in range(n_layers)],
                        [tensor(f"{prefix}{2 * i}.bias") for i in range(n_layers)]))
    return members, meta, size


def decode_training(meta: dict):
    if "training" not in meta:
        return None
    try:
        return json.loads(meta["training"])
    except (ValueError, RecursionError):
        return meta["training"]  # informational only: keep the raw string
