"""Tests of digitcore.modelio: safetensors model files."""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import struct

import numpy as np
import pytest

import digitcore
from digitcore import ModelFormatError
from digitcore import modelio
from digitcore.modelio import load_model, read_model_info, save_model
from digitcore.network import Network

SIZES = [784, 24, 16, 10]


def _net(seed=0, **kw):
    net = Network(SIZES, seed=seed, **kw)
    rng = np.random.default_rng(seed + 100)
    net.set_parameters(net.weights, [rng.standard_normal(b.shape).astype(np.float32)
                                     for b in net.biases])
    return net


def _ref_proba(net, x):
    """NumPy forward pass (float64), independent of the compiled kernels."""
    h = (np.asarray(x, dtype=np.float64).reshape(len(x), -1) / 255.0 - net.input_mean)
    h /= net.input_std
    acts = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh,
            "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
            "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z)}
    for i, (w, b) in enumerate(zip(net.weights, net.biases)):
        h = h @ w.astype(np.float64).T + b
        if i < len(net.weights) - 1:
            h = acts[net.activation](h)
    h -= h.max(axis=1, keepdims=True)
    e = np.exp(h)
    return e / e.sum(axis=1, keepdims=True)


def _images(n=16, seed=5):
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)


def _read_raw(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    return n, data[8:8 + n], data[8 + n:]


# ---------------------------------------------------------------------------
# round trip and format

@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_round_trip_identical_weights(tmp_path, activation):
    net = _net(activation=activation, input_mean=0.13, input_std=0.31)
    path = tmp_path / "model.safetensors"
    net.save(path, metadata={"epochs": 3, "test_accuracy": np.float32(0.9)})
    back = load_model(path)
    assert isinstance(back, Network)
    assert back.get_config() == net.get_config()
    for a, b in zip(net.weights + net.biases, back.weights + back.biases):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    assert back.training_summary == {"epochs": 3, "test_accuracy": pytest.approx(0.9)}
    x = _images()
    np.testing.assert_allclose(_ref_proba(back, x), _ref_proba(net, x), rtol=0, atol=0)


def test_round_trip_identical_predictions(tmp_path):
    net = _net()
    path = tmp_path / "m.safetensors"
    save_model(net, path)
    back = load_model(str(path))
    x = _images()
    np.testing.assert_array_equal(back.predict_proba(x), net.predict_proba(x))
    np.testing.assert_allclose(net.predict_proba(x), _ref_proba(net, x), atol=1e-5)


def test_file_layout_follows_spec(tmp_path):
    net = _net()
    path = tmp_path / "m.safetensors"
    save_model(net, path)
    n, raw, data = _read_raw(path)
    assert n % 8 == 0 and len(raw) == n
    text = raw.decode("utf-8")
    assert text.startswith("{") and text.rstrip(" ").endswith("}")  # padded with spaces
    header = json.loads(text)
    meta = header.pop("__metadata__")
    assert meta["format"] == "digitcore"
    assert meta["digitcore_version"] == digitcore.__version__
    assert json.loads(meta["config"]) == net.get_config()
    assert "training" not in meta
    assert all(isinstance(v, str) for v in meta.values())
    assert sorted(header) == ["0.bias", "0.weight", "2.bias", "2.weight", "4.bias", "4.weight"]
    assert header["0.weight"]["shape"] == [24, 784]
    assert header["2.bias"] == {"dtype": "F32", "shape": [16],
                                "data_offsets": header["2.bias"]["data_offsets"]}
    begin, end = header["2.weight"]["data_offsets"]
    w = np.frombuffer(data[begin:end], dtype="<f4").reshape(16, 24)
    np.testing.assert_array_equal(w, net.weights[1])
    assert len(data) == 4 * net.n_params


def test_float16_storage_rounds_each_value_and_halves_the_file(tmp_path):
    net = _net(input_mean=0.13, input_std=0.31)
    p32, p16 = tmp_path / "m32.safetensors", tmp_path / "m16.safetensors"
    net.save(p32)
    save_model(net, p16, metadata={"epochs": 1}, dtype="float16")
    _, raw, data = _read_raw(p16)
    header = json.loads(raw)
    assert {header[k]["dtype"] for k in net.state_dict()} == {"F16"}
    assert len(data) == 2 * net.n_params == len(_read_raw(p32)[2]) // 2
    back = load_model(p16)
    assert back.get_config() == net.get_config()
    assert back.training_summary == {"epochs": 1}
    for a, b in zip(net.weights + net.biases, back.weights + back.biases):
        assert b.dtype == np.float32
        np.testing.assert_array_equal(b, a.astype(np.float16).astype(np.float32))
    assert read_model_info(p16)["n_params"] == net.n_params
    x = _images()
    np.testing.assert_allclose(back.predict_proba(x), _ref_proba(back, x), atol=1e-5)


def test_float16_storage_refuses_what_does_not_fit(tmp_path):
    net = _net()
    w = [a.copy() for a in net.weights]
    w[1][3, 2] = 70000.0  # float16's largest is 65504
    net.set_parameters(w, net.biases)
    path = tmp_path / "m.safetensors"
    with pytest.raises(ValueError, match="2.weight.*float16"):
        net.save(path, dtype="float16")
    with pytest.raises(ValueError, match="dtype"):
        net.save(path, dtype="bfloat16")
    assert not path.exists()
    net.save(path)  # float32 holds it
    assert load_model(path).weights[1][3, 2] == 70000.0


def test_training_summary_default_and_info(tmp_path):
    net = _net()
    net.training_summary = {"epochs": 2, "history": {"loss": [0.5, 0.25]}}
    path = tmp_path / "m.safetensors"
    net.save(path)
    info = read_model_info(path)
    assert info["architecture"] == "784-24-16-10 relu"
    assert info["layer_sizes"] == SIZES
    assert info["n_params"] == net.n_params
    assert info["file_size"] == os.path.getsize(path)
    assert info["config"] == net.get_config()
    assert info["metadata"]["format"] == "digitcore"
    assert info["metadata"]["training"] == {"epochs": 2, "history": {"loss": [0.5, 0.25]}}


def test_info_refuses_what_load_refuses(tmp_path):
    # a 784-1 file (one class) passed `digitcore info` while load_model refused it
    safetensors = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "one-class.safetensors"
    safetensors.save_file(
        {"0.weight": np.zeros((1, 784), np.float32), "0.bias": np.zeros(1, np.float32)},
        str(path), {"format": "digitcore",
                    "config": json.dumps({"layer_sizes": [784, 1], "activation": "relu"})})
    for read in (load_model, read_model_info):
        with pytest.raises(ModelFormatError, match="at least 2 classes"):
            read(path)


def test_what_load_would_refuse_is_not_saved_and_the_old_file_stays(tmp_path):
    """Saving checks what loading checks: NaN weights, too many layers, a header over the
    size limit, metadata nested too deeply are ValueErrors, and the file there is intact."""
    path = tmp_path / "m.safetensors"
    _net().save(path)
    before = path.read_bytes()
    nan = _net()
    nan.weights[0][0, 0] = np.nan
    deep = []
    for _ in range(5000):
        deep = [deep]
    for save, match in [
            (lambda: nan.save(path), "NaN"),
            (lambda: Network([2] * 1100, seed=0).save(path), "layer_sizes"),
            (lambda: _net().save(path, metadata={"notes": "x" * (17 << 20)}), "header"),
            (lambda: _net().save(path, metadata={"deep": deep}), "nested too deeply")]:
        with pytest.raises(ValueError, match=match):
            save()
        assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_standardization_out_of_float32_range_is_refused():
    for mean, std in [(0.0, 1e-300), (1e300, 1.0), (0.0, 1e300)]:
        with pytest.raises(ValueError, match="float32"):
            Network([4, 3, 2], input_mean=mean, input_std=std)
    Network([4, 3, 2], input_mean=0.5, input_std=1e-30)  # still in range


def test_bad_metadata_is_value_error_and_writes_nothing(tmp_path):
    path = tmp_path / "m.safetensors"
    with pytest.raises(ValueError, match="JSON"):
        save_model(_net(), path, metadata={"x": object()})
    with pytest.raises(ValueError, match="dict"):
        save_model(_net(), path, metadata=[1, 2])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_saved_file_mode_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        save_model(_net(), tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "m.safetensors").st_mode) == 0o644


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nope.safetensors")


