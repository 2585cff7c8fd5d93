"""ONNX export: onnxruntime must compute what predict_proba computes.

Every activation at depths 0-3 hidden layers, uint8 and float32 inputs, with and without
input standardisation; then the file (atomic, clear errors) and the CLI command.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import digitcore
import digitcore.onnxio
from digitcore.network import ACTIVATIONS, Network

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

# float32 everywhere on both sides; only the summation order differs (blocked C GEMM
# with FMA against onnxruntime's MLAS), a few ulps of logits of size ~10 after softmax.
RTOL, ATOL = 1e-4, 2e-6


def _session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _net(hidden, activation, mean_std, rng, n_in=784, n_out=10):
    mean, std = mean_std
    net = Network([n_in, *hidden, n_out], activation=activation, seed=int(rng.integers(1 << 30)),
                  input_mean=mean, input_std=std)
    # Non-zero biases, so a dropped Add would be caught.
    for b in net.biases:
        b[...] = rng.normal(0, 0.5, b.shape).astype(np.float32)
    return net


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("hidden", [(), (48,), (40, 24), (32, 32, 16)], ids=lambda h: f"h{len(h)}")
@pytest.mark.parametrize("mean_std", [(0.0, 1.0), (0.1307, 0.3081)], ids=["raw", "std"])
def test_onnxruntime_matches_predict_proba(tmp_path, rng, activation, hidden, mean_std):
    net = _net(hidden, activation, mean_std, rng)
    x8 = rng.integers(0, 256, (37, 784), dtype=np.uint8)
    x8[:, rng.random(784) < 0.6] = 0  # MNIST-like sparsity, so both C paths are taken
    big = rng.integers(0, 256, (300, 784), dtype=np.uint8)  # >= 256 rows: the sparse path
    xf = rng.random((37, 784), dtype=np.float32)
    for dtype, xs in (("uint8", [x8, big]), ("float32", [xf, x8 / np.float32(255)])):
        path = tmp_path / f"m_{dtype}.onnx"
        assert net.to_onnx(path, input_dtype=dtype) == str(path)
        sess = _session(path)
        for x in xs:
            want = net.predict_proba(x)
            got = sess.run(["probabilities"], {"pixels": x})[0]
            assert got.dtype == np.float32 and got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_graph_is_matmul_add_activation_softmax(tmp_path, rng):
    net = _net((16, 8), "leaky_relu", (0.5, 0.25), rng, n_in=20, n_out=3)
    path = tmp_path / "m.onnx"
    net.to_onnx(path, input_dtype="uint8")
    model = onnx.load(str(path))
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["Cast", "Mul", "Add", "MatMul", "Add", "LeakyRelu", "MatMul", "Add",
                   "LeakyRelu", "MatMul", "Add", "Softmax"]
    assert model.opset_import[0].version == digitcore.onnxio.OPSET == 17
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    alpha = [a.f for a in model.graph.node[5].attribute if a.name == "alpha"]
    assert alpha == [pytest.approx(0.01)]
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    assert all(v.dtype == np.float32 for v in inits.values())
    np.testing.assert_array_equal(inits["0.weight_t"], net.weights[0].T)
    np.testing.assert_array_equal(inits["4.bias"], net.biases[2])
    props = {p.key: p.value for p in model.metadata_props}
    assert props["input_dtype"] == "uint8" and '"layer_sizes": [20, 16, 8, 3]' in props[
        "digitcore_config"]
    # float input with no standardisation: no scaling nodes at all
    plain = Network([20, 3], seed=0)
    plain.to_onnx(path)
    assert [n.op_type for n in onnx.load(str(path)).graph.node] == ["MatMul", "Add", "Softmax"]


def test_trained_model_agrees_on_real_digits(tmp_path):
    (x, y), (xt, yt) = digitcore.load_dataset("mnist-mini")
    net = Network([784, 64, 10], seed=0, input_mean=0.13, input_std=0.31)
    digitcore.Trainer(net, epochs=2, seed=0, verbose=0).fit(x[:2000], y[:2000])
    net.to_onnx(tmp_path / "m.onnx", input_dtype="uint8")
    got = _session(tmp_path / "m.onnx").run(None, {"pixels": xt.reshape(len(xt), -1)})[0]
    want = net.predict_proba(xt)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    assert (got.argmax(1) == net.predict(xt)).mean() > 0.999


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_committee_graph_averages_its_members(tmp_path, rng, activation):
    """A Committee's graph: each member's layers (names prefixed m{j}.) on the shared
    input, their Softmax outputs averaged by Mean, as Committee.predict_proba averages
    them; members may standardise their input differently and differ in depth."""
    members = [_net((24,), activation, (0.0, 1.0), rng),
               _net((16, 8), activation, (0.1307, 0.3081), rng),
               _net((), activation, (0.5, 0.25), rng)]
    com = digitcore.Committee(members)
    x8 = rng.integers(0, 256, (300, 784), dtype=np.uint8)
    x8[:, rng.random(784) < 0.6] = 0
    for dtype, x in (("uint8", x8), ("float32", x8 / np.float32(255))):
        path = tmp_path / f"c_{dtype}.onnx"
        assert com.to_onnx(path, input_dtype=dtype) == str(path)
        got = _session(path).run(["probabilities"], {"pixels": x})[0]
        np.testing.assert_allclose(got, com.predict_proba(x), rtol=RTOL, atol=ATOL)
        # and not just any one member's answer
        assert all(np.abs(got - m.predict_proba(x)).max() > 1e-3 for m in members)
    model = onnx.load(str(tmp_path / "c_uint8.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert ops[0] == "Cast" and ops.count("Cast") == 1 and ops[-1] == "Mean"
    assert ops.count("Softmax") == 3 and list(model.graph.node[-1].input) == [
        "m0.probabilities", "m1.probabilities", "m2.probabilities"]
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    np.testing.assert_array_equal(inits["m1.2.weight_t"], members[1].weights[1].T)
    np.testing.assert_array_equal(inits["m2.0.bias"], members[2].biases[0])
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["digitcore_config"]) == json.loads(json.dumps(com.get_config()))
    bad = digitcore.Committee([members[0], members[1].copy()])
    bad.members[1].flat_parameters[0] = np.inf
    with pytest.raises(ValueError, match="member 1's parameters contain NaN or infinite"):
        bad.to_onnx(tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()


def test_bundled_pretrained_committee_exports(tmp_path):
    """The model `pip install` ships (a committee) exports as one graph that reads the
    bundled test images as load_pretrained() does."""
    model = digitcore.load_pretrained()
    _, (xt, yt) = digitcore.load_dataset("mnist-mini")
    x = xt.reshape(len(xt), -1)[:500]
    model.to_onnx(tmp_path / "p.onnx", input_dtype="uint8")
    got = _session(tmp_path / "p.onnx").run(None, {"pixels": x})[0]
    np.testing.assert_allclose(got, model.predict_proba(x), rtol=RTOL, atol=ATOL)
    assert (got.argmax(1) == model.predict(x)).mean() > 0.99


def test_cli_export_notes_the_test_time_shifts_it_leaves_out(tmp_path):
    # the pretrained model records tta "shift", which predict and serve apply; the graph
    # reads each image once, and export said nothing of it
    from digitcore import pretrained

    r = _cli("export", pretrained.pretrained_path(), tmp_path / "p.onnx")
    assert r.returncode == 0, r.stderr
    assert "test-time augmentation 'shift'" in r.stderr and "once" in r.stderr
    # one this version does not know (a later version's file) is noted, not an error
    # after the graph is written
    net = digitcore.Network([784, 8, 10], seed=0)
    net.training_summary = {"tta": "swirl"}
    net.save(tmp_path / "later.safetensors")
    r = _cli("export", tmp_path / "later.safetensors", tmp_path / "later.onnx")
    assert r.returncode == 0, r.stderr
    # (it said predict, evaluate and serve read the file with the augmentation 'unknown to
    # this version': they refuse it)
    assert "'swirl'" in r.stderr and "refuse the file unless given --tta none" in r.stderr
    assert (tmp_path / "later.onnx").exists()


def test_errors_and_atomic_write(tmp_path, rng, monkeypatch):
    net = _net((8,), "relu", (0.0, 1.0), rng, n_in=10, n_out=2)
    with pytest.raises(ValueError, match="input_dtype must be one of"):
        net.to_onnx(tmp_path / "x.onnx", input_dtype="float64")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        net.to_onnx(tmp_path)
    with pytest.raises(TypeError, match="must be a digitcore.Network or Committee"):
        digitcore.onnxio.to_onnx("not a net", tmp_path / "x.onnx")
    with pytest.raises(FileNotFoundError):
        net.to_onnx(tmp_path / "missing" / "x.onnx")
    bad = net.copy()
    bad.flat_parameters[3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        bad.to_onnx(tmp_path / "x.onnx")
    # a failure mid-write leaves the old file whole and no temporary behind
    target = tmp_path / "keep.onnx"
    target.write_bytes(b"old model")

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        net.to_onnx(target)
    assert target.read_bytes() == b"old model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.onnx"]


def test_missing_onnx_package_is_a_clear_error(tmp_path, monkeypatch, rng):
    net = _net((), "relu", (0.0, 1.0), rng, n_in=4, n_out=2)
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install 'digitcore\[onnx\]'"):
        net.to_onnx(tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def _cli(*args):
    env = dict(os.environ, DIGITCORE_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "digitcore", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


def test_cli_export(tmp_path, rng):
    net = _net((32,), "tanh", (0.1, 0.3), rng)
    net.save(tmp_path / "m.safetensors")
    r = _cli("export", tmp_path / "m.safetensors", tmp_path / "m.onnx", "--input-dtype", "uint8")
    assert r.returncode == 0, r.stderr
    assert "opset 17" in r.stdout and "uint8" in r.stdout
    x = rng.integers(0, 256, (5, 784), dtype=np.uint8)
    got = _session(tmp_path / "m.onnx").run(None, {"pixels": x})[0]
    np.testing.assert_allclose(got, net.predict_proba(x), rtol=RTOL, atol=ATOL)
    for args, needle in [((tmp_path / "nope.safetensors", tmp_path / "o.onnx"), "nope"),
                         ((tmp_path / "m.safetensors", tmp_path), "is a directory")]:
        r = _cli("export", *args)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, r.stderr
