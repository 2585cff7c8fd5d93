"""Where the benchmarks find the full MNIST files of development (one rule for all)."""

from __future__ import annotations

import os
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
# shared/data/mnist beside the checkout (a clone), or beside the folder of worktrees
CANDIDATES = (_ROOT.parent / "shared/data/mnist", _ROOT.parents[1] / "shared/data/mnist")


def shared_mnist(required=True):
    """$DIGITCORE_SHARED_MNIST if set, else the first of CANDIDATES that is a folder, else
    the first of them (so that an error names where the files were looked for), or None
    when not `required` (the benchmark then finds data as `digitcore train` does)."""
    env = os.environ.get("DIGITCORE_SHARED_MNIST")
    if env:
        return env
    found = next((str(p) for p in CANDIDATES if p.is_dir()), None)
    return found if found or not required else str(CANDIDATES[0])
