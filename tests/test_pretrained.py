"""The bundled pretrained model: shipped inside the package, checked on load, reproducible
from its recipe, and what ``digitcore predict`` and ``digitcore serve`` use without a model.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import digitcore
from digitcore import ModelFormatError
from digitcore import pretrained
from digitcore.imaging import preprocess_image
from digitcore.pretrained import (file_digest, load_pretrained, pretrained_path,
                                  save_pretrained, train_pretrained, weights_digest)

from serving import port_of, serve_process


@pytest.fixture(scope="module")
def mini():
    return digitcore.load_dataset("mnist-mini")


@pytest.fixture(scope="module")
def bundled():
    return load_pretrained()


def _header(path):
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), 8 + n


# ---------------------------------------------------------------------------- the file

def test_the_file_is_inside_the_package_and_within_budget():
    path = pretrained_path()
    assert path.is_file(), path
    assert Path(digitcore.__file__).resolve().parent in path.parents
    assert path.stat().st_size <= pretrained.MAX_BYTES


def test_bundled_model_reads_digits(bundled, mini):
    (_, _), (xt, yt) = mini
    assert bundled.layer_sizes[0] == 784 and bundled.layer_sizes[-1] == 10
    summary = bundled.training_summary
    for key in ("preset", "recipe", "seed", "members", "n_train", "dataset", "test_accuracy",
                "storage_dtype", "weights_sha256", "file_sha256"):
        assert key in summary, key
    assert summary["dataset"] == "mnist" and summary["n_train"] == 60_000
    # a committee file loads as a Committee of that many networks, a single one as a Network
    want = digitcore.Committee if summary["members"] > 1 else digitcore.Network
    assert isinstance(bundled, want)
    assert len(_networks(bundled)) == summary["members"]
    # mnist-mini's test images are the first 1,000 of MNIST's test set, which the model
    # never trained on; the build script recorded how many it reads
    acc = bundled.score(xt, yt)
    assert acc >= 0.98, acc
    assert acc >= summary["mnist_mini_test_accuracy"] - 0.002, (acc, summary)


def test_bundled_model_reads_the_full_test_set_as_recorded(bundled, shared_mnist):
    (_, _), (xt, yt) = digitcore.load_mnist(shared_mnist, download=False)
    acc = bundled.score(xt, yt)
    assert abs(acc - bundled.training_summary["test_accuracy"]) <= 3e-4, acc
    tta = bundled.training_summary.get("tta")  # its preset's test-time augmentation
    if tta:
        acc = bundled.score(xt, yt, tta=tta)
        assert abs(acc - bundled.training_summary["test_accuracy_with_tta"]) <= 3e-4, acc


def test_storage_dtype_is_what_the_header_says(bundled):
    header, _ = _header(pretrained_path())
    want = {"float16": "F16", "float32": "F32"}[bundled.training_summary["storage_dtype"]]
    assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {want}


def test_committed_results_and_readme_describe_the_bundled_file(bundled):
    """Whoever rebuilds the file commits the results the README quotes with it."""
    root = Path(__file__).resolve().parents[1]
    results = root / "benchmarks" / "results" / "train_pretrained.json"
    if not results.is_file() or not (root / "README.md").is_file():
        pytest.skip(f"README.md and benchmarks/results/ are not in {root} (copy the "
                    "repository's README.md and benchmarks/ beside tests/)")
    r = json.loads(results.read_text())
    summary = bundled.training_summary
    row = r["rows"][0]
    assert row["weights_sha256"] == summary["weights_sha256"], "rebuilt without its results?"
    assert ((row["preset"], row["seed"], row["members"])
            == (summary["preset"], summary["seed"], summary["members"]))
    assert r["claims"]["test_accuracy_pct"] == pytest.approx(100 * summary["test_accuracy"])
    assert row["storage_dtype"] == summary["storage_dtype"]
    rebuild = (f"python benchmarks/train_pretrained.py --preset {summary['preset']} "
               f"--seed {summary['seed']}")
    if summary["members"] > 1:
        rebuild += f" --members {summary['members']}"
    assert rebuild in (root / "README.md").read_text(encoding="utf-8")


def test_the_bundled_recipe_is_its_presets_recipe_today(bundled):
    """The README's rebuild command trains the preset as presets.py has it now: a preset
    changed without rebuilding the file would rebuild a different model. The augmentations
    compare as Augment objects: a field added since the file was built (faint) reads as
    its default, which deforms the digits as before."""
    from digitcore.augment import get_augment

    summary = bundled.training_summary
    recorded = dict(summary["recipe"])
    today = pretrained.recorded_recipe(summary["preset"], summary["n_train"])
    assert get_augment(recorded.pop("augment")) == get_augment(today.pop("augment"))
    assert recorded == today


def _networks(model):
    """A Committee's members, or [model] for a Network."""
    return getattr(model, "members", [model])


