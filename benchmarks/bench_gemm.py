"""digitcore sgemm vs NumPy/OpenBLAS, in one run, with ratios.

Every digitcore result is checked against a float64 NumPy oracle before it is timed.
Timing interleaves digitcore and numpy.matmul call batches and reports medians, so a
noisy shared machine hurts both sides alike; the 1-minute load average before and after
is recorded (a run with load far above 0 on a 2-core machine is not worth much).

    python benchmarks/bench_gemm.py                 # full table, JSON in benchmarks/results/
    python benchmarks/bench_gemm.py --quick         # a short run
    python benchmarks/bench_gemm.py --threads 1 --json /tmp/g.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time

import numpy as np

import _results

try:
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError:  # pragma: no cover
    sys.exit("bench_gemm.py needs threadpoolctl: pip install threadpoolctl")

import digitcore
import digitcore._config  # noqa: F401  (select_kernel, config)
from digitcore import _ops

try:  # the public op name; fall back to the binding while ops.py is being written
    from digitcore.ops import gemm as dc_gemm
except ImportError:  # pragma: no cover
    dc_gemm = _ops.gemm

# (M, K, N): C (M,N) = op(A) (M,K) . op(B) (K,N). The MLP training forward's shapes
# (784-128-10 and friends at batch 128 / 32, the full-test-set forward) and a large square
# one, each in every variant: ABt is the forward pass's product; the other variants of a
# triple are not training's (its weight gradient, AtB, is (out, batch, in), summing over
# the batch).
TRAINING_SHAPES = [(128, 784, 128), (128, 784, 512), (128, 512, 256), (128, 128, 10),
                   (32, 784, 128)]
LARGE_SHAPES = [(10000, 784, 128), (1024, 1024, 1024)]
VARIANTS = {"AB": (False, False), "AtB": (True, False), "ABt": (False, True)}


def make_operands(m, k, n, variant, rng):
    ta, tb = VARIANTS[variant]
    a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
    return a, b, ta, tb


def verify(a, b, ta, tb, c):
    """Max error of c relative to the float64 bound gamma_k * (|op(A)| |op(B)|)."""
    a64 = a.astype(np.float64).T if ta else a.astype(np.float64)
    b64 = b.astype(np.float64).T if tb else b.astype(np.float64)
    ref = a64 @ b64
    bound = np.abs(a64) @ np.abs(b64)
    k = a64.shape[1]
    # a float32 dot product of length k is within ~k * 2^-24 * sum|a_i b_i| of the truth;
    # blocked summation does better, so 2x that is a generous but meaningful bound
    tol = 2.0 * max(k, 1) * 2.0**-24 * bound + 1e-30
    worst = float(np.max(np.abs(c - ref) / tol)) if c.size else 0.0
    return worst  # <= 1 passes


def cpu_busy_fraction(interval=0.25):
    """Fraction of all CPUs busy (any process) over `interval` s, from /proc/stat."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait
    try:
        t0, i0 = snap()
        time.sleep(interval)
        t1, i1 = snap()
    except OSError:
        return 0.0
    return 1.0 - (i1 - i0) / max(t1 - t0, 1)


def wait_for_idle(max_wait_s, busy_below=0.15):
    """On a shared machine, wait (up to max_wait_s) until other work quiets down."""
    t_end = time.monotonic() + max_wait_s
    busy = cpu_busy_fraction()
    while busy > busy_below and time.monotonic() < t_end:
        busy = cpu_busy_fraction()
    return busy


