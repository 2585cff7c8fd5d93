"""Small end-to-end run for memcheck (.ci/valgrind): train one epoch, save, load, predict.

Exercises every C path a user hits: uint8 gather, GEMM (both kernel paths when the CPU has
AVX2), activations, dropout, softmax+cross-entropy, the optimizer update, evaluation,
inference in chunks, and the model file round trip. Sizes are small so it finishes in
about a minute under valgrind.

    python scripts/valgrind_smoke.py            # natively: prints the same summary
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np

import digitcore
from digitcore._config import select_kernel


def main() -> int:
    n_train = int(os.environ.get("DIGITCORE_SMOKE_N", "2000"))
    (x, y), (xt, yt) = digitcore.load_dataset("mnist-mini")
    x, y = x[:n_train], y[:n_train]
    best = digitcore.kernel_path()
    for kernel in dict.fromkeys(("generic", best)):
        select_kernel(kernel)
        net = digitcore.Network([784, 48, 24, 10], activation="relu", dropout=0.1, seed=0)
        hist = digitcore.Trainer(net, optimizer="adam", lr=3e-3, epochs=1, batch_size=100, verbose=0,
                                 seed=0).fit(x, y, validation_fraction=0.1)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "smoke.safetensors")
            net.save(path)
            back = digitcore.load_model(path)
        p = back.predict_proba(xt[:1100])  # > one 1024-row inference chunk
        labels = back.predict(xt[:300])
        assert np.array_equal(p, net.predict_proba(xt[:1100]))
        assert np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
        acc = float(np.mean(labels == yt[:300]))
        digit, _ = back.predict_image(xt[0])
        print(f"{kernel}: loss {hist.loss[0]:.3f} val_acc {hist.val_accuracy[0]:.3f} "
              f"test acc {acc:.3f} first digit {digit} (label {yt[0]})")
        if acc < 0.5:
            print("accuracy too low: something is wrong", file=sys.stderr)
            return 1
    # an SGD + tanh network too (other update and activation kernels), full-batch: its
    # steps read the data set's kept sparse form (csrc/mlp_keep.c), on both paths
    for kernel in dict.fromkeys(("generic", best)):
        select_kernel(kernel)
        net = digitcore.Network([784, 16, 10], activation="tanh", seed=1)
        digitcore.Trainer(net, optimizer="momentum", lr=0.1, epochs=2, batch_size=None,
                          verbose=0, seed=0).fit(x[:500], y[:500])
        print(f"{kernel}: tanh/momentum full batch:", net.score(xt[:200], yt[:200]))
    print("valgrind smoke OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
