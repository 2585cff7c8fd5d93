"""Fault injection: downloads that die, lie or stall, a full disk, a process killed while
saving, Ctrl-C in the middle of an epoch.

After every fault the cache and the model file must be in the old good state or the new
good state (never a partial or corrupt file that a later call would trust), and the next
call must work. Servers are local http.server instances on 127.0.0.1 only; the cache is a
temporary directory (DIGITCORE_CACHE_DIR) and the mirrors are overridden with
DIGITCORE_MNIST_MIRRORS, as in test_download.py.
"""

from __future__ import annotations

import dataclasses
import errno
import gzip
import hashlib
import http.server
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import digitcore
from digitcore import DatasetError, ModelFormatError, Network, Trainer, datasets, idx, modelio
from digitcore.datasets import FILES, download_dataset, load_mnist
from digitcore.idx import idx_header, read_idx, write_idx

N_TRAIN, N_TEST = 60, 20
# a process's return code after Popen.kill(): SIGKILL on POSIX; TerminateProcess(handle, 1)
# on Windows, which has no SIGKILL
KILLED = -signal.SIGKILL if os.name == "posix" else 1
RNG = np.random.default_rng(11)
ARRAYS = {
    FILES[0]: RNG.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
    FILES[1]: (np.arange(N_TRAIN) % 10).astype(np.uint8),
    FILES[2]: RNG.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
    FILES[3]: (np.arange(N_TEST) % 10).astype(np.uint8),
}
CONTENT = {f: idx_header(a) + a.tobytes() for f, a in ARRAYS.items()}
GZ = {f + ".gz": gzip.compress(c, mtime=0) for f, c in CONTENT.items()}
SHA = {f: hashlib.sha256(c).hexdigest() for f, c in CONTENT.items()}
SIZES = {f: len(c) for f, c in CONTENT.items()}


