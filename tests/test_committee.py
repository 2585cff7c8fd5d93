"""digitcore.Committee: averaged probabilities, one model file, training through the CLI."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import digitcore
from digitcore import Committee, ModelFormatError, Network
from digitcore.modelio import load_model, read_model_info, save_model
from digitcore.presets import build_committee

SIZES = [20, 12, 4]


def _members(k=3, sizes=SIZES):
    nets = []
    for seed in range(k):
        net = Network(sizes, seed=seed)
        rng = np.random.default_rng(seed + 50)  # biases too, so no two members agree
        net.set_parameters(net.weights, [rng.standard_normal(b.shape).astype(np.float32)
                                         for b in net.biases])
        nets.append(net)
    return nets


def _x(n=33, seed=1, features=SIZES[0]):
    return np.random.default_rng(seed).random((n, features)).astype(np.float32)


# ---------------------------------------------------------------------------
# what it answers

def test_proba_is_the_mean_of_the_members_probabilities():
    nets, x = _members(3), _x()
    c = Committee(nets)
    got = c.predict_proba(x)
    want = np.mean([n.predict_proba(x).astype(np.float64) for n in nets], axis=0)
    assert got.dtype == np.float32 and got.shape == (len(x), SIZES[-1])
    np.testing.assert_array_equal(got, want.astype(np.float32))
    # the members disagree, so the mean is not any one member's answer
    assert not any(np.array_equal(got, n.predict_proba(x)) for n in nets)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)


def test_predict_logits_evaluate_agree_with_the_mean():
    nets, x = _members(4), _x(50)
    y = np.random.default_rng(3).integers(0, SIZES[-1], len(x))
    c = Committee(nets)
    p = np.mean([n.predict_proba(x).astype(np.float64) for n in nets], axis=0)
    np.testing.assert_array_equal(c.predict(x), p.argmax(axis=1))
    assert c.predict(x).dtype == np.int64
    z = c.logits(x).astype(np.float64)
    soft = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(soft / soft.sum(axis=1, keepdims=True), p, rtol=1e-5, atol=1e-7)
    loss, acc = c.evaluate(x, y)
    assert acc == pytest.approx(np.mean(p.argmax(axis=1) == y))
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(len(y)), y])), rel=1e-5)
    assert c.score(x, y) == acc


def test_logits_stay_finite_where_probabilities_underflow():
    net = Network([2, 3], seed=0)
    net.set_parameters([np.array([[400, 0], [0, 0], [-400, 0]], np.float32)],
                       [np.zeros(3, np.float32)])
    c = Committee([net, net.copy()])
    x = np.array([[1.0, 0.0]], np.float32)
    assert c.predict_proba(x)[0, 2] == 0.0  # float32 underflow
    z = c.logits(x)
    assert np.isfinite(z).all() and z[0, 2] < -700


def test_one_member_committee_is_that_network():
    (net,), x = _members(1), _x()
    c = Committee([net])
    np.testing.assert_array_equal(c.predict_proba(x), net.predict_proba(x))
    np.testing.assert_array_equal(c.predict(x), net.predict(x))


def test_member_order_is_the_summing_order_and_the_answer_is_deterministic():
    nets, x = _members(5), _x(200)
    a = Committee(nets).predict_proba(x)
    digitcore.set_num_threads(1)
    try:
        b = Committee(nets).predict_proba(x)
    finally:
        digitcore.set_num_threads(None)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(Committee(nets[::-1]).predict_proba(x), a, atol=1e-7)
    # the documented arithmetic, bit for bit: the members' float32 answers summed in
    # float64 in member order, divided by the count, rounded once
    total = np.zeros(a.shape, np.float64)
    for net in nets:
        total += net.predict_proba(x)
    np.testing.assert_array_equal(a, (total / len(nets)).astype(np.float32))


def test_bad_members_are_refused_by_name():
    nets = _members(2)
    with pytest.raises(ValueError, match="at least one"):
        Committee([])
    with pytest.raises(TypeError, match=r"members\[1\] is a str"):
        Committee([nets[0], "net"])
    with pytest.raises(ValueError, match=r"members\[1\] maps 20 features to 5 classes"):
        Committee([nets[0], Network([20, 8, 5], seed=0)])
    with pytest.raises(ValueError, match="features"):
        Committee(nets).predict_proba(np.zeros((2, 7), np.float32))


# ---------------------------------------------------------------------------
# one model file

def test_save_load_round_trip_is_bitwise(tmp_path):
    nets = _members(3) + [Network([20, 9, 7, 4], activation="tanh", seed=9)]
    c = Committee(nets)
    c.training_summary = {"epochs": 3}
    path = tmp_path / "c.safetensors"
    c.save(path)
    back = load_model(path)
    assert isinstance(back, Committee) and len(back) == 4
    for a, b in zip(nets, back.members):
        assert a.get_config() == b.get_config()
        for wa, wb in zip(a.weights + a.biases, b.weights + b.biases):
            assert wa.tobytes() == wb.tobytes()
    x = _x()
    assert back.predict_proba(x).tobytes() == c.predict_proba(x).tobytes()
    assert back.training_summary == {"epochs": 3}
    info = read_model_info(path)
    assert info["members"] == 4 and info["architecture"].startswith("committee of 4")
    assert info["n_params"] == c.n_params
    # save_model dispatches to Committee.save; the same bytes
    save_model(c, tmp_path / "d.safetensors")
    assert (tmp_path / "d.safetensors").read_bytes() == path.read_bytes()


def test_file_names_members_like_a_torch_module_list(tmp_path):
    path = tmp_path / "c.safetensors"
    Committee(_members(2)).save(path)
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__")
    assert sorted(header) == sorted(f"members.{m}.{i}.{kind}" for m in range(2)
                                    for i in (0, 2) for kind in ("weight", "bias"))
    assert "config" not in meta
    committee = json.loads(meta["committee"])
    assert committee["combine"] == "mean_proba" and len(committee["members"]) == 2
    pytest.importorskip("safetensors")
    from safetensors.numpy import load_file

    tensors = load_file(path)
    np.testing.assert_array_equal(tensors["members.1.2.bias"], _members(2)[1].biases[1])


def test_a_single_network_file_still_loads_as_a_network(tmp_path):
    net = _members(1)[0]
    net.save(tmp_path / "n.safetensors")
    back = load_model(tmp_path / "n.safetensors")
    assert isinstance(back, Network)
    assert back.predict_proba(_x()).tobytes() == net.predict_proba(_x()).tobytes()


def test_read_model_refuses_a_committee_by_name(tmp_path):
    from digitcore._modelfile import read_model

    Committee(_members(2)).save(tmp_path / "c.safetensors")
    with pytest.raises(ModelFormatError, match="committee of 2 networks"):
        read_model(tmp_path / "c.safetensors")


def test_a_saved_committee_members_keep_their_input_checks(tmp_path):
    """Committee(nets).save wrote each member's entry with its input record only, and a
    member with an entry took nothing from the committee's: loaded, members trained on
    dark-background uint8 digits read white-background ones as nonsense (and so did the
    committee when another member was trained on floats), and a committee of networks
    trained on 0-255 floats read uint8 images 255 times too dark, silently."""
    (x, y), (xt, _) = digitcore.load_dataset("mnist-mini")
    x, y = x[:500], y[:500]

    def trained(seed, data, **kw):
        net = Network([784, 8, 10], seed=seed)
        trainer = digitcore.Trainer(net, epochs=1, verbose=0, seed=seed, **kw)
        if data.dtype == np.float32 and data.max() > 2:
            with pytest.warns(UserWarning, match="floats up to 255"):
                trainer.fit(data, y)
        else:
            trainer.fit(data, y)
        return net

    dark = [trained(0, x), trained(1, x)]
    unit = trained(2, x / np.float32(255))  # floats in [0, 1]: no background record
    big = [trained(3, x.astype(np.float32), lr=1e-4), trained(4, x.astype(np.float32),
                                                              lr=1e-4)]
    assert dark[0].training_summary["background"] == "dark"
    assert big[0].training_summary["float_max"] == 255
    light = 255 - xt[:5]
    cases = [(dark, light, "light background"), ([dark[0], unit], light, "light background"),
             (big, xt[:5], "trained on floats up to 255")]
    for k, (members, bad, refusal) in enumerate(cases):
        path = tmp_path / f"c{k}.safetensors"
        Committee(members).save(path)
        back = load_model(path)
        with pytest.raises(ValueError, match=refusal):
            back.predict(bad)
        for before, after in zip(members, back.members):
            for key in ("background", "float_max"):
                assert after.training_summary.get(key) == before.training_summary.get(key)
            if "background" in before.training_summary or "float_max" in before.training_summary:
                with pytest.raises(ValueError, match=refusal):
                    after.predict(bad)
    # a hand-edited record is shown as it is, not as a formatting error
    net = dark[0].copy()
    net.training_summary = {"float_max": "x"}
    with pytest.raises(ValueError, match="trained on floats up to 'x'"):
        net.predict(xt[:2])


@pytest.mark.parametrize("metadata", [[1, 2], 5, [("a", 1)], "text"])
def test_save_refuses_metadata_that_is_not_a_dict(tmp_path, metadata):
    """A list or a number failed with a TypeError from dict(), and a list of pairs was
    saved as if it were a dict; Network.save (and save_model's documentation) say
    ValueError."""
    path = tmp_path / "c.safetensors"
    nets = _members(2)
    nets[0].training_summary = {"input": "uint8"}
    with pytest.raises(ValueError, match=f"metadata must be a dict, got {type(metadata).__name__}"):
        Committee(nets).save(path, metadata=metadata)
    assert not path.exists()


def test_failed_save_keeps_the_old_file(tmp_path):
    path = tmp_path / "c.safetensors"
    Committee(_members(2)).save(path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="JSON"):
        Committee(_members(3)).save(path, metadata={"bad": object()})
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["c.safetensors"]


def _rewrite(path, change):
    """Rewrite a committee file's header through ``change(header)``; data kept."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    change(header)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])


def _committee_meta(change):
    def edit(h):
        c = json.loads(h["__metadata__"]["committee"])
        change(c)
        h["__metadata__"]["committee"] = json.dumps(c)
    return edit


BAD = {
    "committee_not_json": (lambda h: h["__metadata__"].update(committee="{oops"),
                           "committee is not valid JSON"),
    "committee_wrong_keys": (_committee_meta(lambda c: c.pop("combine")), "exactly the keys"),
    "combine_unknown": (_committee_meta(lambda c: c.update(combine="vote")), "combine"),
    "members_empty": (_committee_meta(lambda c: c.update(members=[])), "1 to"),
    "members_not_list": (_committee_meta(lambda c: c.update(members={})), "members"),
    "member_bad_config": (_committee_meta(
        lambda c: c["members"][1].update(activation=7)), "committee member 1"),
    "member_bad_sizes": (_committee_meta(
        lambda c: c["members"][0].update(layer_sizes="20-12-4")), "committee member 0"),
    "members_disagree": (_committee_meta(
        lambda c: c["members"][1].update(layer_sizes=[20, 12, 5])), "differ"),
    "both_config_and_committee": (
        lambda h: h["__metadata__"].update(config=json.dumps(Network(SIZES).get_config())),
        "both"),
    "member_tensor_missing": (lambda h: h.pop("members.1.0.bias"), "missing tensor"),
    "member_count_too_high": (_committee_meta(lambda c: c["members"].append(c["members"][0])),
                              "missing tensor"),
    "member_count_too_low": (_committee_meta(lambda c: c["members"].pop()), "unexpected"),
    "unprefixed_tensor": (lambda h: h.update({"0.weight": h.pop("members.0.0.weight")}),
                          "members.0.0.weight"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_committee_files_raise_model_format_error(tmp_path, case):
    change, phrase = BAD[case]
    path = tmp_path / f"{case}.safetensors"
    Committee(_members(2)).save(path)
    _rewrite(path, change)
    for read in (load_model, read_model_info):
        with pytest.raises(ModelFormatError) as info:
            read(path)
        assert str(path) in str(info.value)
        assert phrase.lower() in str(info.value).lower(), str(info.value)


# ---------------------------------------------------------------------------
# training

def _blobs(n, seed):
    """Four noisy clusters in 20 dimensions: easy, but not perfectly separable."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(0, 1.0, (4, 20))
    y = rng.integers(0, 4, n)
    x = centres[y] + rng.normal(0, 1.6, (n, 20))
    return ((x - x.min()) / (x.max() - x.min())).astype(np.float32), y


def _train_committee(k=5):
    (x, y), (xt, yt) = _blobs(600, 0), _blobs(2000, 1)
    recipe = dict(hidden=[16], activation="relu", dropout=0.0, optimizer="sgd", lr=0.2,
                  batch_size=32, epochs=4, lr_schedule="constant", warmup=0.0)
    runs = build_committee(recipe, 7, len(x), k, n_features=20, n_classes=4,
                           trainer_kw=dict(verbose=0))
    for _, tr in runs:
        tr.fit(x, y)
    return Committee([net for net, _ in runs]), (xt, yt)


def test_a_trained_committee_is_reproducible_and_no_worse_than_its_worst_member():
    c, (xt, yt) = _train_committee()
    again, _ = _train_committee()
    for a, b in zip(c.members, again.members):
        assert a.flat_parameters.tobytes() == b.flat_parameters.tobytes()
    # members come from seeds 7, 8, ...: different networks
    assert c.members[0].flat_parameters.tobytes() != c.members[1].flat_parameters.tobytes()
    member = [net.score(xt, yt) for net in c.members]
    assert c.score(xt, yt) >= min(member), (c.score(xt, yt), member)


def _cli(*args, cwd):
    env = dict(os.environ, DIGITCORE_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "digitcore", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def _idx(path, arr):
    dims = arr.shape
    code = 0x08 if arr.dtype == np.uint8 else 0x0D
    path.write_bytes(struct.pack(">HBB", 0, code, len(dims))
                     + b"".join(struct.pack(">I", d) for d in dims) + arr.tobytes())


def _bar_digits(data, rng, n_train, n_test):
    """Write MNIST-named IDX files into the new folder ``data``: 28x28 noise images, each
    with a bright bar whose row is its label (a small network learns it in two epochs).
    Returns the test images and labels."""
    data.mkdir()
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = (rng.random((n, 28, 28)) * 60).astype(np.uint8)
        for i, label in enumerate(y):
            x[i, 2 + 2 * label: 4 + 2 * label, 4:24] = 255
        _idx(data / f"{prefix}-images-idx3-ubyte", x)
        _idx(data / f"{prefix}-labels-idx1-ubyte", y)
    return x, y


@pytest.mark.slow
def test_cli_trains_predicts_and_evaluates_a_committee(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    _bar_digits(data, rng, 300, 100)
    out = tmp_path / "c.safetensors"
    r = _cli("train", "--data-dir", data, "--no-verify", "--members", 3, "--epochs", 2,
             "--hidden", 16, "--augment", "none", "--seed", 4, "--out", out, "--json",
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["members"] == 3 and len(summary["member_test_accuracy"]) == 3
    model = load_model(out)
    assert isinstance(model, Committee) and len(model) == 3
    r = _cli("evaluate", out, "--data-dir", data, "--no-verify", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["accuracy"] == pytest.approx(summary["test_accuracy"])
    img = tmp_path / "digit.png"
    from PIL import Image

    canvas = np.zeros((28, 28), np.uint8)
    canvas[6:22, 12:16] = 255
    Image.fromarray(canvas).save(img)
    r = _cli("predict", out, img, "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["predictions"][0]["digit"] in range(10)
    # export writes the whole committee as one ONNX graph (members averaged)
    r = _cli("export", out, tmp_path / "c.onnx", "--input-dtype", "uint8", cwd=tmp_path)
    try:
        import onnx  # noqa: F401
    except ImportError:  # export then says what to install
        assert r.returncode != 0 and "pip install" in r.stderr
    else:
        assert r.returncode == 0, r.stderr
        assert "Committee(3 x 784-16-10" in r.stdout
    try:  # (no wheel on musllinux, nor for Python 3.14 on Intel macOS)
        import onnxruntime as ort
    except ImportError:
        pass
    else:
        sess = ort.InferenceSession(str(tmp_path / "c.onnx"),
                                    providers=["CPUExecutionProvider"])
        # (any grey level, on a mostly dark background: noise on a light one is refused
        # by a model of dark-background digits, network.check_pixel_images)
        x = np.where(rng.random((50, 784)) < 0.3, rng.integers(0, 256, (50, 784)),
                     0).astype(np.uint8)
        np.testing.assert_allclose(sess.run(None, {"pixels": x})[0], model.predict_proba(x),
                                   rtol=1e-4, atol=2e-6)
    # a checkpointed committee: one directory per member (resuming is in test_checkpoint.py)
    r = _cli("train", "--data-dir", data, "--no-verify", "--members", 2, "--checkpoint",
             tmp_path / "ck", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["member-1", "member-2"]


def test_a_member_config_the_network_refuses_is_named(tmp_path):
    path = tmp_path / "c.safetensors"
    Committee(_members(2)).save(path)
    _rewrite(path, _committee_meta(lambda c: c["members"][1].update(activation="swish")))
    with pytest.raises(ModelFormatError, match="committee member 1: bad config"):
        load_model(path)
