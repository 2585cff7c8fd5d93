"""Checkpoint and resume: a run killed at random moments and resumed each time ends with
the same bits as the run that was never interrupted; bad checkpoints are refused.

The worker below trains in a subprocess with small chunks (a checkpoint between every
few batches, so kills land mid-epoch as well as between epochs) and dropout, Adam, a
cosine schedule with warmup, a validation split and early stopping with restore_best,
so every piece of saved state matters.
"""

import json
import os
import random
import struct
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import digitcore
from digitcore.checkpoint import FILE_NAME, LOCK_NAME, CheckpointError, read_checkpoint

WORKER = textwrap.dedent("""
    import os, signal, sys, threading, time, numpy as np, digitcore
    ckpt, out, resume = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    ctrl_c = len(sys.argv) > 4  # press Ctrl-C (SIGINT) during epoch 1 or at its end
    fired = threading.Event()

    def press_ctrl_c():
        time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)
        fired.set()

    def ctrl_c_during_epoch_1(epoch, logs):
        if ctrl_c and epoch == 0:
            threading.Thread(target=press_ctrl_c, daemon=True).start()
        if ctrl_c and epoch == 1:  # a fast machine: the signal has not landed yet
            assert fired.wait(60)
            time.sleep(0.01)
    (x, y), _ = digitcore.load_dataset("mnist-mini")
    net = digitcore.Network([784, 40, 10], dropout=0.2, seed=3)
    tr = digitcore.Trainer(net, optimizer="adam", lr=3e-3, batch_size=64, epochs=8,
                           lr_schedule="cosine", warmup=0.5, seed=7, verbose=0,
                           early_stopping=dict(patience=10, restore_best=True),
                           checkpoint=ckpt if ckpt != "-" else None, checkpoint_seconds=0,
                           chunk_samples=192, chunk_seconds=None,  # 3 batches per C call
                           callbacks=[ctrl_c_during_epoch_1])
    h = tr.fit(x[:2400], y[:2400], validation_fraction=0.1, resume=resume)
    print("interrupted" if h.interrupted else "done", len(h), flush=True)
    if not h.interrupted:
        np.save(out, net.flat_parameters)
""")


