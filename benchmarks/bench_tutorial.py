"""The seed tutorial, `digitcore train --preset tutorial` (784-10-10, full-batch gradient
descent over all 60,000 MNIST images, lr 0.1, 500 steps), against the same descent in
NumPy, each run in a process of its own, alternated round by round.

    python benchmarks/bench_tutorial.py                     # 2 threads, 3 rounds
    python benchmarks/bench_tutorial.py --threads 1,2 --rounds 5 --numpy-steps 30

digitcore runs the CLI command itself (its JSON: training wall time, test accuracy).
NumPy (benchmarks/numpy_mlp.py, the data converted to float32 once beforehand, as a
careful user would) runs --numpy-steps full-batch steps; its per-step time is compared
with digitcore's (500 steps' training time / 500). Times are medians over the rounds;
ratios are NumPy's time per step over digitcore's (> 1: digitcore is faster).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _data import shared_mnist  # noqa: E402
from _workers import worker_env  # noqa: E402
STEPS = 500  # the tutorial preset's epochs (one full-batch step each)


def worker_digitcore(data_dir, threads):
    from digitcore import cli

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        status = cli.main(["train", "--preset", "tutorial", "--dataset", "mnist",
                           "--data-dir", data_dir,
                           "--threads", str(threads), "--json", "--seed", "0"])
    if status:
        raise SystemExit(f"digitcore train exited with {status}")
    out = json.loads(buf.getvalue().strip().splitlines()[-1])
    assert out["epochs"] == STEPS and out["n_train"] == 60000, out
    return {"seconds": out["wall_seconds"], "per_step": out["wall_seconds"] / STEPS,
            "accuracy": out["test_accuracy"]}


def worker_numpy(data_dir, threads, steps):
    import numpy as np

    import digitcore
    from numpy_mlp import NumpyMLP

    (x, y), _ = digitcore.load_mnist(data_dir, download=False)
    x = (x.reshape(len(x), -1).astype(np.float32) / np.float32(255)).astype(np.float32)
    y = y.astype(np.int64)
    model = NumpyMLP([784, 10, 10], 0)
    rng = np.random.default_rng(0)
    first = model.train_epoch(x, y, len(x), 0.1, rng)  # warm-up step, not timed
    t = time.perf_counter()
    for _ in range(steps):
        last = model.train_epoch(x, y, len(x), 0.1, rng)
    dt = time.perf_counter() - t
    return {"seconds": dt, "per_step": dt / steps, "first_loss": float(first),
            "last_loss": float(last)}


def run_worker(system, threads, args):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", system, str(threads),
           "--data-dir", args.data_dir, "--numpy-steps", str(args.numpy_steps)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=worker_env(threads), cwd=str(HERE))
    if p.returncode != 0:
        raise SystemExit(f"{system} worker failed:\n{p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=shared_mnist())
    ap.add_argument("--threads", default="2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--numpy-steps", type=int, default=40)
    ap.add_argument("--pause", type=float, default=0.5)
    ap.add_argument("--json", default=None, help="default benchmarks/results/bench_tutorial.json")
    ap.add_argument("--worker", nargs=2, metavar=("SYSTEM", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    if args.worker:
        system, threads = args.worker[0], int(args.worker[1])
        r = (worker_digitcore(args.data_dir, threads) if system == "digitcore"
             else worker_numpy(args.data_dir, threads, args.numpy_steps))
        print(json.dumps(r))
        return

    from _results import save

    claims, rows = {}, []
    for th in [int(t) for t in args.threads.split(",")]:
        runs = {"digitcore": [], "numpy": []}
        order = list(runs)
        for r in range(args.rounds):
            for s in (order if r % 2 == 0 else order[::-1]):
                time.sleep(args.pause)
                runs[s].append(run_worker(s, th, args))
                print(f"  {th}t round {r + 1} {s}: {runs[s][-1]}", flush=True)
        dc_s = statistics.median(x["seconds"] for x in runs["digitcore"])
        dc_step = statistics.median(x["per_step"] for x in runs["digitcore"])
        np_step = statistics.median(x["per_step"] for x in runs["numpy"])
        acc = statistics.median(x["accuracy"] for x in runs["digitcore"])
        # (a fast wrong answer is not a result: digitcore reads the test set as the
        # tutorial does, NumPy's descent lowers its loss)
        if acc < 0.85:
            raise SystemExit(f"digitcore's tutorial read {acc:.2%} of the test set; "
                             "refusing to report its time")
        for x in runs["numpy"]:
            if not x["last_loss"] < x["first_loss"] - 0.01:
                raise SystemExit(f"NumPy's descent did not learn (loss {x['first_loss']:.3f} "
                                 f"-> {x['last_loss']:.3f}); refusing to compare with it")
        ratio = np_step / dc_step
        print(f"tutorial, {th} thread(s): digitcore {dc_s:.2f} s for {STEPS} steps "
              f"({dc_step * 1e3:.1f} ms/step, test accuracy {acc:.2%}); NumPy "
              f"{np_step * 1e3:.1f} ms/step; digitcore {ratio:.2f}x NumPy's speed", flush=True)
        claims[f"tutorial_train_s_{th}t"] = round(dc_s, 2)
        claims[f"tutorial_step_ms_{th}t"] = round(dc_step * 1e3, 1)
        claims[f"numpy_step_ms_{th}t"] = round(np_step * 1e3, 1)
        claims[f"tutorial_vs_numpy_{th}t"] = round(ratio, 2)
        claims[f"tutorial_accuracy_pct_{th}t"] = round(acc * 100, 2)
        rows.append({"threads": th, "runs": runs})
    save(__file__, claims, rows, path=args.json)


if __name__ == "__main__":
    main()
