"""Dataset lookup, verification, the bundled mnist-mini, and the data-preparation helpers.

Nothing here needs the network or the full MNIST files; the one test that uses the
full files (../shared/data/mnist or $DIGITCORE_SHARED_MNIST) skips when they are absent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import digitcore
from digitcore import DatasetError, datasets
from digitcore.datasets import (FILES, as_2d_images, check_labels, get_cache_dir, iter_batches,
                                load_dataset, load_fashion_mnist, load_mnist,
                                resolve_default_dataset, train_val_split)
from digitcore.idx import idx_header, write_idx



@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No real cache, no $DIGITCORE_DATA, and any accidental download hits a closed local port."""
    monkeypatch.setenv("DIGITCORE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DIGITCORE_DATA", raising=False)
    monkeypatch.setenv("DIGITCORE_MNIST_MIRRORS", "http://127.0.0.1:9/")
    monkeypatch.setenv("DIGITCORE_FASHION_MNIST_MIRRORS", "http://127.0.0.1:9/")


def make_fake(directory: Path, n_train=30, n_test=10, seed=0, gz=True, h=5, w=4):
    """Write a small dataset in the MNIST layout; return {file: sha256 of content}."""
    rng = np.random.default_rng(seed)
    arrays = {
        FILES[0]: rng.integers(0, 256, (n_train, h, w), dtype=np.uint8),
        FILES[1]: (np.arange(n_train) % 10).astype(np.uint8),
        FILES[2]: rng.integers(0, 256, (n_test, h, w), dtype=np.uint8),
        FILES[3]: (np.arange(n_test) % 10).astype(np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for name, a in arrays.items():
        write_idx(directory / (name + (".gz" if gz else "")), a)
        hashes[name] = hashlib.sha256(idx_header(a) + a.tobytes()).hexdigest()
    return hashes


def trust(monkeypatch, hashes, name="mnist"):
    """Make the loader expect the fake files' checksums instead of the official ones."""
    spec = dataclasses.replace(datasets._SPECS[name], sha256=dict(hashes))
    monkeypatch.setitem(datasets._SPECS, name, spec)


# ----------------------------------------------------------------------------- mnist-mini

def test_mnist_mini_shapes_and_content():
    (x, y), (xt, yt) = load_dataset("mnist-mini")
    assert x.shape == (6000, 28, 28) and y.shape == (6000,)
    assert xt.shape == (1000, 28, 28) and yt.shape == (1000,)
    assert x.dtype == y.dtype == xt.dtype == yt.dtype == np.uint8
    assert y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the famous first MNIST labels
    assert yt[:5].tolist() == [7, 2, 1, 0, 4]
    assert set(np.unique(y)) == set(range(10)) and set(np.unique(yt)) == set(range(10))
    assert np.bincount(y).min() > 450
    assert x.flags.writeable


def test_mnist_mini_is_small_and_documented():
    data = Path(datasets.__file__).parent / "_data"
    files = [data / f"{datasets.MINI_PREFIX}{f}.gz" for f in FILES]
    assert sum(p.stat().st_size for p in files) <= 1_500_000
    readme = (data / "README.md").read_text(encoding="utf-8")
    for word in ("LeCun", "Cortes", "Burges", "CC BY-SA 3.0", "first 6,000", "first 1,000"):
        assert word in readme
    for sha in datasets._MINI_SHA256.values():
        assert sha in readme


def test_mnist_mini_checksum_mismatch_names_file(monkeypatch):
    monkeypatch.setitem(datasets._MINI_SHA256, FILES[1], "0" * 64)
    with pytest.raises(DatasetError, match=r"mnist-mini-train-labels-idx1-ubyte\.gz.*SHA-256"):
        load_dataset("mnist-mini")
    (x, y), _ = load_dataset("mnist-mini", verify=False)
    assert len(x) == len(y) == 6000


def test_full_mnist_and_mini_is_its_prefix(shared_mnist):
    (x, y), (xt, yt) = load_mnist(shared_mnist, download=False)
    assert x.shape == (60000, 28, 28) and xt.shape == (10000, 28, 28)
    assert y.shape == (60000,) and yt.shape == (10000,)
    (mx, my), (mxt, myt) = load_dataset("mnist-mini")
    np.testing.assert_array_equal(mx, x[:6000])
    np.testing.assert_array_equal(my, y[:6000])
    np.testing.assert_array_equal(mxt, xt[:1000])
    np.testing.assert_array_equal(myt, yt[:1000])
    # the verification is remembered: the second load does not hash
    stamps = datasets._Stamps()
    assert all(any(k.endswith(f + ".gz") for k in stamps.entries) for f in FILES)
    name, _, (xt2, _), notice = resolve_default_dataset(shared_mnist)
    assert name == "mnist" and notice is None and len(xt2) == 10000


# ----------------------------------------------------------------------------- lookup

@pytest.mark.parametrize("layout", ["", "mnist", "MNIST/raw"])
@pytest.mark.parametrize("gz", [True, False])
def test_layouts_in_data_dir(tmp_path, monkeypatch, layout, gz):
    hashes = make_fake(tmp_path / "d" / layout, gz=gz)
    trust(monkeypatch, hashes)
    (x, y), (xt, yt) = load_mnist(tmp_path / "d", download=False)
    assert x.shape == (30, 5, 4) and y.shape == (30,) and xt.shape == (10, 5, 4)


@pytest.mark.parametrize("layout", ["", "fashion-mnist", "FashionMNIST/raw"])
def test_fashion_layouts(tmp_path, monkeypatch, layout):
    hashes = make_fake(tmp_path / "d" / layout, n_train=20)
    trust(monkeypatch, hashes, "fashion-mnist")
    (x, _), _ = load_fashion_mnist(tmp_path / "d", download=False)
    assert len(x) == 20
    (x, _), _ = load_dataset("fashion_mnist", tmp_path / "d", download=False)
    assert len(x) == 20


def test_kaggle_dotted_names(tmp_path):
    make_fake(tmp_path / "k", gz=False)
    for f in FILES:
        (tmp_path / "k" / f).rename(tmp_path / "k" / f.replace("-idx", ".idx"))
    (x, _), _ = load_mnist(tmp_path / "k", download=False, verify=False)
    assert len(x) == 30


def test_lookup_order_data_dir_env_cache(tmp_path, monkeypatch):
    make_fake(tmp_path / "arg", n_train=11)
    make_fake(tmp_path / "env", n_train=12)
    make_fake(tmp_path / "cache" / "mnist", n_train=13)
    monkeypatch.setenv("DIGITCORE_DATA", str(tmp_path / "env"))

    def n(data_dir=None):
        return len(load_mnist(data_dir, download=False, verify=False)[0][0])

    assert n(tmp_path / "arg") == 11
    assert n(tmp_path / "missing") == 12
    monkeypatch.delenv("DIGITCORE_DATA")
    assert n() == 13


def test_specific_subfolder_wins_over_base(tmp_path, monkeypatch):
    make_fake(tmp_path / "d", n_train=21)  # e.g. MNIST at the top level
    make_fake(tmp_path / "d" / "fashion-mnist", n_train=22)
    assert len(load_fashion_mnist(tmp_path / "d", download=False, verify=False)[0][0]) == 22
    assert len(load_mnist(tmp_path / "d", download=False, verify=False)[0][0]) == 21


def test_partial_set_is_not_found(tmp_path):
    make_fake(tmp_path / "d")
    (tmp_path / "d" / (FILES[3] + ".gz")).unlink()
    (tmp_path / "d" / ".t10k-labels-idx1-ubyte.gz.0123456789ab.tmp").write_bytes(b"partial")
    assert datasets.find_dataset_files("mnist", tmp_path / "d") is None
    with pytest.raises(DatasetError, match="not found"):
        load_mnist(tmp_path / "d", download=False)


def test_not_found_is_an_error_that_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetError) as info:
        load_dataset("mnist", download=False)
    msg = str(info.value)
    assert "MNIST not found" in msg and "download=True" in msg
    assert str(tmp_path / "cache") in msg
    assert "train-images-idx3-ubyte" in msg


def test_unknown_dataset_name():
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("cifar10")


def test_the_bundled_subset_has_no_files_to_find_or_fetch():
    """download_dataset("mnist-mini") said "unknown dataset 'mnist-mini' (expected one of
    mnist, fashion-mnist, mnist-mini)"."""
    from digitcore import datasets

    for call in (lambda: datasets.download_dataset("mnist-mini"),
                 lambda: datasets.find_dataset_files("mnist-mini"),
                 lambda: datasets.dataset_title("mini")):
        with pytest.raises(DatasetError, match="mnist-mini is bundled with digitcore: there "
                                               "are no files to find or download"):
            call()
    assert load_dataset("mnist-mini")[1][0].shape[1:] == (28, 28)


def test_checksum_mismatch_names_file_and_opt_out(tmp_path):
    make_fake(tmp_path / "d")
    with pytest.raises(DatasetError) as info:
        load_mnist(tmp_path / "d", download=False)
    msg = str(info.value)
    assert "train-images-idx3-ubyte.gz" in msg and "verify=False" in msg
    (x, _), _ = load_mnist(tmp_path / "d", download=False, verify=False)
    assert len(x) == 30


def test_a_damaged_verification_cache_is_ignored(tmp_path, monkeypatch):
    """verified.json that cannot be read (here nested too deeply for Python's JSON
    reader) is ignored: the files are checked again and the cache rewritten."""
    hashes = make_fake(tmp_path / "d")
    trust(monkeypatch, hashes)
    (tmp_path / "cache").mkdir(parents=True, exist_ok=True)
    (tmp_path / "cache" / "verified.json").write_text("[" * 5000 + "]" * 5000)
    (x, y), _ = load_mnist(tmp_path / "d", download=False)
    assert len(x) == len(y) > 0
    assert '"files"' in (tmp_path / "cache" / "verified.json").read_text()


def test_verification_is_remembered_and_invalidated(tmp_path, monkeypatch):
    hashes = make_fake(tmp_path / "d")
    trust(monkeypatch, hashes)
    hashed = []
    real = datasets.read_idx_sha256

    def counting(path):
        hashed.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(datasets, "read_idx_sha256", counting)
    load_mnist(tmp_path / "d", download=False)
    assert len(hashed) == 4
    assert (tmp_path / "cache" / "verified.json").is_file()
    load_mnist(tmp_path / "d", download=False)
    assert len(hashed) == 4  # nothing re-hashed
    p = tmp_path / "d" / (FILES[0] + ".gz")
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    load_mnist(tmp_path / "d", download=False)
    assert hashed[4:] == [FILES[0] + ".gz"]
    # a changed file with a stale stamp is caught
    make_fake(tmp_path / "d", seed=1)
    with pytest.raises(DatasetError, match="SHA-256"):
        load_mnist(tmp_path / "d", download=False)


def test_a_same_size_copy_with_the_old_mtime_is_hashed_again(tmp_path, monkeypatch):
    """The check that skips hashing compared only size and mtime: a file replaced by a
    same-size copy given the old mtime (cp -p, rsync -a, os.utime) loaded unchecked,
    wrong labels and all."""
    hashes = make_fake(tmp_path / "d", gz=False)
    trust(monkeypatch, hashes)
    load_mnist(tmp_path / "d", download=False)  # verified and remembered
    p = tmp_path / "d" / FILES[3]
    st = p.stat()
    data = bytearray(p.read_bytes())
    data[8] ^= 1  # the first test label
    other = tmp_path / "other"
    other.write_bytes(bytes(data))
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, p)
    with pytest.raises(DatasetError, match="SHA-256"):
        load_mnist(tmp_path / "d", download=False)


