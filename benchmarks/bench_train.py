"""One epoch of MNIST training: digitcore vs NumPy, PyTorch and scikit-learn, same run.

    python benchmarks/bench_train.py [--repeats 5] [--threads 1,2] [--json PATH]

Every system trains the same network with the same recipe (ReLU, softmax cross-entropy,
plain SGD lr 0.1 without momentum, shuffled mini-batches, float32) for one epoch over the
60,000 MNIST training images. Each system runs in a process of its own (no other
library's thread pool beside it), started with every thread pool set to the thread count;
each is first checked to learn (test accuracy after the epoch), then timed: systems
interleaved, medians over repeats, at each thread count.
Prints samples/s, the ratios digitcore/other, and digitcore's achieved GFLOP/s against the
OpenBLAS GEMM rate measured at the training shapes in the same run. digitcore's first layer
skips zero pixels (docs/ARCHITECTURE.md), so its figure is dense-equivalent: the dense
work divided by the time, which can exceed the GEMM rate.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _data import shared_mnist  # noqa: E402

import _results  # noqa: E402
import digitcore  # noqa: E402
from _workers import Worker, worker_env  # noqa: E402
from numpy_mlp import NumpyMLP  # noqa: E402

CONFIGS = [((784, 128, 10), 128), ((784, 128, 10), 32), ((784, 512, 256, 10), 128)]


def load(data_dir):
    (x, y), (xt, yt) = digitcore.load_mnist(data_dir, download=False)
    return x.reshape(len(x), -1), y.astype(np.int64), xt.reshape(len(xt), -1), yt.astype(np.int64)


def flops_per_epoch(sizes, n):
    # forward 2*i*o, weight gradient 2*i*o, input gradient 2*i*o except the first layer
    f = 0
    for li, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        f += 2 * i * o * (2 if li == 0 else 3)
    return f * n


class DigitcoreSystem:
    name = "digitcore"
    sparse_input = "auto"

    def __init__(self, sizes, bs):
        self.sizes, self.bs = sizes, bs

    def epoch(self, x, y, seed):
        net = digitcore.Network(list(self.sizes), seed=seed)
        tr = digitcore.Trainer(net, optimizer="sgd", lr=0.1, batch_size=self.bs, epochs=1,
                               seed=seed, verbose=0)
        tr._sparse_input = self.sparse_input
        t = time.perf_counter()
        h = tr.fit(x, y)
        dt = time.perf_counter() - t
        # every timed epoch must have made every update: a run that skipped batches would
        # still reach a fair accuracy after one epoch, and look faster
        want = -(-len(x) // self.bs)
        if tr.optimizer.step_count != want or len(h.epoch) != 1:
            raise SystemExit(f"{self.name}: {tr.optimizer.step_count} updates in "
                             f"{len(h.epoch)} epoch(s), expected {want} in 1")
        return dt, net.score

    def set_threads(self, n):
        digitcore.set_num_threads(n)


class DigitcoreDenseSystem(DigitcoreSystem):
    """digitcore with the sparse first layer off: what skipping zero pixels saves."""
    name = "digitcore-dense"
    sparse_input = "never"


class NumpySystem:
    name = "numpy"

    def __init__(self, sizes, bs):
        self.sizes, self.bs = sizes, bs

    def epoch(self, x, y, seed):
        m = NumpyMLP(self.sizes, seed)
        rng = np.random.default_rng(seed)
        t = time.perf_counter()
        m.train_epoch(x, y, self.bs, 0.1, rng)
        return time.perf_counter() - t, m.score

    def set_threads(self, n):
        from threadpoolctl import threadpool_limits
        self._limit = threadpool_limits(limits=n, user_api="blas")


class TorchSystem:
    name = "pytorch"

    def __init__(self, sizes, bs):
        import torch
        from torch_mlp import TorchMLP
        self.torch, self.cls, self.sizes, self.bs = torch, TorchMLP, sizes, bs

    def epoch(self, x, y, seed):
        m = self.cls(self.sizes, seed)
        return m.fit(x, y, self.bs, 1, 0.1, seed=seed), m.score

    def set_threads(self, n):
        self.torch.set_num_threads(n)


class SklearnSystem:
    name = "sklearn"

    def __init__(self, sizes, bs):
        from sklearn.neural_network import MLPClassifier
        self.cls, self.sizes, self.bs = MLPClassifier, sizes, bs

    def epoch(self, x, y, seed):
        clf = self.cls(hidden_layer_sizes=self.sizes[1:-1], solver="sgd", learning_rate_init=0.1,
                       momentum=0.0, alpha=0.0, batch_size=self.bs, max_iter=1,
                       random_state=seed, shuffle=True)
        xf = x.astype(np.float32) / 255  # sklearn needs floats; not counted in the time
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = time.perf_counter()
            clf.fit(xf, y)
            dt = time.perf_counter() - t
        return dt, lambda xs, ys: float(clf.score(xs.astype(np.float32) / 255, ys))

    def set_threads(self, n):
        from threadpoolctl import threadpool_limits
        self._limit = threadpool_limits(limits=n, user_api="blas")


def gemm_ceiling(sizes, bs, threads):
    """OpenBLAS (numpy.matmul) GFLOP/s on this configuration's forward/backward shapes."""
    from threadpoolctl import threadpool_limits
    rng = np.random.default_rng(0)
    with threadpool_limits(limits=threads, user_api="blas"):
        tot_f, tot_t = 0.0, 0.0
        for i, o in zip(sizes[:-1], sizes[1:]):
            a = rng.standard_normal((bs, i), dtype=np.float32)
            w = rng.standard_normal((o, i), dtype=np.float32)
            d = rng.standard_normal((bs, o), dtype=np.float32)
            for f in (lambda: a @ w.T, lambda: d.T @ a, lambda: d @ w):
                f()
                reps = 50
                t = time.perf_counter()
                for _ in range(reps):
                    f()
                tot_t += time.perf_counter() - t
                tot_f += 2 * bs * i * o * reps
    return tot_f / tot_t / 1e9