def time_pair(f_dc, f_np, flop, repeats, target_s, gap_s=0.0):
    """Interleaved timing; returns (GFLOP/s digitcore, GFLOP/s numpy, ratio).

    The GFLOP/s are medians over the repeats; the ratio is the median of each round's
    pair (numpy time / digitcore time, two adjacent batches), so that a slow phase of a
    shared machine, which lasts seconds, hits both sides of a pair alike.

    gap_s: pause before each batch. Both thread pools busy-wait after a call; OpenBLAS
    workers spin for ~2^28 cycles (~0.1 s) and, on 2 cores, steal a core from the next
    digitcore batch (measured: (32,784,128) at 2 threads fell from ~100 to ~3 GFLOP/s
    with a 0.1 s pause). 0.3 s lets them go to sleep first.
    """
    f_dc()
    f_np()  # warm up both (page faults, thread pools)
    # calls per batch, from the fastest of a few calls: the first call after numpy's can
    # be 100x slow (its 2-thread pool still spinning), and batches sized on it were a few
    # calls long, so one scheduler stall (4-8 ms) made the whole batch
    one = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        f_dc()
        one = min(one, time.perf_counter() - t0)
    inner = max(1, int(target_s / max(one, 1e-7)))
    td, tn = [], []
    for r in range(repeats):
        order = (f_dc, f_np) if r % 2 == 0 else (f_np, f_dc)
        for f in order:
            if gap_s:
                time.sleep(gap_s)
            f()  # one untimed call: wake the pool
            t0 = time.perf_counter()
            for _ in range(inner):
                f()
            dt = (time.perf_counter() - t0) / inner
            (td if f is f_dc else tn).append(dt)
    ratio = statistics.median(n / d for d, n in zip(td, tn))
    return flop / statistics.median(td) / 1e9, flop / statistics.median(tn) / 1e9, ratio


def bench_shapes(shapes, threads, repeats, target_s, rng, results, wait_idle=0.0):
    for nt in threads:
        digitcore.set_num_threads(nt)
        if nt > 1:
            print(f"(threads={nt} in one process: both libraries' thread pools share the "
                  f"cores; --isolate times each alone, see bench_isolated)")
        with threadpool_limits(limits=nt, user_api="blas"):
            for (m, k, n, variant) in shapes:
                a, b, ta, tb = make_operands(m, k, n, variant, rng)
                c_dc = np.empty((m, n), np.float32)
                c_np = np.empty((m, n), np.float32)
                dc_gemm(a, b, trans_a=ta, trans_b=tb, out=c_dc)
                err = verify(a, b, ta, tb, c_dc)
                if not err <= 1.0:
                    raise SystemExit(f"WRONG RESULT {variant} {(m, k, n)} threads={nt}: "
                                     f"error {err:.3g} x tolerance")
                a_np = a.T if ta else a
                b_np = b.T if tb else b

                def f_dc():
                    dc_gemm(a, b, trans_a=ta, trans_b=tb, out=c_dc)

                def f_np():
                    np.matmul(a_np, b_np, out=c_np)

                flop = 2.0 * m * n * k
                busy = wait_for_idle(wait_idle) if wait_idle else float("nan")
                g_dc, g_np, ratio = time_pair(f_dc, f_np, flop, repeats, target_s,
                                              gap_s=0.3 if nt > 1 else 0.0)
                row = dict(M=m, K=k, N=n, variant=variant, threads=nt, digitcore_gflops=g_dc,
                           openblas_gflops=g_np, ratio=ratio, err_over_tol=err,
                           cpu_busy_before=busy)
                results.append(row)
                flag = "" if row["ratio"] >= 0.9 else "  <0.9"
                print(f"{variant:>4} {m:6d} {k:5d} {n:5d} {nt:3d}  {g_dc:8.1f} {g_np:8.1f} "
                      f"{row['ratio']:6.2f}  busy={busy:.2f}{flag}", flush=True)


def bench_generic(shapes, threads, repeats, target_s, rng, results):
    """The portable path vs the AVX2 path (issue: generic must be within 4x). On an
    AVX-512 CPU the AVX2 kernels' GEMM runs the AVX-512 tile: it is turned off here, so
    the "avx2" figures are the AVX2 tile's."""
    if not _ops.cpu_has_avx2():
        print("(no AVX2 on this CPU/build: generic-vs-avx2 skipped)")
        return
    had_avx512 = _ops.gemm_tile() == "avx512"
    if had_avx512:
        _ops.use_avx512(False)
    try:
        _bench_generic(shapes, threads, repeats, target_s, rng, results)
    finally:
        if had_avx512:
            _ops.use_avx512(True)