# ---------------------------------------------------------------------------
# atomic save

@pytest.mark.parametrize("target", ["replace", "fsync", "write"])
def test_crash_mid_save_keeps_old_file(tmp_path, monkeypatch, target):
    path = tmp_path / "m.safetensors"
    old_net = _net(seed=1)
    save_model(old_net, path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("simulated crash")

    if target == "replace":
        monkeypatch.setattr(modelio.os, "replace", boom)
    elif target == "fsync":
        monkeypatch.setattr(modelio.os, "fsync", boom)
    else:
        real_fdopen = os.fdopen

        class HalfWriter:
            def __init__(self, f):
                self.f = f

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def write(self, data):
                self.f.write(data[:len(data) // 2])
                raise OSError("simulated crash")

        monkeypatch.setattr(modelio.os, "fdopen",
                            lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="simulated crash"):
        save_model(_net(seed=2), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
    np.testing.assert_array_equal(load_model(path).weights[0], old_net.weights[0])


def test_interrupt_mid_save_cleans_temp(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(modelio.os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_model(_net(), path)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------
# malformed files: every one is a ModelFormatError naming the file and the problem

def _build(header, data, pad=True, length=None):
    raw = json.dumps(header).encode() if not isinstance(header, bytes) else header
    if pad:
        raw += b" " * (-len(raw) % 8)
    n = len(raw) if length is None else length
    return struct.pack("<Q", n) + raw + data


def _valid_parts(sizes=(6, 4, 3)):
    """(header dict, data bytes) of a small valid model file."""
    config = Network(list(sizes), seed=0).get_config()
    header = {"__metadata__": {"format": "digitcore", "config": json.dumps(config),
                               "digitcore_version": "0"}}
    blobs, off = [], 0
    rng = np.random.default_rng(0)
    for i in range(len(sizes) - 1):
        for name, shape in ((f"{2 * i}.weight", [sizes[i + 1], sizes[i]]),
                            (f"{2 * i}.bias", [sizes[i + 1]])):
            blob = rng.standard_normal(shape).astype("<f4").tobytes()
            header[name] = {"dtype": "F32", "shape": shape,
                            "data_offsets": [off, off + len(blob)]}
            off += len(blob)
            blobs.append(blob)
    return header, b"".join(blobs)


def _mutated(mutate):
    header, data = _valid_parts()
    out = mutate(header, data)
    return out if isinstance(out, bytes) else _build(*out)


def _set(header, path, value):
    obj = header
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value
    return header


def _config_with(**changes):
    def mutate(h, d):
        cfg = json.loads(h["__metadata__"]["config"])
        cfg.update(changes)
        h["__metadata__"]["config"] = json.dumps(cfg)
        return h, d
    return mutate


MALFORMED = {
    "empty": (lambda h, d: b"", "too short"),
    "truncated_prefix": (lambda h, d: b"\x10\x00\x00", "too short"),
    "truncated_header": (lambda h, d: _build(h, d)[:40], "past the end"),
    "truncated_data": (lambda h, d: _build(h, d)[:-5], "past the"),
    "header_length_huge": (lambda h, d: _build(h, d, length=2**63), "limit"),
    "header_length_past_eof": (lambda h, d: _build(h, d, length=10**6), "past the end"),
    "header_length_short": (lambda h, d: _build(h, d, length=16), "JSON"),
    "bad_json": (lambda h, d: _build(b'{"__metadata__": {', d), "JSON"),
    "not_utf8": (lambda h, d: _build(b'{"\xff\xfe": 1}', d), "UTF-8"),
    "json_array": (lambda h, d: _build(b"[1, 2, 3]", d), "JSON object"),
    "duplicate_key": (lambda h, d: _build(
        json.dumps(h).encode()[:-1] + b', "0.bias": {}}', d), "duplicate"),
    "no_metadata": (lambda h, d: (h.pop("__metadata__") and (h, d)), "__metadata__"),
    "metadata_not_strings": (lambda h, d: (_set(h, ["__metadata__", "epochs"], 3), d),
                             "strings"),
    "wrong_format": (lambda h, d: (_set(h, ["__metadata__", "format"], "pt"), d), "format"),
    "no_config": (lambda h, d: (h["__metadata__"].pop("config") and (h, d)), "no config"),
    "config_bad_json": (lambda h, d: (_set(h, ["__metadata__", "config"], "{oops"), d),
                        "config is not valid JSON"),
    "config_not_object": (lambda h, d: (_set(h, ["__metadata__", "config"], "[6, 4]"), d),
                          "config"),
    "config_layer_sizes_str": (_config_with(layer_sizes="6-4-3"), "layer_sizes"),
    "config_layer_sizes_zero": (_config_with(layer_sizes=[6, 0, 3]), "layer_sizes"),
    "config_layer_sizes_huge": (_config_with(layer_sizes=[6, 10**12, 3]), "layer_sizes"),
    "config_layer_sizes_float": (_config_with(layer_sizes=[6, 4.0, 3]), "layer_sizes"),
    "config_dropout": (_config_with(dropout=1.5), "dropout"),
    "config_input_std": (_config_with(input_std=0), "input_std"),
    "config_activation_type": (_config_with(activation=7), "activation"),
    "config_activation_unknown": (_config_with(activation="swish"), "activation"),
    "config_unknown_key": (_config_with(colour="blue"), "config"),
    "config_disagrees_with_tensors": (_config_with(layer_sizes=[6, 4, 1]), "shape"),
    "missing_tensor": (lambda h, d: (h.pop("2.bias") and (h, d)), "missing tensor"),
    "extra_tensor": (lambda h, d: (_set(h, ["4.weight"], {
        "dtype": "F32", "shape": [0], "data_offsets": [len(d), len(d)]}), d),
        "unexpected tensor"),
    "wrong_shape": (lambda h, d: (_set(h, ["0.weight", "shape"], [6, 4]), d), "shape"),
    "transposed_shape": (lambda h, d: (_set(h, ["2.weight", "shape"], [4, 3]), d), "shape"),
    "shape_not_list": (lambda h, d: (_set(h, ["0.bias", "shape"], 4), d), "shape"),
    "dtype_f64": (lambda h, d: (_set(h, ["0.bias", "dtype"], "F64"), d), "dtype"),
    "dtype_i32": (lambda h, d: (_set(h, ["0.weight", "dtype"], "I32"), d), "dtype"),
    "dtype_bogus": (lambda h, d: (_set(h, ["0.weight", "dtype"], "float"), d), "dtype"),
    # F16 is read, but its offsets must hold 2 bytes per value
    "dtype_f16_f32_sized": (lambda h, d: (_set(h, ["0.bias", "dtype"], "F16"), d), "bytes"),
    "missing_entry_key": (lambda h, d: (h["0.bias"].pop("dtype") and (h, d)), "keys"),
    "offsets_overlap": (lambda h, d: (_set(h, ["0.bias", "data_offsets"], [0, 16]), d),
                        "overlap"),
    "offsets_wrong_size": (lambda h, d: (_set(h, ["0.bias", "data_offsets"], [96, 100]), d),
                           "bytes"),
    "offsets_negative": (lambda h, d: (_set(h, ["0.bias", "data_offsets"], [-16, 0]), d),
                         "data_offsets"),
    "offsets_not_ints": (lambda h, d: (_set(h, ["0.bias", "data_offsets"], [96.0, 112.0]), d),
                         "data_offsets"),
    "trailing_bytes": (lambda h, d: (h, d + b"\x00" * 8), "unused bytes"),
    "gap": (lambda h, d: (_set(h, ["2.bias", "data_offsets"], [
        h["2.bias"]["data_offsets"][0] + 4, h["2.bias"]["data_offsets"][1] + 4]), d + b"\0" * 4),
        "gap"),
    "nan_weights": (lambda h, d: (h, d[:-4] + np.float32(np.nan).tobytes()), "NaN"),
    # nesting deep enough for Python's JSON reader to give up (RecursionError)
    "header_nested_too_deeply": (lambda h, d: _build(
        json.dumps(h).encode()[:-1] + b', "deep": ' + b"[" * 5000 + b"]" * 5000 + b"}", d),
        "nested too deeply"),
    "config_nested_too_deeply": (lambda h, d: (_set(h, ["__metadata__", "config"],
                                                    "[" * 5000 + "]" * 5000), d),
                                 "nested too deeply"),
    "config_input_mean_huge_int": (_config_with(input_mean=10**400), "input_mean"),
    "config_input_std_tiny": (_config_with(input_std=1e-300), "float32"),
    "config_input_mean_huge": (_config_with(input_mean=1e300), "float32"),
    "dtype_not_a_string": (lambda h, d: (_set(h, ["0.weight", "dtype"], ["F32"]), d), "dtype"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_raise_model_format_error(tmp_path, case):
    mutate, phrase = MALFORMED[case]
    path = tmp_path / f"{case}.safetensors"
    path.write_bytes(_mutated(mutate))
    with pytest.raises(ModelFormatError) as info:
        load_model(path)
    assert str(path) in str(info.value)
    assert phrase.lower() in str(info.value).lower(), str(info.value)
    assert isinstance(info.value, ValueError)
    if case not in ("config_activation_unknown", "config_unknown_key"):
        # read_model_info validates the file without building a Network
        with pytest.raises(ModelFormatError):
            read_model_info(path)


def test_valid_parts_load(tmp_path):
    """The corpus mutates a valid file: check the unmutated one loads."""
    path = tmp_path / "ok.safetensors"
    path.write_bytes(_build(*_valid_parts()))
    net = load_model(path)
    assert net.layer_sizes == (6, 4, 3)
    assert read_model_info(path)["n_params"] == 6 * 4 + 4 + 4 * 3 + 3


# ---------------------------------------------------------------------------
# interop with the safetensors package and PyTorch

def test_safetensors_package_reads_our_files(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    from safetensors import safe_open

    net = _net()
    path = tmp_path / "m.safetensors"
    save_model(net, path, metadata={"epochs": 1})
    tensors = st.load_file(str(path))
    assert sorted(tensors) == sorted(net.state_dict())
    for name, arr in net.state_dict().items():
        np.testing.assert_array_equal(tensors[name], arr)
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
    assert meta["format"] == "digitcore" and json.loads(meta["training"]) == {"epochs": 1}


def test_we_read_files_written_by_safetensors_package(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    net = _net()
    path = tmp_path / "m.safetensors"
    st.save_file({k: np.ascontiguousarray(v) for k, v in net.state_dict().items()}, str(path),
                 metadata={"format": "digitcore", "config": json.dumps(net.get_config()),
                           "digitcore_version": "x"})
    back = load_model(path)
    for a, b in zip(net.weights + net.biases, back.weights + back.biases):
        np.testing.assert_array_equal(a, b)


def test_torch_sequential_loads_file_and_agrees(tmp_path):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    net = _net()
    path = tmp_path / "m.safetensors"
    net.save(path)
    model = torch.nn.Sequential(torch.nn.Linear(784, 24), torch.nn.ReLU(),
                                torch.nn.Linear(24, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 10))
    model.load_state_dict(st_torch.load_file(str(path)))
    x = _images()
    with torch.no_grad():
        logits = model(torch.from_numpy(x.reshape(len(x), -1).astype(np.float32) / 255))
    proba = torch.softmax(logits, dim=1).numpy()
    np.testing.assert_allclose(proba, _ref_proba(net, x), atol=1e-5)
    np.testing.assert_allclose(proba, net.predict_proba(x), atol=1e-5)
    np.testing.assert_array_equal(proba.argmax(1), net.predict(x))


def test_torch_loads_a_float16_file(tmp_path):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    net = _net()
    path = tmp_path / "m.safetensors"
    net.save(path, dtype="float16")
    back = load_model(path)
    model = torch.nn.Sequential(torch.nn.Linear(784, 24), torch.nn.ReLU(),
                                torch.nn.Linear(24, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 10))
    state = st_torch.load_file(str(path))
    assert {t.dtype for t in state.values()} == {torch.float16}
    model.load_state_dict(state)  # copied into the float32 parameters
    x = _images()
    with torch.no_grad():
        logits = model(torch.from_numpy(x.reshape(len(x), -1).astype(np.float32) / 255))
    np.testing.assert_allclose(torch.softmax(logits, dim=1).numpy(), back.predict_proba(x),
                               atol=1e-5)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "leaky_relu"])
def test_to_torch_folds_normalisation(activation):
    torch = pytest.importorskip("torch")
    net = _net(activation=activation, input_mean=0.1307, input_std=0.3081)
    model = modelio.to_torch(net)
    x = _images()
    with torch.no_grad():
        logits = model(torch.from_numpy(x.reshape(len(x), -1).astype(np.float32) / 255))
    np.testing.assert_allclose(torch.softmax(logits, 1).numpy(), _ref_proba(net, x),
                               atol=1e-5)


@pytest.mark.skipif(not os.path.isdir("/dev/fd"), reason="needs /dev/fd")
def test_a_model_is_read_from_a_pipe(tmp_path):
    # `cat m.safetensors | digitcore info /dev/stdin` failed: "header length 840 runs past
    # the end of the 0-byte file (truncated?)" (a pipe's size reads 0)
    net = Network([784, 16, 10], seed=0)
    net.save(tmp_path / "m.safetensors")
    import threading

    data = (tmp_path / "m.safetensors").read_bytes()
    r, w = os.pipe()

    def feed():  # (more than a pipe's buffer holds on some systems: written alongside)
        with os.fdopen(w, "wb") as f:
            f.write(data)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        back = load_model(f"/dev/fd/{r}")
    finally:
        writer.join(timeout=10)
        os.close(r)
    np.testing.assert_array_equal(back.flat_parameters, net.flat_parameters)


@pytest.mark.skipif(not os.path.isdir("/dev/fd"), reason="needs /dev/fd")
def test_a_pipe_that_does_not_end_is_refused(monkeypatch):
    # (`cat /dev/zero | digitcore info /dev/stdin` read until memory ran out)
    import threading

    from digitcore import _modelfile

    monkeypatch.setattr(_modelfile, "MAX_PIPE_BYTES", 1000)
    r, w = os.pipe()

    def feed():
        with contextlib.suppress(OSError), os.fdopen(w, "wb") as f:
            f.write(bytes(5000))

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        with pytest.raises(ModelFormatError, match="more than 1,000 bytes from a pipe"):
            load_model(f"/dev/fd/{r}")
    finally:
        os.close(r)
        writer.join(timeout=10)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_device_is_refused_not_read_forever():
    with pytest.raises(ModelFormatError, match="/dev/zero: is a device, not a model file"):
        load_model("/dev/zero")


def test_other_formats_are_named_in_the_error(tmp_path):
    """An exported .onnx file given back to load_model said only "header length
    7595155174953453576 exceeds the 16777216-byte limit (not a model file?)"."""
    onnx_start = b"\x08\x08\x12\x09digitcore\x1a\x050.1.0" + bytes(64)  # ir_version 8, ...
    cases = {"m.onnx": (onnx_start, "looks like an ONNX file: digitcore writes ONNX"),
             "exported.bin": (onnx_start, "looks like an ONNX file"),
             # without a producer: the graph (field 7, a two-byte length) and its first node
             "anonymous.bin": (b"\x08\x0e\x3a\xbb\x01\x0a\x12\x0a" + bytes(64),
                               "looks like an ONNX file"),
             "model.pt": (b"PK\x03\x04" + bytes(64), "zip archive (a PyTorch .pt file?)"),
             "digit.png": (b"\x89PNG\r\n\x1a\n" + bytes(64), "is a PNG image"),
             "m.gz": (b"\x1f\x8b\x08\x00" + bytes(64), "is a gzip file"),
             "noise.bin": (b"\xff" * 72, "exceeds the 16777216-byte limit (not a model file?)"),
             # a header length whose low bytes happen to read 08 08 12 ..: not ONNX
             "cut.safetensors": (b"\x08\x08\x12\x00\x00\x00\x00\x00" + bytes(64),
                                 "runs past the end of the 72-byte file (truncated?)")}
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ModelFormatError, match=f"{re.escape(name)}: .*{re.escape(message)}"):
            load_model(tmp_path / name)


def test_to_torch_names_what_it_cannot_convert():
    """A Committee (the bundled pretrained model is one) raised a bare KeyError."""
    nets = [digitcore.Network([784, 8, 10], seed=s) for s in range(3)]
    with pytest.raises(TypeError, match="Committee of 3 .*convert each of its .members"):
        modelio.to_torch(digitcore.Committee(nets))
    with pytest.raises(TypeError, match="needs a digitcore Network, got dict"):
        modelio.to_torch({"layer_sizes": [784, 10]})