def test_unwritable_cache_still_loads(tmp_path, monkeypatch):
    hashes = make_fake(tmp_path / "d")
    trust(monkeypatch, hashes)
    (tmp_path / "blocker").write_text("a file, not a directory")
    monkeypatch.setenv("DIGITCORE_CACHE_DIR", str(tmp_path / "blocker" / "cache"))
    (x, _), _ = load_mnist(tmp_path / "d", download=False)
    assert len(x) == 30


def test_image_label_count_mismatch(tmp_path):
    make_fake(tmp_path / "d")
    write_idx(tmp_path / "d" / (FILES[1] + ".gz"), np.zeros(29, np.uint8))
    with pytest.raises(DatasetError) as info:
        load_mnist(tmp_path / "d", download=False, verify=False)
    msg = str(info.value)
    assert "29 labels" in msg and "30 images" in msg
    assert FILES[0] in msg and FILES[1] in msg


def test_wrong_kind_of_file(tmp_path):
    make_fake(tmp_path / "d")
    write_idx(tmp_path / "d" / (FILES[3] + ".gz"), np.zeros((10, 2), np.uint8))
    with pytest.raises(DatasetError, match="labels of shape"):
        load_mnist(tmp_path / "d", download=False, verify=False)
    write_idx(tmp_path / "d" / (FILES[3] + ".gz"), np.zeros(10, np.uint8))
    write_idx(tmp_path / "d" / (FILES[2] + ".gz"), np.zeros((10, 4, 4), np.float32))
    with pytest.raises(DatasetError, match="uint8 images"):
        load_mnist(tmp_path / "d", download=False, verify=False)


