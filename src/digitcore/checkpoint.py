"""Training checkpoints: everything a Trainer needs to continue a run bit for bit.

``Trainer(..., checkpoint=DIR)`` writes ``DIR/checkpoint.safetensors`` at the end of
every epoch, every ``checkpoint_seconds`` between chunks of batches, and when Ctrl-C
stops the run; ``fit(..., resume=True)`` (``digitcore train --checkpoint DIR --resume``)
continues from it. One safetensors file, written atomically (temporary file, fsync,
rename), so the last complete checkpoint is only ever replaced by another complete one:

    tensors   "params" (the flat parameters), "optimizer.grad_avg"/"optimizer.sq_avg"
              (the optimizer's state, when it has it), the best parameters an early
              stopping kept: "early_stopping.best_params" (the trainer's own) and
              "callbacks.{j}.best_params" (the j-th EarlyStopping among the callbacks,
              from 0); all float32
    metadata  "format" = "digitcore-checkpoint", "checkpoint" = JSON of:
              "version"; "run" (the full config: network, trainer, optimizer, data
              fingerprint); "seed" (the run's); "step" (the optimizer's step count);
              "lr" (the optimizer's rate, which a callback may have changed; version 3);
              "position" (epoch, batch within it, the epoch's partial loss/accuracy sums
              and seconds); "rng_epoch_start" (the shuffling generator's state at the
              start of that epoch); "history" so far; "early_stopping" and "callbacks"
              (the early stoppings' state); "finished"; the SHA-256 of the tensor bytes
              ("sha256") and of the rest of this JSON ("state_sha256", see _state_digest)

Nothing is pickled. The position is always a chunk boundary (the C loop is never
interrupted mid-batch), and every random stream the kernels use is counter-based on
(seed, optimizer step, sample) or drawn from the saved generator state, so a resumed run
repeats the uninterrupted one's arithmetic exactly. A checkpoint whose run config differs
from the resuming trainer's (other data, network, optimizer, schedule, epochs, seed...)
or whose tensors or state do not match their checksums is refused with
:class:`CheckpointError`.

User callbacks other than :class:`~digitcore.trainer.EarlyStopping` (the trainer's
``early_stopping``, or one in its ``callbacks``) keep no saved state: they start afresh
on resume, and may be added or left out. The early stoppings are part of the run (their
settings in its config, their state in the file): a resume without them, or with other
settings, is refused as another run.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import math
import os
import struct
import time

import numpy as np

from digitcore._atomic import atomic_write_bytes, writable_target
from digitcore._version import __version__
from digitcore.errors import DigitcoreError

__all__ = ["CheckpointError", "FILE_NAME", "read_checkpoint"]

FILE_NAME = "checkpoint.safetensors"
LOCK_NAME = ".checkpoint.lock"  # held by the run using the directory (Checkpointer._lock)
FORMAT = "digitcore-checkpoint"
# 3: the optimizer's rate ("lr"); 2: the state has its own SHA-256 ("state_sha256"); 1 had
# none. An older digitcore refuses a newer file rather than resume it without its rate.
VERSION = 3
_MAX_HEADER = 1 << 24


class CheckpointError(DigitcoreError, ValueError):
    """A checkpoint is corrupt, or belongs to another run."""


def data_fingerprint(*arrays):
    """SHA-256 over the shapes, dtypes and bytes of ``arrays`` (hex; ~0.1 s per 50 MB)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if callable(v):  # a custom schedule: its name is all that can be compared
        return f"callable {getattr(v, '__module__', '?')}.{getattr(v, '__qualname__', repr(v))}"
    return repr(v)


# ---------------------------------------------------------------------------- file