def _bench_generic(shapes, threads, repeats, target_s, rng, results):
    for nt in threads:
        digitcore.set_num_threads(nt)
        for (m, k, n, variant) in shapes:
            a, b, ta, tb = make_operands(m, k, n, variant, rng)
            c = np.empty((m, n), np.float32)
            out = {}
            for path in ("generic", "avx2"):
                digitcore._config.select_kernel(path)
                dc_gemm(a, b, trans_a=ta, trans_b=tb, out=c)
                err = verify(a, b, ta, tb, c)
                if not err <= 1.0:
                    raise SystemExit(f"WRONG RESULT {path} {variant} {(m, k, n)}: {err:.3g}")

            def run(path):
                def f():
                    digitcore._config.select_kernel(path)
                    dc_gemm(a, b, trans_a=ta, trans_b=tb, out=c)
                return f

            flop = 2.0 * m * n * k
            out["avx2"], out["generic"], _ = time_pair(run("avx2"), run("generic"), flop,
                                                       repeats, target_s)
            digitcore._config.select_kernel("avx2")
            assert _ops.gemm_tile() == "avx2", _ops.gemm_tile()
            row = dict(M=m, K=k, N=n, variant=variant, threads=nt,
                       avx2_gflops=out["avx2"], generic_gflops=out["generic"],
                       avx2_over_generic=out["avx2"] / out["generic"])
            results.append(row)
            flag = "" if row["avx2_over_generic"] <= 4.0 else "  >4x"
            print(f"{variant:>4} {m:6d} {k:5d} {n:5d} {nt:3d}  {out['avx2']:8.1f} "
                  f"{out['generic']:8.1f} {row['avx2_over_generic']:6.2f}{flag}", flush=True)


def _worker(lib, nt, shapes, repeats, target_s):
    """Time one library alone in this process (for --isolate); prints JSON GFLOP/s."""
    rng = np.random.default_rng(0)
    out = []
    if lib == "dc":
        digitcore.set_num_threads(nt)
    # touch OpenBLAS's pool only in the numpy worker: resizing it wakes its threads,
    # which then spin on the cores digitcore is about to use
    limits = (threadpool_limits(limits=nt, user_api="blas") if lib == "np"
              else contextlib.nullcontext())
    time.sleep(0.3)
    with limits:
        for (m, k, n, variant) in shapes:
            a, b, ta, tb = make_operands(m, k, n, variant, rng)
            c = np.empty((m, n), np.float32)
            if lib == "dc":
                def f():
                    dc_gemm(a, b, trans_a=ta, trans_b=tb, out=c)
            else:
                a_np, b_np = (a.T if ta else a), (b.T if tb else b)

                def f():
                    np.matmul(a_np, b_np, out=c)
            g, _, _ = time_pair(f, lambda: None, 2.0 * m * n * k, repeats, target_s)
            out.append(g)
    print(json.dumps(out))