def test_resolve_default_falls_back_to_mini_with_notice():
    name, (x, y), (xt, yt), notice = resolve_default_dataset()
    assert name == "mnist-mini" and len(x) == 6000 and len(xt) == 1000
    assert isinstance(notice, str) and "\n" not in notice and "mnist-mini" in notice


def test_resolve_default_prefers_local_full_mnist(tmp_path, monkeypatch):
    hashes = make_fake(tmp_path / "d")
    trust(monkeypatch, hashes)
    name, (x, _), _, notice = resolve_default_dataset(tmp_path / "d")
    assert name == "mnist" and notice is None and len(x) == 30
    monkeypatch.setenv("DIGITCORE_DATA", str(tmp_path / "d"))
    assert resolve_default_dataset()[0] == "mnist"


def test_top_level_names_are_wired():
    assert digitcore.load_dataset is load_dataset
    assert digitcore.train_val_split is train_val_split
    assert digitcore.one_hot is datasets.one_hot


# ----------------------------------------------------------------------------- cache dir

def test_cache_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("DIGITCORE_CACHE_DIR", str(tmp_path / "x"))
    assert get_cache_dir() == tmp_path / "x"


@pytest.mark.parametrize("platform,env,expected", [
    # (an absolute path on this system: "/xdg" has no drive on Windows)
    ("linux", {"XDG_CACHE_HOME": "{home}/xdg"}, "{home}/xdg/digitcore"),
    ("linux", {"XDG_CACHE_HOME": "relative"}, "{home}/.cache/digitcore"),
    ("linux", {}, "{home}/.cache/digitcore"),
    ("darwin", {"XDG_CACHE_HOME": "/xdg"}, "{home}/Library/Caches/digitcore"),
    ("win32", {"LOCALAPPDATA": "/appdata"}, "/appdata/digitcore/Cache"),
    ("win32", {}, "{home}/AppData/Local/digitcore/Cache"),
])
def test_cache_dir_platform_conventions(monkeypatch, tmp_path, platform, env, expected):
    monkeypatch.delenv("DIGITCORE_CACHE_DIR")
    for var in ("XDG_CACHE_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v.format(home=tmp_path))
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: tmp_path))
    assert get_cache_dir() == Path(expected.format(home=tmp_path))


