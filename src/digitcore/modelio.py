"""Model files: save a Network (or a Committee of them) to, and load it from, a
safetensors file.

The format (PyTorch-loadable tensor names, the config and training summary in the
header's metadata) is described and implemented in :mod:`digitcore._modelfile`;
:func:`to_torch` builds the equivalent PyTorch module. The dependency points one way:
this module builds :class:`~digitcore.network.Network` objects; the network writes itself
through ``_modelfile`` (``Network.save``) and never imports this module.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from digitcore._modelfile import decode_training, read_models, write_model
from digitcore.committee import Committee
from digitcore.errors import ModelFormatError
from digitcore.network import Network

__all__ = ["save_model", "load_model", "read_model_info", "to_torch"]


def save_model(network, path, metadata=None, dtype="float32") -> None:
    """Save `network` to a safetensors file at `path`, atomically (``network.save``).

    Parameters
    ----------
    network : Network or Committee
        Anything with ``get_config()``, ``weights`` (list of ``(out, in)``
        arrays) and ``biases`` (list of ``(out,)`` arrays); a Committee writes
        itself (``Committee.save``: its members in one file).
    path : str or os.PathLike
        Destination; an existing file is replaced only once the new one is
        completely written.
    metadata : dict, optional
        JSON-serialisable training summary (epochs, accuracy, history, ...),
        stored as the ``training`` metadata string. NumPy scalars and arrays
        and History objects are converted. Default: the network's
        ``training_summary`` attribute, if it has one that is not None.
    dtype : {"float32", "float16"}
        Storage of the parameters. ``"float16"`` halves the file and rounds each
        value to the nearest float16 (:func:`load_model` returns float32 either way);
        check that the rounded network still reads your data as well.

    Raises
    ------
    ValueError
        If the network's parameters do not match its layer sizes, `metadata` is
        not JSON-serialisable, or a parameter does not fit float16.
    OSError
        If the file cannot be written (the old file, if any, is intact).
    """
    if isinstance(network, (Committee, Network)):  # (their save keeps the uint8 record)
        network.save(path, metadata=metadata, dtype=dtype)
        return
    if metadata is None:
        metadata = getattr(network, "training_summary", None)
    write_model(path, network.get_config(), network.weights, network.biases, metadata,
                dtype=dtype)


def load_model(path):
    """Load a Network saved by :func:`save_model` (or ``Network.save``), or a Committee
    saved by ``Committee.save``.

    Parameters
    ----------
    path : str or os.PathLike
        A digitcore safetensors file.

    Returns
    -------
    Network or Committee
        Built from the stored config(s), with the stored float32 parameters;
        its ``training_summary`` is the decoded ``training`` metadata (or None).

    Raises
    ------
    ModelFormatError
        If the file is malformed in any way (the message names the file and
        the problem). Nothing is built before the whole file is validated.
    FileNotFoundError
        If `path` does not exist.
    """
    members, meta, _size = read_models(path)
    model = Committee(_networks(path, members, meta)) if "committee" in meta \
        else _networks(path, members, meta)[0]
    model.training_summary = decode_training(meta)
    if isinstance(model, Committee):
        model._share_record()
    return model


def _networks(path, members, meta) -> list:
    """The networks of read_models' ``members``, or ModelFormatError for a config or
    parameters a Network refuses (load_model's checks, which read_model_info makes too)."""
    nets = []
    for m, (config, weights, biases) in enumerate(members):
        where = f"committee member {m}: " if "committee" in meta else ""
        try:
            network = Network.from_config(config)
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelFormatError(f"{os.fspath(path)}: {where}bad config: {exc}") from exc
        try:
            network.set_parameters(weights, biases)
        except (ValueError, TypeError) as exc:
            raise ModelFormatError(f"{os.fspath(path)}: {where}bad parameters: {exc}") from exc
        nets.append(network)
    return nets


def architecture_text(members, committee=False) -> str:
    """A model's architecture in words, from its networks' ``(layer_sizes, activation)``:
    ``"784-128-10 relu"``; for a committee (``committee``, or more than one network)
    ``"committee of 5 x 784-800-10 relu"``, or, when the members differ,
    ``"committee of 2: 784-32-10 relu, 784-16-16-10 tanh"``."""
    archs = ["-".join(map(str, sizes)) + f" {act}" for sizes, act in members]
    if len(archs) == 1 and not committee:
        return archs[0]
    if len(set(archs)) == 1:
        return f"committee of {len(archs)} x {archs[0]}"
    return f"committee of {len(archs)}: " + ", ".join(archs)


def read_model_info(path) -> dict:
    """Describe a model file: architecture, sizes, metadata (the file is checked as
    :func:`load_model` checks it).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict
        ``path``, ``file_size`` (bytes), ``architecture`` (e.g.
        ``"784-128-10 relu"``), ``layer_sizes``, ``activation``, ``n_params``,
        ``config`` (dict) and ``metadata`` (dict: ``format``,
        ``digitcore_version``, ``training`` decoded from JSON when present,
        plus any other stored string). For a committee file, ``architecture``
        reads ``"committee of 5 x 784-800-10 relu"``, ``layer_sizes`` and
        ``activation`` are the first member's, ``n_params`` counts all members,
        ``config`` is ``{"combine": "mean_proba", "members": [...]}`` and
        ``members`` is the member count.

    Raises
    ------
    ModelFormatError
        As :func:`load_model`.
    """
    members, meta, size = read_models(path)
    _networks(path, members, meta)  # (what load_model refuses, info refuses too)
    metadata: dict[str, Any] = {k: v for k, v in meta.items()
                                if k not in ("config", "committee")}
    if "training" in metadata:
        metadata["training"] = decode_training(meta)
    config, _, _ = members[0]
    sizes = config["layer_sizes"]
    arch = architecture_text([(sizes, config["activation"])])
    info = {
        "path": os.fspath(path),
        "file_size": size,
        "architecture": arch,
        "layer_sizes": list(sizes),
        "activation": config["activation"],
        "n_params": int(sum(w.size + b.size for _, ws, bs in members
                            for w, b in zip(ws, bs))),
        "config": config,
        "metadata": metadata,
    }
    if "committee" in meta:
        info["architecture"] = architecture_text(
            [(c["layer_sizes"], c["activation"]) for c, _, _ in members], committee=True)
        info["config"] = {"combine": "mean_proba", "members": [c for c, _, _ in members]}
        info["members"] = len(members)
    return info


# ----------------------------------------------------------------------------
# PyTorch interop

# One torch module per name of network.ACTIVATIONS (tests/test_network.py checks the keys).
_TORCH_ACTIVATIONS = {"relu": "ReLU", "leaky_relu": "LeakyReLU", "sigmoid": "Sigmoid",
                      "tanh": "Tanh", "identity": "Identity"}


def to_torch(network):
    """Build an equivalent ``torch.nn.Sequential`` (needs PyTorch).

    The network's input normalisation is folded into the first Linear layer,
    so the returned module takes float inputs in [0, 1] shaped
    ``(n, n_features)`` and returns logits ``(n, n_classes)``; softmax of the
    logits equals ``network.predict_proba``.
    """
    if not isinstance(network, Network):
        from digitcore.committee import Committee

        if isinstance(network, Committee):
            raise TypeError(
                f"to_torch converts one Network; this is a Committee of "
                f"{len(network.members)} (its prediction averages their probabilities): "
                f"convert each of its .members")
        raise TypeError(f"to_torch needs a digitcore Network, got {type(network).__name__}")
    try:
        import torch
    except ImportError as exc:
        raise ImportError("to_torch needs PyTorch: pip install torch") from exc
    config = network.get_config()
    act = config.get("activation", "relu")
    if act not in _TORCH_ACTIVATIONS:
        raise ValueError(f"activation {act!r} has no PyTorch equivalent here")
    sizes = [int(s) for s in config["layer_sizes"]]
    mean = float(config.get("input_mean", 0.0))
    std = float(config.get("input_std", 1.0))
    modules = []
    for i in range(len(sizes) - 1):
        modules.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            modules.append(getattr(torch.nn, _TORCH_ACTIVATIONS[act])())
    model = torch.nn.Sequential(*modules)
    state = {}
    for i, (w, b) in enumerate(zip(network.weights, network.biases)):
        w = np.asarray(w, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        if i == 0:
            # W ((x - m) / s) + b  ==  (W / s) x + (b - (m / s) W 1)
            b = b - (mean / std) * w.sum(axis=1)
            w = w / std
        state[f"{2 * i}.weight"] = torch.from_numpy(w.astype(np.float32))
        state[f"{2 * i}.bias"] = torch.from_numpy(b.astype(np.float32))
    model.load_state_dict(state)
    model.eval()
    return model
