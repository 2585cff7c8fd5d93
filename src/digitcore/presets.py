"""Named training recipes, shared by ``digitcore train --preset`` and the benchmarks.

Each preset is a dict of Network and Trainer arguments. The accuracy and time each
reaches on full MNIST is measured by ``benchmarks/bench_accuracy.py`` (see README).
"""

from __future__ import annotations

import copy
import os

__all__ = ["PRESETS", "get_preset", "epochs_for", "augment_for", "recipe", "build",
           "build_committee", "member_checkpoint", "members_of", "tta_of", "NETWORK_KEYS",
           "TRAINER_KEYS"]

NETWORK_KEYS = ("hidden", "activation", "init", "dropout")
TRAINER_KEYS = ("optimizer", "lr", "batch_size", "epochs", "l2", "l1", "lr_schedule",
                "warmup", "clip_norm")

PRESETS = {
    # The README's main job: a few seconds on a laptop, >= 97.5% on full MNIST.
    # On small data (mnist-mini) it runs more epochs (`min_samples`) and, below
    # `small_data["below"]` training images, deforms them (`small_data["augment"]`):
    # see augment_for.
    "default": dict(hidden=[512], activation="relu", dropout=0.3, optimizer="adam",
                    lr=2e-3, batch_size=128, epochs=6, lr_schedule="cosine", warmup=0.0,
                    min_samples=240_000, small_data=dict(below=10_000, augment="affine")),
    # The best plain MLP we know for half a minute on two cores. Chosen on the validation
    # split of benchmarks/tune_presets.py (first 50,000 training images / last 10,000;
    # seeds 0, 1, 2; benchmarks/results/tune_presets-best-*.json): 1200 hidden units with
    # dropout 0.5 for 24 epochs read 98.64 / 98.63 / 98.62% (mean 98.63%), against
    # 98.56% for 800 units with dropout 0.3 (24 epochs; 30 epochs 98.51%). Nearby tries
    # were no better: 1024 units / 0.5 98.55%, 1200 / 0.5 for 20 epochs 98.55%, 800 units
    # with dropout 0.4 or 0.5 for 24 epochs 98.50 / 98.54% and for 36 epochs 98.54 /
    # 98.55%, 1024 units for 20 epochs 98.49% (dropout 0.4: 98.52%), lr 1e-3 for 32
    # epochs 98.50%, and committees of two 16-epoch networks 98.62% (12-epoch: 98.46%).
    "best": dict(hidden=[1200], activation="relu", dropout=0.5, optimizer="adam", lr=2e-3,
                 batch_size=128, epochs=24, lr_schedule="cosine", warmup=1.0),
    # Deformed digits: every training image is redrawn each epoch through a random affine
    # map, Simard's elastic field and a stroke thickness curve (augment "full"); without
    # dropout, which the deformations replace. Chosen on a validation split carved from
    # the training images (50,000 / 10,000; see benchmarks/tune_presets.py), never on the
    # test images, seeds 0, 1, 2: a second hidden layer of 256 units reads 99.34 / 99.45 /
    # 99.37% there (mean 99.39%), against 99.32 / 99.31 / 99.12% (99.25%) for 784-800-10,
    # the layout of Simard et al. (tune_presets-augmented-800-256.json, -800.json). Nearby
    # tries read less: 128 units 99.34% (-800-128.json), these 256 for 80 epochs 99.31%
    # (-800-256-e80.json), 784-1200-10 99.25% (-1200.json). 80-120 s on two cores
    # (README, bench_accuracy). Scored with test-time shifts (tta "shift",
    # digitcore.augment.TTA), which read 99.45 / 99.46 / 99.47% there (mean 99.46%,
    # tune_presets-augmented-tta.json).
    "augmented": dict(hidden=[800, 256], activation="relu", dropout=0.0, optimizer="adam",
                      lr=2e-3, batch_size=128, epochs=100, lr_schedule="cosine", warmup=1.0,
                      augment="full", tta="shift"),
    # A committee of networks like `augmented`'s with a 128-unit second layer (seeds seed,
    # seed + 1, ...) whose averaged probabilities answer (digitcore.Committee), as Ciresan
    # et al. averaged MLPs. Chosen on the validation split (50,000 / 10,000) of
    # benchmarks/tune_presets.py --committee, seeds 0-4: 784-800-128-10 members (alone
    # 99.29-99.43%) make committees of k = 1..5 reading 99.32 / 99.49 / 99.51 / 99.52 /
    # 99.52% (tune_presets-committee-800-128.json), 784-800-256-10 members (`augmented`'s,
    # each ~1.3x the time) 99.34 / 99.44 / 99.50 / 99.52 / 99.49% (-committee-800-256.json),
    # and 784-800-10 members 99.32 / 99.35 / 99.31 / 99.35 / 99.37% (-committee-e100.json;
    # 50-epoch ones 99.19-99.27% for k = 1..10, -e50.json). Four members: a fifth adds
    # nothing there, and a quarter more time. Longer members are better alone but agree
    # more: at 140 epochs they read 99.38-99.51% alone and 99.51 / 99.50 / 99.48 / 99.49%
    # as committees of k = 1..4 (-committee-800-128-e140.json). Scored with test-time
    # shifts (tta "shift", digitcore.augment.TTA: each image and its four one-pixel
    # shifts), which lift each member on the validation split from 99.29-99.40% to
    # 99.44-99.50% and the committee of four from 99.52% to 99.53%
    # (tune_presets-committee-tta.json). About 4 x 62-71 s on two quiet Xeon cores
    # (bench_accuracy-avx512 and its 31006ba run). Members train one after another on all threads: two
    # 1-thread processes side by side were no faster on 2 busy cores (4 epochs of
    # 784-800-10 "full" each: 29 s and 38 s for the pair, against 31 s and 33 s for the two
    # one after the other on 2 threads).
    "committee": dict(hidden=[800, 128], activation="relu", dropout=0.0, optimizer="adam",
                      lr=2e-3, batch_size=128, epochs=100, lr_schedule="cosine", warmup=1.0,
                      augment="full", members=4, tta="shift"),
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


def augment_for(preset, n_train):
    """The augmentation to train ``n_train`` images with: the preset's ``augment``, or on
    a training set of fewer than ``small_data["below"]`` images, ``small_data["augment"]``.

    Why: a small set is seen many times over (``min_samples``), and a network that sees
    the same few thousand digits 40 times learns them by heart; deformed anew each time,
    they teach it the shapes instead. Chosen on a validation split carved from mnist-mini's
    training images (4,500 / 1,500, ``python benchmarks/bench_small_data.py --aug
    affine`` against ``--aug none``), never on test images. For 28x28 digits: `digitcore
    train` gives other images the preset's own ``augment`` (the rule's shifts and turns,
    in pixels, cost scikit-learn's 8x8 digits accuracy: 94.0% -> 89.9% on the last 597
    with the first 1,200 trained on, means over seeds 0-2).
    """
    small = preset.get("small_data")
    if small and 0 < n_train < small["below"]:
        return small["augment"]
    return preset.get("augment")


def members_of(preset):
    """How many networks a preset trains: its ``members`` (a committee), else 1."""
    return int(preset.get("members", 1))


def tta_of(preset):
    """The test-time augmentation a preset's model is scored with (its ``tta``, a name of
    :data:`digitcore.augment.TTA`), or None."""
    return preset.get("tta")


def get_preset(name):
    """A copy of preset ``name``; a ValueError lists the names when it is unknown."""
    try:
        return copy.deepcopy(PRESETS[name])
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None


def recipe(preset, n_train, **overrides):
    """The recipe a run on ``n_train`` samples trains with: preset ``preset`` (a name of
    :data:`PRESETS` or a dict of the same keys, not modified) with ``overrides`` applied,
    then its ``epochs`` from :func:`epochs_for` unless ``epochs`` is overridden, and its
    ``augment`` from :func:`augment_for` unless ``augment`` is overridden (``augment=None``
    turns it off). Returns a new dict in the preset's key order."""
    cfg = get_preset(preset) if isinstance(preset, str) else copy.deepcopy(dict(preset))
    cfg.update(overrides)
    missing = [key for key in ("hidden", "epochs") if key not in cfg]
    if missing:
        raise ValueError(f"a preset needs {' and '.join(map(repr, missing))} (hidden layer "
                         f"widths, epochs), as {sorted(PRESETS)} have; got {sorted(cfg)}")
    if "epochs" not in overrides:
        cfg["epochs"] = epochs_for(cfg, n_train)
    if "augment" not in overrides:
        cfg["augment"] = augment_for(cfg, n_train)
    return cfg


def build(preset, seed, n_train, *, n_features=784, n_classes=10, trainer_kw=None,
          **overrides):
    """The Network and Trainer a preset trains ``n_train`` samples with: the one recipe
    behind ``digitcore train``, the bundled model and the benchmarks.

    Parameters
    ----------
    preset : str or dict
        A name of :data:`PRESETS` or a dict of the same keys.
    seed : int or None
        The network's initialisation and the trainer's shuffling, dropout and deformations.
    n_train : int
        Training samples the run will see: decides the epochs and the augmentation
        (see :func:`recipe`).
    n_features, n_classes : int
        The network's input and output widths.
    trainer_kw : dict, optional
        Further Trainer arguments that are not part of a recipe (``verbose``,
        ``callbacks``, ``checkpoint``, ...).
    **overrides
        Recipe entries (``NETWORK_KEYS``, ``TRAINER_KEYS``, ``augment``) replacing the
        preset's; see :func:`recipe`.

    Returns
    -------
    (Network, Trainer)
    """
    from digitcore.network import Network
    from digitcore.trainer import Trainer

    unknown = set(overrides) - {*NETWORK_KEYS, *TRAINER_KEYS, "augment"}
    if unknown:
        raise TypeError(f"build() got unknown recipe entries {sorted(unknown)}; Trainer "
                        "arguments go in trainer_kw")
    cfg = recipe(preset, n_train, **overrides)
    net = Network([n_features, *cfg["hidden"], n_classes], seed=seed,
                  **{k: cfg[k] for k in NETWORK_KEYS if k in cfg and k != "hidden"})
    trainer = Trainer(net, seed=seed, augment=cfg["augment"],
                      **{k: cfg[k] for k in TRAINER_KEYS if k in cfg}, **(trainer_kw or {}))
    return net, trainer


def build_committee(preset, seed, n_train, members=None, **kw):
    """The (Network, Trainer) pairs of a committee: :func:`build` for seeds ``seed``,
    ``seed + 1``, ... ``seed + members - 1`` (``members`` defaults to the preset's, see
    :func:`members_of`). Train each pair, then put the networks in a
    :class:`~digitcore.committee.Committee`, in this order.

    A ``checkpoint`` directory in ``trainer_kw`` is shared out: with two or more members,
    member j (from 1) checkpoints into its subdirectory ``member-j``, so a committee
    stopped part-way resumes (``fit(..., resume=True)`` on every pair) with its finished
    members restored as they were, the interrupted one continued, the rest trained."""
    cfg = get_preset(preset) if isinstance(preset, str) else preset
    k = members_of(cfg) if members is None else int(members)
    if k < 1:
        raise ValueError(f"a committee needs at least one member, got members={members!r}")
    base = 0 if seed is None else seed
    ckpt = (kw.get("trainer_kw") or {}).get("checkpoint")
    runs = []
    for j in range(k):
        kw_j = kw
        if k > 1 and ckpt is not None:
            kw_j = dict(kw, trainer_kw={**kw["trainer_kw"],
                                        "checkpoint": member_checkpoint(ckpt, j)})
        runs.append(build(preset, None if seed is None else base + j, n_train, **kw_j))
    return runs


def member_checkpoint(directory, j):
    """Where member ``j`` (from 0) of a committee checkpoints within ``directory``:
    its subdirectory ``member-{j + 1}`` (see :func:`build_committee`)."""
    return os.path.join(directory, f"member-{j + 1}")