MAKERS = {"digitcore": lambda s, b: DigitcoreSystem(s, b),
          "digitcore-dense": lambda s, b: DigitcoreDenseSystem(s, b),
          "numpy": lambda s, b: NumpySystem(s, b), "pytorch": lambda s, b: TorchSystem(s, b),
          "sklearn": lambda s, b: SklearnSystem(s, b)}


def _reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def worker(name, config, threads, data_dir):
    """One system in this process: {"skip": why} if it cannot run here, else the learning
    check's {"accuracy": a}, then {"seconds": t} for each {"seed": s} read from stdin."""
    sizes, bs = CONFIGS[config]
    try:
        system = MAKERS[name](sizes, bs)
    except ImportError as exc:
        _reply({"skip": f"{type(exc).__name__}: {exc}"})
        return
    system.set_threads(threads)
    x, y, xt, yt = load(data_dir)
    _, score = system.epoch(x, y, seed=0)
    _reply({"accuracy": score(xt, yt)})
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("quit"):
            return
        _reply({"seconds": system.epoch(x, y, seed=cmd["seed"])[0]})


def claims_of(rows):
    """The named figures a document may quote (see _results.py), from the rows."""
    claims = {}
    for r in rows:
        key = f"{r['arch']}_b{r['batch']}_t{r['threads']}"
        claims[f"{key}_epoch_s"] = r["seconds"]["digitcore"]
        claims[f"{key}_samples_per_s"] = r["samples_per_s"]["digitcore"]
        claims.update({f"{key}_vs_{k}": v for k, v in r["ratio_vs"].items()})
        # each system at its best thread count up to this one: a peer slower on 2 threads
        # than on 1 would be run on 1 (the ratios above take every system at this count)
        best = _results.best_seconds(rows, r, lambda o: (o["arch"], o["batch"]))
        peers = [v for k, v in best.items() if k != "digitcore"]
        if peers and "digitcore" in best:
            r["vs_best_peer_at_best_threads"] = min(peers) / best["digitcore"]
            claims[f"{key}_vs_best_peer_at_best_threads"] = r["vs_best_peer_at_best_threads"]
    return claims


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=shared_mnist())
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--configs", default="all", help="'all' or indices like 0,2")
    ap.add_argument("--systems", default="digitcore,numpy,pytorch,sklearn")
    ap.add_argument("--json", default=None, help="results file (default: the committed "
                    "benchmarks/results/bench_train.json)")
    ap.add_argument("--worker", nargs=3, metavar=("SYSTEM", "CONFIG", "THREADS"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        name, config, th = args.worker
        worker(name, int(config), int(th), args.data_dir)
        return

    n = len(digitcore.load_mnist(args.data_dir, download=False)[0][0])
    threads = [int(t) for t in args.threads.split(",")]
    configs = (list(range(len(CONFIGS))) if args.configs == "all"
               else [int(i) for i in args.configs.split(",")])
    digitcore.show_config()
    rows = []
    for ci in configs:
        sizes, bs = CONFIGS[ci]
        arch = "-".join(map(str, sizes))
        for th in threads:
            # each system in a process of its own, every thread pool set to th
            workers, verified = {}, {}
            for name in args.systems.split(","):
                w = Worker(Path(__file__).resolve(),
                           ["--worker", name, str(ci), str(th), "--data-dir", args.data_dir],
                           worker_env(th), HERE)
                r = w.read()  # the learning check: one epoch, then the test images
                if "skip" in r:
                    print(f"  skip {name}: {r['skip']}")
                    w.close()
                    continue
                if r["accuracy"] < 0.85:
                    raise SystemExit(f"{name} {arch} bs{bs}: accuracy {r['accuracy']:.3f} "
                                     f"after one epoch; refusing to time a system that does "
                                     f"not learn")
                print(f"  verified {name:9s} {arch} batch {bs} threads {th}: "
                      f"test accuracy {r['accuracy']:.4f} after 1 epoch")
                workers[name] = w
                verified[name] = r["accuracy"]
            times = {name: [] for name in workers}
            order = list(workers)  # (verified: each system's test accuracy after one epoch)
            for r in range(args.repeats):
                for name in (order if r % 2 == 0 else order[::-1]):
                    # let the previous system's spinning threads go to sleep, so they do
                    # not steal the cores from the next one
                    time.sleep(0.5)
                    times[name].append(workers[name].ask({"seed": r + 1})["seconds"])
            for w in workers.values():
                w.close()
            med = {k: statistics.median(v) for k, v in times.items()}
            dc_t = med["digitcore"]
            row = {"arch": arch, "batch": bs, "threads": th,
                   "seconds": med, "samples_per_s": {k: n / v for k, v in med.items()},
                   "ratio_vs": {k: v / dc_t for k, v in med.items() if k != "digitcore"},
                   "digitcore_gflops": flops_per_epoch(sizes, n) / dc_t / 1e9,
                   "test_accuracy_after_check": verified, "times": times}
            rows.append(row)
    # the GEMM rates last, in this process, once every timed epoch is done (OpenBLAS's
    # threads spin here for a while after it)
    for row, (ci, th) in zip(rows, [(c, t) for c in configs for t in threads]):
        sizes, bs = CONFIGS[ci]
        ceiling = gemm_ceiling(sizes, bs, th)
        row["openblas_gemm_gflops"] = ceiling
        gflops, med, dc_t = row["digitcore_gflops"], row["seconds"], row["seconds"]["digitcore"]
        print(f"\n{row['arch']} batch {bs}, {th} thread(s): digitcore {gflops:.1f} GFLOP/s "
              f"dense-equivalent "
              f"({gflops / ceiling:.0%} of OpenBLAS GEMM at these shapes, {ceiling:.1f})")
        for k in med:
            ratio = "" if k == "digitcore" else f"  digitcore is {med[k] / dc_t:.2f}x"
            print(f"  {k:9s} {med[k]:.3f} s  {n / med[k]:>10,.0f} samples/s{ratio}")
    claims = claims_of(rows)
    for r in rows:
        if "vs_best_peer_at_best_threads" in r:
            print(f"{r['arch']} batch {r['batch']}, {r['threads']} thread(s): "
                  f"{r['vs_best_peer_at_best_threads']:.2f}x the best peer, each system at "
                  f"its best thread count up to {r['threads']}")
    _results.save(__file__, claims, rows, args.json)


if __name__ == "__main__":
    main()
