"""digitcore: fast, dependency-light neural networks for handwritten digits.

Heavy or optional modules load on first use (PEP 562 ``__getattr__``), so
``import digitcore`` stays cheap.
"""

from __future__ import annotations

import importlib as _importlib

from digitcore._version import __version__
from digitcore.errors import DatasetError, DigitcoreError, KernelError, ModelFormatError

# public name -> module that defines it
_LAZY = {
    "show_config": "digitcore._config",
    "set_num_threads": "digitcore._config",
    "get_num_threads": "digitcore._config",
    "kernel_path": "digitcore._config",
    "read_idx": "digitcore.idx",
    "write_idx": "digitcore.idx",
    "load_mnist": "digitcore.datasets",
    "load_fashion_mnist": "digitcore.datasets",
    "load_dataset": "digitcore.datasets",
    "train_val_split": "digitcore.datasets",
    "one_hot": "digitcore.datasets",
    "load_mnist_mini": "digitcore.datasets",
    "Network": "digitcore.network",
    "Committee": "digitcore.committee",
    "Trainer": "digitcore.trainer",
    "History": "digitcore.trainer",
    "Callback": "digitcore.trainer",
    "EarlyStopping": "digitcore.trainer",
    "read_model_info": "digitcore.modelio",
    "MLPClassifier": "digitcore.estimator",
    "load_model": "digitcore.modelio",
    "save_model": "digitcore.modelio",
    "preprocess_image": "digitcore.imaging",
    "Augment": "digitcore.augment",
    "load_pretrained": "digitcore.pretrained",
}
_SUBMODULES = {"ops", "ops_ref", "optim", "metrics", "plots", "datasets", "idx", "network",
               "trainer", "modelio", "imaging", "estimator", "cli", "presets", "serve",
               "augment", "pretrained", "committee"}

# names whose module needs an optional package: left out of __all__ and dir() without it,
# so that `from digitcore import *`, help(digitcore) and inspect.getmembers work on a plain
# install (using the name still raises the ImportError that says what to install)
_OPTIONAL = {"MLPClassifier": "sklearn", "estimator": "sklearn"}


def _public() -> list[str]:
    from importlib.util import find_spec

    names = ["__version__", "DigitcoreError", "DatasetError", "ModelFormatError", "KernelError",
             *_LAZY, *_SUBMODULES]
    return sorted(n for n in names if n not in _OPTIONAL or find_spec(_OPTIONAL[n]) is not None)


def __getattr__(name: str):
    if name == "__all__":  # (computed on first use: import digitcore stays cheap)
        value = globals()["__all__"] = _public()
        return value
    if name in _LAZY:
        value = getattr(_importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return _importlib.import_module(f"digitcore.{name}")
    raise AttributeError(f"module 'digitcore' has no attribute {name!r}")


def __dir__():
    return _public()
