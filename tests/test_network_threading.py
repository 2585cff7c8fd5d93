"""Networks and training from several Python threads at once, OpenMP thread control
(threadpoolctl), and sharing a process with PyTorch. (Single ops: test_ops_threading.py.)

Kernels release the GIL, so Python threads really run them at the same time; a Network's
forward pass allocates its own scratch, so one network can serve many threads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import digitcore
from digitcore import Network, Trainer

N_THREADS = 8


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(21)
    x = rng.integers(0, 256, (3000, 784), dtype=np.uint8)
    y = rng.integers(0, 10, 3000)
    return x, y


@pytest.fixture(scope="module")
def trained(data):
    x, y = data
    net = Network([784, 64, 32, 10], seed=0)
    Trainer(net, epochs=1, verbose=0, seed=0).fit(x, y)
    return net


def _run_threads(fn, n=N_THREADS):
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()  # start together so the calls overlap
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_predict_from_8_threads_matches_serial(trained, data):
    x, _ = data
    batches = [x[i * 300:(i + 1) * 300 + 17 * i] for i in range(N_THREADS)]  # uneven sizes
    serial_p = [trained.predict_proba(b) for b in batches]
    serial_l = [trained.predict(b) for b in batches]
    for _ in range(3):
        par = _run_threads(lambda i: (trained.predict_proba(batches[i]),
                                      trained.predict(batches[i])))
        for i, (p, lab) in enumerate(par):
            np.testing.assert_array_equal(p, serial_p[i])
            np.testing.assert_array_equal(lab, serial_l[i])


def test_predict_image_and_evaluate_from_threads(trained, data):
    x, y = data
    img = digitcore.load_dataset("mnist-mini")[1][0][0]  # a real digit (noise is "blank")
    want_digit, want_p = trained.predict_image(img)
    want_eval = trained.evaluate(x[:1000], y[:1000])
    out = _run_threads(lambda i: (trained.predict_image(img), trained.evaluate(x[:1000], y[:1000])))
    for (digit, p), ev in out:
        assert digit == want_digit
        np.testing.assert_array_equal(p, want_p)
        assert ev == want_eval


def test_train_in_one_thread_while_another_predicts(trained, data):
    x, y = data
    # reference: the same training, alone
    ref = Network([784, 48, 10], seed=3)
    # fixed chunks: with time-sized ones the history's loss sums group differently
    ref_hist = Trainer(ref, epochs=3, verbose=0, seed=7, chunk_seconds=None).fit(x, y)
    want = trained.predict_proba(x)

    net = Network([784, 48, 10], seed=3)
    result = {}
    stop = threading.Event()

    def train():
        try:
            result["hist"] = Trainer(net, epochs=3, verbose=0, seed=7,
                                     chunk_seconds=None).fit(x, y)
        finally:
            stop.set()

    def predict():
        n = 0
        while not stop.is_set() or n < 3:
            np.testing.assert_array_equal(trained.predict_proba(x), want)
            n += 1
        result["predictions"] = n

    threads = [threading.Thread(target=train), threading.Thread(target=predict)]
    errors = []

    def guard(t):
        try:
            t.run()
        except BaseException as exc:  # surfaced below
            errors.append(exc)
            stop.set()

    workers = [threading.Thread(target=guard, args=(t,)) for t in threads]
    for w in workers:
        w.start()
    for w in workers:
        w.join(300)
    assert not errors, errors
    assert result["predictions"] >= 3
    # same seed, same thread count: the concurrent run is bit-for-bit the solo run
    np.testing.assert_array_equal(net.flat_parameters, ref.flat_parameters)
    assert result["hist"].loss == ref_hist.loss


def test_two_trainings_in_parallel_threads_are_independent(data):
    x, y = data
    seeds = [(1, 11), (2, 22), (3, 33), (4, 44)]

    def solo(s):
        net = Network([784, 32, 10], seed=s[0])
        Trainer(net, optimizer="adam", epochs=2, verbose=0, seed=s[1], batch_size=64).fit(x, y)
        return net.flat_parameters.copy()

    want = [solo(s) for s in seeds]
    got = _run_threads(lambda i: solo(seeds[i]), n=len(seeds))
    for w, g in zip(want, got):
        np.testing.assert_array_equal(g, w)


def test_data_written_by_another_thread_during_training_is_never_read_out_of_bounds():
    """The sparse first layer reads each batch twice (count the non-zero pixels, then
    place them) from the caller's own array. A thread writing to that array in between
    used to make the second pass write past the counted room (a heap overflow on the
    last row). Now every fit and evaluate either finishes or says the input changed
    (RuntimeError); nothing else, and no sanitizer report (.ci/sanitize runs this)."""
    rng = np.random.default_rng(5)
    x = np.zeros((2048, 784), np.uint8)  # sparse rows (6-12% non-zero: the sparse path)
    x[:, ::16] = rng.integers(1, 256, (2048, 49), dtype=np.uint8)
    y = rng.integers(0, 10, 2048)
    stop = threading.Event()

    def scribble():
        i = 0
        while not stop.is_set():
            x[:, 8::16] = 255 if i % 2 == 0 else 0  # 49 pixels a row on and off
            i += 1

    outcomes = []
    old = digitcore.get_num_threads()
    digitcore.set_num_threads(2)
    writer = threading.Thread(target=scribble)
    writer.start()
    try:
        for k in range(6):
            net = Network([784, 32, 10], seed=k)
            for call in (lambda: Trainer(net, epochs=1, verbose=0, seed=k).fit(x, y),
                         lambda: Trainer(net, epochs=1, batch_size=None, verbose=0,
                                         seed=k).fit(x, y),
                         lambda: net.evaluate(x, y)):
                try:
                    call()
                    outcomes.append("ok")
                except RuntimeError as exc:
                    assert "changed while digitcore read it" in str(exc), exc
                    outcomes.append("changed")
    finally:
        stop.set()
        writer.join()
        digitcore.set_num_threads(old)
    assert len(outcomes) == 18, outcomes
    # (the check is reached: the scribbler writes all the time, and most calls see it)
    if (os.cpu_count() or 1) >= 2:
        assert "changed" in outcomes, outcomes


_RACE = '''
import sys, threading, time
import numpy as np
from digitcore import Network
from digitcore._config import _ops
o = _ops()
case = sys.argv[1]
n = {"gather": 2_000_000, "augment": 20_000, "xent": 400_000, "evaluate": 50_000}[case]
arr = np.zeros(n, np.int64)
# (gather's output is (n, features) float32: one feature keeps 2M rows at 8 MB)
x = np.zeros((1000, 1) if case == "gather" else (1000, 28, 28) if case == "augment"
             else (n, 784), np.uint8)
logits = np.zeros((n, 2), np.float32)
net = Network([784, 8, 10], seed=0)
calls = {
    "gather": lambda: o.gather_u8(x, arr),
    "augment": lambda: o.augment(x, arr, rotate=5.0),
    "xent": lambda: o.softmax_cross_entropy(logits, arr),
    "evaluate": lambda: net.evaluate(x, arr),
}
stop = False
def scribble():  # the array's last entry: far out of range, then valid, over and over
    while not stop:
        arr[-1] = 1 << 40
        arr[-1] = 1
t = threading.Thread(target=scribble, daemon=True)
t.start()
t0 = time.perf_counter()
n = 0
while time.perf_counter() - t0 < float(sys.argv[2]):
    try:
        calls[case]()
    except ValueError as exc:  # (the check saw the bad value: fine)
        assert "outside" in str(exc) or "must be in" in str(exc), exc
    n += 1
stop = True
print("calls", n)
'''


@pytest.mark.parametrize("case", ["gather", "augment", "xent", "evaluate"])
def test_index_and_label_arrays_written_by_another_thread_are_never_read_out_of_bounds(case):
    """Indices (gather, augment, training's order) and labels were checked in the caller's
    array and then read by C from that same array: a thread writing it in between made
    C read far out of bounds (a segfault within a second). C now reads a copy that was
    checked (indices) or checks each label where it reads it (the loss: a changed label
    fails the call with a ValueError)."""
    r = subprocess.run([sys.executable, "-c", _RACE, case, "1.5"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "calls" in r.stdout, (r.returncode, r.stderr[-2000:])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork")
def test_a_child_forked_after_the_team_started_runs_on_one_thread():
    """GCC's OpenMP runtime cannot start a team in a child forked from a process whose
    team it had started: the child's first threaded call waited forever (a
    multiprocessing.Pool worker's predict). Such a child runs on one thread, and says why
    it refuses more."""
    code = '''
        import os, signal
        import numpy as np
        import digitcore
        from digitcore._config import _ops
        digitcore.set_num_threads(2)
        net = digitcore.Network([784, 64, 10], seed=0)
        x = np.random.default_rng(0).integers(0, 256, (3000, 784), dtype=np.uint8)
        digitcore.get_num_threads(), net.predict(x[:10])  # (a query, one thread: no team)
        assert not _ops().team_started()
        want = net.predict(x)  # 152M multiply-adds: the team
        assert _ops().team_started()
        pid = os.fork()
        if pid == 0:
            signal.alarm(30)
            code = 3
            try:
                same = bool((net.predict(x) == want).all())
                one = digitcore.get_num_threads() == 1
                try:
                    digitcore.set_num_threads(2)
                    refused = False
                except RuntimeError as exc:
                    refused = "'spawn'" in str(exc)
                code = 0 if same and one and refused else 5
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
        print("parent", digitcore.get_num_threads())
    '''
    from digitcore import _ops

    if not _ops.have_openmp() or not sys.platform.startswith("linux"):
        pytest.skip("GCC's OpenMP runtime (Linux builds) is the one that cannot fork")
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "child 0" in r.stdout and "parent 2" in r.stdout, r.stdout


# ---------------------------------------------------------------------------- threadpoolctl

threadpoolctl = pytest.importorskip("threadpoolctl")


def _openmp_on():
    from digitcore import _ops

    return bool(_ops.have_openmp())


def test_threadpoolctl_sees_digitcore_openmp():
    if not _openmp_on():
        pytest.skip("digitcore built without OpenMP")
    from digitcore import _ops  # noqa: F401  (loads the OpenMP runtime it links)

    libs = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "openmp"]
    assert libs, threadpoolctl.threadpool_info()
    if sys.platform == "linux":
        # the runtime threadpoolctl found is the one mapped for digitcore's extension
        maps = open("/proc/self/maps").read()
        assert any(os.path.realpath(i["filepath"]) in maps or i["filepath"] in maps
                   for i in libs)


def test_threadpool_limits_bounds_digitcore_threads(trained, data):
    if not _openmp_on():
        pytest.skip("digitcore built without OpenMP")
    x, _ = data
    digitcore.set_num_threads(None)  # the OpenMP default, which threadpoolctl controls
    default = digitcore.get_num_threads()
    want = trained.predict_proba(x)
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        assert digitcore.get_num_threads() == 1
        # results do not depend on the thread count (bitwise, by design)
        np.testing.assert_array_equal(trained.predict_proba(x), want)
    assert digitcore.get_num_threads() == default


def test_threadpool_limits_controls_training_threads(data):
    if not _openmp_on():
        pytest.skip("digitcore built without OpenMP")
    x, y = data
    digitcore.set_num_threads(None)

    def fit():
        net = Network([784, 32, 10], seed=0)
        Trainer(net, epochs=1, verbose=0, seed=0).fit(x, y)
        return net.flat_parameters

    multi = fit()
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        one = fit()
    np.testing.assert_array_equal(one, multi)


def test_threadpool_limits_after_explicit_set_num_threads():
    """A threadpoolctl limit entered after set_num_threads() lowers the count, then restores."""
    if not _openmp_on():
        pytest.skip("digitcore built without OpenMP")
    try:
        digitcore.set_num_threads(2)
        with threadpoolctl.threadpool_limits(1, user_api="openmp"):
            assert digitcore.get_num_threads() == 1
        assert digitcore.get_num_threads() == 2
        # and an explicit request still takes effect inside a limit
        with threadpoolctl.threadpool_limits(1, user_api="openmp"):
            digitcore.set_num_threads(2)
            assert digitcore.get_num_threads() == 2
    finally:
        digitcore.set_num_threads(None)


# ---------------------------------------------------------------------------- with PyTorch

_WITH_TORCH = textwrap.dedent("""
    import sys
    first, second = sys.argv[1], sys.argv[2]
    __import__(first); __import__(second)
    import numpy as np
    import digitcore, torch
    (x, y), (xt, yt) = digitcore.load_dataset("mnist-mini")
    net = digitcore.Network([784, 32, 10], seed=0)
    h = digitcore.Trainer(net, epochs=2, verbose=0, seed=0).fit(x, y)
    assert h.loss[-1] < h.loss[0], h.loss
    assert net.score(xt, yt) > 0.8, net.score(xt, yt)
    a = torch.randn(300, 200, generator=torch.Generator().manual_seed(0))
    b = torch.randn(200, 100, generator=torch.Generator().manual_seed(1))
    ref = a.double() @ b.double()
    assert torch.allclose((a @ b).double(), ref, atol=1e-3)
    # and the two interleaved, with both thread pools busy
    t = digitcore.modelio.to_torch(net)
    with torch.no_grad():
        xf = x[:64].reshape(64, -1).astype(np.float32) / 255
        tp = torch.softmax(t(torch.from_numpy(xf)), 1).numpy()
    np.testing.assert_allclose(tp, net.predict_proba(x[:64]), atol=1e-5)
    print("ok", torch.__version__, torch.get_num_threads(), digitcore.get_num_threads())
""")


@pytest.mark.parametrize("order", [("torch", "digitcore"), ("digitcore", "torch")])
def test_digitcore_and_torch_in_one_process(order):
    pytest.importorskip("torch")
    r = subprocess.run([sys.executable, "-c", _WITH_TORCH, *order], capture_output=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    assert r.stdout.startswith(b"ok")
