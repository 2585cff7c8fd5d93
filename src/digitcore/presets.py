"""Named training recipes, shared by ``digitcore train --preset`` and the benchmarks.

Each preset is a dict of Network and Trainer arguments. The accuracy and time each
reaches on full MNIST is measured by ``benchmarks/bench_accuracy.py`` (see README).
"""

from __future__ import annotations

import copy

__all__ = ["PRESETS", "get_preset", "NETWORK_KEYS", "TRAINER_KEYS"]

NETWORK_KEYS = ("hidden", "activation", "init", "dropout")
TRAINER_KEYS = ("optimizer", "lr", "batch_size", "epochs", "l2", "l1", "lr_schedule",
                "warmup", "clip_norm")

PRESETS = {
    # The README's main job: a few seconds on a laptop, >= 97.5% on full MNIST.
    # On small data (mnist-mini) it runs more epochs: see `min_samples`.
    "default": dict(hidden=[512], activation="relu", dropout=0.3, optimizer="adam",
                    lr=2e-3, batch_size=128, epochs=6, lr_schedule="cosine", warmup=0.0,
                    min_samples=240_000),
    # The best plain MLP we know for about a minute of CPU: >= 98.5% on full MNIST.
    "best": dict(hidden=[800], activation="relu", dropout=0.3, optimizer="adam", lr=2e-3,
                 batch_size=128, epochs=30, lr_schedule="cosine", warmup=1.0),
    # The classic tutorial: 784-10-10, sigmoid-free ReLU, full-batch gradient descent.
    "tutorial": dict(hidden=[10], activation="relu", dropout=0.0, optimizer="sgd", lr=0.1,
                     batch_size=None, epochs=500, lr_schedule="constant", warmup=0.0),
    # The reference recipe of the speed benchmark: 784-128-10, SGD lr 0.1, batch 128.
    "sgd": dict(hidden=[128], activation="relu", dropout=0.0, optimizer="sgd", lr=0.1,
                batch_size=128, epochs=10, lr_schedule="constant", warmup=0.0),
}


def epochs_for(preset, n_train):
    """Epochs to run on ``n_train`` samples: at least ``min_samples`` samples seen in all."""
    epochs = preset["epochs"]
    min_samples = preset.get("min_samples")
    if min_samples and n_train > 0:
        epochs = max(epochs, -(-min_samples // n_train))
    return epochs


def get_preset(name):
    """A copy of preset ``name``; a ValueError lists the names when it is unknown."""
    try:
        return copy.deepcopy(PRESETS[name])
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
