"""The bundled pretrained model: networks that read digits right after ``pip install``.

>>> model = digitcore.load_pretrained()                # doctest: +SKIP
>>> model.predict_image("my_digit.png")                 # doctest: +SKIP
(7, array([...]))

The file, ``digitcore/_data/pretrained-mnist.safetensors``, ships in the wheel and the
sdist. ``benchmarks/train_pretrained.py`` builds it with :func:`train_pretrained` and
:func:`save_pretrained` (a preset of :mod:`digitcore.presets`, one seed or a committee of
networks of consecutive seeds, all 60,000 MNIST training images) and writes its test
accuracy to ``benchmarks/results/``; the README's model card quotes that. The same
command, preset, seed, member count and digitcore version rebuild the same bytes on any
number of threads.

The file is an ordinary model file (:func:`digitcore.load_model` reads it), stored as
float16 when that leaves the number of training images it reads right unchanged
(``benchmarks/train_pretrained.py --dtype auto``; the test set plays no part), with the
SHA-256 of its tensor data (``weights_sha256``) and of the whole file (``file_sha256``,
which covers the header: the members' input scaling lives there) in its training
metadata: :func:`load_pretrained` checks both, so a damaged file is an error, never a
model that reads digits slightly wrong.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from pathlib import Path

from digitcore._atomic import atomic_write_bytes, writable_target
from digitcore.errors import ModelFormatError

__all__ = ["load_pretrained", "pretrained_path", "weights_digest", "file_digest",
           "train_pretrained",
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


_UNSET_DIGEST = "0" * 64  # file_sha256 while the file's own digest is taken


def file_digest(path, recorded=None) -> str:
    """SHA-256 (hex) of a whole model file, header and tensor data, with the 64 hex
    digits of ``recorded`` (the file_sha256 stored in it, found exactly once) read as
    zeros, so the digest can be stored in the file it describes; ``recorded`` None: the
    file as it is (one written with the zeros in place). ModelFormatError if
    ``recorded`` is not in the file exactly once."""
    data = Path(os.fsdecode(path)).read_bytes()
    if recorded is not None:
        mark = recorded.encode("ascii")
        if len(recorded) != 64 or data.count(mark) != 1:
            raise ModelFormatError(f"{os.fspath(path)}: its file_sha256 is not where it was "
                                   "written: the file is damaged; reinstall digitcore")
        data = data.replace(mark, _UNSET_DIGEST.encode("ascii"))
    return hashlib.sha256(data).hexdigest()


def load_pretrained():
    """The bundled pretrained model, ready to predict.

    No training and no network access: the model is a file inside the package. Its
    recipe and test accuracy are in the README's model card and in
    ``model.training_summary`` (``preset``, ``recipe``, ``members``, ``dataset``,
    ``test_accuracy``, ...).

    Returns
    -------
    Network or Committee
        A 784-input, 10-class model with float32 parameters (widened from the file's
        float16 when stored so), a new object on each call: a
        :class:`~digitcore.committee.Committee` when the file holds several networks (the
        bundled file does: ``training_summary["members"]``), else a Network. Both answer
        ``predict``, ``predict_proba``, ``predict_image`` and ``score`` alike.

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
    recorded = summary.get("file_sha256")
    if not isinstance(recorded, str):
        raise ModelFormatError(f"{path}: no file_sha256 in its training metadata (not the "
                               "bundled pretrained model; reinstall digitcore)")
    if file_digest(path, recorded) != recorded:
        # (the header: the members' configs, input scaling among them, and the metadata)
        raise ModelFormatError(
            f"{path}: the file does not match its recorded SHA-256 (file_sha256): its "
            "header is damaged; reinstall digitcore")
    if net.n_features != 784:
        raise ModelFormatError(f"{path}: reads {net.n_features} features, not 28x28 images")
    # trained on MNIST's uint8 images (a file built before the summary said so does not):
    # floats that can only be 0-255 pixels are refused (network.check_pixel_floats)
    summary.setdefault("input", "uint8")
    # ... on a dark background: light-background or 0/1 uint8 images are refused
    # (network.check_pixel_images)
    summary.setdefault("background", "dark")
    if hasattr(net, "_share_record"):  # (a committee: its members too)
        net._share_record()
    return net