# ----------------------------------------------------------------------------- preparing data

def labelled(n=1000, n_classes=10, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n).astype(np.uint8)
    x = np.arange(n)  # x carries the example id, so splits can be checked exactly
    return x, y


def test_train_val_split_partitions_and_stratifies():
    x, y = labelled(1000)
    (xt, yt), (xv, yv) = train_val_split(x, y, 0.2, seed=0)
    assert len(xv) == 200 and len(xt) == 800
    assert sorted(np.concatenate([xt, xv]).tolist()) == list(range(1000))
    np.testing.assert_array_equal(y[xt], yt)
    np.testing.assert_array_equal(y[xv], yv)
    assert np.all(np.diff(xt) > 0) and np.all(np.diff(xv) > 0)  # original order kept
    full = np.bincount(y, minlength=10)
    np.testing.assert_allclose(np.bincount(yv, minlength=10), full * 0.2, atol=1)


def test_train_val_split_seeded_and_unstratified():
    x, y = labelled(500)
    a = train_val_split(x, y, 0.1, seed=3)
    b = train_val_split(x, y, 0.1, seed=np.random.default_rng(3))
    np.testing.assert_array_equal(a[1][0], b[1][0])
    c = train_val_split(x, y, 0.1, seed=4)
    assert not np.array_equal(a[1][0], c[1][0])
    (xt, _), (xv, _) = train_val_split(x, y, 0.1, seed=0, stratify=False)
    assert len(xv) == 50 and len(set(xt) | set(xv)) == 500


