"""Shared helpers for the atheris harnesses in fuzz/.

Each harness sets ``EXPECTED``: the exception types that are the documented way for the
target to reject its input. Anything else escaping the target is a finding (atheris
reports it as an uncaught exception and writes the input to ``crash-<sha1>``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile

# fuzz/ is run as a script: make the source tree importable when digitcore is not installed
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if importlib.util.find_spec("digitcore") is None:
    sys.path.insert(0, os.path.join(_ROOT, "src"))

# One scratch file per process, rewritten for every input (tmpfs when available).
_TMPDIR = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
_FD, SCRATCH = tempfile.mkstemp(prefix="digitcore-fuzz-", dir=_TMPDIR)
os.close(_FD)


def write_scratch(data: bytes, suffix: str = "") -> str:
    path = SCRATCH + suffix
    with open(path, "wb") as f:
        f.write(data)
    return path


def cleanup() -> None:
    for suffix in ("", ".gz", ".png", ".safetensors"):
        try:
            os.unlink(SCRATCH + suffix)
        except OSError:
            pass


import atexit  # noqa: E402

atexit.register(cleanup)
