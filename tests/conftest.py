"""Shared test configuration.

Tests run against the *installed* package; CI sets DIGITCORE_EXPECT_INSTALLED=1 and
checks that digitcore is imported from site-packages, not from a source tree.
"""

import os
from pathlib import Path

import numpy as np
import pytest


def _shared_mnist():
    env = os.environ.get("DIGITCORE_SHARED_MNIST")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [p / "shared" / "data" / "mnist" for p in here.parents]
    for c in candidates:
        if (c / "train-images-idx3-ubyte.gz").exists():
            return c
    return None


SHARED_MNIST = _shared_mnist()


@pytest.fixture
def shared_mnist():
    """Folder with the full MNIST files; skips the test when they are absent."""
    if SHARED_MNIST is None:
        pytest.skip("full MNIST files not available (set DIGITCORE_SHARED_MNIST)")
    return SHARED_MNIST


@pytest.fixture
def rng(request):
    """A seeded generator; the seed is printed when a test fails (in the captured output)."""
    seed = int(os.environ.get("DIGITCORE_TEST_SEED", "12345"))
    print(f"[{request.node.name}] seed={seed}")
    return np.random.default_rng(seed)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's cache or network from tests."""
    monkeypatch.setenv("DIGITCORE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("DIGITCORE_DATA", raising=False)