def _worker(tmp_path, ckpt, out, resume, ctrl_c=False):
    env = dict(os.environ, DIGITCORE_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", WORKER, str(ckpt), str(out),
                             "1" if resume else "0"] + (["ctrl-c"] if ctrl_c else []),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Final parameters of the uninterrupted run, without checkpoints."""
    tmp = tmp_path_factory.mktemp("ref")
    p = _worker(tmp, "-", tmp / "ref.npy", False)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    return np.load(tmp / "ref.npy")


def _position(ckpt_dir):
    state, _ = read_checkpoint(ckpt_dir / FILE_NAME)
    return state["position"]["epoch"], state["position"]["batch"], state["finished"]


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_bitwise_identical(tmp_path, reference):
    seed = int(os.environ.get("DIGITCORE_TEST_SEED", "12345"))
    print(f"kill-timing seed={seed}")
    rnd = random.Random(seed)
    ckpt = tmp_path / "ckpt"
    out = tmp_path / "resumed.npy"
    kills, positions = 0, []
    for attempt in range(30):
        if ckpt.joinpath(FILE_NAME).exists():
            positions.append(_position(ckpt))
        before = ckpt.joinpath(FILE_NAME).stat().st_mtime_ns if ckpt.joinpath(
            FILE_NAME).exists() else None
        p = _worker(tmp_path, ckpt, out, resume=attempt > 0)
        if kills < 6:
            # wait until this process has written at least one checkpoint of its own,
            # then kill it at a random moment (often in the middle of writing another)
            t_end = time.monotonic() + 300
            while p.poll() is None and time.monotonic() < t_end:
                f = ckpt.joinpath(FILE_NAME)
                if f.exists() and f.stat().st_mtime_ns != before:
                    break
                time.sleep(0.005)
            time.sleep(rnd.uniform(0.0, 0.1))  # a run lasts ~1 s on a quiet machine
            if p.poll() is None:
                p.kill()  # (SIGKILL; TerminateProcess on Windows)
                p.communicate(timeout=60)
                kills += 1
                continue
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, stderr
        if stdout.startswith("done"):
            break
    else:
        pytest.fail("the run never finished")
    assert kills >= 5, f"only {kills} kills landed before the run finished"
    # the resumptions started from several places, some of them inside an epoch
    assert len(set(positions)) >= 4, positions
    assert any(batch > 0 for _, batch, _ in positions), positions
    got = np.load(out)
    assert got.dtype == np.float32 and got.shape == reference.shape
    assert np.array_equal(got.view(np.uint32), reference.view(np.uint32)), (
        f"resumed run differs from the uninterrupted one in "
        f"{np.count_nonzero(got != reference)} of {got.size} parameters; "
        f"resumed from {positions}")
    # resuming a finished run changes nothing
    p = _worker(tmp_path, ckpt, tmp_path / "again.npy", resume=True)
    stdout, stderr = p.communicate(timeout=600)
    assert p.returncode == 0, stderr
    assert np.array_equal(np.load(tmp_path / "again.npy"), reference)
    # no temporary files left behind by the killed writers once a run has resumed
    # (and the directory's lock file, which stays)
    assert sorted(os.listdir(ckpt)) == sorted([FILE_NAME, LOCK_NAME])


@pytest.mark.slow
@pytest.mark.skipif(os.name == "nt", reason="SIGINT delivery to self differs on Windows")
def test_ctrl_c_leaves_a_checkpoint(tmp_path, reference):
    ckpt = tmp_path / "ckpt"
    # The worker signals itself, from a thread started after epoch 0, so Ctrl-C lands
    # inside epoch 1 (at a chunk boundary) or at its end, however fast or loaded the
    # machine is; the run has 8 epochs.
    p = _worker(tmp_path, ckpt, tmp_path / "x.npy", resume=False, ctrl_c=True)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 0, stderr
    assert stdout.startswith("interrupted"), stdout
    epoch, batch, finished = _position(ckpt)
    assert not finished and (epoch, batch) >= (1, 0) and (epoch, batch) <= (2, 0), (epoch, batch)
    p = _worker(tmp_path, ckpt, tmp_path / "resumed.npy", resume=True)
    stdout, stderr = p.communicate(timeout=600)
    assert p.returncode == 0, stderr
    assert np.array_equal(np.load(tmp_path / "resumed.npy"), reference)


def _small_run(tmp_path, **kw):
    (x, y), _ = digitcore.load_dataset("mnist-mini")
    net = digitcore.Network([784, 16, 10], seed=0)
    args = dict(epochs=2, seed=0, verbose=0, checkpoint=tmp_path / "ck")
    args.update(kw)
    return net, digitcore.Trainer(net, **args), x[:600], y[:600]


def test_checkpointing_does_not_change_the_bits(tmp_path):
    net_a, tr, x, y = _small_run(tmp_path, checkpoint=None)
    tr.fit(x, y)
    net_b, tr, x, y = _small_run(tmp_path, checkpoint_seconds=0)
    h = tr.fit(x, y)
    assert np.array_equal(net_a.flat_parameters, net_b.flat_parameters)
    state, tensors = read_checkpoint(tmp_path / "ck" / FILE_NAME)
    assert state["finished"] and state["position"]["epoch"] == 2
    assert state["history"]["history"]["loss"] == h.history["loss"]
    assert state["run"]["network"] == net_b.get_config()
    assert state["step"] == tr.optimizer.step_count == 2 * 5
    np.testing.assert_array_equal(tensors["params"], net_b.flat_parameters)
    np.testing.assert_array_equal(tensors["optimizer.sq_avg"], tr.optimizer.sq_avg)
    # the file is plain safetensors: JSON header, no pickle
    raw = (tmp_path / "ck" / FILE_NAME).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    assert header["__metadata__"]["format"] == "digitcore-checkpoint"
    assert b"pickle" not in raw and b"\x80\x04" not in raw[:8 + n]


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam", "momentum"])
def test_a_checkpoint_with_the_old_state_names_resumes(tmp_path, optimizer):
    """Checkpoints from before the optimizer's state was named by its role: tensors
    "optimizer.state1"/"state2" (RMSprop's squared-gradient average in state1) and
    RMSprop's rho as "beta2" in the run config. They read as today's names and resume."""
    from digitcore import checkpoint

    net, tr, x, y = _small_run(tmp_path, optimizer=optimizer)
    tr.fit(x, y)
    path = tmp_path / "ck" / FILE_NAME
    state, tensors = read_checkpoint(path)
    old = {"params": tensors["params"]}
    if optimizer == "rmsprop":
        old["optimizer.state1"] = tensors["optimizer.sq_avg"]
        opt_cfg = state["run"]["optimizer"]
        opt_cfg["beta2"] = opt_cfg.pop("rho")
    else:
        old["optimizer.state1"] = tensors["optimizer.grad_avg"]
        if "optimizer.sq_avg" in tensors:
            old["optimizer.state2"] = tensors["optimizer.sq_avg"]
    # and from before the L1 penalty: no "l1" in the run config
    assert state["run"]["optimizer"].pop("l1") == 0.0
    assert state["run"]["trainer"].pop("l1") == 0.0
    path.write_bytes(checkpoint._encode(state, old))
    _, upgraded = read_checkpoint(path)
    assert sorted(upgraded) == sorted(tensors)
    for name, arr in tensors.items():
        np.testing.assert_array_equal(upgraded[name], arr)
    net2, tr2, x, y = _small_run(tmp_path, optimizer=optimizer)
    tr2.fit(x, y, resume=True)  # refused if the run config did not match
    assert np.array_equal(net2.flat_parameters, net.flat_parameters)
    for name in ("grad_avg", "sq_avg"):
        a, b = getattr(tr.optimizer, name), getattr(tr2.optimizer, name)
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a, b)


def test_another_run_or_existing_checkpoint_is_refused(tmp_path):
    _, tr, x, y = _small_run(tmp_path)
    tr.fit(x, y)
    path = tmp_path / "ck" / FILE_NAME
    before = path.read_bytes()
    _, tr, x, y = _small_run(tmp_path)
    with pytest.raises(CheckpointError, match="already exists: resume it"):
        tr.fit(x, y)
    for kw, needle in [(dict(epochs=3), "trainer.epochs: 2 in the checkpoint, 3 now"),
                       (dict(optimizer="sgd"), "optimizer.kind: 'adam' in the checkpoint"),
                       (dict(seed=1), "trainer.seed: 0 in the checkpoint, 1 now")]:
        _, tr, x, y = _small_run(tmp_path, **kw)
        with pytest.raises(CheckpointError, match="written by a different run") as exc:
            tr.fit(x, y, resume=True)
        assert needle in str(exc.value)
    _, tr, x, y = _small_run(tmp_path)
    with pytest.raises(CheckpointError, match=r"data\.train: sha256 "):
        tr.fit(x[:500], y[:500], resume=True)
    net = digitcore.Network([784, 17, 10], seed=0)
    with pytest.raises(CheckpointError, match="network.layer_sizes"):
        digitcore.Trainer(net, epochs=2, seed=0, verbose=0,
                          checkpoint=tmp_path / "ck").fit(x, y, resume=True)
    assert path.read_bytes() == before  # refused runs never write
    with pytest.raises(ValueError, match="resume=True needs a checkpoint directory"):
        _small_run(tmp_path, checkpoint=None)[1].fit(x, y, resume=True)


def _rewrite_state(raw, edit):
    """The checkpoint bytes with its state JSON passed through ``edit`` (tensors kept)."""
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    state = json.loads(header["__metadata__"]["checkpoint"])
    edit(state)
    header["__metadata__"]["checkpoint"] = json.dumps(state)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    return len(head).to_bytes(8, "little") + head + bytes(raw[8 + n:])


def _rewrite_table(raw, edit):
    """The checkpoint bytes with its tensor table (the header less __metadata__) passed
    through ``edit`` (data and state kept)."""
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    edit({k: v for k, v in header.items() if k != "__metadata__"})
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    return len(head).to_bytes(8, "little") + head + bytes(raw[8 + n:])


def _first_two(table):
    return [table[k] for k in sorted(table)[:2]]


def _same_offsets(table):
    a, b = _first_two(table)
    b["data_offsets"] = a["data_offsets"]
    b["shape"] = a["shape"]


def _shape_minus_one(table):
    a = _first_two(table)[0]
    a["shape"] = [-1]


def _one_value_short(table):  # a tensor one float shorter: 4 bytes of data left over
    a = next(t for t in table.values() if len(t["shape"]) == 1 and t["shape"][0] > 1)
    a["shape"] = [a["shape"][0] - 1]
    a["data_offsets"][1] -= 4


@pytest.mark.parametrize("edit", [_same_offsets, _shape_minus_one, _one_value_short])
def test_an_edited_tensor_table_is_refused(tmp_path, edit):
    """The checksums cover the tensors' bytes and the state, not the table that says
    where each tensor lies: a shape of [-1], two tensors on the same bytes or a tensor
    cut short were read without a word."""
    _, tr, x, y = _small_run(tmp_path)
    tr.fit(x, y)
    path = tmp_path / "ck" / FILE_NAME
    path.write_bytes(_rewrite_table(path.read_bytes(), edit))
    with pytest.raises(CheckpointError, match="its tensor table is malformed"):
        read_checkpoint(path)


def _old_with_seed(seed):
    def edit(state):  # as written before the state had a checksum (version 1), with this seed
        del state["state_sha256"]
        state["version"] = 1
        state["seed"] = seed
    return edit


@pytest.mark.parametrize("damage", ["truncate", "flip", "header", "empty", "model", "nested",
                                    "edited step", "edited history", "checksum removed",
                                    "bad seed", "seed not a number"])
def test_corrupt_checkpoint_is_refused(tmp_path, damage):
    _, tr, x, y = _small_run(tmp_path)
    tr.fit(x, y)
    path = tmp_path / "ck" / FILE_NAME
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[:len(raw) // 2]
    elif damage == "flip":
        raw[-100] ^= 0x01
    elif damage == "header":
        raw[20:30] = b"\xff" * 10
    elif damage == "empty":
        raw = b""
    elif damage == "nested":  # JSON nested too deeply for Python's reader
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + n])
        header["__metadata__"]["checkpoint"] = "[" * 5000 + "]" * 5000
        head = json.dumps(header).encode()
        raw = len(head).to_bytes(8, "little") + head + raw[8 + n:]
    elif damage == "edited step":  # the JSON still reads, its checksum does not match
        raw = _rewrite_state(raw, lambda st: st.update(step=st["step"] - 1))
    elif damage == "edited history":
        raw = _rewrite_state(raw, lambda st: st["history"]["history"]["loss"].__setitem__(0, 9.0))
    elif damage == "checksum removed":  # a version-2 checkpoint must have it
        raw = _rewrite_state(raw, lambda st: st.pop("state_sha256"))
    elif damage == "bad seed":
        raw = _rewrite_state(raw, _old_with_seed(-3))
    elif damage == "seed not a number":
        raw = _rewrite_state(raw, _old_with_seed("zero"))
    else:  # a model file is not a checkpoint
        digitcore.Network([784, 16, 10]).save(path)
        raw = path.read_bytes()
    path.write_bytes(bytes(raw))
    net, tr, x, y = _small_run(tmp_path)
    before = net.flat_parameters.copy()
    with pytest.raises(CheckpointError, match="is not a usable checkpoint") as exc:
        tr.fit(x, y, resume=True)
    assert str(path) in str(exc.value)
    if damage.startswith("edited") or damage == "checksum removed":
        assert "its state (step, position, seed, history...) does not match" in str(exc.value)
    if "seed" in damage:
        assert "is not a non-negative integer" in str(exc.value)
    assert np.array_equal(net.flat_parameters, before)
    assert path.read_bytes() == bytes(raw)


def _without_wait(st, t):
    del st["early_stopping"]["wait"]


def _nan_params(st, t):
    t["params"] = np.full_like(t["params"], np.nan)


@pytest.mark.parametrize("edit", [
    _without_wait,
    lambda st, t: st.update(early_stopping="x"),
    lambda st, t: st["early_stopping"].update(best_epoch="two"),
    lambda st, t: t.update({"early_stopping.best_params": np.zeros(5, np.float32)}),
    lambda st, t: st.update(history=[]),
    _nan_params,
])
def test_a_well_formed_file_with_a_malformed_state_is_refused_before_any_change(tmp_path, edit):
    # A checkpoint whose state was edited and its checksums written anew (as a version-1
    # file, which has none, needs no rewriting): the early stopping's state was read after
    # the network's parameters had been overwritten, and raised a raw KeyError/TypeError
    # (or, for best_params of the wrong shape, a broadcast error at the end of training).
    from digitcore import checkpoint
    from digitcore.trainer import EarlyStopping

    def run():
        return _small_run(tmp_path, early_stopping=EarlyStopping(patience=3))

    _, tr, x, y = run()
    tr.fit(x, y, validation_fraction=0.25)
    path = tmp_path / "ck" / FILE_NAME
    state, tensors = read_checkpoint(path)
    edit(state, tensors)
    path.write_bytes(checkpoint._encode(state, tensors))
    net, tr, x, y = run()
    before = net.flat_parameters.copy()
    with pytest.raises(CheckpointError, match="is not a usable checkpoint: its state is "
                                              "incomplete or malformed"):
        tr.fit(x, y, validation_fraction=0.25, resume=True)
    assert np.array_equal(net.flat_parameters, before)
    assert tr.optimizer.step_count == 0


def test_a_checkpoint_without_a_state_checksum_resumes(tmp_path):
    """Checkpoints written before the state had its checksum (version 1) are read and
    resumed."""
    net, tr, x, y = _small_run(tmp_path, epochs=1)
    tr.fit(x, y)
    path = tmp_path / "ck" / FILE_NAME
    path.write_bytes(_rewrite_state(path.read_bytes(),
                                    lambda st: (st.pop("state_sha256"), st.update(version=1))))
    assert "state_sha256" not in read_checkpoint(path)[0]
    net2, tr2, x, y = _small_run(tmp_path, epochs=2)
    with pytest.raises(CheckpointError, match="trainer.epochs: 1 in the checkpoint"):
        tr2.fit(x, y, resume=True)  # read, then compared like any other
    net3, tr3, x, y = _small_run(tmp_path, epochs=1)
    tr3.fit(x, y, resume=True)
    assert np.array_equal(net3.flat_parameters, net.flat_parameters)


def _an_older_unfinished_checkpoint(tmp_path):
    """The whole 2-epoch run, its Trainer, and the checkpoint of that run stopped after
    epoch 1 as versions 1 and 2 wrote it (no rate, the chunking in its run config), for
    the caller to set the version and write: (whole, trainer, path, state, tensors)."""
    whole, tr, x, y = _small_run(tmp_path, checkpoint=None)
    tr.fit(x, y)
    net, tr, x, y = _small_run(tmp_path, epochs=1)
    tr.fit(x, y)  # (its checkpoint: the end of epoch 1 of 1, as a run of 2 would have it)
    path = tmp_path / "ck" / FILE_NAME
    state, tensors = read_checkpoint(path)
    assert "lr" in state
    del state["lr"]
    state["finished"] = False
    state["run"]["trainer"].update(chunk_samples=None, chunk_seconds=0.25, epochs=2)
    return whole, tr, path, state, tensors


def test_a_version_1_checkpoint_of_an_unfinished_run_resumes_to_the_same_bits(tmp_path):
    """The test above resumes a finished version-1 run, which reads back only the
    parameters: a file whose optimizer moments, step count or position were lost on
    reading passed it. Here a run stopped after epoch 1 of 2 ends as the whole run does."""
    from digitcore import checkpoint

    whole, tr, path, state, tensors = _an_older_unfinished_checkpoint(tmp_path)
    assert tr.optimizer.step_count > 0 and tr.optimizer.grad_avg is not None
    path.write_bytes(_rewrite_state(checkpoint._encode(state, tensors),
                                    lambda st: (st.pop("state_sha256"), st.update(version=1))))
    assert read_checkpoint(path)[0]["version"] == 1
    net2, tr2, x, y = _small_run(tmp_path)
    tr2.fit(x, y, resume=True)
    assert np.array_equal(net2.flat_parameters, whole.flat_parameters)
    for name in ("grad_avg", "sq_avg"):
        a, b = getattr(tr2.optimizer, name), getattr(tr.optimizer, name)
        assert (a is None) == (b is None)
    assert tr2.optimizer.step_count == 2 * tr.optimizer.step_count


def test_cli_checkpoint_and_resume(tmp_path):
    def run(*args):
        env = dict(os.environ, DIGITCORE_NUM_THREADS="1")
        return subprocess.run([sys.executable, "-m", "digitcore", "train", "--dataset",
                               "mnist-mini", "--hidden", "16", "--epochs", "2", "--json",
                               *map(str, args)], capture_output=True, text=True, env=env,
                              timeout=600)

    ck = tmp_path / "ck"
    r = run("--checkpoint", ck, "--out", tmp_path / "a.safetensors")
    assert r.returncode == 0, r.stderr
    assert (ck / FILE_NAME).exists()
    r = run("--checkpoint", ck)
    assert r.returncode == 2 and "already exists" in r.stderr and "Traceback" not in r.stderr
    r = run("--checkpoint", ck, "--resume", "--epochs", "3")
    assert r.returncode == 2 and "trainer.epochs: 2 in the checkpoint, 3 now" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run("--checkpoint", ck, "--resume", "--out", tmp_path / "b.safetensors")
    assert r.returncode == 0, r.stderr
    a = digitcore.load_model(tmp_path / "a.safetensors")
    b = digitcore.load_model(tmp_path / "b.safetensors")
    assert np.array_equal(a.flat_parameters, b.flat_parameters)
    r = run("--resume")
    assert r.returncode == 2 and "need --checkpoint DIR" in r.stderr
    # a directory without a checkpoint (a typo): the run starts afresh, and says so
    # instead of reporting it resumed
    r = run("--checkpoint", tmp_path / "ck-typo", "--resume")
    assert r.returncode == 0, r.stderr
    assert "ck-typo held no checkpoint, so the run started from its first epoch" in r.stderr
    r = subprocess.run([sys.executable, "-m", "digitcore", "train", "--dataset", "mnist-mini",
                        "--hidden", "16", "--epochs", "2", "--checkpoint", ck, "--resume"],
                       capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, DIGITCORE_NUM_THREADS="1"))
    assert r.returncode == 0 and "resumed: its epochs" in r.stdout, (r.stdout, r.stderr)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_bits_do_not_depend_on_the_chunking(rng, optimizer):
    """Trainer sizes its C calls by time, and a resumed run starts a call at the
    checkpoint: the weights must not depend on where calls start and end. Data where the
    epoch's short last batch is sparse or dense depending on the rows of the call it falls
    into if the kernel judged it by the call's buffer (it judges each batch by its own)."""
    x = (rng.random((1000, 784)) < 0.2).astype(np.uint8) * rng.integers(
        1, 256, (1000, 784), dtype=np.uint8)
    x[:100] = rng.integers(1, 256, size=(100, 784))
    y = rng.integers(0, 10, 1000)
    results = []
    for samples in (16384, 64, 128, 320):
        net = digitcore.Network([784, 40, 16, 10], dropout=0.2, seed=0)
        digitcore.Trainer(net, optimizer=optimizer, batch_size=64, epochs=2, seed=1,
                          verbose=0, chunk_samples=samples, chunk_seconds=None).fit(x, y)
        results.append(net.flat_parameters.copy())
    for samples, r in zip((64, 128, 320), results[1:]):
        assert np.array_equal(r, results[0]), (samples, int((r != results[0]).sum()))


def test_cli_committee_checkpoints_each_member_and_resumes(tmp_path):
    """A committee's members checkpoint into DIR/member-J: a run stopped after its first
    member resumes with that member restored as it was and the others trained, into the
    committee the uninterrupted run saved, bit for bit; a checkpoint of the other kind is
    refused instead of silently ignored."""
    def run(*args):
        env = dict(os.environ, DIGITCORE_NUM_THREADS="1")
        return subprocess.run([sys.executable, "-m", "digitcore", "train", "--dataset",
                               "mnist-mini", "--hidden", "16", "--epochs", "2", "--json",
                               "--members", *map(str, args)], capture_output=True,
                              text=True, env=env, timeout=600)

    ck = tmp_path / "ck"
    r0 = r = run(3, "--checkpoint", ck, "--out", tmp_path / "a.safetensors")
    assert r.returncode == 0, r.stderr
    assert all((ck / f"member-{j}" / FILE_NAME).exists() for j in (1, 2, 3))
    r = run(3, "--checkpoint", ck)
    assert r.returncode == 2 and "already exists" in r.stderr and "Traceback" not in r.stderr
    # as if stopped while training member 2: its checkpoint and member 3's never written
    first = (ck / "member-1" / FILE_NAME).read_bytes()
    for j in (2, 3):
        (ck / f"member-{j}" / FILE_NAME).unlink()
    r = run(3, "--checkpoint", ck, "--resume", "--out", tmp_path / "b.safetensors")
    assert r.returncode == 0, r.stderr
    assert (ck / "member-1" / FILE_NAME).read_bytes() == first  # restored, not retrained
    a = digitcore.load_model(tmp_path / "a.safetensors")
    b = digitcore.load_model(tmp_path / "b.safetensors")
    assert len(a.members) == len(b.members) == 3
    for ma, mb in zip(a.members, b.members):
        assert np.array_equal(ma.flat_parameters, mb.flat_parameters)
    assert not np.array_equal(a.members[0].flat_parameters, a.members[1].flat_parameters)
    # resuming a finished committee trains nothing; its speed is still the run's epochs'
    # (not the samples over this process's near-zero wall time)
    first_run = json.loads(r0.stdout)["samples_per_second"]
    r = run(3, "--checkpoint", ck, "--resume")
    assert r.returncode == 0, r.stderr
    again = json.loads(r.stdout)
    assert again["test_accuracy"] == json.loads(r0.stdout)["test_accuracy"]
    assert first_run / 3 < again["samples_per_second"] < 3 * first_run
    # one network's checkpoint is not a committee's, nor the other way round
    r = run(1, "--checkpoint", ck, "--resume")
    assert r.returncode == 2 and "holds a committee's checkpoints" in r.stderr
    single = tmp_path / "single"
    assert run(1, "--checkpoint", single).returncode == 0
    r = run(2, "--checkpoint", single, "--resume")
    assert r.returncode == 2 and "holds one network's checkpoint" in r.stderr


def test_an_early_stopping_in_callbacks_resumes_with_its_state(tmp_path):
    """Only the trainer's ``early_stopping`` was saved: one given in ``callbacks`` started
    afresh on resume (its best and patience forgotten), and the resumed run stopped at
    another epoch with other weights. Its state is in the checkpoint now."""
    (x, y), _ = digitcore.load_dataset("mnist-mini")
    x, y = x[:1500], y[:1500]

    def run(checkpoint=None, stop_at=None, resume=False):
        net = digitcore.Network([784, 16, 10], seed=0)
        es = digitcore.EarlyStopping(monitor="val_accuracy", patience=2)

        def ctrl_c(epoch, logs):  # (as Ctrl-C at the end of this epoch leaves the run)
            if epoch == stop_at:
                raise KeyboardInterrupt

        tr = digitcore.Trainer(net, epochs=25, seed=1, lr=0.1, batch_size=32, verbose=0,
                               checkpoint=checkpoint, checkpoint_seconds=0,
                               callbacks=[ctrl_c, es])
        return net, tr.fit(x, y, validation_fraction=0.3, resume=resume), es

    net0, h0, es0 = run()
    assert h0.stopped_early and len(h0) < 25  # (else its state would not matter)
    stop_at = es0.best_epoch + 1  # after its best, while it is waiting
    _, h1, _ = run(tmp_path / "ck", stop_at=stop_at)
    assert h1.interrupted and len(h1) == stop_at + 1
    net2, h2, es2 = run(tmp_path / "ck", resume=True)
    assert (len(h2), es2.best_epoch, es2.best) == (len(h0), es0.best_epoch, es0.best)
    assert np.array_equal(net2.flat_parameters, net0.flat_parameters)


def test_early_stoppings_in_callbacks_are_part_of_the_run(tmp_path):
    """Their state was keyed by their place among all the callbacks and the callbacks
    were not part of the run: a resume with a logging callback put before the same
    stopping started it afresh (another best epoch, other weights), and one with
    another patience, or without it, was taken silently. They are counted among
    themselves now, and their settings are the run's."""
    x, y = _mini(1500)

    def run(checkpoint=None, stop_at=None, resume=False, extra=(), patience=2, stops=True):
        net = digitcore.Network([784, 16, 10], seed=0)
        es = digitcore.EarlyStopping(monitor="val_accuracy", patience=patience)

        def ctrl_c(epoch, logs):
            if epoch == stop_at:
                raise KeyboardInterrupt

        callbacks = [*extra, ctrl_c, *([es] if stops else [])]
        tr = digitcore.Trainer(net, epochs=25, seed=1, lr=0.1, batch_size=32, verbose=0,
                               checkpoint=checkpoint, checkpoint_seconds=0,
                               callbacks=callbacks)
        return net, tr.fit(x, y, validation_fraction=0.3, resume=resume), es

    net0, h0, es0 = run()
    assert h0.stopped_early
    ck = tmp_path / "ck"
    run(ck, stop_at=es0.best_epoch + 1)
    for changed in (dict(patience=0), dict(stops=False)):
        with pytest.raises(CheckpointError, match="different run.*callback_stoppings"):
            run(ck, resume=True, **changed)
    logged = []
    net2, h2, es2 = run(ck, resume=True, extra=[
        lambda epoch, logs: logged.append(epoch)])
    assert (len(h2), es2.best_epoch, es2.best) == (len(h0), es0.best_epoch, es0.best)
    assert np.array_equal(net2.flat_parameters, net0.flat_parameters)
    # (from the interrupted epoch, whose end the Ctrl-C cut short, to the last)
    assert logged == list(range(es0.best_epoch + 1, len(h0)))


def test_a_renamed_or_foreign_tensor_in_a_checkpoint_is_refused(tmp_path):
    """The tensor table is not under the checksums: one byte changing
    "early_stopping.best_params" to "best_paramz" resumed without the best weights (the
    run ended on its last epoch's, weights_from_epoch None), without a word."""
    x, y = _mini(1500)

    def trainer(stop_at=None):
        net = digitcore.Network([784, 16, 10], seed=0)

        def ctrl_c(epoch, logs):
            if epoch == stop_at:
                raise KeyboardInterrupt

        return digitcore.Trainer(net, epochs=6, seed=1, optimizer="adam", lr=0.05,
                                 verbose=0, checkpoint=tmp_path / "ck",
                                 checkpoint_seconds=0, callbacks=[ctrl_c],
                                 early_stopping=dict(patience=10, restore_best=True))

    trainer(stop_at=3).fit(x, y, validation_fraction=0.2)
    path = tmp_path / "ck" / FILE_NAME
    raw = path.read_bytes()
    state, tensors = read_checkpoint(path)
    assert "early_stopping.best_params" in tensors and state["early_stopping"]["best_epoch"] \
        is not None
    for old, new in ((b"early_stopping.best_params", b"early_stopping.best_paramz"),
                     (b'"params"', b'"paramz"')):
        path.write_bytes(raw.replace(old, new))
        read_checkpoint(path)  # (well-formed: only what the run writes tells)
        with pytest.raises(CheckpointError, match="not a usable checkpoint.*param"):
            trainer().fit(x, y, validation_fraction=0.2, resume=True)
    path.write_bytes(raw)
    trainer().fit(x, y, validation_fraction=0.2, resume=True)


def test_a_checkpoint_folder_it_cannot_write_is_named_before_training(tmp_path):
    """The first checkpoint found out, after an epoch of training."""
    (tmp_path / "ck" / FILE_NAME).mkdir(parents=True)
    epochs = []
    net, tr, x, y = _small_run(tmp_path, callbacks=[
        lambda epoch, logs: epochs.append(epoch)])
    with pytest.raises(IsADirectoryError, match="it is a directory"):
        tr.fit(x, y)
    assert epochs == []
    if os.name == "posix" and os.geteuid() != 0:  # (root may write anywhere)
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        net, tr, x, y = _small_run(tmp_path, checkpoint=ro, callbacks=[
            lambda epoch, logs: epochs.append(epoch)])
        with pytest.raises(PermissionError, match="ro"):
            tr.fit(x, y)
        assert epochs == []


# ---- state a resume used to lose (an outside review) ------------------------------------------

def _mini(n=2000):
    (x, y), _ = digitcore.load_dataset("mnist-mini")
    return x[:n], y[:n]


def test_a_learning_rate_changed_by_a_callback_survives_a_resume(tmp_path):
    """A callback that lowers trainer.optimizer.lr (reduce-on-plateau style) took effect;
    the checkpoint did not record it, so a resume went back to the starting rate and
    ended with other weights, with no error."""
    x, y = _mini()

    def run(ck=None, stop_at=None, resume=False):
        net = digitcore.Network([784, 16, 10], seed=0)

        def halve(epoch, logs):
            tr.optimizer.lr *= 0.5

        def ctrl_c(epoch, logs):
            if epoch == stop_at:
                raise KeyboardInterrupt

        tr = digitcore.Trainer(net, optimizer="sgd", lr=0.1, epochs=4, seed=1, batch_size=32,
                               verbose=0, checkpoint=ck, checkpoint_seconds=0,
                               callbacks=[halve, ctrl_c])
        tr.fit(x, y, resume=resume)
        return net, tr

    whole, tr_whole = run()
    run(tmp_path, stop_at=1)
    resumed, tr_resumed = run(tmp_path, resume=True)
    np.testing.assert_array_equal(resumed.flat_parameters, whole.flat_parameters)
    assert tr_resumed.optimizer.lr == tr_whole.optimizer.lr == 0.1 / 16


def test_chunk_settings_do_not_block_a_resume(tmp_path):
    """chunk_samples and chunk_seconds never change the weights, but were part of the run
    a resume must match."""
    x, y = _mini(600)
    net = digitcore.Network([784, 8, 10], seed=0)
    digitcore.Trainer(net, epochs=1, seed=0, verbose=0, checkpoint=tmp_path,
                      chunk_seconds=None).fit(x, y)
    net2 = digitcore.Network([784, 8, 10], seed=0)
    digitcore.Trainer(net2, epochs=1, seed=0, verbose=0, checkpoint=tmp_path,
                      chunk_samples=128).fit(x, y, resume=True)
    np.testing.assert_array_equal(net2.flat_parameters, net.flat_parameters)


def test_ctrl_c_as_a_chunk_returns_keeps_the_step_count_with_the_moments():
    """Without a checkpoint, Ctrl-C is raised as soon as the C loop returns: the chunk's
    updates were in the parameters and Adam's moments but not in the step count, and a
    second fit ran Adam's bias correction (and dropout's masks) at the wrong step."""
    x, y = _mini(1024)
    net = digitcore.Network([784, 16, 10], seed=0)
    real = net.c_net

    class Interrupting:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def train(self, *args, **kwargs):
            out = self.inner.train(*args, **kwargs)
            raise KeyboardInterrupt  # (as the pending signal is delivered on return)
            return out

    net.c_net = lambda *a, **k: Interrupting(real(*a, **k))
    tr = digitcore.Trainer(net, epochs=2, seed=0, verbose=0, batch_size=64,
                           chunk_samples=256, chunk_seconds=None)
    h = tr.fit(x, y)
    assert h.interrupted
    assert tr.optimizer.step_count == 256 // 64
    assert np.abs(tr.optimizer.grad_avg).max() > 0


@pytest.mark.parametrize("kw, match", [
    (dict(patience="x"), "patience"), (dict(patience=2.5), "patience"),
    (dict(patience=-1), "patience"), (dict(min_delta=float("inf")), "min_delta"),
    (dict(min_delta=float("nan")), "min_delta"), (dict(min_delta=float("-inf")), "min_delta")])
def test_early_stopping_arguments_are_checked(kw, match):
    from digitcore.trainer import EarlyStopping

    with pytest.raises(ValueError, match=match):
        EarlyStopping(**kw)
    assert EarlyStopping(min_delta=-0.1).min_delta == 0.1  # (its sign ignored, as Keras)


def test_a_version_2_checkpoint_with_chunk_settings_and_no_rate_resumes(tmp_path):
    """Version 2 (before the rate was recorded) had the chunking in its run config: such
    a file, of a run interrupted after its first epoch, resumes at the optimizer's rate
    and ends as the whole run does."""
    from digitcore import checkpoint

    whole, tr, path, state, tensors = _an_older_unfinished_checkpoint(tmp_path)
    assert state["version"] == checkpoint.VERSION == 3
    state["version"] = 2
    path.write_bytes(checkpoint._encode(state, tensors))
    assert read_checkpoint(path)[0]["version"] == 2
    net2, tr2, x, y = _small_run(tmp_path)
    tr2.fit(x, y, resume=True)
    assert np.array_equal(net2.flat_parameters, whole.flat_parameters)
    # and a newer version than this digitcore knows is refused, saying so
    state["version"] = 4
    path.write_bytes(checkpoint._encode(state, tensors))
    with pytest.raises(CheckpointError, match="newer digitcore"):
        read_checkpoint(path)


def test_resuming_on_the_same_trainer_after_a_callback_changed_the_rate(tmp_path):
    """The run config records the rate a fit starts with: on the same Trainer, after a
    callback halved it and Ctrl-C stopped the run, that is the checkpoint's saved rate,
    and the resume was refused as 'a different run'."""
    x, y = _mini()
    stop = {"at": 1}

    def make(ck):
        net = digitcore.Network([784, 16, 10], seed=0)

        def halve(epoch, logs):
            tr.optimizer.lr *= 0.5

        def ctrl_c(epoch, logs):
            if epoch == stop["at"]:
                raise KeyboardInterrupt

        tr = digitcore.Trainer(net, optimizer="sgd", lr=0.1, epochs=4, seed=1, batch_size=32,
                               verbose=0, checkpoint=ck, checkpoint_seconds=0,
                               callbacks=[halve, ctrl_c])
        return net, tr

    whole, tr = make(None)
    stop["at"] = None
    tr.fit(x, y)
    stop["at"] = 1
    net, tr = make(tmp_path)
    assert tr.fit(x, y).interrupted
    stop["at"] = None
    tr.fit(x, y, resume=True)
    np.testing.assert_array_equal(net.flat_parameters, whole.flat_parameters)
    # its later checkpoints keep the run's starting rate: a fresh Trainer resumes them
    state, _ = read_checkpoint(tmp_path / FILE_NAME)
    assert state["run"]["optimizer"]["lr"] == 0.1 and state["finished"]


def test_resuming_with_another_learning_rate_is_refused(tmp_path):
    """A rate that is neither the run's starting rate nor the one it stopped at was adopted
    without a word: `--resume --lr 5` trained on at the checkpoint's rate."""
    x, y = _mini()

    def trainer(lr, stop_at=None):
        def ctrl_c(epoch, logs):
            if epoch == stop_at:
                raise KeyboardInterrupt

        net = digitcore.Network([784, 16, 10], seed=0)
        return digitcore.Trainer(net, optimizer="sgd", lr=lr, epochs=3, seed=1,
                                 batch_size=32, verbose=0, checkpoint=tmp_path,
                                 checkpoint_seconds=0, callbacks=[ctrl_c])

    assert trainer(0.1, stop_at=0).fit(x, y).interrupted
    with pytest.raises(CheckpointError, match=r"optimizer\.lr: 0\.1 in the checkpoint, 5\.0 now"):
        trainer(5.0).fit(x, y, resume=True)
    trainer(0.1).fit(x, y, resume=True)  # the same arguments still resume it


def test_a_directory_in_use_by_another_run_is_refused(tmp_path):
    """Two runs on one checkpoint directory replaced each other's checkpoints, and the
    second one's start deleted the first's temporary file in flight (its os.replace then
    failed). The directory is locked while a fit uses it."""
    x, y = _mini(600)
    seen = []

    def second_run(epoch, logs):
        if epoch == 0:
            other = digitcore.Trainer(digitcore.Network([784, 8, 10], seed=1), epochs=1,
                                      verbose=0, checkpoint=tmp_path / "ck")
            for resume in (False, True):
                with pytest.raises(CheckpointError, match="is in use by another run"):
                    other.fit(x, y, resume=resume)
            seen.append(epoch)

    net = digitcore.Network([784, 8, 10], seed=0)
    digitcore.Trainer(net, epochs=2, seed=0, verbose=0, checkpoint=tmp_path / "ck",
                      callbacks=[second_run]).fit(x, y)
    assert seen == [0]
    # let go when the fit returns (or fails): the run resumes, and a fresh one elsewhere
    # is not held up by it
    back = digitcore.Network([784, 8, 10], seed=0)
    h = digitcore.Trainer(back, epochs=2, seed=0, verbose=0,
                          checkpoint=tmp_path / "ck").fit(x, y, resume=True)
    assert len(h) == 2 and np.array_equal(back.flat_parameters, net.flat_parameters)
    with pytest.raises(CheckpointError, match="already exists"):
        digitcore.Trainer(back, epochs=2, verbose=0, checkpoint=tmp_path / "ck").fit(x, y)
    digitcore.Trainer(back, epochs=2, seed=0, verbose=0, checkpoint=tmp_path / "ck").fit(
        x, y, resume=True)  # (the refused fit let the lock go too)
