"""Run-time configuration: kernel path, threads, and ``show_config``.

Reads ``DIGITCORE_KERNEL`` (``generic`` | ``avx2``), ``DIGITCORE_NUM_THREADS``,
``DIGITCORE_AVX512`` (``0`` | ``1``) and ``DIGITCORE_TEAM`` (``adaptive`` | ``fixed``)
once, when the compiled module is first needed.
"""

from __future__ import annotations

import os
import sys

_initialized = False
# The most threads digitcore runs on: csrc/digitcore.h's DC_MAX_THREADS (a test keeps the
# two equal), here so that the command line checks --threads without loading the module.
MAX_THREADS = 1024

# GCC's OpenMP runtime (libgomp) lets a thread that waits for work or at a barrier spin
# 300,000 times (milliseconds) before it sleeps, unless GOMP_SPINCOUNT says otherwise.
# Too short a spin and the team's threads fall asleep between a batch's parallel regions
# (gaps of tens of microseconds), and each region then waits for a wake-up, which in a
# virtual machine costs as much as the region: on a 2-core Xeon VM (one spin ~13 ns), a
# 2-thread epoch of 784-128-10 at batch 128 took 0.19-0.20 s on Fashion-MNIST and
# 0.11-0.12 s on MNIST with 1000 spins, no faster than one thread, against 0.14 / 0.10 s
# with 3,000-100,000 (benchmarks/bench_busy.py's quiet-2t variants). Too long a spin
# burned the time slices of a partner thread when other processes kept the cores busy
# (2-thread epochs on 12,000 images at load ~19 on 2 cores took 19-28 s with 100,000
# spins); since training measures its team (team.c) and runs one thread on such a
# machine, the spin no longer decides that case: 0.26-0.30 s there with 1,000, 10,000
# or 30,000 spins, 0.3-0.7 s with 300,000 (bench_busy.py --busy 17). 10,000 spins are
# 0.1-0.5 ms on current x86 cores. libgomp reads the variable once, when the compiled
# module loads it; it is set for that moment only (nothing loaded later sees it), and
# never when the user set either variable.
_GOMP_SPINCOUNT = "10000"

# GCC's OpenMP runtime cannot start a team in a child forked from a process whose team it
# had started (the child waits forever for threads that were not copied): the first
# threaded predict or fit in a multiprocessing.Pool worker (forked: the default start
# method on Linux before Python 3.14) would hang. A forked child of such a process
# therefore runs digitcore on one thread, and refuses more (set_num_threads).
_FORKED_AFTER_TEAM = False


def _after_fork_in_child() -> None:
    global _FORKED_AFTER_TEAM
    ops = sys.modules.get("digitcore._ops")
    if ops is not None and ops.team_started():
        ops.set_num_threads(1)
        _FORKED_AFTER_TEAM = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _import_ops():
    """digitcore._ops, loading libgomp with a short spin unless the user chose one."""
    ours = "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ
    if ours and "digitcore._ops" not in sys.modules:
        os.environ["GOMP_SPINCOUNT"] = _GOMP_SPINCOUNT
    else:
        ours = False
    try:
        from digitcore import _ops as ops
    finally:
        if ours:
            del os.environ["GOMP_SPINCOUNT"]
    return ops


