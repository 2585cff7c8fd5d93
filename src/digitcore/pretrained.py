"""The bundled pretrained model: a network that reads digits right after ``pip install``.

>>> net = digitcore.load_pretrained()                  # doctest: +SKIP
>>> net.predict_image("my_digit.png")                   # doctest: +SKIP
(7, array([...]))

The file, ``digitcore/_data/pretrained-mnist.safetensors``, ships in the wheel and the
sdist. ``benchmarks/train_pretrained.py`` builds it with :func:`train_pretrained` and
:func:`save_pretrained` (a preset of :mod:`digitcore.presets`, one seed, all 60,000 MNIST
training images) and writes its test accuracy to ``benchmarks/results/``; the README's
model card quotes that. The same command, preset, seed and digitcore version rebuild the
same bytes on any number of threads.

The file is an ordinary model file (:func:`digitcore.load_model` reads it), stored as
float16 when that leaves the test accuracy unchanged, with the SHA-256 of its tensor data
in its training metadata (``weights_sha256``): :func:`load_pretrained` checks it, so a
damaged file is an error, never a network that reads digits slightly wrong.
"""

from __future__ import annotations

import copy
import hashlib
import os
import struct
import tempfile
from pathlib import Path

from digitcore.errors import ModelFormatError

__all__ = ["load_pretrained", "pretrained_path", "weights_digest", "train_pretrained",
           "save_pretrained", "PRETRAINED_FILE", "MAX_BYTES"]

PRETRAINED_FILE = "pretrained-mnist.safetensors"
# what the wheel may carry for it (issue 19: "at most about 4 MB")
MAX_BYTES = 4 * 1024 * 1024


def pretrained_path() -> Path:
    """Where the bundled model file is (inside the installed package)."""
    return Path(__file__).resolve().parent / "_data" / PRETRAINED_FILE


def weights_digest(path) -> str:
    """SHA-256 (hex) of a model file's tensor data: the bytes after its header.

    The header (config and metadata, where the digest itself is kept) is left out, so
    the digest can be stored in the file it describes.
    """
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise ModelFormatError(f"{os.fspath(path)}: file is {len(prefix)} bytes, too "
                                   "short for a safetensors header")
        (n,) = struct.unpack("<Q", prefix)
        f.seek(8 + n)
        digest = hashlib.sha256()
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_pretrained():
    """The network of the bundled pretrained model, ready to predict.

    No training and no network access: the model is a file inside the package. Its
    recipe and test accuracy are in the README's model card and in
    ``net.training_summary`` (``preset``, ``recipe``, ``dataset``, ``test_accuracy``, ...).

    Returns
    -------
    Network
        A 784-input, 10-class network with float32 parameters (widened from the
        file's float16 when stored so), a new object on each call.

    Raises
    ------
    FileNotFoundError
        If the file is not in this installation (a broken install or a source tree
        without it): the message says how to get it back.
    ModelFormatError
        If the file is damaged: malformed, truncated, or its tensor data do not match
        the SHA-256 recorded in it.
    """
    from digitcore.modelio import load_model

    path = pretrained_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: the bundled pretrained model is missing from this installation of "
            "digitcore (reinstall it: pip install --force-reinstall digitcore; in a source "
            "tree, rebuild it with python benchmarks/train_pretrained.py)")
    net = load_model(path)
    summary = net.training_summary
    expected = summary.get("weights_sha256") if isinstance(summary, dict) else None
    if not isinstance(expected, str):
        raise ModelFormatError(f"{path}: no weights_sha256 in its training metadata (not the "
                               "bundled pretrained model; reinstall digitcore)")
    actual = weights_digest(path)
    if actual != expected:
        raise ModelFormatError(
            f"{path}: the tensor data do not match their recorded SHA-256 ({actual[:12]}... "
            f"instead of {expected[:12]}...): the file is damaged; reinstall digitcore")
    if net.n_features != 784:
        raise ModelFormatError(f"{path}: reads {net.n_features} features, not 28x28 images")
    return net


def train_pretrained(x_train, y_train, preset="best", seed=0, *, verbose=0):
    """Train a network the way the bundled model is trained.

    Parameters
    ----------
    x_train : ndarray, shape (n, 28, 28) or (n, 784), uint8
        All the training images: no validation split is carved here, as the preset was
        chosen on one beforehand.
    y_train : ndarray, shape (n,)
    preset : str or dict
        A name of :data:`digitcore.presets.PRESETS` or a dict of the same keys. Its
        epochs and augmentation follow ``epochs_for`` / ``augment_for`` as in
        ``digitcore train``.
    seed : int
        Initialisation, shuffling, dropout and deformations: the same seed gives the same
        weights bit for bit on any number of threads.

    Returns
    -------
    (Network, History)
        The network's ``training_summary`` holds the trainer's summary plus ``preset``,
        ``recipe`` (the preset as used), ``n_train`` and ``seed``.

    Raises
    ------
    KeyboardInterrupt
        If training was interrupted (a half-trained network is never returned).
    """
    from digitcore.presets import NETWORK_KEYS, TRAINER_KEYS, build, get_preset

    name = preset if isinstance(preset, str) else "custom"
    cfg = get_preset(preset) if isinstance(preset, str) else copy.deepcopy(dict(preset))
    n = len(x_train)
    net, trainer = build(cfg, seed, n, n_features=int(x_train[0].size),
                         n_classes=max(int(y_train.max()) + 1, 2),
                         trainer_kw=dict(verbose=verbose))
    cfg["epochs"] = trainer.epochs
    history = trainer.fit(x_train, y_train)
    if history.interrupted:
        raise KeyboardInterrupt
    recipe = {k: v for k, v in cfg.items() if k in (*NETWORK_KEYS, *TRAINER_KEYS)}
    recipe["augment"] = None if trainer.augment is None else trainer.augment.to_dict()
    net.training_summary = dict(net.training_summary or {}, preset=name, recipe=recipe,
                                n_train=int(n), seed=int(seed))
    return net, history


def save_pretrained(network, path, *, dtype="float16", metadata=None) -> str:
    """Write `network` as a pretrained model file: its ``training_summary`` plus
    `metadata` and the ``weights_sha256`` of the tensor data, atomically.

    Returns the digest and sets ``network.training_summary`` to what was stored.
    ValueError if the file would exceed :data:`MAX_BYTES` (nothing is written then) or a
    parameter does not fit `dtype`.
    """
    summary = dict(network.training_summary or {}, **(metadata or {}))
    summary.pop("weights_sha256", None)
    path = Path(path)
    # written beside `path` and renamed over it: the same file system, so the rename is atomic
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".pretrained-") as tmp:
        tmp_path = Path(tmp) / path.name
        network.save(tmp_path, metadata=summary, dtype=dtype)
        # the tensor data do not depend on the metadata: the digest of this file is the
        # digest of the final one
        summary["weights_sha256"] = weights_digest(tmp_path)
        network.save(tmp_path, metadata=summary, dtype=dtype)
        size = tmp_path.stat().st_size
        if size > MAX_BYTES:
            raise ValueError(f"{path}: {size:,} bytes, over the {MAX_BYTES:,}-byte budget of "
                             "the bundled model (store float16, or train a smaller network)")
        os.replace(tmp_path, path)
    network.training_summary = summary
    return summary["weights_sha256"]
