"""digitcore against NumPy and PyTorch over many cases, each system in a process of its own.

    python benchmarks/bench_matrix.py --short          # ~10 min: 12,000 images, 3 rounds
    python benchmarks/bench_matrix.py                  # full data, 5 rounds
    python benchmarks/bench_matrix.py --cases mnist-b128,proba-1 --threads 2 --rounds 9
        --json /tmp/cases.json                         # a subset names its results file

For every (case, thread count) each system runs in a worker process of its own (so no other
library's thread pool spins beside it), started with OMP/OpenBLAS/MKL/DIGITCORE thread
counts set. Each worker first trains and checks that its system learned (test accuracy of
the trained model at least the case's floor; else that case is not timed, the others are,
the results go to a -partial file and the run exits non-zero), then the systems are timed
in turn, alternating their order round by round, with a pause before each timed run so
the previous worker's thread pools go to sleep. Times are medians over the rounds.

Ratios are the best peer's median time over digitcore's, at the same thread count (> 1:
digitcore is faster). Each case's dense work divided by its time gives GFLOP/s, printed
against the machine's GEMM ceiling: the best of numpy.matmul (OpenBLAS) and digitcore's
GEMM on 1024x1024x1024 at that thread count, measured in the same run, each in its own
process. digitcore's first layer skips zero pixels, so on uint8 MNIST its figure is
dense-equivalent and can exceed the ceiling. Peers that are not installed (torch) are
skipped, and so are cases whose data is missing (Fashion-MNIST, scikit-learn's 8x8 digits).

`digitcore-dense` is digitcore with its sparse first layer switched off (training and
inference), on the same data (uint8, or standardized floats, whose sparse path is off
their background): not a peer, its time over digitcore's is printed as the sparse path's
gain. Results, with each figure as a named claim, go to
benchmarks/results/bench_matrix.json (see _results.py), which the README quotes: a run of
fewer cases, systems or thread counts must name another file with --json. The MNIST folder
is --data-dir, else $DIGITCORE_SHARED_MNIST, else shared/data/mnist beside the checkout.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _data import shared_mnist  # noqa: E402
import _results  # noqa: E402
from _workers import Worker, worker_env  # noqa: E402

# kind: "train" (unit = `epochs` epochs, or `steps` full-batch steps), "proba1" / "predict1"
# (unit = median of single-image calls), "proba" (unit = one call on the test set).
# data: mnist (uint8), mnist-std (float32 (x/255 - 0.1307)/0.3081), fashion, digits8.
CASES = {
    "mnist-b128": dict(sizes=(784, 128, 10), bs=128, data="mnist", epochs=1, floor=0.85),
    "mnist-b32": dict(sizes=(784, 128, 10), bs=32, data="mnist", epochs=1, floor=0.85),
    "mnist-full": dict(sizes=(784, 128, 10), bs=None, data="mnist", steps=5, verify_steps=40,
                       floor=0.6),
    "tutorial-full": dict(sizes=(784, 10, 10), bs=None, data="mnist", steps=5,
                          verify_steps=40, floor=0.5),
    "std-b128": dict(sizes=(784, 128, 10), bs=128, data="mnist-std", epochs=1, floor=0.85),
    "fashion-b128": dict(sizes=(784, 128, 10), bs=128, data="fashion", epochs=1, floor=0.7),
    "sigmoid-b10": dict(sizes=(784, 30, 10), bs=10, data="mnist", epochs=1, floor=0.8,
                        activation="sigmoid"),
    "adam800-drop": dict(sizes=(784, 800, 10), bs=128, data="mnist", epochs=1, floor=0.85,
                         optimizer="adam", lr=2e-3, dropout=0.3, peers=("pytorch",)),
    # 47 updates in --short mode: PyTorch's default init reaches ~74% there
    "wide1024-b256": dict(sizes=(784, 1024, 1024, 10), bs=256, data="mnist", epochs=1,
                          floor=0.6),
    "digits8-b32": dict(sizes=(64, 128, 64, 10), bs=32, data="digits8", epochs=20, floor=0.85),
    "proba-1": dict(sizes=(784, 128, 10), bs=128, data="mnist", kind="proba1", calls=2000,
                    floor=0.85),
    "predict-1": dict(sizes=(784, 128, 10), bs=128, data="mnist", kind="predict1",
                      calls=2000, floor=0.85),
    "proba-10k": dict(sizes=(784, 128, 10), bs=128, data="mnist", kind="proba", floor=0.85),
}
SYSTEMS = ("digitcore", "digitcore-dense", "numpy", "pytorch")
SHORT_TRAIN = 12000
DEFAULT_THREADS = "1,2"
COMMITTED = HERE / "results" / "bench_matrix.json"  # the README quotes its claims


# ---------------------------------------------------------------------------------------
# worker: one system, one case, one thread count (its own process)
# ---------------------------------------------------------------------------------------

def _load(case, data_dirs, short):
    import numpy as np

    import digitcore
    data = case["data"]
    if data == "digits8":
        from sklearn.datasets import load_digits
        d = load_digits()
        x = (d.data / 16.0).astype(np.float32)
        y = d.target.astype(np.int64)
        return x[:1437], y[:1437], x[1437:], y[1437:]
    if data == "fashion":
        (x, y), (xt, yt) = digitcore.load_fashion_mnist(data_dirs["fashion"], download=False)
    else:
        (x, y), (xt, yt) = digitcore.load_mnist(data_dirs["mnist"], download=False)
    x, xt = x.reshape(len(x), -1), xt.reshape(len(xt), -1)
    y, yt = y.astype(np.int64), yt.astype(np.int64)
    if short:
        x, y = x[:SHORT_TRAIN], y[:SHORT_TRAIN]
    if data == "mnist-std":
        def std(a):
            return ((a.astype(np.float32) / np.float32(255) - np.float32(0.1307))
                    / np.float32(0.3081)).astype(np.float32)
        x, xt = std(x), std(xt)
    return x, y, xt, yt


class _Digitcore:
    sparse_input = "auto"  # the sparse first layer where the data suits it

    def __init__(self, case, threads):
        import digitcore
        self.dc = digitcore
        digitcore.set_num_threads(threads)
        self.case = case

    def make(self, seed):
        c = self.case
        return self.dc.Network(list(c["sizes"]), activation=c.get("activation", "relu"),
                               dropout=c.get("dropout", 0.0), seed=seed)

    def train(self, model, x, y, seed, epochs):
        c = self.case
        tr = self.dc.Trainer(model, optimizer=c.get("optimizer", "sgd"), lr=c.get("lr", 0.1),
                             batch_size=c["bs"], epochs=epochs, seed=seed, verbose=0)
        tr._sparse_input = self.sparse_input
        t = time.perf_counter()
        hist = tr.fit(x, y)
        took = time.perf_counter() - t
        # every timed run did all its work: each batch an update, each epoch a record
        bs = c["bs"] or len(x)
        steps = epochs * -(-len(x) // bs)
        if tr.optimizer.step_count != steps or len(hist.loss) != epochs:
            raise RuntimeError(f"digitcore ran {tr.optimizer.step_count} of {steps} steps, "
                               f"{len(hist.loss)} of {epochs} epochs")
        return took

    def proba(self, model, x):
        model.c_net().sparse_input = self.sparse_input
        return model.predict_proba(x)

    def predict(self, model, x):
        model.c_net().sparse_input = self.sparse_input
        return model.predict(x)


class _DigitcoreDense(_Digitcore):
    """digitcore with the sparse first layer off, for training and inference: what skipping
    the zero pixels saves on the same data. Not a peer: its ratio is the sparse gain."""
    sparse_input = "never"


class _Peer:
    """What the NumPy and PyTorch peers share: inference on their model's predict_proba and
    predict (the argmax of the scores, no softmax, as digitcore's predict: a careful user's
    predict does no more work)."""

    @staticmethod
    def proba(model, x):
        return model.predict_proba(x)

    @staticmethod
    def predict(model, x):
        return model.predict(x)


class _Numpy(_Peer):
    def __init__(self, case, threads):
        import numpy as np
        self.np = np
        self.case = case
        from numpy_mlp import NumpyMLP
        self.cls = NumpyMLP
        if case.get("optimizer", "sgd") != "sgd" or case.get("dropout"):
            raise ImportError("the NumPy peer runs plain SGD without dropout only")

    def make(self, seed):
        return self.cls(self.case["sizes"], seed, activation=self.case.get("activation", "relu"))

    def train(self, model, x, y, seed, epochs):
        rng = self.np.random.default_rng(seed)
        bs = self.case["bs"] or len(x)
        t = time.perf_counter()
        for _ in range(epochs):
            model.train_epoch(x, y, bs, self.case.get("lr", 0.1), rng)
        return time.perf_counter() - t


class _Torch(_Peer):
    def __init__(self, case, threads):
        import torch
        torch.set_num_threads(threads)
        from torch_mlp import TorchMLP
        self.cls = TorchMLP
        self.case = case

    def make(self, seed):
        c = self.case
        return self.cls(c["sizes"], seed, activation=c.get("activation", "relu"),
                        dropout=c.get("dropout", 0.0))

    def train(self, model, x, y, seed, epochs):
        c = self.case
        return model.fit(x, y, c["bs"] or len(x), epochs, c.get("lr", 0.1),
                         c.get("optimizer", "sgd"), seed)


def _reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def worker(system, case_name, threads, data_dirs, short):
    import numpy as np

    from digitcore.errors import DigitcoreError
    case = CASES[case_name]
    kind = case.get("kind", "train")
    try:
        sysobj = {"digitcore": _Digitcore, "digitcore-dense": _DigitcoreDense, "numpy": _Numpy,
                  "pytorch": _Torch}[system](
            case, threads)
        x, y, xt, yt = _load(case, data_dirs, short)
    except (ImportError, OSError, DigitcoreError) as exc:  # a peer or data that is not here
        _reply({"skip": f"{type(exc).__name__}: {exc}"})
        return
    full = kind == "train" and case["bs"] is None
    if full and not system.startswith("digitcore") and x.dtype == np.uint8:
        # a careful NumPy/PyTorch user converts the data set once for full-batch descent;
        # digitcore keeps uint8 and converts inside its kernels (counted in its time)
        x = (x.astype(np.float32) / np.float32(255)).astype(np.float32)
    per_unit = case.get("steps", case.get("epochs", 1))

    # the learning check: train (one unit, or verify_steps full-batch steps), then test
    model = sysobj.make(0)
    sysobj.train(model, x, y, 0, case.get("verify_steps", per_unit))
    acc = float((np.asarray(sysobj.predict(model, xt)) == yt).mean())
    _reply({"accuracy": acc})
    one = [xt[i:i + 1] for i in range(min(len(xt), 500))]
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("quit"):
            return
        seed = cmd["seed"]
        if kind == "train":
            m = sysobj.make(seed)
            dt = sysobj.train(m, x, y, seed, per_unit)
        elif kind in ("proba1", "predict1"):
            f = sysobj.proba if kind == "proba1" else sysobj.predict
            for im in one[:50]:
                f(model, im)
            ts = []
            for i in range(case["calls"]):
                im = one[i % len(one)]
                t = time.perf_counter()
                f(model, im)
                ts.append(time.perf_counter() - t)
            dt = statistics.median(ts)
        else:
            sysobj.proba(model, xt)
            t = time.perf_counter()
            sysobj.proba(model, xt)
            dt = time.perf_counter() - t
        _reply({"seconds": dt})


def ceiling_worker(system, threads, reps):
    """Best GFLOP/s of reps 1024^3 float32 GEMMs."""
    import numpy as np
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1024, 1024), dtype=np.float32)
    b = rng.standard_normal((1024, 1024), dtype=np.float32)
    if system == "digitcore":
        import digitcore
        digitcore.set_num_threads(threads)
        out = np.empty((1024, 1024), np.float32)

        def f():
            digitcore.ops.gemm(a, b, out=out)
    else:
        def f():
            a @ b
    f()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    _reply({"gflops": 2 * 1024 ** 3 / best / 1e9})


# ---------------------------------------------------------------------------------------
# coordinator
# ---------------------------------------------------------------------------------------

def _worker(args, threads):
    return Worker(Path(__file__).resolve(), args, worker_env(threads), HERE)


def flops(case, n_train, n_test):
    """Dense floating-point operations of one timed unit."""
    sizes = case["sizes"]
    kind = case.get("kind", "train")
    fwd = sum(2 * i * o for i, o in zip(sizes[:-1], sizes[1:]))
    if kind in ("proba1", "predict1"):
        return fwd
    if kind == "proba":
        return fwd * n_test
    # forward, weight gradient, and the input gradient of every layer but the first
    train = sum(2 * i * o * (2 if li == 0 else 3)
                for li, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])))
    return train * n_train * case.get("steps", case.get("epochs", 1))


def data_sizes(case, short, data_dirs):
    if case["data"] == "digits8":
        return 1437, 360
    return (SHORT_TRAIN if short else 60000), 10000


def measure_ceiling(threads, reps):
    out = {}
    for system in ("numpy", "digitcore"):
        w = _worker(["--ceiling-worker", system, str(threads), str(reps)], threads)
        out[system] = w.read()["gflops"]
        w.close()
        time.sleep(0.5)
    return out


def fmt_time(s):
    return f"{s * 1e6:.1f} us" if s < 1e-3 else (f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.3f} s")


def run(args):
    cases = list(CASES) if args.cases == "all" else args.cases.split(",")
    for c in cases:
        if c not in CASES:
            raise SystemExit(f"unknown case {c!r}; choose from {', '.join(CASES)}")
    threads_list = [int(t) for t in args.threads.split(",")]
    systems = args.systems.split(",")
    rounds = args.rounds or (3 if args.short else 5)
    common = ["--data-dir", args.data_dir, "--fashion-dir", args.fashion_dir]
    if args.short:
        common.append("--short")
    ceilings = {}
    for th in threads_list:
        ceilings[th] = measure_ceiling(th, 5 if args.short else 10)
        print(f"GEMM ceiling, {th} thread(s), 1024^3: numpy/OpenBLAS "
              f"{ceilings[th]['numpy']:.1f} GFLOP/s, digitcore {ceilings[th]['digitcore']:.1f}",
              flush=True)
    rows, failed = [], []
    for name in cases:
        case = CASES[name]
        peers = case.get("peers", ("numpy", "pytorch"))
        n_train, n_test = data_sizes(case, args.short, None)
        for th in threads_list:
            workers, acc, skipped, learned = {}, {}, {}, True
            for s in systems:
                if not s.startswith("digitcore") and s not in peers:
                    continue
                if s == "digitcore-dense" and (
                        case["data"] not in ("mnist", "fashion", "mnist-std")
                        or case.get("kind") in ("proba1", "predict1")):
                    # the sparse path only matters on MNIST-like pixels, and inference
                    # takes it from 256 rows (DC_SPARSE_INFER_MIN_ROWS): one image runs
                    # the same dense code either way
                    continue
                w = _worker(["--worker", s, name, str(th)] + common, th)
                r = w.read()
                if "skip" in r:
                    skipped[s] = r["skip"]
                    w.close()
                    continue
                workers[s] = w
                acc[s] = r["accuracy"]
                if acc[s] < case["floor"]:
                    failed.append(f"{s} {name} {th} thread(s): test accuracy {acc[s]:.3f} < "
                                  f"{case['floor']}; not timed (did not learn)")
                    print(failed[-1], flush=True)
                    learned = False
                    break
            if not learned:
                for v in workers.values():
                    v.close()
                continue
            if "digitcore" not in workers:
                for v in workers.values():
                    v.close()
                print(f"{name}: skipped ({skipped.get('digitcore', 'digitcore not run')})")
                break
            times = {s: [] for s in workers}
            order = list(workers)
            for r in range(rounds):
                for s in (order if r % 2 == 0 else order[::-1]):
                    time.sleep(args.pause)
                    times[s].append(workers[s].ask({"seed": r + 1})["seconds"])
            for w in workers.values():
                w.close()
            med = {s: statistics.median(v) for s, v in times.items()}
            peer_t = {s: v for s, v in med.items() if not s.startswith("digitcore")}
            best = min(peer_t, key=peer_t.get) if peer_t else None
            f = flops(case, n_train, n_test)
            ceil = max(ceilings[th].values())
            row = {"case": name, "threads": th, "arch": "-".join(map(str, case["sizes"])),
                   "batch": case.get("bs"), "data": case["data"], "kind": case.get("kind", "train"),
                   "n_train": n_train, "seconds": med, "rounds": times, "accuracy": acc,
                   "skipped": skipped, "best_peer": best,
                   "ratio": (peer_t[best] / med["digitcore"]) if best else None,
                   "sparse_gain": (med["digitcore-dense"] / med["digitcore"]
                                   if "digitcore-dense" in med else None),
                   "gflops": {s: f / v / 1e9 for s, v in med.items()},
                   "gemm_ceiling_gflops": ceil}
            rows.append(row)
            line = "  ".join(f"{s} {fmt_time(med[s])} ({row['gflops'][s]:.1f} GF/s, "
                             f"acc {acc[s]:.3f})" for s in med)
            ratio = f"{row['ratio']:.2f}x vs {best}" if best else "no peer"
            if row["sparse_gain"]:
                ratio += f", sparse {row['sparse_gain']:.2f}x"
            print(f"{name:14s} {th}t  {ratio:18s} {line}  [ceiling {ceil:.0f} GF/s]",
                  flush=True)
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                        "processor": platform.processor()},
            "mode": "short" if args.short else "full", "rounds": rounds,
            "command": " ".join(["python", "benchmarks/bench_matrix.py"] + sys.argv[1:]),
            "gemm_ceiling_gflops": {str(k): v for k, v in ceilings.items()}, "rows": rows,
            "failed": failed}


UNITS = {"proba1": ("us", 1e6, 1), "predict1": ("us", 1e6, 1), "proba": ("ms", 1e3, 1)}
RESULTS_URL = "https://github.com/digitcore/digitcore/blob/main/benchmarks/results/"


def claims_of(result):
    """The named figures a document may quote (see _results.py)."""
    claims = {}
    for r in result["rows"]:
        key = f"{r['case']}_{r['threads']}t"
        unit, mult, _ = UNITS.get(r["kind"], ("s", 1.0, 3))
        for s, v in r["seconds"].items():
            claims[f"{key}_{s}_{unit}"] = v * mult
        if r["kind"] == "proba":
            claims[f"{key}_images_per_s"] = 10000 / r["seconds"]["digitcore"]
        if r["ratio"]:
            claims[f"{key}_ratio"] = r["ratio"]
            # each system at its best thread count up to this one (a peer slower on 2
            # threads than on 1 would be run on 1; "ratio" takes every system at this count)
            best = _results.best_seconds(result["rows"], r, lambda o: o["case"])
            peers = [v for s, v in best.items() if not s.startswith("digitcore")]
            claims[f"{key}_ratio_at_best_threads"] = min(peers) / best["digitcore"]
        if r.get("sparse_gain"):
            claims[f"{key}_sparse_gain"] = r["sparse_gain"]
        claims[f"{key}_gflops"] = r["gflops"]["digitcore"]
        claims[f"{key}_pct_of_ceiling"] = 100 * r["gflops"]["digitcore"] / r["gemm_ceiling_gflops"]
    claims.update({f"gemm_ceiling_{t}t_gflops": max(v.values())
                   for t, v in result["gemm_ceiling_gflops"].items()})
    return claims


def markdown(result, claims, results_file="bench_matrix.json"):
    """The README table, every figure a link to its claim in the committed results."""
    def link(claim, fmt, suffix=""):
        return f'[{fmt.format(claims[claim])}{suffix}]({RESULTS_URL}{results_file} "{claim}")'

    out = ["| case | threads | digitcore | best peer | digitcore is | sparse path gain "
           "| GFLOP/s (of GEMM ceiling) |", "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        key = f"{r['case']}_{r['threads']}t"
        unit, _, dec = UNITS.get(r["kind"], ("s", 1.0, 3))
        tfmt = "{:.%df}" % dec
        dc = link(f"{key}_digitcore_{unit}", tfmt, f" {unit}")
        best = r["best_peer"]
        peer = f"{best} " + link(f"{key}_{best}_{unit}", tfmt, f" {unit}") if best else "none"
        ratio = link(f"{key}_ratio", "{:.2f}", "x") if best else ""
        gain = link(f"{key}_sparse_gain", "{:.2f}", "x") if r.get("sparse_gain") else ""
        gf = (link(f"{key}_gflops", "{:.0f}") + " (" + link(f"{key}_pct_of_ceiling", "{:.0f}", "%")
              + ")")
        c = CASES[r["case"]]
        out.append(f"| {r['case']} ({'-'.join(map(str, c['sizes']))}) | {r['threads']} | {dc} "
                   f"| {peer} | {ratio} | {gain} | {gf} |")
    return "\n".join(out)


def results_path(args):
    """Where a run's results go: --json, else bench_matrix-short.json for --short, else the
    committed bench_matrix.json, which only a run of every case, system and thread count
    may replace (the README quotes its claims; a subset would drop them)."""
    if args.json:
        return Path(args.json)
    if args.short:
        return HERE / "results" / "bench_matrix-short.json"
    chosen = {"--cases": (set(CASES) if args.cases == "all" else set(args.cases.split(",")),
                          set(CASES)),
              "--systems": (set(args.systems.split(",")), set(SYSTEMS)),
              "--threads": (set(args.threads.split(",")), set(DEFAULT_THREADS.split(",")))}
    subset = [flag for flag, (got, full) in chosen.items() if got != full]
    if subset:
        raise SystemExit(
            f"bench_matrix: a run with {' and '.join(subset)} measures a subset of the matrix, "
            "and would overwrite benchmarks/results/bench_matrix.json, whose claims the "
            "README quotes, without the rest: name its results file with --json FILE (e.g. "
            "--json benchmarks/results/bench_matrix-changed.json)")
    return COMMITTED


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=shared_mnist())
    ap.add_argument("--fashion-dir", default=os.environ.get(
        "DIGITCORE_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--short", action="store_true",
                    help=f"first {SHORT_TRAIN} training images, 3 rounds")
    ap.add_argument("--rounds", type=int, default=0)
    ap.add_argument("--threads", default=DEFAULT_THREADS)
    ap.add_argument("--cases", default="all", help="'all' or names: " + ",".join(CASES))
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--pause", type=float, default=0.5,
                    help="seconds before each timed run (the previous pools go to sleep)")
    ap.add_argument("--json", default=None,
                    help="default benchmarks/results/bench_matrix.json (a run of the whole "
                         "matrix only), bench_matrix-short.json with --short")
    ap.add_argument("--worker", nargs=3, metavar=("SYSTEM", "CASE", "THREADS"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--ceiling-worker", nargs=3, metavar=("SYSTEM", "THREADS", "REPS"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--table", metavar="JSON",
                    help="print the README table of a results file, without running")
    args = ap.parse_args()
    if args.table:
        saved = json.loads(Path(args.table).read_text())
        print(markdown(saved["rows"], saved["claims"], Path(args.table).name))
        return
    if args.worker:
        s, c, t = args.worker
        worker(s, c, int(t), {"mnist": args.data_dir, "fashion": args.fashion_dir}, args.short)
        return
    if args.ceiling_worker:
        s, t, reps = args.ceiling_worker
        ceiling_worker(s, int(t), int(reps))
        return
    out = results_path(args)
    result = run(args)
    claims = claims_of(result)
    try:  # the share of zero pixels, which the sparse first layer skips
        import digitcore
        (xm, _), _ = digitcore.load_mnist(args.data_dir, download=False)
        claims["mnist_train_zero_pixels_pct"] = 100.0 * float((xm == 0).mean())
    except (OSError, ValueError) as exc:
        print(f"MNIST's zero-pixel share not measured: {exc}")
    # (the committed file: _results.save sends a run that lacks some of its claims, a case
    # or peer skipped, to bench_matrix-partial.json, so no figure the README quotes is lost)
    path = _results.save(__file__, claims, result, None if out == COMMITTED else out)
    print()
    print(markdown(result, claims, Path(path).name))
    if result["failed"]:
        raise SystemExit("\n".join(result["failed"]))


if __name__ == "__main__":
    main()
