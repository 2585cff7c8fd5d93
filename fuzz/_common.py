"""Shared helpers for the atheris harnesses in fuzz/.

Each harness sets ``EXPECTED``: the exception types that are the documented way for the
target to reject its input. Anything else escaping the target is a finding (atheris
reports it as an uncaught exception and writes the input to ``crash-<sha1>``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import tempfile

# fuzz/ is run as a script: make the source tree importable when digitcore is not installed
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if importlib.util.find_spec("digitcore") is None:
    sys.path.insert(0, os.path.join(_ROOT, "src"))

# Scratch files live on tmpfs when there is one. Each input gets its own file, removed as
# soon as the target is done with it: libFuzzer ends the process with C's exit(), which
# skips Python's atexit handlers, so a per-process file would outlive every run.
_TMPDIR = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


@contextlib.contextmanager
def scratch(data: bytes, suffix: str = ""):
    """A temporary file holding ``data`` (its name ends in ``suffix``), deleted on exit."""
    fd, path = tempfile.mkstemp(prefix="digitcore-fuzz-", suffix=suffix, dir=_TMPDIR)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield path
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
