"""Single ops and threads (whole networks: test_network_threading.py): results independent
of the OpenMP thread count, kernels safe and deterministic when called from 8 Python
threads at once, and the GIL released while C runs.

Sizes here are above the kernels' parallel thresholds (64 Ki elements for cheap elementwise
ops, 8 Ki for transcendental ones, 16 Ki per sum_squares chunk, ~2 Ki rows of 10 classes for
softmax), so the 2-thread runs really split the work.
"""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from digitcore import _ops
from digitcore import ops


def make_inputs(seed=0, n=300_007):
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    return dict(
        v=f(n), v2=f(n), logits=f(4001, 10) * 5, labels=rng.integers(0, 10, 4001),
        x=f(1500, 97), w=f(61, 97), b=f(61), dout=f(1500, 61),
        u8=rng.integers(0, 256, (3000, 784), dtype=np.uint8), idx=rng.integers(0, 3000, 2500),
    )


def run_all(d):
    """Every kernel on large inputs; returns name -> result (arrays/scalars)."""
    out = {}
    for kind in ("relu", "leaky_relu", "sigmoid", "tanh"):
        y = ops.activation_forward(d["v"], kind, 0.1)
        out[f"{kind}_fwd"] = y
        out[f"{kind}_bwd"] = ops.activation_backward(d["v2"], y, kind, 0.1)
    out["softmax"] = ops.softmax(d["logits"])
    out["xent"] = ops.softmax_cross_entropy(d["logits"], d["labels"], 0.1,
                                            return_n_correct=True)
    out["gather_u8"] = ops.gather_u8(d["u8"], d["idx"], 1 / 255, -0.5)
    out["gather_f32"] = ops.gather_f32(d["x"], d["idx"] % 1500, 2.0, 1.0)
    out["sum_squares"] = ops.sum_squares(d["v"])
    out["dropout"] = ops.dropout_forward(d["v"], 0.3, 1234, 5)
    out["dropout_bwd"] = ops.dropout_backward(d["v2"], out["dropout"][1], 0.3)
    p, vel = d["v"].copy(), np.zeros_like(d["v"])
    ops.sgd_update(p, d["v2"], vel, lr=0.1, momentum=0.9, nesterov=True, l2=1e-3)
    out["sgd"] = (p, vel)
    p, sq = d["v"].copy(), np.zeros_like(d["v"])
    ops.rmsprop_update(p, d["v2"], sq, lr=0.01, l2=1e-3)
    out["rmsprop"] = (p, sq)
    p, m, v = d["v"].copy(), np.zeros_like(d["v"]), np.zeros_like(d["v"])
    for step in (1, 2):
        ops.adam_update(p, d["v2"], m, v, step, lr=1e-3, weight_decay=0.01)
    out["adam"] = (p, m, v)
    s = d["v"].copy()
    ops.scale_inplace(s, 0.37)
    out["scale"] = s
    gs = [d["v"].copy(), d["x"].copy()]
    out["clip"] = (ops.clip_grad_norm(gs, 1.0), *gs)
    out["dense_fwd"] = ops.dense_forward(d["x"], d["w"], d["b"], "tanh")
    out["dense_bwd"] = ops.dense_backward(d["dout"], d["x"], d["w"])
    return out


def flatten(v):
    if isinstance(v, tuple):
        for item in v:
            yield from flatten(item)
    else:
        yield v


def assert_identical(a, b, names=None):
    for k in names or a:
        for x, y in zip(flatten(a[k]), flatten(b[k]), strict=True):
            if isinstance(x, np.ndarray):
                assert x.dtype == y.dtype and x.shape == y.shape, k
                assert x.tobytes() == y.tobytes(), f"{k} differs bitwise"
            else:
                assert x == y, f"{k}: {x!r} != {y!r}"


# no kernel does a thread-dependent reduction (the GEMM, behind dense_fwd/dense_bwd, sums
# in the same order on any thread count: docs/ARCHITECTURE.md, Determinism): bitwise
# equality is the spec
ALL_KERNELS = list(run_all(make_inputs(n=10)))


@pytest.mark.skipif(not _ops.have_openmp(), reason="built without OpenMP")
def test_one_vs_two_threads_bitwise(num_threads):
    d = make_inputs()
    with num_threads(1):
        r1 = run_all(d)
    with num_threads(2):
        r2 = run_all(d)
    assert_identical(r1, r2, ALL_KERNELS)
    assert {"dense_fwd", "dense_bwd"} <= set(ALL_KERNELS)


def test_repeat_is_bitwise_identical():
    d = make_inputs(1, n=70_001)
    assert_identical(run_all(d), run_all(d))


def test_eight_python_threads_match_serial():
    inputs = [make_inputs(seed, n=70_001) for seed in range(4)]
    serial = [run_all(d) for d in inputs]
    jobs = [i % 4 for i in range(16)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: run_all(inputs[i]), jobs))
    for i, res in zip(jobs, results):
        assert_identical(serial[i], res)


def _other_thread_steps_during(call) -> list[int]:
    """How many loop steps this (main) thread makes while another thread runs ``call()``
    three times, one count per call. The switch interval is made 100 s, so a thread
    holding the GIL keeps it until it releases it: a call that holds the GIL throughout
    counts 0, whatever the machine's speed."""
    counter = [0]
    counts = []

    def worker():
        for _ in range(3):
            before = counter[0]
            call()
            counts.append(counter[0] - before)

    old = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        t = threading.Thread(target=worker)
        t.start()
        while t.is_alive():
            counter[0] += 1
            time.sleep(0)  # (releases the GIL, so the worker can take it back)
        t.join()
    finally:
        sys.setswitchinterval(old)
    return counts


def test_gil_is_released_during_kernels(num_threads):
    """While one thread runs a long kernel, another Python thread keeps running."""
    x = np.random.default_rng(0).standard_normal(6_000_000).astype(np.float32)
    out = np.empty_like(x)
    with num_threads(1):
        steps = _other_thread_steps_during(lambda: ops.tanh_forward(x, out=out))
    # (any step: a call holding the GIL counts 0 in every call; one call of a few ms may
    # find no free core for this thread on a loaded machine)
    assert sum(steps) > 0, steps
    if getattr(sys, "_is_gil_enabled", lambda: True)():  # (a free-threaded build has none)
        # the control: a call that holds the GIL (a Python loop) lets no step through
        assert _other_thread_steps_during(lambda: sum(range(300_000))) == [0, 0, 0]