def test_train_val_split_tiny_and_rare_classes():
    x = np.arange(7)
    y = np.array([0, 0, 0, 0, 0, 1, 2])
    (xt, _), (xv, _) = train_val_split(x, y, 0.01, seed=0)
    assert len(xv) == 1 and len(xt) == 6
    (xt, _), (xv, _) = train_val_split(x, y, 0.99, seed=0)
    assert len(xv) == 6 and len(xt) == 1
    onehot = datasets.one_hot(y)
    (_, yt), (_, yv) = train_val_split(x, onehot, 0.3, seed=0)
    assert yt.shape[1] == yv.shape[1] == 3


@pytest.mark.parametrize("args", [
    (np.zeros(5), np.zeros(4, int), 0.2),
    (np.zeros(5), np.zeros(5, int), 0.0),
    (np.zeros(5), np.zeros(5, int), 1.0),
    (np.zeros(1), np.zeros(1, int), 0.5),
])
def test_train_val_split_rejects(args):
    with pytest.raises(DatasetError):
        train_val_split(*args)


def test_train_val_split_float_labels_need_stratify_false():
    with pytest.raises(DatasetError, match="stratify=False"):
        train_val_split(np.zeros(10), np.linspace(0, 1, 10), 0.2)
    (xt, _), _ = train_val_split(np.zeros(10), np.linspace(0, 1, 10), 0.2, stratify=False)
    assert len(xt) == 8


def test_one_hot():
    out = datasets.one_hot(np.array([2, 0, 1], np.uint8))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.eye(3, dtype=np.float32)[[2, 0, 1]])
    assert datasets.one_hot([1], n_classes=10).shape == (1, 10)
    with pytest.raises(DatasetError):
        datasets.one_hot([3], n_classes=3)
    with pytest.raises(DatasetError):
        datasets.one_hot([-1])
    with pytest.raises(DatasetError):
        datasets.one_hot([0.5])
    with pytest.raises(DatasetError):
        datasets.one_hot([[1]])


def test_as_2d_images_views():
    x = np.zeros((5, 28, 28), np.uint8)
    v = as_2d_images(x)
    assert v.shape == (5, 784) and np.shares_memory(v, x) and v.dtype == np.uint8
    f = np.zeros((5, 12), np.float32)
    assert as_2d_images(f) is f
    assert as_2d_images(np.zeros((3, 4, 6), np.float64)).shape == (3, 24)
    assert as_2d_images(np.zeros((0, 28, 28), np.uint8)).shape == (0, 784)


