"""L1 regularization: ``l1 * sign(w)`` added to each weight's gradient (0 where w == 0), in
the C update kernels of every optimizer, checked against ops_ref; through Trainer, the CLI,
model metadata and checkpoints; and what it is for: many weights driven to (near) zero.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

import digitcore
from digitcore import Network, Trainer, ops, optim
from digitcore import ops_ref as ref
from digitcore.checkpoint import CheckpointError

EPS = float(np.finfo(np.float32).eps)


def _params(rng, n):
    """float32 values of both signs with exact zeros among them (sign(0) must be 0)."""
    p = rng.standard_normal(n).astype(np.float32)
    p[::5] = 0.0
    return p


def test_worked_example():
    # lr 0.1, l1 0.2, no gradient: each nonzero weight moves 0.02 toward 0; 0 stays 0
    p = np.array([0.5, -0.5, 0.0, 0.01], np.float32)
    ops.sgd_update(p, np.zeros(4, np.float32), lr=0.1, l1=0.2)
    f = np.float32
    np.testing.assert_array_equal(p, [f(0.5) - f(0.1) * f(0.2), f(-0.5) + f(0.1) * f(0.2), 0.0,
                                      f(0.01) - f(0.1) * f(0.2)])
    # with l2 as well: g = grad + l2 * p + l1 * sign(p)
    p = np.array([1.0, -2.0], np.float32)
    ops.sgd_update(p, np.float32([0.5, 0.5]), lr=0.5, l2=0.25, l1=0.5)
    np.testing.assert_allclose(p, [1.0 - 0.5 * (0.5 + 0.25 + 0.5),
                                   -2.0 - 0.5 * (0.5 - 0.5 - 0.5)], rtol=0, atol=1e-7)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n", [1, 7, 16385, 70001])
@pytest.mark.parametrize("l2", [0.0, 1e-2])
@pytest.mark.parametrize("kind", ["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"])
def test_update_kernels_match_the_reference(kind, l2, n, threads):
    rng = np.random.default_rng(n + int(l2 * 100))
    l1, lr = 3e-2, 1e-2
    p = _params(rng, n)
    s1, s2 = np.zeros(n, np.float32), np.zeros(n, np.float32)
    rp, rs1, rs2 = p.astype(np.float64), np.zeros(n), np.zeros(n)
    old = digitcore.get_num_threads()
    digitcore.set_num_threads(threads)
    try:
        for step in range(1, 4):
            g = rng.standard_normal(n).astype(np.float32)
            g[1::7] = 0.0
            before = rp.copy()
            if kind in ("sgd", "momentum", "nesterov"):
                mom = 0.0 if kind == "sgd" else 0.9
                ops.sgd_update(p, g, s1 if mom else None, lr=lr, momentum=mom,
                               nesterov=kind == "nesterov", l2=l2, l1=l1)
                ref.sgd_update(rp, g.astype(np.float64), rs1 if mom else None, lr=lr,
                               momentum=mom, nesterov=kind == "nesterov", l2=l2, l1=l1)
                scale = np.abs(before) + lr * 3 * (np.abs(g) + l2 * np.abs(before) + l1
                                                   + 0.9 * np.abs(rs1))
            elif kind == "rmsprop":
                ops.rmsprop_update(p, g, s1, lr=lr, l2=l2, l1=l1)
                ref.rmsprop_update(rp, g.astype(np.float64), rs1, lr=lr, l2=l2, l1=l1)
                gg = np.abs(g) + l2 * np.abs(before) + l1
                scale = np.abs(before) + 4 * lr * gg / (np.sqrt(rs1) + 1e-8)
            else:
                wd = 0.1 if kind == "adamw" else 0.0
                ops.adam_update(p, g, s1, s2, step, lr=lr, l2=l2, l1=l1, weight_decay=wd)
                ref.adam_update(rp, g.astype(np.float64), rs1, rs2, step, lr=lr, l2=l2, l1=l1,
                                weight_decay=wd)
                scale = np.abs(before) + lr * 10
            # a handful of float32 roundings per element (test_ops.py's "optim" entry);
            # the sign is taken of the same float32 value on both sides, so it never flips
            np.testing.assert_array_less(np.abs(p - rp), 32 * EPS * scale + 1e-30,
                                         err_msg=f"{kind} step {step}")
            rp = p.astype(np.float64)  # keep the two in step: compare single updates
            rs1, rs2 = s1.astype(np.float64), s2.astype(np.float64)
    finally:
        digitcore.set_num_threads(old)


def test_zero_l1_changes_nothing_and_zero_weights_stay():
    rng = np.random.default_rng(0)
    p = _params(rng, 1000)
    g = rng.standard_normal(1000).astype(np.float32)
    a, b = p.copy(), p.copy()
    ma, va, mb, vb = (np.zeros(1000, np.float32) for _ in range(4))
    ops.adam_update(a, g, ma, va, 1, lr=1e-2, l2=1e-3)
    ops.adam_update(b, g, mb, vb, 1, lr=1e-2, l2=1e-3, l1=0.0)
    assert a.tobytes() == b.tobytes()
    # no gradient: a weight at exactly 0 gets no L1 push (subgradient 0 at 0)
    z = np.zeros(8, np.float32)
    ops.sgd_update(z, np.zeros(8, np.float32), lr=1.0, l1=5.0)
    assert not z.any()


@pytest.mark.parametrize("bad", [-1e-3, float("nan"), float("inf"), "x", True])
def test_bad_l1_is_refused_naming_it(bad):
    net = Network([4, 3], seed=0)
    with pytest.raises(ValueError, match="l1 must be"):
        Trainer(net, l1=bad)
    if not isinstance(bad, (str, bool)):
        p = np.zeros(3, np.float32)
        with pytest.raises(ValueError, match="l1 must be"):
            ops.sgd_update(p, p.copy(), l1=bad)
        with pytest.raises(ValueError, match="l1 must be"):
            ops.adam_update(p, p.copy(), p.copy(), p.copy(), 1, l1=bad)
        with pytest.raises(ValueError, match="l1 must be"):
            ops.rmsprop_update(p, p.copy(), p.copy(), l1=bad)


def test_cli_rejects_a_negative_l1():
    r = subprocess.run([sys.executable, "-m", "digitcore", "train", "--dataset", "mnist-mini",
                        "--epochs", "1", "--l1", "-0.5"], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert "l1 must be >= 0" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("name", ["sgd", "momentum", "rmsprop", "adam", "adamw"])
def test_fused_loop_matches_update_params(name, rng):
    """Two steps of the C training loop with l1 equal two update_params steps from Python
    on the same gradients (weights penalized, biases not)."""
    x = rng.integers(0, 256, size=(32, 12), dtype=np.uint8)
    y = rng.integers(0, 3, size=32)
    a = Network([12, 7, 3], seed=1)
    b = a.copy()
    opt_a = optim.get_optimizer(name, 0.05)
    Trainer(a, optimizer=opt_a, batch_size=32, epochs=2, l1=0.02, l2=0.01, shuffle=False,
            verbose=0, seed=0).fit(x, y)
    opt_b = optim.get_optimizer(name, 0.05)
    for _ in range(2):
        probe = b.copy()
        grads = np.empty(b.n_params, np.float32)
        c_net = probe.c_net()
        c_net.sparse_input = "never"
        c_net.train(np.ascontiguousarray(x), y.astype(np.int64), np.arange(32, dtype=np.int64),
                    32, np.zeros(1, np.float32), 1 / 255, 0.0, 0,
                    dict(optim.SGD(1.0).kernel_config(), clip_norm=1e30),  # writes grads
                    grads, None, None)
        opt_b.update_params(b, grads, l2=0.01, l1=0.02)
    np.testing.assert_allclose(b.flat_parameters, a.flat_parameters, rtol=1e-5, atol=1e-6)


def test_one_sgd_step_moves_weights_by_lr_l1_and_leaves_biases(rng):
    """One plain-SGD step with and without l1 from the same start: the weights differ by
    lr * l1 * sign(w), the biases (not penalized) not at all."""
    x = rng.integers(0, 256, size=(16, 12), dtype=np.uint8)
    y = rng.integers(0, 3, size=16)
    nets = {}
    for pen in (0.0, 0.5):
        net = Network([12, 7, 3], seed=1)
        Trainer(net, optimizer="sgd", lr=0.1, batch_size=16, epochs=1, l1=pen, verbose=0,
                seed=0).fit(x, y)
        nets[pen] = net
    start = Network([12, 7, 3], seed=1)
    for w0, wa, wb in zip(start.weights, nets[0.0].weights, nets[0.5].weights):
        np.testing.assert_allclose(wa - wb, 0.1 * 0.5 * np.sign(w0), rtol=0, atol=1e-6)
    for ba, bb in zip(nets[0.0].biases, nets[0.5].biases):
        assert ba.tobytes() == bb.tobytes()


def _mini(n=2000):
    (x, y), (xt, yt) = digitcore.load_dataset("mnist-mini")
    return x[:n], y[:n], xt, yt


@pytest.mark.parametrize("optimizer,lr,l1,near", [("sgd", 0.1, 3e-3, 2e-3),
                                                  ("adam", 1e-3, 1e-3, 3e-3)])
def test_l1_drives_many_weights_to_zero(optimizer, lr, l1, near):
    """The point of L1: on a small problem most first-layer weights end near 0 (all those
    of pixels that are always blank, and many more), where without it almost none do,
    and the network still learns (measured: SGD 3% -> 75% of the weights within 2e-3 of 0,
    test accuracy 84.8% -> 80.2%; Adam 4% -> 68%, 86.5% -> 84.6%)."""
    x, y, xt, yt = _mini()
    out = {}
    for pen in (0.0, l1):
        net = Network([784, 32, 10], seed=0)
        Trainer(net, optimizer=optimizer, lr=lr, batch_size=64, epochs=8, l1=pen, seed=0,
                verbose=0).fit(x, y)
        w0 = net.weights[0]
        out[pen] = (float(np.mean(np.abs(w0) < near)), float(np.abs(w0).sum()),
                    net.score(xt, yt))
    (f0, s0, acc0), (f1, s1, acc1) = out[0.0], out[l1]
    assert f0 < 0.15, out
    assert f1 > 0.6, out
    assert s1 < 0.4 * s0, out
    assert acc1 > 0.75, out
    assert acc1 > acc0 - 0.08, out  # sparser, not much worse


def test_l1_sparse_and_dense_first_layer_agree_and_threads_do_not_matter(rng):
    x, y, _, _ = _mini(600)
    runs = {}
    old = digitcore.get_num_threads()
    for mode, threads in (("never", 1), ("always", 1), ("always", 2), ("always", 3)):
        digitcore.set_num_threads(threads)
        try:
            net = Network([784, 24, 10], seed=2)
            tr = Trainer(net, optimizer="momentum", lr=0.05, batch_size=50, epochs=2, l1=1e-3,
                         seed=0, verbose=0)
            tr._sparse_input = mode
            tr.fit(x, y)
        finally:
            digitcore.set_num_threads(old)
        runs[(mode, threads)] = net.flat_parameters.copy()
    a = runs[("always", 1)]
    assert a.tobytes() == runs[("always", 2)].tobytes() == runs[("always", 3)].tobytes()
    # the two first-layer paths sum in different orders: equal to float32 rounding
    np.testing.assert_allclose(runs[("never", 1)], a, rtol=1e-4, atol=1e-5)


def test_l1_in_model_metadata_and_checkpoint(tmp_path):
    x, y, _, _ = _mini(600)
    net = Network([784, 16, 10], seed=0)
    Trainer(net, epochs=1, l1=1e-4, l2=1e-5, seed=0, verbose=0,
            checkpoint=tmp_path / "ck").fit(x, y)
    assert net.training_summary["l1"] == 1e-4 and net.training_summary["l2"] == 1e-5
    net.save(tmp_path / "m.safetensors")
    back = digitcore.load_model(tmp_path / "m.safetensors")
    assert back.training_summary["l1"] == 1e-4
    # the checkpoint's run config has l1: resuming with another value is refused
    net2 = Network([784, 16, 10], seed=0)
    with pytest.raises(CheckpointError, match="written by a different run") as exc:
        Trainer(net2, epochs=1, l1=2e-4, l2=1e-5, seed=0, verbose=0,
                checkpoint=tmp_path / "ck").fit(x, y, resume=True)
    assert "l1" in str(exc.value)


def test_cli_l1_reaches_the_trainer(tmp_path):
    out = tmp_path / "m.safetensors"
    r = subprocess.run([sys.executable, "-m", "digitcore", "train", "--dataset", "mnist-mini",
                        "--hidden", "16", "--epochs", "1", "--l1", "1e-4", "--threads", "1",
                        "--json", "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["test_accuracy"] > 0.5
    with open(out, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        meta = json.loads(f.read(n))["__metadata__"]
    assert json.loads(meta["training"])["l1"] == 1e-4
