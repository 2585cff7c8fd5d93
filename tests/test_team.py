"""The training team's size, batch by batch (csrc/team.c): whatever runs each batch -- the
whole team or one thread, chosen by measurement ('adaptive', the default), always the team
('fixed') or switching every batch ('alternate', the test policy) -- the weights are the
same bits, and the thread setting the user made is what it was after the call."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import digitcore
from digitcore import Network, Trainer
from digitcore._config import _ops

ops = _ops()
needs_openmp = pytest.mark.skipif(not ops.have_openmp(), reason="built without OpenMP")


@pytest.fixture
def policy():
    """Set a team policy for one test; the threads and policy are restored after."""
    before, threads = ops.get_team_policy(), digitcore.get_num_threads()

    def set_(name, n_threads):
        ops.set_team_policy(name)
        digitcore.set_num_threads(n_threads)

    yield set_
    ops.set_team_policy(before)
    digitcore.set_num_threads(None)
    digitcore.set_num_threads(threads)


def _sparse_digits(n, seed):
    rng = np.random.default_rng(seed)
    x = (rng.random((n, 784)) < 0.18) * rng.integers(1, 256, (n, 784))
    return x.astype(np.uint8), rng.integers(0, 10, n)


# (name, data, layer sizes, trainer options): the sparse first layer, the dense one
# (standardized floats), a deeper net with dropout and Adam, and augmentation
CONFIGS = [
    ("sparse-sgd", "u8", [784, 128, 10], dict(optimizer="sgd", lr=0.1, batch_size=32)),
    ("dense-sgd", "std", [784, 64, 10], dict(optimizer="sgd", lr=0.05, batch_size=128)),
    ("dropout-adam", "u8", [784, 96, 32, 10],
     dict(optimizer="adam", lr=1e-3, batch_size=64, dropout=0.3)),
    ("augmented", "u8", [784, 64, 10], dict(optimizer="sgd", lr=0.1, batch_size=64,
                                            augment="affine")),
]


def _train(kind, sizes, opts, x, y):
    if kind == "std":
        x = ((x / np.float32(255) - np.float32(0.1307)) / np.float32(0.3081)).astype(np.float32)
    opts = dict(opts)
    net = Network(sizes, seed=3, dropout=opts.pop("dropout", 0.0))
    Trainer(net, epochs=2, seed=5, verbose=0, **opts).fit(x, y)
    return net.flat_parameters.copy()


@needs_openmp
@pytest.mark.parametrize("name,kind,sizes,opts", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_switching_team_size_mid_run_keeps_the_bits(policy, name, kind, sizes, opts):
    x, y = _sparse_digits(1500, 11)
    policy("fixed", 1)
    want = _train(kind, sizes, opts, x, y)
    for name_, threads in (("alternate", 2), ("alternate", 3), ("fixed", 2), ("adaptive", 2)):
        policy(name_, threads)
        before = ops.team_counts()
        got = _train(kind, sizes, opts, x, y)
        np.testing.assert_array_equal(got, want, err_msg=f"{name_} on {threads} threads")
        one, team, _ = (a - b for a, b in zip(ops.team_counts(), before))
        if name_ == "alternate":  # both ways really ran (each chunk call starts anew)
            assert one > 10 and team > 10, (one, team)
        if name_ == "fixed":
            assert one == 0 and team > 0


@needs_openmp
def test_adaptive_probes_one_thread_and_restores_the_setting(policy):
    """A fresh adaptive state times one window and then probes the other way (at most
    three windows of each way in turn, each at most 64 batches): a call of more than
    1 + 6 * 64 batches finishes at least one probe."""
    x, y = _sparse_digits(8000, 12)
    policy("adaptive", 2)
    before = ops.team_counts()
    net = Network([784, 32, 10], seed=0)
    Trainer(net, epochs=1, seed=0, verbose=0, batch_size=16, chunk_samples=8000).fit(x, y)
    one, team, probes = (a - b for a, b in zip(ops.team_counts(), before))
    # (one also counts the inference calls that followed the finding: Trainer checks the
    # chunk with an evaluate)
    assert probes >= 1 and one >= 2 and team >= 1 and one + team >= 8000 // 16
    assert digitcore.get_num_threads() == 2  # the one-thread batches gave the setting back


@needs_openmp
def test_a_call_after_a_pause_probes_at_once(policy):
    """A call that starts more than TEAM_STALE_S (0.5 s) after the process's last timed
    batch probes from its first window, as a fresh state does: its 1 + 7 windows of at
    most 64 batches finish a probe (one window, then at most three of each way). Without
    the pause, the probe that the first call finished leaves at least TEAM_GAP_MIN = 8
    windows before the next one begins."""
    x, y = _sparse_digits(8000, 12)
    policy("adaptive", 2)
    net = Network([784, 32, 10], seed=0)

    def probes(n):
        before = ops.team_counts()[2]
        Trainer(net, epochs=1, seed=0, verbose=0, batch_size=16,
                chunk_samples=n).fit(x[:n], y[:n])
        return ops.team_counts()[2] - before

    assert probes(8000) >= 1  # a fresh state probes after its first window
    time.sleep(0.6)
    assert probes(16 * (1 + 7 * 64)) >= 1


def test_team_policy_names(policy):
    for name in ("fixed", "alternate", "adaptive"):
        ops.set_team_policy(name)
        assert ops.get_team_policy() == name
    with pytest.raises(ValueError, match="unknown team policy 'busy'"):
        ops.set_team_policy("busy")


def _run(code, **env):
    e = {k: v for k, v in os.environ.items() if k != "DIGITCORE_TEAM"}
    e.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=e,
                          capture_output=True, text=True, timeout=120)


def test_digitcore_team_environment_variable():
    code = "import digitcore; from digitcore._config import _ops; print(_ops().get_team_policy())"
    assert _run(code).stdout.strip() == "adaptive"
    assert _run(code, DIGITCORE_TEAM="fixed").stdout.strip() == "fixed"
    bad = _run(code, DIGITCORE_TEAM="turbo")
    assert bad.returncode != 0
    assert "DIGITCORE_TEAM must be 'adaptive' or 'fixed', got 'turbo'" in bad.stderr


@needs_openmp
def test_prediction_on_one_thread_or_the_team_gives_the_same_bits(policy):
    """'alternate' runs every other inference call on one thread (as 'adaptive' does while
    training has just found one thread faster); the outputs do not change."""
    x, y = _sparse_digits(3000, 13)
    net = Network([784, 64, 10], seed=0)
    policy("fixed", 1)
    want_p, want_e = net.predict_proba(x), net.evaluate(x, y)
    policy("alternate", 2)
    before = ops.team_counts()
    for _ in range(2):
        np.testing.assert_array_equal(net.predict_proba(x), want_p)
        assert net.evaluate(x, y) == want_e
    assert ops.team_counts()[0] - before[0] == 2  # two of the four calls ran on one thread
    assert digitcore.get_num_threads() == 2


@needs_openmp
def test_small_inference_calls_run_on_one_thread(policy):
    """Under 'adaptive', an inference call of fewer than 8M multiply-adds runs on one
    thread (waking the team's idle threads costs more than they save there); a larger
    one takes the team, and 'fixed' always does. The outputs are the same bits."""
    x, y = _sparse_digits(3000, 14)
    net = Network([784, 64, 10], seed=0)  # 50,816 multiply-adds a row
    policy("fixed", 1)
    want, want_small = net.predict_proba(x), net.predict_proba(x[:100])
    want_eval = net.evaluate(x[:100], y[:100])

    policy("adaptive", 2)
    before = ops.team_counts()[0]
    np.testing.assert_array_equal(net.predict_proba(x[:100]), want_small)  # 5.1M
    assert net.evaluate(x[:100], y[:100]) == want_eval
    assert ops.team_counts()[0] - before == 2
    before = ops.team_counts()[0]
    np.testing.assert_array_equal(net.predict_proba(x), want)  # 152M
    assert ops.team_counts()[0] == before
    assert digitcore.get_num_threads() == 2

    policy("fixed", 2)
    before = ops.team_counts()[0]
    np.testing.assert_array_equal(net.predict_proba(x[:100]), want_small)
    assert ops.team_counts()[0] == before


# ---- the adaptive choice on a simulated clock (ops.team_simulate runs team.c's logic with
# given costs per row for each way, batch by batch) ----------------------------------------

def _costs(calls, batches, one, team):
    c = np.empty((calls, batches, 2))
    c[..., 0], c[..., 1] = one, team
    return c


def _seconds(costs, single, rows=128):
    """Simulated time of the run that took `single`'s ways, and of the best fixed way."""
    took = np.where(single, costs[..., 0], costs[..., 1]) * rows
    return took.sum(), (costs.min(axis=2) * rows).sum()


def test_simulated_spinning_neighbour_switches_within_one_short_call():
    """A thread spinning on a core of its own (OpenBLAS's pool after a NumPy matmul) made
    the team ~10x slower a row than one thread; calls of 47 batches (an epoch on 6,000
    images) ended before a probe's three pairs did, so every call ran the team again
    (2.4x the one-thread time). A far faster window of the other way switches at once."""
    costs = _costs(8, 47, 2.2e-6, 23e-6)
    single = ops.team_simulate(costs, rows=128, pause=0.03)
    took, best = _seconds(costs, single)
    assert took <= 1.25 * best, (took / best, single.sum(axis=1))
    assert single[1:].mean() >= 0.95, single.sum(axis=1)
    # in the first call: the untimed first batch, a window of the team (two batches), the
    # probe's first pair (one thread, the team's two), then one thread from its next window
    assert (~single[0]).sum() <= 5, single[0]


def test_simulated_probe_is_decided_when_its_call_ends():
    """One thread 1.5x faster (not far faster: the probe needs its pairs) and calls too short
    for three pairs: the probe is decided on the pairs it has when the call ends."""
    costs = _costs(6, 47, 2.2e-6, 3.3e-6)
    single = ops.team_simulate(costs, rows=128, pause=0.03)
    assert single[2:].mean() >= 0.9, single.sum(axis=1)


def test_simulated_stall_of_the_team_does_not_switch_a_quiet_machine():
    """Two stalled team windows (another process for ~10 ms) call a probe; measured
    against the stalled window, one thread looked far faster and took over (236 of 600
    batches, 1.28x the best time). The switch-at-once compares the probe's own windows."""
    costs = _costs(1, 600, 2.2e-6, 1.4e-6)
    costs[0, 50:56, 1] = 14e-6  # ~10 ms of stall over six team batches
    single = ops.team_simulate(costs, rows=128)
    took, best = _seconds(costs, single)
    assert took <= 1.12 * best, (took / best, single.sum())


def test_simulated_quiet_machine_keeps_the_team():
    costs = _costs(6, 470, 2.2e-6, 1.4e-6)
    single = ops.team_simulate(costs, rows=128, pause=0.03)
    took, best = _seconds(costs, single)
    assert took <= 1.05 * best, (took / best, single.sum(axis=1))
    assert single.mean() <= 0.02


def test_simulated_load_that_comes_and_goes():
    """A busy machine (the team 3x slower) for ten calls, then a quiet one: each phase's
    later calls run its best way."""
    costs = np.concatenate([_costs(10, 100, 2.2e-6, 6.6e-6), _costs(20, 100, 2.2e-6, 1.4e-6)])
    single = ops.team_simulate(costs, rows=128, pause=0.01)
    assert single[3:10].mean() >= 0.9, single.sum(axis=1)
    assert single[20:].mean() <= 0.1, single.sum(axis=1)


def test_team_simulate_checks_and_restores(policy):
    policy("fixed", 2)
    before = ops.team_counts()
    ops.team_simulate(_costs(2, 10, 1e-6, 2e-6))
    assert ops.get_team_policy() == "fixed" and ops.team_counts() == before
    with pytest.raises(ValueError, match=r"shape \(calls, batches, 2\)"):
        ops.team_simulate(np.ones((2, 10, 3)))
    with pytest.raises(ValueError):
        ops.team_simulate(_costs(2, 10, 1e-6, 2e-6), rows=0)