@pytest.mark.parametrize("bad", [
    np.zeros(5, np.uint8), np.zeros((2, 2, 2, 2), np.uint8), np.zeros((3, 0), np.uint8),
    np.zeros((3, 4), bool), np.zeros((3, 4), np.complex64), np.zeros((3, 4), object),
    np.zeros((3, 4), np.int64), np.zeros((3, 4), np.int8), np.float32(1.0),
])
def test_as_2d_images_rejects(bad):
    with pytest.raises(ValueError) as info:
        as_2d_images(bad, name="x_train")
    assert isinstance(info.value, DatasetError) and "x_train" in str(info.value)


def test_check_labels():
    y = np.array([1, 2, 3], np.uint8)
    out = check_labels(y, 3)
    assert out.dtype == np.int64 and out.tolist() == [1, 2, 3]
    y64 = np.array([0, 1], np.int64)
    assert check_labels(y64, 2) is y64
    for bad, n in [(np.array([1, 2]), 3), (np.array([[1, 2]]), 2), (np.array([1.0, 2.0]), 2),
                   (np.array([True, False]), 2), (np.array([-1, 0]), 2)]:
        with pytest.raises(DatasetError):
            check_labels(bad, n)
    with pytest.raises(DatasetError, match="n_classes"):
        check_labels(np.array([0, 10]), 2, n_classes=10)


def test_iter_batches_covers_everything_once():
    x = np.arange(103, dtype=np.uint8)[:, None].repeat(3, axis=1)
    y = np.arange(103)
    seen = []
    for xb, yb in iter_batches(x, y, 10, seed=0):
        assert xb.dtype == np.uint8 and len(xb) == len(yb) <= 10
        np.testing.assert_array_equal(xb[:, 0], yb)
        seen.extend(yb.tolist())
    assert sorted(seen) == list(range(103)) and seen != list(range(103))
    again = [yb.tolist() for _, yb in iter_batches(x, y, 10, seed=0)]
    assert sum(again, []) == seen
    assert [len(b) for b, _ in iter_batches(x, y, 10, drop_last=True)] == [10] * 10


def test_iter_batches_no_shuffle_yields_views_and_y_none():
    x = np.zeros((25, 4), np.uint8)
    batches = list(iter_batches(x, None, 10, shuffle=False))
    assert [len(b) for b, _ in batches] == [10, 10, 5]
    assert all(yb is None and np.shares_memory(xb, x) for xb, yb in batches)


@pytest.mark.parametrize("bs", [0, -1, 2.5, True])
def test_iter_batches_rejects_bad_batch_size(bs):
    with pytest.raises(DatasetError):
        next(iter_batches(np.zeros((4, 2)), np.zeros(4), bs))


def test_iter_batches_length_mismatch():
    with pytest.raises(DatasetError):
        next(iter_batches(np.zeros((4, 2)), np.zeros(3), 2))


def test_load_test_split_reads_the_two_test_files_alone(tmp_path):
    """What evaluate reads: the test files, without the training ones beside them."""
    from digitcore.idx import write_idx

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (7, 5, 5), dtype=np.uint8)
    y = (np.arange(7) % 3).astype(np.uint8)
    write_idx(tmp_path / (datasets.FILES[2] + ".gz"), x)
    write_idx(tmp_path / (datasets.FILES[3] + ".gz"), y)
    xt, yt = datasets.load_test_split("mnist", tmp_path, verify=False)
    assert np.array_equal(xt, x) and np.array_equal(yt, y)
    with pytest.raises(DatasetError, match="SHA-256"):  # (not the official files)
        datasets.load_test_split("mnist", tmp_path)
    assert datasets.find_dataset_files("mnist", tmp_path, files=datasets.FILES[2:])
    mini = datasets.load_test_split("mnist-mini")
    assert np.array_equal(mini[0], datasets.load_mnist_mini()[1][0])
    write_idx(tmp_path / (datasets.FILES[3] + ".gz"), y[:6])
    with pytest.raises(DatasetError, match="6 labels but .* 7 images"):
        datasets.load_test_split("mnist", tmp_path, verify=False)