def _parameters(model):
    """Every parameter of a Network or of a Committee's members, as one float32 vector."""
    return np.concatenate([net.flat_parameters for net in _networks(model)])


def test_each_call_returns_a_new_model(bundled):
    other = load_pretrained()
    assert other is not bundled
    for a, b in zip(_networks(other), _networks(bundled)):
        assert a is not b
    np.testing.assert_array_equal(_parameters(other), _parameters(bundled))


# ---------------------------------------------------------------------------- damage

@pytest.fixture
def copy_of_bundled(tmp_path, monkeypatch):
    path = tmp_path / pretrained.PRETRAINED_FILE
    shutil.copyfile(pretrained_path(), path)
    monkeypatch.setattr(pretrained, "pretrained_path", lambda: path)
    return path


def test_missing_file_says_how_to_get_it_back(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "pretrained_path", lambda: tmp_path / "gone.safetensors")
    with pytest.raises(FileNotFoundError, match="pretrained model is missing.*reinstall"):
        digitcore.load_pretrained()


def test_a_flipped_weight_byte_is_caught(copy_of_bundled):
    load_pretrained()  # the untouched copy loads
    _, start = _header(copy_of_bundled)
    data = bytearray(copy_of_bundled.read_bytes())
    data[start + (len(data) - start) // 2] ^= 0x01  # still a finite number
    copy_of_bundled.write_bytes(bytes(data))
    digitcore.load_model(copy_of_bundled)  # a well-formed file: only the digest sees it
    with pytest.raises(ModelFormatError, match="damaged"):
        load_pretrained()


@pytest.mark.parametrize("old,new", [
    (b'"input_mean\\": 0.0', b'"input_mean\\": 0.1'),  # a member's input scaling
    (b'"test_accuracy\\": 0.9', b'"test_accuracy\\": 0.8'),  # the metadata
])
def test_a_changed_header_byte_is_caught(copy_of_bundled, old, new):
    """The digest covered only the tensor data: a member's input_mean changed from 0.0
    to 0.1 in the header loaded, and read mnist-mini's test images 12% worse."""
    data = copy_of_bundled.read_bytes()
    assert data.count(old) >= 1, old
    copy_of_bundled.write_bytes(data.replace(old, new, 1))
    digitcore.load_model(copy_of_bundled)  # a well-formed file: only the digest sees it
    with pytest.raises(ModelFormatError, match="file_sha256.*damaged"):
        load_pretrained()


def test_a_moved_or_missing_file_digest_is_caught(copy_of_bundled):
    data = copy_of_bundled.read_bytes()
    recorded = digitcore.load_model(copy_of_bundled).training_summary["file_sha256"]
    copy_of_bundled.write_bytes(data.replace(recorded.encode(), b"f" * 64))
    with pytest.raises(ModelFormatError, match="file_sha256.*damaged"):
        load_pretrained()
    with pytest.raises(ModelFormatError, match="file_sha256 is not where it was written"):
        file_digest(copy_of_bundled, recorded)  # (no longer in the file)
    copy_of_bundled.write_bytes(data.replace(b'"file_sha256', b'"file_sha257'))
    with pytest.raises(ModelFormatError, match="no file_sha256"):
        load_pretrained()


def test_a_truncated_file_is_caught(copy_of_bundled):
    data = copy_of_bundled.read_bytes()
    copy_of_bundled.write_bytes(data[:len(data) // 2])
    with pytest.raises(ModelFormatError, match=str(copy_of_bundled.name)):
        load_pretrained()
    copy_of_bundled.write_bytes(data[:5])
    with pytest.raises(ModelFormatError, match="too short"):
        load_pretrained()


def test_a_model_without_its_digest_is_refused(copy_of_bundled):
    digitcore.Network([784, 8, 10], seed=0).save(copy_of_bundled)
    with pytest.raises(ModelFormatError, match="weights_sha256"):
        load_pretrained()


# ---------------------------------------------------------------------------- building it

TINY = dict(hidden=[16], activation="relu", dropout=0.1, optimizer="adam", lr=2e-3,
            batch_size=64, epochs=1, lr_schedule="cosine", warmup=0.0, augment="affine")


def _build(mini, tmp_path, name, threads, seed=0, dtype="float16", members=None):
    (x, y), _ = mini
    before = digitcore.get_num_threads()
    digitcore.set_num_threads(threads)
    try:
        net, history = train_pretrained(x[:1500], y[:1500], TINY, seed, members=members)
    finally:
        digitcore.set_num_threads(before)
    path = tmp_path / name
    digest = save_pretrained(net, path, dtype=dtype, metadata={"dataset": "mnist-mini"})
    return net, path, digest


def test_build_is_reproducible_for_any_thread_count(mini, tmp_path):
    net1, p1, d1 = _build(mini, tmp_path, "a.safetensors", threads=1)
    _, p2, d2 = _build(mini, tmp_path, "b.safetensors", threads=2)
    assert p1.read_bytes() == p2.read_bytes() and d1 == d2 == weights_digest(p1)
    _, _, d3 = _build(mini, tmp_path, "c.safetensors", threads=2, seed=1)
    assert d3 != d1
    summary = net1.training_summary
    assert summary["preset"] == "custom" and summary["n_train"] == 1500
    assert summary["recipe"]["hidden"] == [16] and summary["recipe"]["augment"]["rotate"] > 0
    assert summary["weights_sha256"] == d1 and summary["dataset"] == "mnist-mini"
    assert "tta" not in summary  # (TINY has none; a preset's is recorded:)
    (x, y), _ = mini
    shifted, _ = train_pretrained(x[:300], y[:300], dict(TINY, tta="shift"), 0)
    assert shifted.training_summary["tta"] == "shift"
    assert summary["file_sha256"] == file_digest(p1, summary["file_sha256"])
    assert sorted(os.listdir(tmp_path)) == ["a.safetensors", "b.safetensors", "c.safetensors"]


def test_a_built_file_loads_as_the_pretrained_model(mini, tmp_path, monkeypatch):
    net, path, _ = _build(mini, tmp_path, pretrained.PRETRAINED_FILE, threads=1)
    monkeypatch.setattr(pretrained, "pretrained_path", lambda: path)
    back = load_pretrained()
    assert isinstance(back, digitcore.Network)
    for a, b in zip(net.weights + net.biases, back.weights + back.biases):
        np.testing.assert_array_equal(b, a.astype(np.float16).astype(np.float32))
    assert back.training_summary == net.training_summary
    assert back.training_summary["members"] == 1


def test_a_committee_builds_reproducibly_and_loads_as_the_pretrained_model(
        mini, tmp_path, monkeypatch):
    com, path, digest = _build(mini, tmp_path, pretrained.PRETRAINED_FILE, threads=1,
                               seed=3, members=2)
    _, again, digest2 = _build(mini, tmp_path, "again.safetensors", threads=2, seed=3,
                               members=2)
    assert digest == digest2 and path.read_bytes() == again.read_bytes()
    assert isinstance(com, digitcore.Committee) and len(com) == 2
    summary = com.training_summary
    assert (summary["members"], summary["seeds"], summary["seed"]) == (2, [3, 4], 3)
    assert summary["recipe"]["hidden"] == [16] and summary["weights_sha256"] == digest
    # member j is the network one seed would give on its own
    (x, y), (xt, yt) = mini
    single, _ = train_pretrained(x[:1500], y[:1500], TINY, 4)
    np.testing.assert_array_equal(com.members[1].flat_parameters, single.flat_parameters)
    monkeypatch.setattr(pretrained, "pretrained_path", lambda: path)
    back = load_pretrained()
    assert isinstance(back, digitcore.Committee) and len(back) == 2
    for m_net, b_net in zip(com.members, back.members):
        for a, b in zip(m_net.weights + m_net.biases, b_net.weights + b_net.biases):
            np.testing.assert_array_equal(b, a.astype(np.float16).astype(np.float32))
    assert back.training_summary == summary
    # it answers as a model does: the mean of its members' probabilities
    mean = (back.members[0].predict_proba(xt[:50]).astype(np.float64)
            + back.members[1].predict_proba(xt[:50])) / 2
    np.testing.assert_allclose(back.predict_proba(xt[:50]), mean, rtol=1e-6, atol=1e-7)


def test_no_members_is_an_error(mini):
    (x, y), _ = mini
    with pytest.raises(ValueError, match="at least one member, got members=0"):
        train_pretrained(x[:100], y[:100], TINY, 0, members=0)


def test_save_refuses_a_file_over_budget(tmp_path, monkeypatch):
    net = digitcore.Network([784, 16, 10], seed=0)
    monkeypatch.setattr(pretrained, "MAX_BYTES", 10_000)  # 784-16-10 in float32: ~51 KB
    path = tmp_path / "big.safetensors"
    with pytest.raises(ValueError, match="budget"):
        save_pretrained(net, path, dtype="float32")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX symbolic links and permissions")
def test_save_writes_through_a_symlink_and_keeps_permissions(tmp_path):
    # save_pretrained renamed its draft over the path: a link became a regular file (the
    # file it named left as it was) and the replaced file's permissions were lost
    real = tmp_path / "real.safetensors"
    real.write_bytes(b"old")
    real.chmod(0o600)
    link = tmp_path / "link.safetensors"
    link.symlink_to(real.name)
    net = digitcore.Network([784, 16, 10], seed=0)
    save_pretrained(net, link, dtype="float32")
    assert link.is_symlink() and stat.S_IMODE(real.stat().st_mode) == 0o600
    back = digitcore.load_model(real)
    np.testing.assert_array_equal(back.flat_parameters, net.flat_parameters)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.safetensors", "real.safetensors"]


def test_save_takes_a_bytes_path(tmp_path):
    net = digitcore.Network([784, 16, 10], seed=0)
    save_pretrained(net, os.fsencode(tmp_path / "b.safetensors"), dtype="float32")
    np.testing.assert_array_equal(digitcore.load_model(tmp_path / "b.safetensors").flat_parameters,
                                  net.flat_parameters)


# ---------------------------------------------------------------------------- the CLI

def _run(*args, **kw):
    env = dict(os.environ, DIGITCORE_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "digitcore", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=120, **kw)


@pytest.fixture(scope="module")
def pictures(mini, tmp_path_factory):
    Image = pytest.importorskip("PIL.Image")
    (_, _), (xt, yt) = mini
    folder = tmp_path_factory.mktemp("pictures")
    files = []
    for i in range(12):
        f = folder / f"digit{i}.png"  # dark ink on white paper, larger than 28x28
        Image.fromarray(255 - xt[i]).resize((84, 84), Image.BILINEAR).save(f)
        files.append(f)
    return files, [int(v) for v in yt[:12]]


def test_predict_without_a_model_uses_the_bundled_one(pictures, bundled):
    files, labels = pictures
    r = _run("predict", *files, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["model"] == "pretrained" and out["tta"] == "shift"  # the bundled model's
    digits = [p["digit"] for p in out["predictions"]]
    assert digits == [bundled.predict_image(f, tta="shift")[0] for f in files]
    assert sum(d == t for d, t in zip(digits, labels)) >= 11, (digits, labels)
    r = _run("predict", files[0])
    assert r.returncode == 0 and r.stdout.startswith(f"{files[0]}: {digits[0]} (")


def test_predict_with_a_model_still_uses_it(pictures, tmp_path):
    files, _ = pictures
    other = digitcore.Network([784, 8, 10], seed=3)
    model = tmp_path / "other.safetensors"
    other.save(model)
    want = [other.predict_image(f)[0] for f in files[:3]]
    for args in ((model, *files[:3]), ("--model", model, *files[:3])):
        r = _run("predict", *args, "--json")
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["model"] == str(model) and [p["digit"] for p in out["predictions"]] == want
    renamed = tmp_path / "other.bin"  # found by its content, whatever its name
    shutil.copyfile(model, renamed)
    out = json.loads(_run("predict", renamed, files[0], "--json").stdout)
    assert out["model"] == str(renamed) and out["predictions"][0]["digit"] == want[0]


def test_predict_a_model_and_no_image_is_a_usage_error(tmp_path):
    model = tmp_path / "m.safetensors"
    digitcore.Network([784, 8, 10], seed=0).save(model)
    r = _run("predict", model)
    assert r.returncode == 2 and "no IMAGE" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_predict_a_missing_first_picture_does_not_stop_the_rest(pictures, tmp_path):
    files, _ = pictures
    r = _run("predict", tmp_path / "none.png", files[0])
    assert r.returncode == 1
    assert r.stdout.startswith(str(files[0])) and "none.png" in r.stderr


# ---------------------------------------------------------------------------- serve

def test_serve_uses_the_bundled_model(bundled):
    from digitcore.serve import pretrained_model

    net, info = pretrained_model(quiet=True)
    np.testing.assert_array_equal(_parameters(net), _parameters(bundled))
    assert info["source"] == "pretrained model (bundled)"
    assert info["metadata"]["training"]["weights_sha256"] == \
        bundled.training_summary["weights_sha256"]


def test_serve_falls_back_to_training_when_the_file_is_damaged(monkeypatch, tmp_path, capsys):
    from digitcore import serve

    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"garbage")
    monkeypatch.setattr(pretrained, "pretrained_path", lambda: broken)
    sentinel = (digitcore.Network([784, 4, 10], seed=0), {"source": "trained"})
    monkeypatch.setattr(serve, "default_model", lambda quiet=False: sentinel)
    assert serve.pretrained_model() is sentinel
    err = capsys.readouterr().err
    assert "cannot use the bundled pretrained model" in err and "broken.safetensors" in err


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_cli_serve_without_a_model_answers_at_once(bundled, tmp_path, sigint_deliverable):
    env = dict(os.environ, DIGITCORE_CACHE_DIR=str(tmp_path))
    with serve_process(["--port", "0"], env) as (proc, url):
        conn = http.client.HTTPConnection("127.0.0.1", port_of(url), timeout=10)
        conn.request("GET", "/api/model")
        info = json.loads(conn.getresponse().read())
        x = digitcore.load_dataset("mnist-mini")[1][0][0]
        conn.request("POST", "/api/predict", body=json.dumps({"pixels": x.ravel().tolist()}),
                     headers={"Content-Type": "application/json"})
        answer = json.loads(conn.getresponse().read())
        conn.close()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert info["source"] == "pretrained model (bundled)"
    assert info["file"] == pretrained.PRETRAINED_FILE
    assert info["layer_sizes"] == list(bundled.layer_sizes)
    assert info["tta"] == "shift"  # read as the model card's accuracy was measured
    want = bundled.predict_proba(preprocess_image(x).reshape(1, -1), tta="shift")[0]
    assert answer["digit"] == int(np.argmax(want))
    np.testing.assert_allclose(answer["probabilities"], want, atol=1e-6)
    assert "training" not in err  # nothing was trained
    assert list(tmp_path.iterdir()) == []  # and nothing cached
