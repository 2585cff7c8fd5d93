"""The kernel configurations tests run under: both kernel paths the CPU has, by thread count."""

import contextlib

from digitcore import _ops

PATHS = ["generic"] + (["avx2"] if _ops.cpu_has_avx2() else [])


@contextlib.contextmanager
def config(path, threads):
    """Run the block on kernel path `path` with `threads` threads, then put both back (also
    when the block fails)."""
    old_path, old_threads = _ops.kernel_path(), _ops.get_num_threads()
    _ops.select_kernel(path)
    _ops.set_num_threads(threads)
    try:
        yield
    finally:
        _ops.select_kernel(old_path)
        _ops.set_num_threads(old_threads)
