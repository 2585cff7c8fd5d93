"""The default recipe on small training sets: the preset deforms (augments) training sets
below its small-data size, the CLI and the serve default model follow it, and an explicit
--augment wins. (The accuracy it buys is measured by benchmarks/bench_small_data.py.)"""

import json
import subprocess
import sys

import pytest

from digitcore.augment import AUGMENTS
from digitcore.presets import PRESETS, augment_for, build, epochs_for, get_preset, recipe


def test_augment_for_follows_the_training_set_size():
    cfg = get_preset("default")
    below = cfg["small_data"]["below"]
    assert augment_for(cfg, 6000) == "affine"          # mnist-mini
    assert augment_for(cfg, 3750) == "affine"
    assert augment_for(cfg, below - 1) == "affine"
    assert augment_for(cfg, below) is None
    assert augment_for(cfg, 60000) is None             # full MNIST: 6 plain epochs
    assert epochs_for(cfg, 60000) == cfg["epochs"]
    # presets without a small-data rule keep their own choice
    for name in set(PRESETS) - {"default"}:
        assert augment_for(get_preset(name), 100) == PRESETS[name].get("augment")


def test_recipe_and_build_follow_the_size_rules_unless_overridden():
    cfg = recipe("default", 3000)
    assert cfg["epochs"] == epochs_for(PRESETS["default"], 3000) == 80
    assert cfg["augment"] == "affine"
    assert recipe("default", 60000)["augment"] is None
    # an explicit entry wins over the size rules, None included; the preset is untouched
    cfg = recipe("default", 3000, epochs=2, augment=None, hidden=[16])
    assert (cfg["epochs"], cfg["augment"], cfg["hidden"]) == (2, None, [16])
    assert PRESETS["default"]["hidden"] == [512] and PRESETS["default"]["epochs"] == 6
    custom = dict(PRESETS["sgd"], hidden=[7, 5])
    net, tr = build(custom, 3, 100, n_features=12, n_classes=4, epochs=2, l2=1e-3,
                    trainer_kw=dict(verbose=0))
    assert net.layer_sizes == (12, 7, 5, 4) and custom["hidden"] == [7, 5]
    assert (tr.epochs, tr.l2, tr.batch_size, tr.seed, tr.verbose) == (2, 1e-3, 128, 3, 0)
    assert type(tr.optimizer).__name__ == "SGD" and tr.augment is None
    net, tr = build("default", 0, 3000, hidden=[8])
    assert tr.augment == AUGMENTS["affine"] and tr.epochs == 80 and net.dropout == 0.3
    with pytest.raises(TypeError, match="verbose"):
        build("default", 0, 100, verbose=0)  # a Trainer argument, not a recipe entry
    # a custom preset without epochs failed with a bare KeyError: 'epochs'
    with pytest.raises(ValueError, match="a preset needs 'epochs'"):
        build(dict(hidden=[8], lr=0.1), 0, 100)
    with pytest.raises(ValueError, match="'hidden' and 'epochs'"):
        recipe({}, 100)
    assert build(dict(hidden=[8], lr=0.1), 0, 100, epochs=1)[1].epochs == 1


def _train(*extra):
    r = subprocess.run([sys.executable, "-m", "digitcore", "train", "--dataset", "mnist-mini",
                        "--hidden", "16", "--epochs", "1", "--threads", "1", *extra],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


def test_cli_deforms_small_training_sets_unless_told_not_to():
    summary = json.loads(_train("--json").stdout)
    assert summary["augment"] == AUGMENTS["affine"].to_dict()
    assert json.loads(_train("--json", "--augment", "none").stdout)["augment"] is None
    aug = json.loads(_train("--json", "--augment", "rotate=5,faint=0.1").stdout)["augment"]
    assert aug["rotate"] == 5 and aug["faint"] == 0.1
    bad = subprocess.run([sys.executable, "-m", "digitcore", "train", "--augment", "faint=x"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "expected key=number pairs, got 'faint=x'" in bad.stderr
    r = _train()
    assert "deforming the training images" in r.stderr


@pytest.mark.parametrize("overrides,expected", [({"epochs": 1, "hidden": [8]}, "affine"),
                                                ({"epochs": 1, "hidden": [8],
                                                  "augment": None}, None)])
def test_serve_default_model_uses_the_same_recipe(monkeypatch, overrides, expected):
    from digitcore import serve
    from digitcore.trainer import Trainer

    seen = []
    real_init = Trainer.__init__

    def spy(self, *a, **kw):
        real_init(self, *a, **kw)
        seen.append(self.augment)

    monkeypatch.setattr(Trainer, "__init__", spy)
    serve.default_model(quiet=True, preset_overrides=overrides)
    assert seen == [None if expected is None else AUGMENTS[expected]]


def test_augmented_preset_deforms_full_sized_sets_too():
    # the preset that goes past the plain-MLP ceiling deforms every training set, from the
    # CLI as from the Python API, and an explicit --augment still wins
    cfg = get_preset("augmented")
    assert augment_for(cfg, 60000) == "full" and augment_for(cfg, 100) == "full"
    summary = json.loads(_train("--json", "--preset", "augmented").stdout)
    assert summary["preset"] == "augmented"
    assert summary["augment"] == AUGMENTS["full"].to_dict()
    summary = json.loads(_train("--json", "--preset", "augmented", "--augment", "none").stdout)
    assert summary["augment"] is None
