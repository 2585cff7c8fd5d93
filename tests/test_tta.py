"""Test-time augmentation: predict_proba(x, tta="shift") and its CLI (digitcore.augment.TTA)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from digitcore import Committee, Network, cli
from digitcore.augment import TTA, check_tta, mean_proba, model_tta, tta_views
from digitcore.modelio import load_model
from digitcore.presets import get_preset, tta_of
from test_committee import _bar_digits, _cli


def _edge_shift(images, dy, dx):
    """Independent of tta_views: pad by the edge, then cut the window moved by (dy, dx)."""
    h, w = images.shape[1:]
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)), mode="edge")
    return padded[:, 1 - dy:1 - dy + h, 1 - dx:1 - dx + w]


def test_shift_views_move_the_content_one_pixel_and_repeat_the_edge():
    x = np.zeros((1, 5, 7), np.uint8)
    x[0, 2, 3] = 200
    x[0, 4, :] = 9  # the bottom row: repeated when the image moves up
    x[0, 0, :] = 5  # the top row: repeated when it moves down
    views = tta_views(x, "shift")
    assert len(views) == len(TTA["shift"]) == 5
    assert views[0] is x
    where = {k: tuple(np.argwhere(v[0] == 200)[0]) for k, v in zip(TTA["shift"], views)}
    assert where == {(0, 0): (2, 3), (-1, 0): (1, 3), (1, 0): (3, 3), (0, -1): (2, 2),
                     (0, 1): (2, 4)}
    up = views[1][0]
    assert (up[3] == 9).all() and (up[4] == 9).all()  # moved up, the edge row kept
    down = views[2][0]
    assert (down[0] == 5).all() and (down[1] == 5).all() and (down[4] == 0).all()
    for v in views:
        assert v.dtype == x.dtype and v.shape == x.shape
        assert np.count_nonzero(v == 200) == 1


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_views_of_flat_images_match_an_independent_edge_padding(dtype):
    rng = np.random.default_rng(1)
    img = (rng.random((6, 28, 28)) * 255).astype(dtype)
    views = tta_views(img.reshape(6, 784), "shift")
    for (dy, dx), v in zip(TTA["shift"], views):
        assert v.shape == (6, 784) and v.dtype == dtype
        np.testing.assert_array_equal(v.reshape(6, 28, 28), _edge_shift(img, dy, dx))


def test_tta_names_and_errors():
    assert check_tta(None) is None and check_tta("none") is None
    assert check_tta("shift") == "shift"
    x = np.zeros((2, 9), np.uint8)
    assert len(tta_views(x, None)) == 1
    with pytest.raises(ValueError, match="tta must be None, 'none' or one of"):
        check_tta("rotate")
    with pytest.raises(ValueError, match="tta must be"):
        check_tta(3)
    with pytest.raises(ValueError, match="10 features per sample, not a square"):
        tta_views(np.zeros((2, 10), np.uint8), "shift")
    with pytest.raises(ValueError, match="10 features per sample, not a square"):
        Network([10, 4, 3], seed=0).predict_proba(np.zeros((2, 10), np.uint8), tta="shift")
    # the CLI names the same views without importing them (no NumPy for --help)
    assert set(cli._TTA_WHAT) == set(TTA)


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.random((n, 28, 28)) * 255).astype(np.uint8)
    return x, rng.integers(0, 10, n)


def _manual_mean(proba, x):
    total = sum(proba(_edge_shift(x, dy, dx)).astype(np.float64) for dy, dx in TTA["shift"])
    return (total / len(TTA["shift"])).astype(np.float32)


def test_network_tta_is_the_mean_over_the_shifted_images():
    net = Network([784, 16, 10], seed=3)
    x, y = _data()
    p = net.predict_proba(x, tta="shift")
    np.testing.assert_array_equal(p, _manual_mean(net.predict_proba, x))
    assert not np.array_equal(p, net.predict_proba(x))  # the views do change the answer
    np.testing.assert_array_equal(net.predict_proba(x, tta="none"), net.predict_proba(x))
    np.testing.assert_array_equal(net.predict(x, tta="shift"), p.argmax(1))
    np.testing.assert_array_equal(net.predict_proba(x.reshape(40, 784), tta="shift"), p)
    loss, acc = net.evaluate(x, y, tta="shift")
    assert acc == net.score(x, y, tta="shift") == np.mean(p.argmax(1) == y)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(40), y])), rel=1e-5)


def test_committee_tta_is_the_mean_over_views_of_its_answer():
    c = Committee([Network([784, 12, 10], seed=s) for s in (0, 1)])
    x, y = _data(seed=2)
    p = c.predict_proba(x, tta="shift")
    np.testing.assert_array_equal(p, _manual_mean(c.predict_proba, x))
    np.testing.assert_array_equal(c.predict(x, tta="shift"), p.argmax(1))
    loss, acc = c.evaluate(x, y, tta="shift")
    assert acc == c.score(x, y, tta="shift") == np.mean(p.argmax(1) == y)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(40), y])), rel=1e-5)
    with pytest.raises(ValueError, match="tta must be"):
        c.predict(x, tta="flip")


class _Counting(Network):
    """A Network that counts its forward passes (every inference path of the class ends
    in one of these three)."""

    passes = 0

    def predict_proba(self, x, *, tta=None):
        if tta is None:
            _Counting.passes += 1
        return super().predict_proba(x, tta=tta)

    def logits(self, x):
        _Counting.passes += 1
        return super().logits(x)

    def predict(self, x, *, tta=None):
        if tta is None:
            _Counting.passes += 1
        return super().predict(x, tta=tta)


@pytest.mark.parametrize("members", [0, 3])
def test_evaluation_takes_each_view_once_and_agrees_with_predict(members):
    nets = [_Counting([784, 12, 10], seed=s) for s in range(max(members, 1))]
    model = Committee(nets) if members else nets[0]
    x, y = _data(seed=4)
    xf = x.astype(np.float32) / 255  # (the float path of predict_proba too)
    for data in (x, xf):
        proba, logp = model._answers(data)  # one pass, the same bits as predict_proba
        np.testing.assert_array_equal(proba, model.predict_proba(data))
        ref = np.log(np.mean([_softmax64(n.logits(data)) for n in nets], axis=0))
        np.testing.assert_allclose(logp, ref, rtol=1e-12, atol=1e-12)
    views = len(TTA["shift"])
    for tta, passes in ((None, len(nets)), ("shift", views * len(nets))):
        p = model.predict_proba(x, tta=tta)
        _Counting.passes = 0
        loss, acc = model.evaluate(x, y, tta=tta)
        # a Network without views is evaluated in C, by none of the three
        assert _Counting.passes == (0 if tta is None and not members else passes)
        assert acc == np.mean(p.argmax(1) == y)
        assert loss == pytest.approx(-np.mean(np.log(p[np.arange(len(y)), y])), rel=1e-5)


def test_mean_proba_of_nothing_is_a_clear_error():
    with pytest.raises(ValueError, match="at least one array"):
        mean_proba([])
    np.testing.assert_array_equal(mean_proba([np.float32([[0.25, 0.75]])]), [[0.25, 0.75]])


def test_answers_refuse_an_overflowing_network():
    net = Network([784, 4, 10], seed=0)
    net.weights[-1][...] = 3e38
    x, _ = _data(n=3)
    for f in (net.predict_proba, net._answers,
              lambda v: net.evaluate(v, [0, 1, 2], tta="shift")):
        with pytest.raises(FloatingPointError, match="overflowed float32"):
            f(x)


def _softmax64(z):
    z = z.astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_the_committee_and_augmented_presets_are_scored_with_shifts():
    assert tta_of(get_preset("committee")) == "shift"
    assert tta_of(get_preset("augmented")) == "shift"
    assert tta_of(get_preset("default")) is None


@pytest.mark.slow
def test_cli_train_scores_with_tta_and_evaluate_reads_it_back(tmp_path):
    data = tmp_path / "data"
    x_te, y = _bar_digits(data, np.random.default_rng(0), 300, 200)
    out = tmp_path / "m.safetensors"
    r = _cli("train", "--data-dir", data, "--no-verify", "--epochs", 2, "--hidden", 16,
             "--augment", "none", "--tta", "shift", "--out", out, "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    model = load_model(out)
    assert summary["tta"] == "shift" and model.training_summary["tta"] == "shift"
    assert summary["test_accuracy"] == model.score(x_te, y, tta="shift")
    assert summary["test_accuracy_without_tta"] == model.score(x_te, y)
    r = _cli("evaluate", out, "--data-dir", data, "--no-verify", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["tta"] == "shift" and ev["accuracy"] == summary["test_accuracy"]
    r = _cli("evaluate", out, "--data-dir", data, "--no-verify", "--tta", "none", "--json",
             cwd=tmp_path)
    ev = json.loads(r.stdout)
    assert ev["tta"] is None and ev["accuracy"] == summary["test_accuracy_without_tta"]
    r = _cli("evaluate", out, "--data-dir", data, "--no-verify", "--tta", "shift",
             cwd=tmp_path)
    assert r.returncode == 0 and "test-time augmentation 'shift'" in r.stdout
    r = _cli("train", "--data-dir", data, "--no-verify", "--tta", "flip", cwd=tmp_path)
    assert r.returncode == 2 and "invalid choice: 'flip'" in r.stderr


# ---------------------------------------------------------------- reading pictures with tta

def _pictures(n=4):
    """Bundled test digits as 28x28 pictures, dark ink on white paper, and their labels."""
    from digitcore import load_dataset

    _, (xt, yt) = load_dataset("mnist-mini")
    return [255 - img for img in xt[:n]], [int(v) for v in yt[:n]]


@pytest.mark.parametrize("members", [0, 2])
def test_predict_image_reads_the_prepared_image_with_the_tta_asked_for(members):
    from digitcore.imaging import preprocess_image

    nets = [Network([784, 16, 10], seed=s) for s in range(max(members, 1))]
    model = Committee(nets) if members else nets[0]
    for pic in _pictures()[0]:
        x28 = preprocess_image(pic).reshape(1, -1)
        for tta in (None, "none", "shift"):
            digit, proba = model.predict_image(pic, tta=tta)
            want = model.predict_proba(x28, tta=tta)[0]
            np.testing.assert_array_equal(proba, want)
            assert digit == int(np.argmax(want))
        assert not np.array_equal(model.predict_image(pic, tta="shift")[1],
                                  model.predict_image(pic)[1])
    with pytest.raises(ValueError, match="tta must be"):
        model.predict_image(_pictures(1)[0][0], tta="flip")


def test_model_tta_is_the_one_asked_for_else_the_recorded_one():
    net = Network([784, 4, 10], seed=0)
    assert model_tta(net) is None and model_tta(net, "shift") == "shift"
    net.training_summary = {"tta": "shift", "preset": "committee"}
    assert model_tta(net) == "shift" and model_tta(net, "none") is None
    net.training_summary = {"tta": None}
    assert model_tta(net) is None
    net.training_summary = "not a dict"  # (a file written by hand)
    assert model_tta(net) is None
    net.training_summary = {"tta": "flip"}  # (a file of a later version)
    with pytest.raises(ValueError, match="got 'flip'"):
        model_tta(net)
    assert model_tta(net, "none") is None  # --tta none still reads it
    assert model_tta(object()) is None


def _png_files(folder, pictures):
    from digitcore.png import encode_png

    files = []
    for i, pic in enumerate(pictures):
        f = folder / f"digit{i}.png"
        f.write_bytes(encode_png(np.ascontiguousarray(pic)))
        files.append(f)
    return files


def test_cli_predict_reads_with_the_model_s_tta_unless_told(tmp_path):
    pytest.importorskip("PIL.Image")  # (load_image reads files with Pillow)
    net = Network([784, 16, 10], seed=5)
    pictures, _ = _pictures()
    files = _png_files(tmp_path, pictures)
    plain, recorded, unknown = (tmp_path / f"{n}.safetensors" for n in ("p", "r", "u"))
    net.save(plain)
    net.save(recorded, metadata={"tta": "shift"})
    net.save(unknown, metadata={"tta": "flip"})
    for model, extra, tta in ((plain, (), None), (recorded, (), "shift"),
                              (recorded, ("--tta", "none"), None),
                              (plain, ("--tta", "shift"), "shift")):
        r = _cli("predict", model, *files, "--json", *extra, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["tta"] == tta
        for f, got in zip(files, out["predictions"]):
            digit, proba = net.predict_image(f, tta=tta)
            assert got["digit"] == digit
            assert got["confidence"] == pytest.approx(float(proba[digit]), abs=1e-7)
    r = _cli("predict", unknown, files[0], cwd=tmp_path)
    assert r.returncode == 2 and "u.safetensors" in r.stderr and "'flip'" in r.stderr
    r = _cli("predict", unknown, files[0], "--tta", "none", cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_served_drawings_are_read_with_the_model_s_tta():
    from serving import running_server
    from test_serve import _json

    net = Network([784, 16, 10], seed=6)
    net.training_summary = {"tta": "shift"}
    pictures, _ = _pictures(3)
    for kwargs, tta in (({}, "shift"), ({"tta": "none"}, None)):
        with running_server(net, **kwargs) as srv:
            assert srv.tta == tta
            status, info = _json(srv, "GET", "/api/model")
            assert status == 200 and info["tta"] == tta
            for pic in pictures:
                status, r = _json(srv, "POST", "/api/predict",
                                  {"pixels": pic.ravel().tolist(), "width": 28, "height": 28})
                assert status == 200, r
                digit, proba = net.predict_image(pic, tta=tta)
                assert r["digit"] == digit
                np.testing.assert_allclose(r["probabilities"], proba, atol=1e-6)
    net.training_summary = {"tta": "flip"}
    with pytest.raises(ValueError, match="got 'flip'"):
        with running_server(net):
            pass
