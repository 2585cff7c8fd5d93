"""digitcore mixed with NumPy in one process: a loop alternating OpenBLAS matmuls with
digitcore calls, against the sum of each part run alone.

    python benchmarks/bench_interleave.py                   # 7 rounds, 2 threads
    python benchmarks/bench_interleave.py --rounds 11 --variants alone,mixed

One round of the loop: `--matmuls` NumPy 512x512 float32 matmuls (OpenBLAS's threads),
then a digitcore epoch of 784-128-10 (SGD, batch 128) on `--n` MNIST images and
predict_proba on 2,000 test images. Each variant is a worker process of its own, started
with OMP/OpenBLAS/DIGITCORE thread counts set, that runs warm-up rounds and then times
rounds on request; the variants alternate their order round by round, with a pause
before each round. A round runs its parts once untimed and then times them once more, so
that no part is timed from a cold start (alone, every part would be; in the loop only the
first). Times are medians over the rounds.

  alone      the NumPy part and the digitcore part, each in a process of its own
             (one alternating with nothing: its pools sleep between rounds)
  mixed      both parts in one process, one after the other, every round
  mixed-blas-sleeps  as mixed, with OPENBLAS_THREAD_TIMEOUT=4: OpenBLAS's idle threads
             sleep at once instead of spinning (diagnosis: is their spin the cost?)

The figure is mixed's round over the sum of alone's two parts (target: <= 1.25x); each
part's time inside the mixed round over its time alone says which part pays.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _data import shared_mnist  # noqa: E402
from _workers import Worker, worker_env  # noqa: E402

VARIANTS = {  # name: (parts the worker runs, extra environment)
    "numpy": (("numpy",), {}),
    "digitcore": (("digitcore",), {}),
    "mixed": (("numpy", "digitcore"), {}),
    "mixed-blas-sleeps": (("numpy", "digitcore"), {"OPENBLAS_THREAD_TIMEOUT": "4"}),
}
GROUPS = {"alone": ("numpy", "digitcore"), "mixed": ("mixed",),
          "mixed-blas-sleeps": ("mixed-blas-sleeps",)}


# ---------------------------------------------------------------------------------------
# worker: one variant in a process of its own
# ---------------------------------------------------------------------------------------

def worker(variant, n, matmuls, data_dir):
    import numpy as np

    import digitcore

    parts, _ = VARIANTS[variant]
    rng = np.random.default_rng(0)
    a = rng.standard_normal((512, 512), dtype=np.float32)
    b = rng.standard_normal((512, 512), dtype=np.float32)
    (x, y), (xt, yt) = digitcore.load_mnist(data_dir, download=False)
    x, y = x.reshape(len(x), -1)[:n], y[:n]
    xt = xt.reshape(len(xt), -1)[:2000]
    net = digitcore.Network([784, 128, 10], seed=0)
    state = {"seed": 0}

    def numpy_part():
        for _ in range(matmuls):
            a @ b

    def digitcore_part():
        state["seed"] += 1
        digitcore.Trainer(net, optimizer="sgd", lr=0.1, batch_size=128, epochs=1,
                          seed=state["seed"], verbose=0).fit(x, y)
        net.predict_proba(xt)

    run = {"numpy": numpy_part, "digitcore": digitcore_part}

    def one_round():
        # the parts once untimed, then timed: after the pause before a round every part
        # would start cold (pools asleep, caches cold), alone; in the loop the second part
        # would start warm from the first, a bias in the loop's favour. Timed so, each part
        # follows a run of the loop's other part (mixed) or of itself (alone).
        for p in parts:
            run[p]()
        out = {}
        for p in parts:
            t = time.perf_counter()
            run[p]()
            out[p] = time.perf_counter() - t
        out["total"] = sum(out.values())
        return out

    for _ in range(2):  # warm-up: page faults, thread pools started, caches
        one_round()
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        if json.loads(line).get("quit"):
            return
        sys.stdout.write(json.dumps(one_round()) + "\n")
        sys.stdout.flush()


# ---------------------------------------------------------------------------------------
# coordinator
# ---------------------------------------------------------------------------------------

def _worker(variant, args):
    env = worker_env(args.threads, drop_prefix="OPENBLAS_THREAD")
    env.update(VARIANTS[variant][1])
    return Worker(Path(__file__).resolve(),
                  ["--worker", variant, "--n", str(args.n), "--matmuls", str(args.matmuls),
                   "--data-dir", args.data_dir], env, HERE)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=shared_mnist())
    ap.add_argument("--variants", default=",".join(GROUPS),
                    help="comma-separated: " + ", ".join(GROUPS))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=6000, help="training images per epoch")
    ap.add_argument("--matmuls", type=int, default=20, help="512x512 matmuls per round")
    ap.add_argument("--pause", type=float, default=0.3)
    ap.add_argument("--json", default=None,
                    help="default benchmarks/results/bench_interleave.json")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.n, args.matmuls, args.data_dir)
        return
    sys.path.insert(0, str(HERE))
    from _results import save

    groups = args.variants.split(",")
    for g in groups:
        if g not in GROUPS:
            raise SystemExit(f"unknown variant {g!r}; choose from {', '.join(GROUPS)}")
    names = [v for g in groups for v in GROUPS[g]]
    workers = {v: _worker(v, args) for v in names}
    try:
        for w in workers.values():
            w.read()  # warmed up
        times = {v: [] for v in names}
        for r in range(args.rounds):
            for v in (names if r % 2 == 0 else names[::-1]):
                time.sleep(args.pause)
                times[v].append(workers[v].ask())
            print(f"round {r + 1}: " + ", ".join(
                f"{v} {1e3 * times[v][-1]['total']:.1f} ms" for v in names), flush=True)
    finally:
        for w in workers.values():
            w.close()

    def med(v, part):
        return statistics.median(t[part] for t in times[v])

    claims = {}
    if "alone" in groups:
        claims["alone_numpy_ms"] = 1e3 * med("numpy", "numpy")
        claims["alone_digitcore_ms"] = 1e3 * med("digitcore", "digitcore")
        alone = claims["alone_numpy_ms"] + claims["alone_digitcore_ms"]
        claims["alone_sum_ms"] = alone
        print(f"alone: NumPy {claims['alone_numpy_ms']:.1f} ms + digitcore "
              f"{claims['alone_digitcore_ms']:.1f} ms = {alone:.1f} ms")
    for g in groups:
        if g == "alone":
            continue
        key = g.replace("-", "_")
        claims[f"{key}_ms"] = 1e3 * med(g, "total")
        claims[f"{key}_numpy_ms"] = 1e3 * med(g, "numpy")
        claims[f"{key}_digitcore_ms"] = 1e3 * med(g, "digitcore")
        line = (f"{g}: {claims[f'{key}_ms']:.1f} ms (NumPy part "
                f"{claims[f'{key}_numpy_ms']:.1f} ms, digitcore part "
                f"{claims[f'{key}_digitcore_ms']:.1f} ms)")
        if "alone" in groups:
            claims[f"{key}_vs_alone_sum"] = claims[f"{key}_ms"] / claims["alone_sum_ms"]
            claims[f"{key}_digitcore_vs_alone"] = (claims[f"{key}_digitcore_ms"]
                                                   / claims["alone_digitcore_ms"])
            claims[f"{key}_numpy_vs_alone"] = (claims[f"{key}_numpy_ms"]
                                               / claims["alone_numpy_ms"])
            line += (f": {claims[f'{key}_vs_alone_sum']:.2f}x the sum alone (digitcore part "
                     f"{claims[f'{key}_digitcore_vs_alone']:.2f}x, NumPy part "
                     f"{claims[f'{key}_numpy_vs_alone']:.2f}x)")
        print(line, flush=True)
    save(__file__, claims, {"threads": args.threads, "n": args.n, "matmuls": args.matmuls,
                            "rounds": times}, path=args.json)


if __name__ == "__main__":
    main()