def bench_isolated(shapes, threads, rounds, repeats, target_s, results):
    """Each library alone in its own process (1 thread as well: the rule for every
    comparison of systems).

    In one process the two thread pools fight over 2 cores: OpenBLAS workers spin long
    after a call (OPENBLAS_THREAD_TIMEOUT, ~0.1 s and more), and measured digitcore
    2-thread (32,784,128) fell from ~100 to ~4.5 GFLOP/s right after a numpy call, while
    with OPENBLAS_THREAD_TIMEOUT=4 numpy fell instead. It comes and goes by process: the
    same in-process sequence of 2-thread shapes ran at 100-160 GFLOP/s in one process
    and 5-50 in the next, and never fell with the numpy calls replaced by sleeps of the
    same pattern. GOMP_SPINCOUNT=10000 did not help. So: alternate whole runs of a
    digitcore-only and a numpy-only process (never concurrent), medians over rounds.
    Results are verified in-process by bench_shapes' first pass; this only times.
    """
    import subprocess
    spec = json.dumps([list(s) for s in shapes])
    for nt in threads:
        runs = {"dc": [], "np": []}
        for r in range(rounds):
            for lib in (("dc", "np") if r % 2 == 0 else ("np", "dc")):
                wait_for_idle(10)
                cmd = [sys.executable, os.path.abspath(__file__), "--_worker", lib,
                       "--threads", str(nt), "--repeats", str(repeats), "--_shapes", spec,
                       "--_target", str(target_s)]
                res = subprocess.run(cmd, check=True, capture_output=True, text=True)
                runs[lib].append(json.loads(res.stdout.strip().splitlines()[-1]))
        for i, (m, k, n, variant) in enumerate(shapes):
            g_dc = statistics.median(x[i] for x in runs["dc"])
            g_np = statistics.median(x[i] for x in runs["np"])
            row = dict(M=m, K=k, N=n, variant=variant, threads=nt, digitcore_gflops=g_dc,
                       openblas_gflops=g_np, ratio=g_dc / g_np, isolated=True)
            results.append(row)
            flag = "" if row["ratio"] >= 0.9 else "  <0.9"
            print(f"{variant:>4} {m:6d} {k:5d} {n:5d} {nt:3d}  {g_dc:8.1f} {g_np:8.1f} "
                  f"{row['ratio']:6.2f}  isolated{flag}", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer shapes and repeats")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=None, help="timed batches per side")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                   help="before each shape, wait up to S s for the machine to go idle")
    p.add_argument("--json", default=None, help="results file (default: the committed "
                   "benchmarks/results/bench_gemm.json)")
    p.add_argument("--isolate", type=int, default=3, metavar="ROUNDS",
                   help="time every thread count with each library alone in its own "
                        "process, alternating, over ROUNDS rounds; these rows are the "
                        "results (0: the in-process rows instead)")
    p.add_argument("--_worker", choices=["dc", "np"], help=argparse.SUPPRESS)
    p.add_argument("--_shapes", help=argparse.SUPPRESS)
    p.add_argument("--_target", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._worker:
        _worker(args._worker, args.threads[0], [tuple(x) for x in json.loads(args._shapes)],
                args.repeats or 5, args._target or 0.03)
        return
    repeats = args.repeats or (5 if args.quick else 15)
    target_s = 0.01 if args.quick else 0.03
    rng = np.random.default_rng(0)

    shapes = [(m, k, n, v) for (m, k, n) in TRAINING_SHAPES for v in VARIANTS]
    shapes += [(m, k, n, "AB") for (m, k, n) in LARGE_SHAPES]
    if args.quick:
        shapes = [s for s in shapes if s[3] == "AB" or s[:3] == (128, 784, 128)]

    blas = [(d.get("internal_api"), d.get("version"), d.get("architecture"))
            for d in threadpool_info() if d.get("user_api") == "blas"]
    load0 = os.getloadavg()[0]
    cfg = digitcore._config.config()
    print(f"digitcore {cfg['version']} kernel={cfg['kernel']} openmp={cfg['openmp']}; "
          f"numpy {np.__version__} blas={blas}; load1={load0:.2f}")
    print(f"{'var':>4} {'M':>6} {'K':>5} {'N':>5} {'thr':>3}  {'dc GF/s':>8} {'BLAS':>8} "
          f"{'ratio':>6}")
    results, generic = [], []
    bench_shapes(shapes, args.threads, repeats, target_s, rng, results, args.wait_idle)
    if args.isolate:  # (every thread count: the peers run in processes of their own)
        print("\neach library alone in its own process (see bench_isolated):")
        bench_isolated(shapes, args.threads, args.isolate, max(3, repeats // 2), target_s,
                       results)

    print(f"\n{'var':>4} {'M':>6} {'K':>5} {'N':>5} {'thr':>3}  {'avx2':>8} {'generic':>8} "
          f"{'x':>6}")
    gshapes = [(m, k, n, "AB") for (m, k, n) in TRAINING_SHAPES[:1] + TRAINING_SHAPES[3:4]]
    if not args.quick:
        gshapes += [(1024, 1024, 1024, "AB")]
    bench_generic(gshapes, [1], max(3, repeats // 3), target_s, rng, generic)
    load1 = os.getloadavg()[0]
    digitcore.set_num_threads(0)

    # the isolated rows supersede the in-process ones (which verified the results)
    final = [r for r in results if r.get("isolated") or not args.isolate]
    worst = min(final, key=lambda r: r["ratio"])
    print(f"\nworst ratio {worst['ratio']:.2f} at {worst['variant']} "
          f"{(worst['M'], worst['K'], worst['N'])} threads={worst['threads']}; "
          f"load1 {load0:.2f} -> {load1:.2f}")
    claims = {}
    for r in final:
        key = f"{r['variant']}_{r['M']}_{r['K']}_{r['N']}_t{r['threads']}"
        claims.update({f"{key}_gflops": r["digitcore_gflops"],
                       f"{key}_openblas_gflops": r["openblas_gflops"], f"{key}_ratio": r["ratio"]})
    for r in generic:
        claims[f"{r['variant']}_{r['M']}_{r['K']}_{r['N']}_avx2_over_generic"] = \
            r["avx2_over_generic"]
    _results.save(__file__, claims, dict(blas=blas, load_before=load0, load_after=load1,
                                         quick=args.quick, repeats=repeats, results=results,
                                         generic_vs_avx2=generic), args.json)


if __name__ == "__main__":
    main()
