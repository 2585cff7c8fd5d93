"""The verified downloader, against a local http.server on 127.0.0.1 only.

The server serves good files, wrong bytes, truncated streams, a stall, a gzip bomb,
non-gzip data and 404s. The real mirrors are never contacted: every test runs with
the mirror env vars pointing at 127.0.0.1 and the cache in a temporary directory.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import os
import re
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from digitcore import DatasetError, datasets
from digitcore.datasets import FILES, download_dataset, load_mnist
from digitcore.idx import idx_header

N_TRAIN, N_TEST = 40, 12


def _fake_arrays():
    rng = np.random.default_rng(7)
    return {
        FILES[0]: rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        FILES[1]: (np.arange(N_TRAIN) % 10).astype(np.uint8),
        FILES[2]: rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        FILES[3]: (np.arange(N_TEST) % 10).astype(np.uint8),
    }


ARRAYS = _fake_arrays()
CONTENT = {f: idx_header(a) + a.tobytes() for f, a in ARRAYS.items()}  # decompressed
GZ = {f + ".gz": gzip.compress(c, mtime=0) for f, c in CONTENT.items()}
# a second dataset with the same file names (as Fashion-MNIST's are MNIST's), "good2/"
CONTENT2 = {f: idx_header(a) + (255 - a).tobytes() for f, a in ARRAYS.items()}
GZ2 = {f + ".gz": gzip.compress(c, mtime=0) for f, c in CONTENT2.items()}


class _Handler(http.server.BaseHTTPRequestHandler):
    stall = threading.Event()  # set at teardown so stalled handlers end

    def log_message(self, *args):
        pass

    def _send(self, body: bytes, length: int | None = None):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        _, mode, name = self.path.split("/", 2)
        good = GZ.get(name)
        if good is None or mode == "missing":
            self.send_error(404)
            return
        if mode == "good":
            self._send(good)
        elif mode == "good2":
            self._send(GZ2[name])
        elif mode == "wrong":  # valid gzip, same size, different bytes
            raw = bytearray(gzip.decompress(good))
            raw[-1] ^= 0xFF
            self._send(gzip.compress(bytes(raw), mtime=0))
        elif mode == "trunc":  # announces the full length, sends half, hangs up
            self._send(good[: len(good) // 2], length=len(good))
        elif mode == "cut":  # no Content-Length, stream simply ends early
            self.send_response(200)
            self.end_headers()
            self.wfile.write(good[: len(good) // 2])
        elif mode == "stall":
            self.send_response(200)
            self.send_header("Content-Length", str(len(good)))
            self.end_headers()
            self.wfile.write(good[:10])
            self.wfile.flush()
            self.stall.wait(10)
        elif mode == "bomb":  # inflates far beyond the expected size
            self._send(gzip.compress(bytes(50 << 20), compresslevel=1))
        elif mode == "notgz":
            self._send(gzip.decompress(good))
        else:
            self.send_error(404)


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    host, port = httpd.server_address
    assert host == "127.0.0.1"
    yield lambda mode: f"http://127.0.0.1:{port}/{mode}/"
    _Handler.stall.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("DIGITCORE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DIGITCORE_DATA", raising=False)
    # anything that slips through goes to a closed local port, never the internet
    monkeypatch.setenv("DIGITCORE_MNIST_MIRRORS", "http://127.0.0.1:9/")
    monkeypatch.setenv("DIGITCORE_FASHION_MNIST_MIRRORS", "http://127.0.0.1:9/")
    # the registry entry of a dataset whose files are CONTENT (its hashes and sizes)
    spec = dataclasses.replace(datasets._SPECS["mnist"],
                               sha256={f: hashlib.sha256(c).hexdigest() for f, c in CONTENT.items()},
                               sizes={f: len(c) for f, c in CONTENT.items()})
    monkeypatch.setitem(datasets._SPECS, "mnist", spec)
    spec2 = dataclasses.replace(datasets._SPECS["fashion-mnist"],
                                sha256={f: hashlib.sha256(c).hexdigest()
                                        for f, c in CONTENT2.items()},
                                sizes={f: len(c) for f, c in CONTENT2.items()})
    monkeypatch.setitem(datasets._SPECS, "fashion-mnist", spec2)


def leftovers(d: Path):
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_download_good_mirror(server, tmp_path):
    dest = tmp_path / "dl"
    paths = download_dataset("mnist", dest, mirrors=[server("good")], progress=False)
    assert set(paths) == set(FILES)
    assert leftovers(dest) == sorted(f + ".gz" for f in FILES)
    for f in FILES:
        assert gzip.decompress(paths[f].read_bytes()) == CONTENT[f]
    (x, y), (xt, yt) = load_mnist(dest, download=False)
    np.testing.assert_array_equal(x, ARRAYS[FILES[0]])
    np.testing.assert_array_equal(yt, ARRAYS[FILES[3]])


def test_bad_mirrors_are_skipped(server, tmp_path):
    dest = tmp_path / "dl"
    mirrors = [server(m) for m in ("missing", "wrong", "trunc", "cut", "notgz", "bomb", "stall",
                                   "good")]
    t = time.perf_counter()
    paths = download_dataset("mnist", dest, mirrors=mirrors, timeout=0.5, progress=False)
    assert time.perf_counter() - t < 15
    assert leftovers(dest) == sorted(f + ".gz" for f in FILES)
    assert gzip.decompress(paths[FILES[0]].read_bytes()) == CONTENT[FILES[0]]


def test_all_mirrors_fail_leaves_nothing_and_explains(server, tmp_path):
    dest = tmp_path / "dl"
    mirrors = [server(m) for m in ("missing", "wrong", "trunc", "bomb", "notgz")]
    with pytest.raises(DatasetError) as info:
        download_dataset("mnist", dest, mirrors=mirrors, timeout=2, progress=False)
    msg = str(info.value)
    for m in mirrors:
        assert m + "train-images-idx3-ubyte.gz" in msg
    assert "HTTP 404" in msg
    assert "SHA-256" in msg  # wrong bytes
    assert "closed after" in msg  # truncated
    assert "more than the expected" in msg  # bomb, stopped at the cap
    assert "by hand" in msg and str(dest) in msg and "DIGITCORE_MNIST_MIRRORS" in msg
    assert leftovers(dest) == []  # no partial or unverified file a later load could trust
    with pytest.raises(DatasetError, match="not found"):
        load_mnist(dest, download=False)


def test_a_failed_download_removes_the_folders_it_created(server, tmp_path):
    """load_mnist('/nonexistent') created /nonexistent/mnist, failed to download, and
    left the empty tree behind; a folder that was there, or holds anything, stays."""
    with pytest.raises(DatasetError, match="could not download"):
        load_mnist(tmp_path / "typo" / "deeper", download=True)
    assert not (tmp_path / "typo").exists()
    (tmp_path / "there").mkdir()
    with pytest.raises(DatasetError, match="could not download"):
        load_mnist(tmp_path / "there", download=True)
    assert leftovers(tmp_path / "there") == []  # (its mnist subfolder, created, is gone)
    # a path through a missing folder and back names an existing one, which stays
    (tmp_path / "data").mkdir()
    with pytest.raises(DatasetError, match="could not download"):
        load_mnist(tmp_path / "typo" / ".." / "data", download=True)
    assert (tmp_path / "data").is_dir() and not (tmp_path / "typo").exists()
    # a file where a folder must be is named
    (tmp_path / "picture.png").write_bytes(b"x")
    with pytest.raises(DatasetError, match=r"picture\.png is a file, not a folder"):
        load_mnist(tmp_path / "picture.png", download=True)
    # a download that gets some files keeps its folder (and them)
    dest = tmp_path / "new" / "dl"
    download_dataset("mnist", dest, mirrors=[server("good")], progress=False)
    assert leftovers(dest) == sorted(f + ".gz" for f in FILES)


def test_stall_times_out_quickly(server, tmp_path):
    t = time.perf_counter()
    with pytest.raises(DatasetError, match="timed out"):
        # a long connect timeout but a short read timeout: the read timeout must apply
        download_dataset("mnist", tmp_path / "dl", mirrors=[server("stall")], timeout=(20, 0.3),
                         progress=False)
    assert time.perf_counter() - t < 5  # 20 s if the read timeout were ignored
    assert leftovers(tmp_path / "dl") == []


def test_load_mnist_downloads_into_cache_via_env_mirrors(server, tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITCORE_MNIST_MIRRORS", f"{server('missing')}, {server('good')}")
    (x, y), (xt, yt) = load_mnist()
    assert x.shape == (N_TRAIN, 28, 28) and yt.shape == (N_TEST,)
    cache = tmp_path / "cache"
    assert leftovers(cache / "mnist") == sorted(f + ".gz" for f in FILES)
    assert (cache / "verified.json").is_file()  # downloaded files need no second hash
    # now found locally: no network needed
    monkeypatch.setenv("DIGITCORE_MNIST_MIRRORS", "http://127.0.0.1:9/")
    (x2, _), _ = load_mnist(download=False)
    np.testing.assert_array_equal(x, x2)


def test_load_mnist_downloads_into_data_dirs_subfolder(server, tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITCORE_MNIST_MIRRORS", server("good"))
    load_mnist(tmp_path / "mine")
    assert leftovers(tmp_path / "mine" / "mnist") == sorted(f + ".gz" for f in FILES)
    monkeypatch.setenv("DIGITCORE_MNIST_MIRRORS", "http://127.0.0.1:9/")
    load_mnist(tmp_path / "mine", download=False)  # found there again


def _put(folder: Path, gz: dict):
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in gz.items():
        (folder / name).write_bytes(data)


def test_two_datasets_with_the_same_file_names_never_share_a_folder(server, tmp_path,
                                                                     monkeypatch):
    """MNIST downloaded into a folder itself made Fashion-MNIST's download find "its"
    files there: none was downloaded, and the error said to delete the good MNIST files;
    the same with MNIST's files in the cache's base."""
    monkeypatch.setenv("DIGITCORE_FASHION_MNIST_MIRRORS", server("good2"))
    shared = tmp_path / "shared"
    _put(shared, GZ)  # MNIST's four files in the folder itself
    with pytest.raises(DatasetError, match=r"is the MNIST train-images-idx3-ubyte file, not "
                                           r"Fashion-MNIST.*keep it, and put Fashion-MNIST's "
                                           r"files in a folder of their own, such as "
                                           + re.escape(str(shared / "fashion-mnist"))):
        datasets.load_dataset("fashion-mnist", shared, download=False)
    (x, _), _ = datasets.load_dataset("fashion-mnist", shared, download=True)
    np.testing.assert_array_equal(x, 255 - ARRAYS[FILES[0]])
    assert leftovers(shared / "fashion-mnist") == sorted(f + ".gz" for f in FILES)
    assert all((shared / n).read_bytes() == d for n, d in GZ.items())  # MNIST's kept
    (x, _), _ = load_mnist(shared, download=False)
    np.testing.assert_array_equal(x, ARRAYS[FILES[0]])
    # MNIST's files in the cache's base folder, and in $DIGITCORE_DATA (looked in before
    # the cache's subfolder, where the download goes): found past them, downloaded or not
    _put(tmp_path / "cache", GZ)
    _put(tmp_path / "env", GZ)
    monkeypatch.setenv("DIGITCORE_DATA", str(tmp_path / "env"))
    for download in (True, False):
        (x, _), _ = datasets.load_dataset("fashion-mnist", download=download)
        np.testing.assert_array_equal(x, 255 - ARRAYS[FILES[0]])
    assert leftovers(tmp_path / "cache" / "fashion-mnist") == sorted(f + ".gz" for f in FILES)
    (x, _), _ = load_mnist(download=False)  # ($DIGITCORE_DATA's)
    np.testing.assert_array_equal(x, ARRAYS[FILES[0]])
    # every reader agrees: the test split alone (digitcore evaluate), and the default
    # dataset's search (MNIST's files, past Fashion-MNIST's in a folder looked in first)
    xt, _ = datasets.load_test_split("fashion-mnist")
    np.testing.assert_array_equal(xt, 255 - ARRAYS[FILES[2]])
    _put(tmp_path / "first", GZ2)
    assert datasets.resolve_default_dataset(tmp_path / "first")[0] == "mnist"
    # a folder named by the user is the one place read (digitcore's --data-dir)
    with pytest.raises(DatasetError, match="is the MNIST t10k-images-idx3-ubyte file"):
        datasets.read_folder("fashion-mnist", tmp_path / "env", test_only=True)
    # a file skipped once is known by its recorded hash, not hashed again; a file put in
    # its place is hashed anew, even with the same size and mtime (cp -p)
    _put(tmp_path / "env2", CONTENT)  # (raw: both datasets' files of one size)
    monkeypatch.setenv("DIGITCORE_DATA", str(tmp_path / "env2"))
    calls = []
    real = datasets.read_idx_sha256
    monkeypatch.setattr(datasets, "read_idx_sha256", lambda p: calls.append(p) or real(p))
    datasets.load_dataset("fashion-mnist", download=False)
    assert any(Path(p).parent == tmp_path / "env2" for p in calls), calls
    calls.clear()
    datasets.load_dataset("fashion-mnist", download=False)
    assert not any(Path(p).parent == tmp_path / "env2" for p in calls), calls
    for name, data in CONTENT2.items():  # Fashion-MNIST's files, MNIST's size and times
        target = tmp_path / "env2" / name
        st = target.stat()
        assert st.st_size == len(data)
        (tmp_path / "new").write_bytes(data)
        os.replace(tmp_path / "new", target)
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    (x, _), _ = datasets.load_dataset("fashion-mnist", download=False)
    np.testing.assert_array_equal(x, 255 - ARRAYS[FILES[0]])
    assert any(Path(p).parent == tmp_path / "env2" for p in calls), calls


def test_the_other_datasets_files_in_this_ones_own_folder(server, tmp_path, monkeypatch):
    """MNIST's files in Fashion-MNIST's own subfolder: the advice named
    .../fashion-mnist/fashion-mnist, a folder never looked in."""
    _put(tmp_path / "d" / "fashion-mnist", GZ)
    with pytest.raises(DatasetError, match=re.escape(
            f"{tmp_path / 'd' / 'fashion-mnist'} is Fashion-MNIST's own folder: put "
            f"Fashion-MNIST's files there instead")):
        datasets.load_dataset("fashion-mnist", tmp_path / "d", download=False)


def test_a_killed_downloads_leftover_is_removed_by_the_next(server, tmp_path):
    """A download killed mid-file left its hidden temporary file (up to ~10 MB), which
    nothing removed; one untouched for an hour is removed, a fresh one (a download
    running in another process) is not."""
    dest = tmp_path / "dl"
    dest.mkdir()
    old = dest / f".{FILES[0]}.gz.0123456789ab.tmp"
    fresh = dest / f".{FILES[2]}.gz.ba9876543210.tmp"
    mine = dest / ".notes.txt.0123456789ab.tmp"  # not a download's: left alone
    for p in (old, fresh, mine):
        p.write_bytes(b"partial")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    os.utime(mine, (time.time() - 7200, time.time() - 7200))
    download_dataset("mnist", dest, mirrors=[server("good")], progress=False)
    assert not old.exists() and fresh.exists() and mine.exists()


def test_download_resumes_missing_files_only(server, tmp_path):
    dest = tmp_path / "dl"
    dest.mkdir()
    (dest / (FILES[1] + ".gz")).write_bytes(GZ[FILES[1] + ".gz"])
    paths = download_dataset("mnist", dest, mirrors=[server("good")], progress=False)
    assert len(paths) == 4


def test_corrupt_file_in_cache_is_not_trusted(server, tmp_path):
    dest = tmp_path / "cache" / "mnist"
    download_dataset("mnist", dest, mirrors=[server("good")], progress=False)
    p = dest / (FILES[2] + ".gz")
    p.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x02ab", mtime=0))
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte\.gz.*SHA-256"):
        load_mnist(download=False)


def test_interrupted_download_leaves_no_file(server, tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets.os, "fsync", interrupt)
    (tmp_path / "dl").mkdir()
    with pytest.raises(KeyboardInterrupt):
        download_dataset("mnist", tmp_path / "dl", mirrors=[server("good")], progress=False)
    assert leftovers(tmp_path / "dl") == []
    # Ctrl-C before the first file arrived removes the folders the call made, as an error does
    with pytest.raises(KeyboardInterrupt):
        download_dataset("mnist", tmp_path / "new" / "dl", mirrors=[server("good")],
                         progress=False)
    assert not (tmp_path / "new").exists()


def test_a_folder_another_download_removed_is_made_again(server, tmp_path, monkeypatch):
    """Two processes downloading into one new folder: the first to fail removes it, the
    other, which found it there, must not fail for its absence."""
    dest = tmp_path / "shared" / "dl"
    dest.mkdir(parents=True)
    real = datasets._drop_stale_downloads

    def other_process_gave_up(d):
        real(d)
        d.rmdir()
        d.parent.rmdir()

    monkeypatch.setattr(datasets, "_drop_stale_downloads", other_process_gave_up)
    paths = download_dataset("mnist", dest, mirrors=[server("good")], progress=False)
    assert leftovers(dest) == sorted(f + ".gz" for f in FILES)
    assert gzip.decompress(paths[FILES[0]].read_bytes()) == CONTENT[FILES[0]]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_downloaded_files_take_the_umasks_permissions(server, tmp_path):
    # they were chmod-ed to 0o644 whatever the umask said (every other file digitcore
    # writes is created as open() creates it)
    old = os.umask(0o077)
    try:
        paths = download_dataset("mnist", tmp_path / "dl", mirrors=[server("good")],
                                 progress=False)
    finally:
        os.umask(old)
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in paths.values()} == {oct(0o600)}


def test_progress_bar_only_when_asked(server, tmp_path, capsys):
    download_dataset("mnist", tmp_path / "a", mirrors=[server("good")], progress=True)
    err = capsys.readouterr().err
    assert "Downloading train-images-idx3-ubyte.gz" in err and "100%" in err
    download_dataset("mnist", tmp_path / "b", mirrors=[server("good")])  # stderr not a tty
    assert capsys.readouterr().err == ""


def test_mirror_configuration(monkeypatch):
    spec = datasets._SPECS["mnist"]
    monkeypatch.setenv("DIGITCORE_MNIST_MIRRORS", "http://127.0.0.1:1/a/, http://127.0.0.1:1/b/")
    assert datasets._mirrors(spec, None) == ("http://127.0.0.1:1/a/", "http://127.0.0.1:1/b/")
    assert datasets._mirrors(spec, "http://127.0.0.1:1/c") == ("http://127.0.0.1:1/c",)
    monkeypatch.delenv("DIGITCORE_MNIST_MIRRORS")
    assert datasets._mirrors(spec, None) == datasets.MNIST_MIRRORS
    assert datasets.MNIST_MIRRORS == ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                                      "https://storage.googleapis.com/cvdf-datasets/mnist/")
    assert datasets.FASHION_MNIST_MIRRORS[0].startswith("http://fashion-mnist.s3-website")
    assert datasets._url("http://h/x/", "f.gz") == "http://h/x/f.gz"
    assert datasets._url("http://h/x", "f.gz") == "http://h/x/f.gz"
    with pytest.raises(DatasetError):
        datasets._mirrors(spec, [])


def test_the_command_lines_data_dir_is_the_one_place_read(server, tmp_path, monkeypatch):
    """digitcore train --dataset fashion-mnist --data-dir DIR, with MNIST's files in DIR
    and Fashion-MNIST's in the cache: the search went on past DIR to the cache without a
    word, though the README says a --data-dir given is the one place looked."""
    from digitcore import cli

    _put(tmp_path / "dd", GZ)
    _put(tmp_path / "cache" / "fashion-mnist", GZ2)
    with pytest.raises(DatasetError, match="is the MNIST train-images-idx3-ubyte file"):
        cli._load_data("fashion-mnist", tmp_path / "dd", False, True)
    name, (x, _), _ = cli._load_data("fashion-mnist", None, False, True)  # (the search)
    np.testing.assert_array_equal(x, 255 - ARRAYS[FILES[0]])
    name, (x, _), _ = cli._load_data(None, tmp_path / "dd", False, True)
    assert name == "mnist"
    np.testing.assert_array_equal(x, ARRAYS[FILES[0]])


@pytest.mark.parametrize("timeout", [None, [5, 5], (1,), (1, 2, 3), "soon", 0, -1,
                                     float("nan"), float("inf"), (5, 0), True])
def test_a_bad_timeout_is_named_before_any_mirror_is_tried(tmp_path, timeout):
    """None or [5, 5] was a bare TypeError from float(); (1,), 0 or -1 were reported as
    every mirror failing."""
    with pytest.raises(ValueError, match="timeout must be"):
        download_dataset("mnist", tmp_path / "dl", mirrors=["http://127.0.0.1:9/"],
                         timeout=timeout, progress=False)
    assert not (tmp_path / "dl").exists()


def test_an_empty_mirror_list_in_the_environment_does_not_hide_a_missing_dataset(
        tmp_path, monkeypatch):
    """With $DIGITCORE_MNIST_MIRRORS set to "," a missing dataset was reported as "no
    download mirrors configured"."""
    monkeypatch.setenv("DIGITCORE_MNIST_MIRRORS", ",")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="MNIST not found"):
        load_mnist(tmp_path / "empty", download=False)
    with pytest.raises(DatasetError, match="no download mirrors configured"):
        load_mnist(tmp_path / "empty", download=True)