class _Handler(http.server.BaseHTTPRequestHandler):
    release = threading.Event()  # set at teardown so stalled handlers end

    def log_message(self, *args):
        pass

    def do_GET(self):
        _, mode, name = self.path.split("/", 2)
        good = GZ.get(name)
        if good is None:
            self.send_error(404)
            return
        if mode == "wrong":  # a valid gzip of the right size whose content differs
            raw = bytearray(gzip.decompress(good))
            raw[len(raw) // 2] ^= 0x01
            good = gzip.compress(bytes(raw), mtime=0)
        self.send_response(200)
        self.send_header("Content-Length", str(len(good)))
        self.end_headers()
        if mode in ("good", "wrong"):
            self.wfile.write(good)
        elif mode == "die":  # the server process dies half-way: connection reset
            self.wfile.write(good[: len(good) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
        elif mode == "drip":  # slow but correct: lets a test kill the client mid-file
            try:
                for i in range(0, len(good), 512):
                    self.wfile.write(good[i:i + 512])
                    self.wfile.flush()
                    if self.release.wait(0.05):
                        break
            except (BrokenPipeError, ConnectionResetError):
                pass  # the killed client: expected, not worth a traceback in the log
        elif mode == "stall":  # sends a little, then nothing until the test ends
            self.wfile.write(good[:100])
            self.wfile.flush()
            self.release.wait(30)


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    assert httpd.server_address[0] == "127.0.0.1"
    port = httpd.server_address[1]
    yield lambda mode: f"http://127.0.0.1:{port}/{mode}/"
    _Handler.release.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def cache(monkeypatch, tmp_path):
    d = tmp_path / "cache"
    monkeypatch.setenv("DIGITCORE_CACHE_DIR", str(d))
    monkeypatch.delenv("DIGITCORE_DATA", raising=False)
    monkeypatch.setenv("DIGITCORE_MNIST_MIRRORS", "http://127.0.0.1:9/")  # closed port
    monkeypatch.setenv("DIGITCORE_FASHION_MNIST_MIRRORS", "http://127.0.0.1:9/")
    spec = dataclasses.replace(datasets._SPECS["mnist"], sha256=dict(SHA), sizes=dict(SIZES))
    monkeypatch.setitem(datasets._SPECS, "mnist", spec)
    return d


def _trusted_files(d: Path) -> list[str]:
    """Files a later load would pick up (temp files start with a dot)."""
    return sorted(p.name for p in d.rglob("*") if p.is_file() and not p.name.startswith("."))


def _assert_good_mnist(result):
    (xt, yt), (xs, ys) = result
    np.testing.assert_array_equal(xt, ARRAYS[FILES[0]])
    np.testing.assert_array_equal(yt, ARRAYS[FILES[1]])
    np.testing.assert_array_equal(xs, ARRAYS[FILES[2]])
    np.testing.assert_array_equal(ys, ARRAYS[FILES[3]])


def _next_call_works(server, monkeypatch, cache):
    monkeypatch.setenv("DIGITCORE_MNIST_MIRRORS", server("good"))
    _assert_good_mnist(load_mnist(download=True))
    assert _trusted_files(cache / "mnist") == sorted(f + ".gz" for f in FILES)
    # and from the cache, without the network
    monkeypatch.setenv("DIGITCORE_MNIST_MIRRORS", "http://127.0.0.1:9/")
    _assert_good_mnist(load_mnist(download=False))


# ---------------------------------------------------------------------------- downloads

@pytest.mark.parametrize("mode", ["die", "wrong"])
def test_bad_server_leaves_no_trusted_file(server, cache, monkeypatch, mode):
    monkeypatch.setenv("DIGITCORE_MNIST_MIRRORS", server(mode))
    with pytest.raises(DatasetError, match="could not download"):
        load_mnist(download=True)
    assert _trusted_files(cache / "mnist") == []
    assert not list((cache / "mnist").glob(".*.tmp"))  # cleaned up, not just ignored
    _next_call_works(server, monkeypatch, cache)


def test_bad_mirror_falls_through_to_good_one(server, cache, monkeypatch):
    monkeypatch.setenv("DIGITCORE_MNIST_MIRRORS", f"{server('wrong')},{server('good')}")
    _assert_good_mnist(load_mnist(download=True))


def test_stall_past_the_timeout(server, cache):
    t0 = time.monotonic()
    with pytest.raises(DatasetError, match="timed out"):
        download_dataset("mnist", mirrors=[server("stall")], timeout=(2.0, 1.0))
    assert time.monotonic() - t0 < 15  # one read timeout per file, not the stall length
    assert _trusted_files(cache / "mnist") == []


def test_stall_then_good(server, cache, monkeypatch):
    with pytest.raises(DatasetError):
        download_dataset("mnist", mirrors=[server("stall")], timeout=1.0)
    _next_call_works(server, monkeypatch, cache)


_CHILD_DOWNLOAD = textwrap.dedent("""
    import dataclasses, json, os, sys
    from digitcore import datasets
    cfg = json.loads(os.environ["FAULT_CFG"])
    datasets._SPECS["mnist"] = dataclasses.replace(datasets._SPECS["mnist"], sha256=cfg["sha"],
                                                   sizes=cfg["sizes"])
    print("started", flush=True)
    datasets.download_dataset("mnist")
    print("finished", flush=True)
""")


def _child_env(**extra):
    env = dict(os.environ)
    env.update(extra)
    return env


def test_client_killed_mid_download(server, cache, monkeypatch):
    env = _child_env(DIGITCORE_MNIST_MIRRORS=server("drip"), DIGITCORE_CACHE_DIR=str(cache),
                     FAULT_CFG=json.dumps({"sha": SHA, "sizes": SIZES}))
    proc = subprocess.Popen([sys.executable, "-c", _CHILD_DOWNLOAD], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        # wait until the first file is in flight (its temp file exists), then SIGKILL
        while not list(cache.glob("mnist/.*.tmp")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "child never started downloading"
            time.sleep(0.02)
        time.sleep(0.2)
        proc.kill()  # (SIGKILL; TerminateProcess on Windows)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == KILLED
    # a killed process cannot clean up: its .tmp file may stay, but nothing is trusted
    assert _trusted_files(cache / "mnist") == []
    assert datasets.find_dataset_files("mnist") is None
    _next_call_works(server, monkeypatch, cache)


def test_corrupted_cached_file_is_reported_and_replaceable(server, cache, monkeypatch):
    monkeypatch.setenv("DIGITCORE_MNIST_MIRRORS", server("good"))
    load_mnist(download=True)
    target = cache / "mnist" / (FILES[2] + ".gz")
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF  # bit rot after the download
    target.write_bytes(bytes(data))
    with pytest.raises(DatasetError):
        load_mnist(download=True)
    target.unlink()  # what the message tells the user to do
    _assert_good_mnist(load_mnist(download=True))


# ---------------------------------------------------------------------------- full disk

class _FullDisk:
    """A file wrapper whose writes fail with ENOSPC once `budget` bytes are written."""

    def __init__(self, f, budget):
        self._f, self._left = f, budget

    def write(self, data):
        n = len(memoryview(data).cast("B"))
        if n > self._left:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._left -= n
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def _full_disk(monkeypatch, module, budget=64):
    real = os.fdopen

    def fdopen(fd, *args, **kwargs):
        return _FullDisk(real(fd, *args, **kwargs), budget)

    monkeypatch.setattr(module.os, "fdopen", fdopen)
    return lambda: monkeypatch.setattr(module.os, "fdopen", real)


def test_full_disk_during_model_save_keeps_the_old_model(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    old, new = Network([784, 32, 10], seed=1), Network([784, 32, 10], seed=2)
    old.save(path)
    undo = _full_disk(monkeypatch, modelio)
    with pytest.raises(OSError) as info:
        new.save(path)
    assert info.value.errno == errno.ENOSPC
    undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]  # no temp left
    np.testing.assert_array_equal(digitcore.load_model(path).flat_parameters,
                                  old.flat_parameters)
    new.save(path)  # the next call works
    np.testing.assert_array_equal(digitcore.load_model(path).flat_parameters,
                                  new.flat_parameters)


def test_full_disk_during_write_idx_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "x.idx.gz"
    write_idx(path, ARRAYS[FILES[0]])
    undo = _full_disk(monkeypatch, idx)
    with pytest.raises(OSError):
        write_idx(path, ARRAYS[FILES[2]])
    undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.idx.gz"]
    np.testing.assert_array_equal(read_idx(path), ARRAYS[FILES[0]])


def test_full_disk_during_download(server, cache, monkeypatch):
    monkeypatch.setenv("DIGITCORE_MNIST_MIRRORS", server("good"))
    undo = _full_disk(monkeypatch, datasets, budget=1000)
    with pytest.raises(DatasetError, match="No space left|could not download"):
        load_mnist(download=True)
    undo()
    assert _trusted_files(cache / "mnist") == []
    assert not list((cache / "mnist").glob(".*"))
    _next_call_works(server, monkeypatch, cache)


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 256 KiB tmpfs (needs root and mount permission; skipped otherwise)."""
    d = tmp_path / "tiny"
    d.mkdir()
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root on Linux")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(d)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_real_full_disk_save_model(tiny_tmpfs):
    path = tiny_tmpfs / "m.safetensors"
    small = Network([784, 16, 10], seed=1)  # ~50 KB
    small.save(path)
    big = Network([784, 128, 10], seed=2)  # ~400 KB: cannot fit
    with pytest.raises(OSError) as info:
        big.save(path)
    assert info.value.errno == errno.ENOSPC
    assert sorted(p.name for p in tiny_tmpfs.iterdir()) == ["m.safetensors"]
    np.testing.assert_array_equal(digitcore.load_model(path).flat_parameters,
                                  small.flat_parameters)
    other = Network([784, 16, 10], seed=3)
    other.save(path)  # space was released: the next save works
    np.testing.assert_array_equal(digitcore.load_model(path).flat_parameters,
                                  other.flat_parameters)


def test_real_full_disk_download(server, cache, monkeypatch, tiny_tmpfs):
    # 60 random 28x28 images are ~47 KB gzipped; fill the disk so the download cannot fit
    filler = tiny_tmpfs / "filler"
    filler.write_bytes(os.urandom(220 * 1024))
    monkeypatch.setenv("DIGITCORE_MNIST_MIRRORS", server("good"))
    with pytest.raises(DatasetError, match="No space left"):
        download_dataset("mnist", tiny_tmpfs / "mnist")
    assert _trusted_files(tiny_tmpfs / "mnist") == []
    filler.unlink()
    download_dataset("mnist", tiny_tmpfs / "mnist")
    _assert_good_mnist(load_mnist(tiny_tmpfs / "mnist", download=False))


# ---------------------------------------------------------------------------- killed mid-save

_CHILD_SAVE = textwrap.dedent("""
    import sys
    import digitcore
    path = sys.argv[1]
    nets = [digitcore.Network([784, 512, 256, 10], seed=s) for s in (1, 2)]
    print("ready", flush=True)
    i = 0
    while True:
        nets[i % 2].save(path)
        i += 1
""")


def test_process_killed_mid_save(tmp_path):
    path = tmp_path / "big.safetensors"
    sizes = [784, 512, 256, 10]
    want = {s: Network(sizes, seed=s).flat_parameters for s in (1, 2)}
    rng = np.random.default_rng(0)
    for round_ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", _CHILD_SAVE, str(path)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert proc.stdout.readline().strip() == b"ready", proc.communicate()
            while not path.exists():
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.005)
            time.sleep(float(rng.uniform(0.05, 0.6)))  # land anywhere in a save
            proc.kill()  # (SIGKILL; TerminateProcess on Windows)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == KILLED
        net = digitcore.load_model(path)  # never a partial file
        got = net.flat_parameters
        assert any(np.array_equal(got, w) for w in want.values()), f"round {round_}"
    # what a killed writer leaves behind is only hidden temp files, never the target
    leftovers = [p.name for p in tmp_path.iterdir() if p != path]
    assert all(n.startswith(".big.safetensors.") and n.endswith(".tmp") for n in leftovers)
    Network(sizes, seed=5).save(path)  # the next save works
    np.testing.assert_array_equal(digitcore.load_model(path).flat_parameters,
                                  Network(sizes, seed=5).flat_parameters)


def test_truncated_model_file_is_a_clear_error(tmp_path):
    path = tmp_path / "m.safetensors"
    Network([784, 16, 10], seed=0).save(path)
    data = path.read_bytes()
    for cut in (0, 4, 8, 100, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(ModelFormatError):
            digitcore.load_model(path)


# ---------------------------------------------------------------------------- Ctrl-C mid-epoch

class _InterruptingKernel:
    """Wraps the network's C view: the n-th train() call ends with KeyboardInterrupt,
    either before running (Ctrl-C between chunks) or after (during the chunk)."""

    def __init__(self, real, at_call, after):
        self._real, self._at, self._after, self.calls = real, at_call, after, 0

    def train(self, *args):
        self.calls += 1
        if self.calls == self._at and not self._after:
            raise KeyboardInterrupt
        out = self._real.train(*args)
        if self.calls == self._at:
            raise KeyboardInterrupt
        return out

    def __getattr__(self, name):
        return getattr(self._real, name)


@pytest.mark.parametrize("after", [False, True])
def test_keyboard_interrupt_mid_epoch(tmp_path, monkeypatch, after):
    rng = np.random.default_rng(5)
    chunk = digitcore.trainer._CHUNK_SAMPLES
    n = int(2.5 * chunk)  # 3 chunks per epoch, fixed (chunk_seconds=None below)
    x = rng.integers(0, 256, (n, 784), dtype=np.uint8)
    y = rng.integers(0, 10, n)
    net = Network([784, 32, 10], seed=0)
    path = tmp_path / "m.safetensors"
    net.save(path)
    before = net.flat_parameters.copy()
    wrapper = {}
    real_net = Network.c_net

    def _net(self, dropout=0.0):
        if self is not net:
            return real_net(self, dropout)
        if "k" not in wrapper:
            wrapper["k"] = _InterruptingKernel(real_net(self, dropout), at_call=5, after=after)
        return wrapper["k"]

    monkeypatch.setattr(Network, "c_net", _net)
    hist = Trainer(net, epochs=5, verbose=0, seed=0, chunk_samples=chunk,
                   chunk_seconds=None).fit(x, y)
    assert hist.interrupted
    assert len(hist) == 1  # epoch 1 completed (3 chunks), epoch 2 interrupted mid-way
    assert np.isfinite(net.flat_parameters).all()
    assert not np.array_equal(net.flat_parameters, before)
    assert net.predict(x[:5]).shape == (5,)
    assert net.training_summary["epochs"] == 1
    monkeypatch.setattr(Network, "c_net", real_net)
    # the model file was not touched; saving now and training again both work
    np.testing.assert_array_equal(digitcore.load_model(path).flat_parameters, before)
    net.save(path)
    np.testing.assert_array_equal(digitcore.load_model(path).flat_parameters,
                                  net.flat_parameters)
    hist2 = Trainer(net, epochs=1, verbose=0, seed=0).fit(x[:2000], y[:2000])
    assert not hist2.interrupted and len(hist2) == 1


@pytest.mark.skipif(os.name == "nt", reason="SIGINT delivery to self differs on Windows")
def test_real_sigint_mid_epoch_in_a_subprocess(tmp_path, sigint_deliverable):
    code = textwrap.dedent("""
        import numpy as np, digitcore, sys
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (60000, 784), dtype=np.uint8); y = rng.integers(0, 10, 60000)
        net = digitcore.Network([784, 256, 10], seed=0)
        print("training", flush=True)
        h = digitcore.Trainer(net, epochs=100, verbose=0, seed=0).fit(x, y)
        assert h.interrupted and len(h) < 100
        assert np.isfinite(net.flat_parameters).all()
        net.save(sys.argv[1])
        print("saved", len(h), flush=True)
    """)
    path = tmp_path / "m.safetensors"
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"training"
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert out.startswith(b"saved")
    assert digitcore.load_model(path).predict(np.zeros((1, 784), np.uint8)).shape == (1,)


# ---------------------------------------------------------------------------- bug corpus

CORPUS = Path(__file__).parent / "corpus"


def _corpus(kind):
    d = CORPUS / kind
    files = sorted(p for p in d.iterdir() if p.is_file()) if d.is_dir() else []
    return files or [pytest.param(None, marks=pytest.mark.skip(reason=f"no {kind} entries"))]


@pytest.mark.parametrize("case", _corpus("training"), ids=lambda p: getattr(p, "stem", "none"))
def test_corpus_replay_training(case):
    from digitcore.errors import TrainingDivergedError

    c = json.loads(case.read_text())
    rng = np.random.default_rng(c["data_seed"])
    x = rng.integers(0, 256, (c["n"], c["layer_sizes"][0]), dtype=np.uint8)
    y = rng.integers(0, c["layer_sizes"][-1], c["n"])
    net = Network(c["layer_sizes"], seed=0)
    try:
        Trainer(net, optimizer=c["optimizer"], lr=c["lr"], epochs=c["epochs"],
                batch_size=c["batch_size"], verbose=0, seed=0).fit(x, y)
    except TrainingDivergedError:
        pass
    assert np.isfinite(net.flat_parameters).all(), c["bug"]
    assert np.isfinite(net.predict_proba(x)).all(), c["bug"]


FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
FUZZ_TARGETS = ("idx", "model", "image", "serve")


def _fuzz_seeds():
    """Every committed seed of every fuzz harness (fuzz/corpus/<target>/)."""
    cases = [pytest.param(kind, path, id=f"{kind}/{path.name}")
             for kind in FUZZ_TARGETS
             for path in sorted((FUZZ / "corpus" / kind).glob("*")) if path.is_file()]
    reason = (f"no fuzz seeds in {FUZZ}/corpus: copy the repository's fuzz/ beside tests/ "
              "(the sdist and .ci/run do)")
    return cases or [pytest.param(None, None, marks=pytest.mark.skip(reason=reason))]


_harnesses = {}


def _harness(kind):
    """fuzz/fuzz_<kind>.py imported with a stand-in for atheris (only Setup/Fuzz need it)."""
    if kind not in _harnesses:
        import contextlib
        import importlib.util
        import types
        import warnings

        fake = types.ModuleType("atheris")
        fake.instrument_imports = lambda **kw: contextlib.nullcontext()
        saved = {name: sys.modules.get(name) for name in ("atheris", "_common")}
        sys.modules["atheris"] = fake
        sys.path.insert(0, str(FUZZ))
        try:
            from PIL import Image
            max_pixels = Image.MAX_IMAGE_PIXELS
            with warnings.catch_warnings():  # the harnesses silence warnings globally
                spec = importlib.util.spec_from_file_location(f"fuzz_{kind}",
                                                              FUZZ / f"fuzz_{kind}.py")
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
            Image.MAX_IMAGE_PIXELS = max_pixels
        finally:
            sys.path.remove(str(FUZZ))
            for name, old in saved.items():
                if old is None:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = old
        _harnesses[kind] = module
    return _harnesses[kind]


@pytest.mark.parametrize("kind, seed", _fuzz_seeds())
def test_fuzz_seed_replay(kind, seed, monkeypatch):
    """Each committed fuzz seed through its harness's own TestOneInput: the input is
    accepted and passes the harness's checks, or is rejected with the documented error;
    any scratch file it wrote is gone afterwards (libFuzzer's exit skips atexit)."""
    harness = _harness(kind)
    import contextlib
    import warnings

    common = getattr(harness, "_common", None)
    written = []
    if common is not None:
        real = common.scratch

        @contextlib.contextmanager
        def recording(data, suffix=""):
            with real(data, suffix) as path:
                written.append(path)
                assert Path(path).read_bytes() == data
                yield path

        monkeypatch.setattr(common, "scratch", recording)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # as in the harness: Pillow's bomb warnings
        harness.TestOneInput(seed.read_bytes())
    if kind in ("idx", "model"):  # these read every input from a file
        assert len(written) == 1
    assert [p for p in written if os.path.exists(p)] == []
