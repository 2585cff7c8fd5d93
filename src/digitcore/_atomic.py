"""Atomic file writes: readers see the old file or the complete new one, never a part.

The data goes to a temporary file in the target's directory (created with mode 0o666 so
the umask decides permissions, like ``open(path, "w")``), is flushed and fsynced, then
``os.replace``-d over the target, and the directory is fsynced so the rename survives a
crash. On any error, KeyboardInterrupt included, the temporary file is removed and the
target is untouched.
"""

from __future__ import annotations

import contextlib
import os
import secrets

__all__ = ["atomic_file", "atomic_write_bytes", "fsync_dir"]


@contextlib.contextmanager
def atomic_file(path, mode: str = "wb", encoding: str | None = None):
    """Context manager yielding a file object whose content replaces ``path`` on success."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_file mode must be 'wb' or 'w', got {mode!r}")
    path = os.fspath(path)
    directory, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                 0o666)
    try:
        f = os.fdopen(fd, mode) if encoding is None else os.fdopen(fd, mode, encoding=encoding)
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_file(path) as f:
        f.write(data)


def fsync_dir(directory) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
