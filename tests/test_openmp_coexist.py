"""digitcore beside torch and scikit-learn in one process, in each import order.

Each of them may bring its own OpenMP runtime (Linux wheels: a vendored libgomp each;
macOS: libomp, which aborts with "OMP: Error #15" or crashes when two copies run in one
process, the reason digitcore's macOS wheels carry none; Windows: vcomp and torch's
libiomp). Each order runs in a fresh subprocess that imports the libraries in that order,
makes each one run a parallel region on 2 threads, and trains a small digitcore network,
whose weights must be bit for bit those of a process where digitcore ran alone.

torch or scikit-learn missing: those orders skip, unless DIGITCORE_REQUIRE_INTEROP=1
(CI), where a missing library fails the test.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

REQUIRE = os.environ.get("DIGITCORE_REQUIRE_INTEROP") == "1"

USE = {
    "digitcore": "import digitcore\n",
    "torch": "import torch\n",
    "sklearn": "import sklearn.cluster\n",
}
# a parallel region in each runtime, on 2 threads
RUN = {
    "torch": ("torch.set_num_threads(2)\n"
              "a = torch.rand(300, 300, generator=torch.Generator().manual_seed(0))\n"
              "assert torch.isfinite((a @ a).sum() + (a * 2).exp().sum())\n"),
    "sklearn": ("import numpy as _np\n"
                "from threadpoolctl import threadpool_limits\n"
                "with threadpool_limits(2, user_api='openmp'):\n"
                "    _x = _np.random.default_rng(0).random((2000, 8))\n"
                "    sklearn.cluster.KMeans(4, n_init=1, random_state=0).fit(_x)\n"),
    "digitcore": ("import numpy as np\n"
                  "digitcore.set_num_threads(2)\n"
                  "(x, y), _ = digitcore.load_dataset('mnist-mini')\n"
                  "net = digitcore.Network([784, 64, 10], seed=0)\n"
                  "digitcore.Trainer(net, epochs=1, batch_size=64, verbose=0, seed=0)"
                  ".fit(x[:1024], y[:1024])\n"
                  "import hashlib\n"
                  "h = hashlib.sha256()\n"
                  "for p in net.parameters:\n"
                  "    h.update(np.ascontiguousarray(p).tobytes())\n"
                  "print('WEIGHTS', h.hexdigest())\n"),
}

ORDERS = [
    ("digitcore", "torch"),
    ("torch", "digitcore"),
    ("digitcore", "sklearn"),
    ("sklearn", "digitcore"),
    ("torch", "sklearn", "digitcore"),
]


def _script(order):
    # import everything in this order first, then run each one's parallel region
    return "".join(USE[m] for m in order) + "".join(RUN[m] for m in order) + "print('OK')\n"


def _run(order):
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONDONTWRITEBYTECODE="1")
    env.pop("KMP_DUPLICATE_LIB_OK", None)  # the unsafe escape hatch would hide the bug
    r = subprocess.run([sys.executable, "-c", _script(order)], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0 and "OK" in r.stdout, (
        f"import order {' -> '.join(order)}: exit {r.returncode}\n"
        f"stdout:\n{r.stdout[-2000:]}\nstderr:\n{r.stderr[-3000:]}")
    return [ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith("WEIGHTS")][0]


@pytest.fixture(scope="module")
def alone():
    return _run(("digitcore",))


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("DIGITCORE_SANITIZED") == "1",
                    reason="under the ASan preload, torch and sklearn are not what users load")
@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
def test_openmp_runtimes_coexist(order, alone):
    for m in order:
        if m != "digitcore" and importlib.util.find_spec(m) is None:
            if REQUIRE:
                pytest.fail(f"{m} is not installed and DIGITCORE_REQUIRE_INTEROP=1")
            pytest.skip(f"{m} is not installed")
    assert _run(order) == alone, "digitcore trained different weights beside " + ", ".join(
        m for m in order if m != "digitcore")
