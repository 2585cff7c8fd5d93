"""scipy.sparse input: digitcore.MLPClassifier vs scikit-learn's MLPClassifier, same run.

    python benchmarks/bench_sparse.py [--epochs 3] [--rounds 3] [--threads 2] [--n 60000]

MNIST's training images as a float32 CSR matrix (pixels / 255, ~19% non-zero), the way
a scikit-learn user holds a sparse dataset; scikit-learn computes in float32 on it, as
digitcore always does (a fourth row gives it the same pixels in float64, its default
dtype, which it computes in). Both estimators train the same network
(784-100-10, ReLU, Adam lr 1e-3, batch 200: scikit-learn's defaults) for the same number
of epochs, then score the 10,000 test images (also CSR). digitcore feeds each mini-batch's
rows straight into its sparse first-layer kernel; the matrix is never densified. A third
row, digitcore on the same pixels as a dense uint8 array, shows what the sparse path costs
against the fused dense loop.

Each fit runs in a process of its own, the systems alternate round by round, and the
table gives the median seconds per epoch and the ratios against digitcore-sparse. Test
accuracy is printed first and each system must read within 5 points of the best one and
over half of the test set (a fast wrong answer is not a result). Without full MNIST (``--data-dir`` or $DIGITCORE_SHARED_MNIST) it uses the bundled
mnist-mini subset, and writes bench_sparse-mnist-mini.json instead (unless --json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _data import shared_mnist  # noqa: E402
import _results  # noqa: E402
SYSTEMS = ("digitcore-sparse", "sklearn-sparse", "digitcore-dense-uint8",
           "sklearn-sparse-float64")


def worker(system, epochs, threads, data_dir, n):
    import warnings

    import numpy as np
    import scipy.sparse as sp
    from threadpoolctl import threadpool_limits

    import digitcore

    warnings.simplefilter("ignore")
    dataset = "mnist"
    try:
        (x, y), (xt, yt) = digitcore.load_mnist(data_dir, download=False)
    except Exception:
        (x, y), (xt, yt) = digitcore.load_dataset("mnist-mini")
        dataset = "mnist-mini"
    x, y = x[:n].reshape(-1, 784), y[:n]
    xt = xt.reshape(-1, 784)
    params = dict(hidden_layer_sizes=(100,), max_iter=epochs, random_state=0, tol=0.0)
    if system == "digitcore-dense-uint8":
        X, Xt = x, xt
    else:  # (float32 as digitcore computes, unless the system's name says float64)
        dtype = np.float64 if system.endswith("float64") else np.float32
        X = sp.csr_matrix(x.astype(dtype) / dtype(255))
        Xt = sp.csr_matrix(xt.astype(dtype) / dtype(255))
    if system.startswith("digitcore"):
        digitcore.set_num_threads(threads)
        clf = digitcore.MLPClassifier(**params)
    else:
        from sklearn.neural_network import MLPClassifier
        clf = MLPClassifier(**params)
    with threadpool_limits(threads, "blas"):
        t = time.perf_counter()
        clf.fit(X, y)
        seconds = time.perf_counter() - t
        acc = clf.score(Xt, yt)
    return {"system": system, "seconds_per_epoch": seconds / clf.n_iter_, "epochs": clf.n_iter_,
            "test_accuracy": acc, "n": int(X.shape[0]),
            "density": float((x != 0).mean()), "dataset": dataset}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=shared_mnist())
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=60000, help="training images used")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--json", default=None, help="results file (default: the committed "
                    "benchmarks/results/bench_sparse.json)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.epochs, args.threads, str(args.data_dir),
                                args.n)))
        return
    systems = args.systems.split(",")
    runs = {s: [] for s in systems}
    for r in range(args.rounds):
        for s in (systems if r % 2 == 0 else systems[::-1]):
            cmd = [sys.executable, __file__, "--worker", s, "--epochs", str(args.epochs),
                   "--threads", str(args.threads), "--data-dir", str(args.data_dir),
                   "--n", str(args.n)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            runs[s].append(res)
            print(f"round {r + 1} {s:22s} {res['seconds_per_epoch']:.3f} s/epoch  "
                  f"test accuracy {res['test_accuracy']:.4f}", flush=True)
    best = max(statistics.median(x["test_accuracy"] for x in runs[s]) for s in systems)
    for s in systems:
        worst = min(x["test_accuracy"] for x in runs[s])
        if worst < 0.5 or worst < best - 0.05:
            raise SystemExit(f"{s} read {worst:.2%} of the test set (the best system "
                             f"{best:.2%}); refusing to report its time")
    base = statistics.median(x["seconds_per_epoch"] for x in runs[systems[0]])
    print(f"\n{runs[systems[0]][0]['n']} training images, "
          f"{runs[systems[0]][0]['density']:.1%} non-zero, 784-100-10 Adam, "
          f"{args.epochs} epochs, {args.threads} thread(s), median of {args.rounds} rounds")
    print(f"{'system':22s} {'s/epoch':>8s} {'vs ' + systems[0]:>24s} {'test acc':>9s}")
    summary = {}
    for s in systems:
        med = statistics.median(x["seconds_per_epoch"] for x in runs[s])
        acc = statistics.median(x["test_accuracy"] for x in runs[s])
        summary[s] = {"seconds_per_epoch": med, "ratio": med / base, "test_accuracy": acc}
        print(f"{s:22s} {med:8.3f} {med / base:23.2f}x {acc:9.4f}")
    claims = {"density_pct": 100 * runs[systems[0]][0]["density"]}
    for s in systems:
        claims[f"{s}_s_per_epoch"] = summary[s]["seconds_per_epoch"]
        claims[f"{s}_vs_{systems[0]}"] = summary[s]["ratio"]
        claims[f"{s}_test_accuracy_pct"] = 100 * summary[s]["test_accuracy"]
    path = args.json
    if path is None and any(r.get("dataset") == "mnist-mini" for rs in runs.values() for r in rs):
        # (not full MNIST: the committed file's figures are full MNIST's)
        path = _results.RESULTS / "bench_sparse-mnist-mini.json"
    _results.save(__file__, claims, {"args": {k: str(v) for k, v in vars(args).items()},
                                     "runs": runs, "summary": summary}, path)


if __name__ == "__main__":
    main()