def _ops():
    """The compiled module, configured from the environment on first use."""
    global _initialized
    ops = _import_ops()

    if not _initialized:  # (set once every variable is applied: a bad one raises each time)
        kernel = os.environ.get("DIGITCORE_KERNEL", "").strip().lower()
        if kernel:
            try:
                ops.select_kernel(kernel)
            except (ValueError, RuntimeError) as exc:  # (RuntimeError: avx2 on a CPU without)
                raise ValueError(f"DIGITCORE_KERNEL={kernel}: {exc}") from None
        threads = os.environ.get("DIGITCORE_NUM_THREADS", "").strip()
        if threads:
            try:
                n = int(threads)
            except ValueError:
                raise ValueError(
                    f"DIGITCORE_NUM_THREADS must be a positive integer, got {threads!r}"
                ) from None
            if not 1 <= n <= MAX_THREADS:
                raise ValueError(f"DIGITCORE_NUM_THREADS must be in [1, {MAX_THREADS}], "
                                 f"got {n}")
            ops.set_num_threads(n)
        avx512 = os.environ.get("DIGITCORE_AVX512", "").strip()
        if avx512:
            if avx512 not in ("0", "1"):
                raise ValueError(f"DIGITCORE_AVX512 must be 0 or 1, got {avx512!r}")
            if avx512 == "1" and not ops.cpu_has_avx512():
                raise ValueError("DIGITCORE_AVX512=1, but this CPU lacks AVX-512 (F, CD, DQ, BW, VL) (or this "
                                 "build has no AVX-512 code); unset it or set 0")
            ops.use_avx512(avx512 == "1")
        team = os.environ.get("DIGITCORE_TEAM", "").strip().lower()
        if team:
            if team not in ("adaptive", "fixed"):
                raise ValueError(f"DIGITCORE_TEAM must be 'adaptive' or 'fixed', got {team!r}")
            ops.set_team_policy(team)
        _initialized = True
    return ops


def set_num_threads(n: int | None) -> None:
    """Use ``n`` threads in digitcore's kernels (``None`` or 0: the OpenMP default), at
    most 1024 (OpenMP's own default, e.g. from ``OMP_NUM_THREADS``, is capped there too:
    libgomp cannot start teams far past it)."""
    if n is None:
        n = 0
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"set_num_threads expects a non-negative int or None, got {n!r}")
    if n > MAX_THREADS:
        raise ValueError(f"set_num_threads({n}): digitcore runs at most {MAX_THREADS} "
                         f"threads (this machine has {os.cpu_count()} CPUs)")
    if _FORKED_AFTER_TEAM and n != 1:
        raise RuntimeError(
            f"set_num_threads({n or 'None'}): this process was forked from one where "
            "digitcore had started its threads, and the OpenMP runtime cannot start them "
            "again in a forked child, so it runs on one thread; start the process with "
            "multiprocessing's 'spawn' or 'forkserver' method to use more")
    _ops().set_num_threads(n)


def get_num_threads() -> int:
    """Number of threads digitcore's kernels use."""
    return _ops().get_num_threads()


def kernel_path() -> str:
    """``"avx2"`` or ``"generic"``: the GEMM path in use."""
    return _ops().kernel_path()


def select_kernel(name: str) -> None:
    """Force the ``"generic"`` or ``"avx2"`` kernel path (like ``DIGITCORE_KERNEL``)."""
    _ops().select_kernel(name)


def config() -> dict:
    """The build and run-time configuration as a dict."""
    import numpy as np

    from digitcore._version import __version__

    ops = _ops()
    return {
        "version": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "kernel": ops.kernel_path(),
        "gemm": ops.gemm_tile(),
        "cpu_avx2": ops.cpu_has_avx2(),
        "cpu_avx512": ops.cpu_has_avx512(),
        "openmp": ops.have_openmp(),
        "threads": ops.get_num_threads(),
    }


def show_config(file=None) -> None:
    """Print version, kernel path (avx2/generic), OpenMP and thread count."""
    cfg = config()
    out = file if file is not None else sys.stdout
    print(f"digitcore {cfg['version']}", file=out)
    print(f"  python      {cfg['python']}, numpy {cfg['numpy']}", file=out)
    print(f"  kernel      {cfg['kernel']} (CPU AVX2+FMA: {'yes' if cfg['cpu_avx2'] else 'no'})",
          file=out)
    print(f"  gemm tile   {cfg['gemm']} (CPU AVX-512: "
          f"{'yes' if cfg['cpu_avx512'] else 'no'})", file=out)
    print(f"  openmp      {'on' if cfg['openmp'] else 'off'}", file=out)
    print(f"  threads     {cfg['threads']}", file=out)