def _encode(state, tensors):
    blobs, header, off = [], {}, 0
    for name, arr in tensors.items():
        blob = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [off, off + len(blob)]}
        off += len(blob)
        blobs.append(blob)
    data = b"".join(blobs)
    state = dict(state, sha256=hashlib.sha256(data).hexdigest())
    state["state_sha256"] = _state_digest(state)
    header["__metadata__"] = {"format": FORMAT, "digitcore_version": __version__,
                              "checkpoint": json.dumps(state, separators=(",", ":"))}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def _state_digest(state):
    """SHA-256 (hex) of the state's JSON without its "state_sha256", keys sorted: the same
    for the dict written and the dict read back (JSON numbers round-trip exactly)."""
    rest = {k: v for k, v in state.items() if k != "state_sha256"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


def read_checkpoint(path):
    """(state dict, {name: float32 array}) from a checkpoint file; CheckpointError if bad."""
    path = os.fspath(path)

    def bad(why):
        return CheckpointError(f"{path} is not a usable checkpoint: {why}")

    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise bad(f"the file is {len(blob)} bytes long (truncated)")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > _MAX_HEADER or 8 + n > len(blob):
        raise bad("the header length points past the end of the file (truncated or not "
                  "a checkpoint)")
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"))
        meta = header.pop("__metadata__")
        if meta.get("format") != FORMAT:
            raise bad(f"its format is {meta.get('format')!r}, not {FORMAT!r}")
        state = json.loads(meta["checkpoint"])
    except CheckpointError:
        raise
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError,
            RecursionError) as exc:
        raise bad(f"its header cannot be read ({type(exc).__name__}: {exc})") from None
    version = state.get("version") if isinstance(state, dict) else "?"
    if isinstance(version, bool) or version not in (1, 2, VERSION):
        raise bad(f"checkpoint version {version!r} is not 1 to {VERSION} (a newer digitcore "
                  "may have written it)")
    data = blob[8 + n:]
    if hashlib.sha256(data).hexdigest() != state.get("sha256"):
        raise bad("its tensor data does not match the recorded SHA-256 (the file is "
                  "corrupt)")
    # (version 1, written before the state had a checksum, has none to check)
    if version >= 2 and _state_digest(state) != state.get("state_sha256"):
        raise bad("its state (step, position, seed, history...) does not match the recorded "
                  "SHA-256 (the file was edited or is corrupt)")
    seed = state.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise bad(f"its seed {seed!r} is not a non-negative integer")
    tensors, spans = {}, []
    try:
        for name, spec in header.items():
            a, b = spec["data_offsets"]
            shape = spec["shape"]
            # (the checksums cover the data and the state, not this table: each entry is
            # checked to be one tensor's own stretch of the data, of its shape's size)
            if not (isinstance(shape, list) and all(
                    isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
                raise ValueError(f"tensor {name!r} has a bad shape {shape!r}")
            if spec["dtype"] != "F32" or not all(
                    isinstance(v, int) and not isinstance(v, bool) for v in (a, b)) \
                    or not 0 <= a <= b <= len(data) or b - a != 4 * math.prod(shape):
                raise ValueError(f"tensor {name!r} has a bad dtype or offsets")
            spans.append((a, b, name))
            arr = np.frombuffer(data[a:b], dtype="<f4")
            tensors[name] = arr.reshape(shape).astype(np.float32)
        end = 0
        for a, b, name in sorted(spans):
            if a != end:
                raise ValueError(f"tensor {name!r} overlaps another or leaves a gap before "
                                 "it")
            end = b
        if end != len(data):
            raise ValueError(f"the tensors cover {end} of the {len(data)} data bytes")
    except (KeyError, TypeError, ValueError) as exc:
        raise bad(f"its tensor table is malformed ({exc})") from None
    _upgrade(state, tensors)
    return state, tensors


# ---------------------------------------------------------------------------- the trainer side

class Checkpointer:
    """What ``Trainer.fit`` uses: one per fit. See the module docstring."""

    def __init__(self, directory, every_seconds):
        self.dir = os.fspath(directory)
        self.path = os.path.join(self.dir, FILE_NAME)
        self.every = every_seconds
        self.run = None
        self.last_write = time.monotonic()
        self.writes = 0
        self._lock_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def _lock(self):
        """Take the directory's lock (LOCK_NAME, an advisory lock the OS drops when the
        process ends, however it ends), or a CheckpointError when another run holds it:
        two runs on one directory would replace each other's checkpoints, and one would
        delete the other's temporary file in flight."""
        path = os.path.join(self.dir, LOCK_NAME)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.name == "nt":
                import msvcrt

                # (Windows releases a dead process's locks after a delay that "depends
                # upon available system resources": a run resumed right after a killed
                # one waits for it, up to two seconds)
                for attempt in range(20):
                    try:
                        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                        break
                    except OSError:
                        if attempt == 19:
                            raise
                        time.sleep(0.1)
            else:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise CheckpointError(
                f"checkpoint directory {self.dir} is in use by another run (training, or "
                "resuming, in this or another process): wait for it to end, or choose "
                "another directory") from None
        self._lock_fd = fd

    def release(self):
        """Let the directory go (the lock file stays: removing it would race a run
        taking it)."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        try:
            if os.name == "nt":  # (Windows wants a region unlocked before the close)
                import msvcrt

                os.lseek(fd, 0, os.SEEK_SET)
                with contextlib.suppress(OSError):
                    msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        finally:
            os.close(fd)  # (on POSIX the close drops flock's lock)

    def set_run(self, run_config):
        self.run = _jsonable(run_config)

    def exists(self):
        return os.path.exists(self.path)

    def prepare(self, resume):
        """Create the directory, check the checkpoint can be written there, take the
        directory's lock, drop temporaries a killed writer left; refuse to clobber."""
        if os.path.exists(self.dir) and not os.path.isdir(self.dir):
            raise CheckpointError(f"checkpoint directory {self.dir} is a file")
        os.makedirs(self.dir, exist_ok=True)
        # (a folder it may not write in is named now, not after the first epoch)
        writable_target(self.path)
        self._lock()
        for stale in glob.glob(os.path.join(glob.escape(self.dir), f".{FILE_NAME}.*.tmp")):
            with contextlib.suppress(OSError):
                os.unlink(stale)
        if self.exists() and not resume:
            raise CheckpointError(
                f"{self.path} already exists: resume it (resume=True, or --resume) or "
                f"choose another checkpoint directory")

    def _same_trainer_rate(self, state, trainer):
        """The run config records the optimizer's rate when the fit starts; a checkpoint
        from version 3 on records the rate it stopped at, which restore puts back. So
        the rate a fit starts with does not decide whether it continues a run (resumed on
        the same Trainer after a callback changed the rate, it is neither of them): when
        it is all that differs, the run is the checkpoint's, and so are the checkpoints
        written from here on. A rate that is neither the run's starting rate nor the one
        it stopped at, nor the one this Trainer's last fit left (a callback's), was asked for
        (``--resume --lr 5``): that is a different run, refused as any other changed
        setting is."""
        saved_run, now = state.get("run"), self.run
        if "lr" not in state:
            return
        try:
            rest = [{k: v for k, v in o.items() if k not in ("lr", "name")}
                    for o in (now["optimizer"], saved_run["optimizer"])]
            rate, started, stopped = (now["optimizer"].get("lr"),
                                      saved_run["optimizer"].get("lr"), state["lr"])
        except (KeyError, TypeError, AttributeError):
            return
        if rate not in (started, stopped, getattr(trainer, "_rate_at_stop", None)):
            return
        adjusted = dict(now, optimizer=saved_run["optimizer"])
        if rest[0] == rest[1] and adjusted == saved_run:
            self.run = adjusted

    def restore(self, saved, trainer, rng, history, stoppings):
        """Put a checkpoint's state (``read_checkpoint`` output) back into a fit in progress.

        Returns (position, finished) for the training loop. ``stoppings``: the fit's
        early stoppings as (key, EarlyStopping) pairs, as ``Trainer.fit`` names them.
        """
        state, tensors = saved
        self._same_trainer_rate(state, trainer)
        if state.get("run") != self.run:
            raise CheckpointError(
                f"{self.path} was written by a different run; resuming would not continue "
                f"it: {_differences(state.get('run'), self.run)}")
        net, opt = trainer.network, trainer.optimizer
        try:
            params = tensors["params"]
            if params.shape != net.flat_parameters.shape:
                raise KeyError("params")
            for name in _STATE_NAMES:
                arr, got = getattr(opt, name), tensors.get(f"optimizer.{name}")
                if (arr is None) != (got is None) or (got is not None
                                                      and got.shape != arr.shape):
                    raise KeyError(f"optimizer.{name}")
            pos = state["position"]
            position = (int(pos["epoch"]), int(pos["batch"]), float(pos["loss_sum"]),
                        int(pos["correct"]), int(pos["seen"]), float(pos["elapsed"]))
            if not np.isfinite(params).all():
                raise ValueError("params holds NaN or infinite values")
            h = state["history"]
            epochs, logs = list(h["epoch"]), {k: list(h["history"][k]) for k in history.KEYS}
            stopped_early, best_epoch = bool(h.get("stopped_early", False)), h.get("best_epoch")
            step = int(state["step"])
            # the rate a callback may have changed since the run began (files written
            # before it was recorded keep the optimizer's)
            lr = float(state["lr"]) if "lr" in state else float(opt.lr)
            if not (math.isfinite(lr) and lr >= 0):  # (a callback may set 0)
                raise ValueError(f"lr {lr} is not a finite rate >= 0")
            # every early stopping's state, read whole before anything is changed (the
            # run config names them all, so each has its state, and its best parameters
            # once it has a best epoch and restores it)
            es_states = []
            for key, es in stoppings:
                e = (state.get("early_stopping") if key == "early_stopping"
                     else (state.get("callbacks") or {}).get(key))
                if not isinstance(e, dict):
                    raise KeyError(f"{key} (the state of an early stopping)")
                best_epoch = _epoch_or_none(e["best_epoch"])
                best_params = tensors.get(f"{key}.best_params")
                if best_params is None and es.restore_best and best_epoch is not None:
                    raise KeyError(f"{key}.best_params")
                if best_params is not None and best_params.shape != params.shape:
                    raise ValueError(f"{key}.best_params has shape {best_params.shape}, "
                                     f"expected {params.shape}")
                es_states.append((es, float(e["best"]), best_epoch, int(e["wait"]),
                                  best_params))
            # (the tensor table is not under the checksums: a name this run would not
            # have written is damage, not something to skip)
            known = {"params", *(f"optimizer.{name}" for name in _STATE_NAMES),
                     *(f"{key}.best_params" for key, _ in stoppings)}
            unknown = sorted(set(tensors) - known)
            if unknown:
                raise ValueError(f"tensor {unknown[0]!r} is not one this run writes")
            rng.bit_generator.state = state["rng_epoch_start"]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # (nothing of the fit has changed yet: the network keeps its parameters)
            raise CheckpointError(f"{self.path} is not a usable checkpoint: its state is "
                                  f"incomplete or malformed ({type(exc).__name__}: {exc})") \
                from None
        net.flat_parameters[...] = params
        for name in _STATE_NAMES:
            if getattr(opt, name) is not None:
                getattr(opt, name)[...] = tensors[f"optimizer.{name}"]
        opt.step_count = step
        opt.lr = lr
        history.epoch[:] = epochs
        history.history.update(logs)
        history.stopped_early, history.best_epoch = stopped_early, best_epoch
        for es, best, es_best_epoch, wait, best_params in es_states:
            es.best, es.best_epoch, es.wait, es.best_params = best, es_best_epoch, wait, best_params
        self.last_write = time.monotonic()
        return position, bool(state.get("finished", False))

    def due(self):
        return self.every is not None and time.monotonic() - self.last_write >= self.every

    def save(self, trainer, rng_epoch_start, position, history, stoppings, finished):
        """Write the state at a chunk boundary: ``position`` is (epoch, next batch,
        loss_sum, correct, seen, elapsed seconds) within that epoch, ``rng_epoch_start``
        the shuffling generator's state before that epoch's permutation."""
        net, opt = trainer.network, trainer.optimizer
        tensors = {"params": net.flat_parameters}
        for name in _STATE_NAMES:
            if getattr(opt, name) is not None:
                tensors[f"optimizer.{name}"] = getattr(opt, name)
        es_states = {}
        for key, es in stoppings:
            es_states[key] = {"best": es.best, "best_epoch": es.best_epoch, "wait": es.wait}
            if es.best_params is not None:
                tensors[f"{key}.best_params"] = es.best_params
        epoch, batch, loss_sum, correct, seen, elapsed = position
        state = {
            "version": VERSION, "run": self.run, "seed": history.seed,
            "step": opt.step_count, "lr": float(opt.lr), "finished": bool(finished),
            "position": {"epoch": epoch, "batch": batch, "loss_sum": loss_sum,
                         "correct": correct, "seen": seen, "elapsed": elapsed},
            "rng_epoch_start": rng_epoch_start,
            "history": {"epoch": history.epoch, "history": history.history,
                        "stopped_early": history.stopped_early,
                        "best_epoch": history.best_epoch},
            "early_stopping": es_states.pop("early_stopping", None),
            "callbacks": es_states,  # EarlyStopping callbacks given in `callbacks`
        }
        atomic_write_bytes(self.path, _encode(_jsonable(state), tensors))
        self.last_write = time.monotonic()
        self.writes += 1


def _epoch_or_none(value):
    """An early stopping's best_epoch from a checkpoint: an int, or None (none yet)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"best_epoch must be an int or null, got {value!r}")
    return value


# the optimizer's state arrays (Optimizer attributes; tensors "optimizer.<name>")
_STATE_NAMES = ("grad_avg", "sq_avg")


def _upgrade(state, tensors):
    """A checkpoint written before the optimizer's state and RMSprop's decay were named by
    their role, in today's names, in place: tensors "optimizer.state1"/"state2" (state1
    was RMSprop's squared-gradient average, else the gradient average; state2 Adam's
    squared-gradient average) and the run config's RMSprop "beta2" (its rho); and one
    written before the L1 penalty, whose run config has no "l1" (the run had none)."""
    run = state.get("run")
    opt_cfg = run.get("optimizer") if isinstance(run, dict) else None
    kind = opt_cfg.get("kind") if isinstance(opt_cfg, dict) else None
    if kind == "rmsprop" and "beta2" in opt_cfg and "rho" not in opt_cfg:
        opt_cfg["rho"] = opt_cfg.pop("beta2")
    # written before the L1 penalty existed: the run had none
    if isinstance(opt_cfg, dict) and "l1" not in opt_cfg:
        opt_cfg["l1"] = 0.0
    trainer_cfg = run.get("trainer") if isinstance(run, dict) else None
    if isinstance(trainer_cfg, dict) and "l1" not in trainer_cfg:
        trainer_cfg["l1"] = 0.0
    # written when the chunking (which never changes the weights) was part of the run
    if isinstance(trainer_cfg, dict):
        trainer_cfg.pop("chunk_samples", None)
        trainer_cfg.pop("chunk_seconds", None)
    old1, old2 = tensors.pop("optimizer.state1", None), tensors.pop("optimizer.state2", None)
    if old1 is not None:
        tensors["optimizer.sq_avg" if kind == "rmsprop" else "optimizer.grad_avg"] = old1
    if old2 is not None:
        tensors["optimizer.sq_avg"] = old2


def _short(v):
    if isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v):
        return f"sha256 {v[:12]}..."  # a data fingerprint
    return repr(v)


def _differences(saved, now, prefix=""):
    if not isinstance(saved, dict) or not isinstance(now, dict):
        return f"{prefix or 'config'}: {saved!r} in the checkpoint, {now!r} now"
    out = []
    for k in sorted(set(saved) | set(now)):
        a, b = saved.get(k, "<absent>"), now.get(k, "<absent>")
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out.append(_differences(a, b, f"{prefix}{k}."))
        else:
            out.append(f"{prefix}{k}: {_short(a)} in the checkpoint, {_short(b)} now")
    return "; ".join(out)
