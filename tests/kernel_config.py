"""The kernel configurations tests run under: every kernel path the CPU has, by thread count.

"avx512" is the AVX2 path with its GEMM on the 6x32 AVX-512 tile (the default on a CPU
with AVX-512); on such a CPU "avx2" means the AVX2 path with the 6x16 AVX2 tile.
"""

import contextlib

from digitcore import _ops

PATHS = (["generic"] + (["avx2"] if _ops.cpu_has_avx2() else [])
         + (["avx512"] if _ops.cpu_has_avx512() else []))


def select(path):
    """Run on `path` (one of PATHS) from now on."""
    if path == "avx512":
        _ops.select_kernel("avx2")
        _ops.use_avx512(True)
        return
    _ops.select_kernel(path)
    if _ops.cpu_has_avx512():
        _ops.use_avx512(False)


def current():
    """The entry of PATHS the kernels run on now."""
    return _ops.gemm_tile()


@contextlib.contextmanager
def config(path, threads):
    """Run the block on kernel path `path` with `threads` threads, then put both back (also
    when the block fails)."""
    old_path, old_threads = current(), _ops.get_num_threads()
    select(path)
    _ops.set_num_threads(threads)
    try:
        yield
    finally:
        select(old_path)
        _ops.set_num_threads(old_threads)
