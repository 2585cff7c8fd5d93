"""Training on a busy machine: 2 threads while other processes keep the cores busy, against
the quiet 1-thread run, with digitcore's libgomp spin, a shorter one and libgomp's own.

    python benchmarks/bench_busy.py                       # 3 cases, 3 rounds, 12,000 images
    python benchmarks/bench_busy.py --cases b128 --rounds 5 --n 60000
    python benchmarks/bench_busy.py --busy 17 --variants busy-2t,busy-2t-spin1000,busy-2t-long-spin

digitcore loads libgomp with GOMP_SPINCOUNT=10000 unless the user chose a spin or wait
policy (src/digitcore/_config.py). Each run is a process of its own, one epoch timed
after a warm-up epoch:
  quiet-1t  1 thread, nothing else started by this benchmark
  quiet-2t  2 threads, nothing else started
  quiet-2t-spin1000  the same with GOMP_SPINCOUNT=1000 (a spin too short for the gaps
            between a batch's parallel regions: the threads sleep and are woken in each)
  busy-2t   2 threads beside `--busy` copies of `python -c 'while 1: pass'` (started
            here, stopped after)
  busy-2t-spin1000, busy-2t-long-spin  the same with GOMP_SPINCOUNT=1000 and 300000
            (libgomp's default spin)
The variants alternate within each round; times are medians over the rounds; ratios are
each run's time over quiet-1t's (target: busy-2t <= 1.3x beside one busy process).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _data import shared_mnist  # noqa: E402

CASES = {
    "b128": dict(bs=128, data="mnist"),
    "b32": dict(bs=32, data="mnist"),
    # Standardized floats with the sparse first layer switched off: the dense path (left to
    # itself the trainer would run this input sparse, off its per-column background).
    "dense-b128": dict(bs=128, data="mnist-std", sparse_input="never"),
}
VARIANTS = {  # name: (threads, busy process beside, extra environment)
    "quiet-1t": (1, False, {}),
    "quiet-2t": (2, False, {}),
    "quiet-2t-spin1000": (2, False, {"GOMP_SPINCOUNT": "1000"}),
    "busy-2t": (2, True, {}),
    "busy-2t-spin1000": (2, True, {"GOMP_SPINCOUNT": "1000"}),
    "busy-2t-long-spin": (2, True, {"GOMP_SPINCOUNT": "300000"}),
}


def worker(case_name, n, data_dir):
    import numpy as np

    import digitcore

    case = CASES[case_name]
    (x, y), _ = digitcore.load_mnist(data_dir, download=False)
    x, y = x.reshape(len(x), -1)[:n], y[:n]
    if case["data"] == "mnist-std":
        x = ((x.astype(np.float32) / np.float32(255) - np.float32(0.1307))
             / np.float32(0.3081)).astype(np.float32)
    net = digitcore.Network([784, 128, 10], seed=0)
    trainers = [digitcore.Trainer(net, optimizer="sgd", lr=0.1, batch_size=case["bs"],
                                  epochs=1, seed=seed, verbose=0) for seed in (0, 1)]
    for tr in trainers:
        tr._sparse_input = case.get("sparse_input", "auto")
    warm, tr = trainers
    warm.fit(x, y)  # warm-up
    t = time.perf_counter()
    tr.fit(x, y)
    return time.perf_counter() - t


def run_one(case, variant, args):
    threads, busy, extra = VARIANTS[variant]
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "DIGITCORE_NUM_THREADS"):
        env[k] = str(threads)
    env.update(extra)
    hogs = [subprocess.Popen([sys.executable, "-c", "while 1: pass"])
            for _ in range(args.busy if busy else 0)]
    try:
        time.sleep(args.pause)
        p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", case,
                            "--n", str(args.n), "--data-dir", args.data_dir],
                           capture_output=True, text=True, env=env, timeout=args.timeout)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    if p.returncode != 0:
        raise SystemExit(f"{case} {variant} failed:\n{p.stderr}")
    return float(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=shared_mnist())
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--busy", type=int, default=1,
                    help="busy processes beside the busy-* variants")
    ap.add_argument("--n", type=int, default=12000, help="training images per epoch")
    ap.add_argument("--pause", type=float, default=0.5)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--json", default=None, help="default benchmarks/results/bench_busy.json")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.busy < 0:
        ap.error(f"--busy must be >= 0, got {args.busy}")
    if args.worker:
        print(worker(args.worker, args.n, args.data_dir))
        return
    sys.path.insert(0, str(HERE))
    from _results import save

    variants = args.variants.split(",")
    claims, rows = {}, []
    for case in args.cases.split(","):
        times = {v: [] for v in variants}
        for r in range(args.rounds):
            for v in (variants if r % 2 == 0 else variants[::-1]):
                times[v].append(run_one(case, v, args))
                print(f"  {case} round {r + 1} {v}: {times[v][-1]:.3f} s", flush=True)
        med = {v: statistics.median(t) for v, t in times.items()}
        base = med.get("quiet-1t")
        line = ", ".join(f"{v} {med[v]:.3f} s" + (f" ({med[v] / base:.2f}x)" if base else "")
                         for v in variants)
        print(f"{case}: {line}", flush=True)
        for v in variants:
            claims[f"{case}_{v}_s"] = round(med[v], 3)
            if base and v != "quiet-1t":
                claims[f"{case}_{v}_vs_quiet_1t"] = round(med[v] / base, 2)
        rows.append({"case": case, "times": times})
    save(__file__, claims, rows, path=args.json)


if __name__ == "__main__":
    main()