def train_pretrained(x_train, y_train, preset="best", seed=0, *, members=None, verbose=0):
    """Train a network, or a committee of them, the way the bundled model is trained.

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
        weights bit for bit on any number of threads. Member ``j`` of a committee trains
        with ``seed + j``.
    members : int, optional
        How many networks: 1 trains one :class:`~digitcore.network.Network`, more train
        them one after another and put them in a :class:`~digitcore.committee.Committee`.
        Default: the preset's (``presets.members_of``: 4 for ``"committee"``, else 1).

    Returns
    -------
    (Network, History) or (Committee, list of History)
        The model's ``training_summary`` holds ``preset``, ``recipe`` (one network's, as
        used), ``n_train``, ``seed``, ``members`` and the preset's ``tta`` if it has one;
        a single network's also holds the trainer's summary, a committee's the ``seeds``
        of its members and the ``input`` they read.

    Raises
    ------
    KeyboardInterrupt
        If training was interrupted (a half-trained model is never returned).
    ValueError
        If ``members`` is below 1 (``presets.build_committee`` says so).
    """
    from digitcore.committee import Committee
    from digitcore.presets import build_committee, get_preset, tta_of

    name = preset if isinstance(preset, str) else "custom"
    n = len(x_train)
    runs = build_committee(preset, seed, n, members, n_features=int(x_train[0].size),
                           n_classes=max(int(y_train.max()) + 1, 2),
                           trainer_kw=dict(verbose=verbose))
    histories = []
    for _, trainer in runs:
        history = trainer.fit(x_train, y_train)
        if history.interrupted:
            raise KeyboardInterrupt
        histories.append(history)
    nets, k = [net for net, _ in runs], len(runs)
    common = dict(preset=name, recipe=recorded_recipe(preset, n), n_train=int(n), seed=int(seed),
                  members=k)
    tta = tta_of(get_preset(preset) if isinstance(preset, str) else preset)
    if tta is not None:  # (what `digitcore evaluate`, predict and serve score it with)
        common["tta"] = tta
    if k == 1:
        net = nets[0]
        net.training_summary = dict(net.training_summary or {}, **common)
        return net, histories[0]
    committee = Committee(nets)
    committee.training_summary = dict(common, seeds=[int(seed) + j for j in range(k)],
                                      input=nets[0].training_summary["input"])
    if nets[0].training_summary.get("background"):  # (network.check_pixel_images)
        committee.training_summary["background"] = nets[0].training_summary["background"]
    return committee, histories


def recorded_recipe(preset, n_train) -> dict:
    """The ``recipe`` a pretrained model's summary records for ``preset`` (a name of
    ``presets.PRESETS`` or a dict of its keys) trained on ``n_train`` images: one network's
    Network and Trainer entries, with the epochs and augmentation such a run takes
    (``presets.recipe``, as ``presets.build`` trains it), the augmentation as a dict."""
    from digitcore.augment import get_augment
    from digitcore.presets import NETWORK_KEYS, TRAINER_KEYS, recipe

    cfg = recipe(preset, n_train)
    out = {key: v for key, v in cfg.items() if key in (*NETWORK_KEYS, *TRAINER_KEYS)}
    out["augment"] = None if cfg["augment"] is None else get_augment(cfg["augment"]).to_dict()
    return out


def save_pretrained(network, path, *, dtype="float16", metadata=None) -> str:
    """Write `network` (a Network or a Committee) as a pretrained model file: its
    ``training_summary`` plus `metadata`, the ``weights_sha256`` of the tensor data and
    the ``file_sha256`` of the whole file (:func:`file_digest`), atomically.

    Returns the digest and sets ``network.training_summary`` to what was stored.
    ValueError if the file would exceed :data:`MAX_BYTES` (nothing is written then) or a
    parameter does not fit `dtype`.
    """
    summary = dict(network.training_summary or {}, **(metadata or {}))
    summary.pop("weights_sha256", None)
    summary["file_sha256"] = _UNSET_DIGEST
    path = Path(os.fsdecode(path))  # (a bytes path too)
    writable_target(path)  # (before the work: a bad path is named at once)
    # drafted in a temporary directory (the digest needs the file), then written over
    # `path` as every file is (a symbolic link followed, the replaced file's permissions
    # kept)
    with tempfile.TemporaryDirectory(prefix="digitcore-pretrained-") as tmp:
        tmp_path = Path(tmp) / path.name
        network.save(tmp_path, metadata=summary, dtype=dtype)
        # the tensor data do not depend on the metadata: the digest of this file is the
        # digest of the final one
        summary["weights_sha256"] = weights_digest(tmp_path)
        network.save(tmp_path, metadata=summary, dtype=dtype)
        # ... and its header's length does not depend on the digits of file_sha256
        summary["file_sha256"] = file_digest(tmp_path)
        network.save(tmp_path, metadata=summary, dtype=dtype)
        size = tmp_path.stat().st_size
        if size > MAX_BYTES:
            raise ValueError(f"{path}: {size:,} bytes, over the {MAX_BYTES:,}-byte budget of "
                             "the bundled model (store float16, or train a smaller network)")
        atomic_write_bytes(path, tmp_path.read_bytes())
    network.training_summary = summary
    return summary["weights_sha256"]
