"""Atomic file writes: readers see the old file or the complete new one, never a part.

The data goes to a temporary file in the target's directory (created with mode 0o666 so
the umask decides a new file's permissions, like ``open(path, "w")``; a file it replaces
keeps its own), is flushed and fsynced, then ``os.replace``-d over the target, and the
directory is fsynced so the rename survives a crash. On any error, KeyboardInterrupt
included, the temporary file is removed and the target is untouched.

A symbolic link is followed (the file it points to is replaced, the link stays). A path
that is a directory, a device, a pipe or a socket is refused: replacing ``/dev/null``
with a file is never what was meant. A replaced file's other hard links keep the old
contents (it is a new file).

For reading, :func:`seekable` takes a pipe's bytes whole, up to a limit (a model or IDX
file given as ``/dev/stdin``, whose size reads 0 and which cannot seek).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat

__all__ = ["NotAFile", "atomic_file", "atomic_write_bytes", "fsync_dir", "seekable",
           "writable_target"]


def writable_target(path) -> str:
    """The file :func:`atomic_file` would write for ``path`` (symbolic links followed),
    or an OSError whose message names ``path`` when it cannot: no such directory, a
    directory it may not create files in, a read-only file, or ``path`` a directory,
    device, pipe or socket. Commands call it before long work whose result goes there."""
    path = os.fspath(path)
    if not path:
        raise FileNotFoundError(errno.ENOENT, "cannot write to an empty path: give a file name")
    end = path[-1:] if isinstance(path, str) else path[-1:].decode("ascii", "replace")
    if end in (os.sep, os.altsep or os.sep):  # (realpath would drop it, and write DIR)
        raise IsADirectoryError(errno.EISDIR, f"cannot write {path}: it names a directory "
                                f"(it ends with {end!r}); give a file name")
    real = os.path.realpath(path)
    directory = os.path.dirname(real)
    try:
        # the path itself, its links followed by the kernel: /dev/stdout's realpath is
        # /proc/PID/fd/pipe:[N], a name that does not exist, for a pipe that does
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot write {path}: {exc.strerror}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, f"cannot write {path}: it is a directory")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, f"cannot write {path}: it is not a regular file (a "
                      "device, pipe or socket), and files are written by replacing them")
    if st is not None and not os.access(real, os.W_OK):
        # (replacing it would succeed, the directory being writable, but a file the user
        # made read-only is one a plain open(path, "w") would not overwrite either)
        raise PermissionError(errno.EACCES, f"cannot write {path}: the file is read-only")
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT,
                                f"cannot write {path}: there is no directory {directory}")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"cannot write {path}: no permission to create "
                              f"files in {directory}")
    return real


def _name_max(directory):
    """The longest file name ``directory``'s file system takes, in bytes (None: unknown)."""
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (AttributeError, ValueError, OSError):  # (no pathconf on Windows)
        return None


def _temporary_name(directory, base: str) -> str:
    """A fresh name beside ``base`` for the data before it replaces it: ``.{base}.{hex}.tmp``,
    or, when that would be longer than the directory's names may be (a base name of 238
    bytes or more takes 18 more), ``.{hex}.tmp``."""
    token = secrets.token_hex(6)
    tmp = f".{base}.{token}.tmp"
    if len(os.fsencode(tmp)) > (_name_max(directory) or 255):
        tmp = f".{token}.tmp"
    return os.path.join(directory, tmp)


# what writing to a file fails with: no room, past a size limit or a quota, a device error,
# a read-only file system
_WRITE_ERRNOS = {getattr(errno, n) for n in ("ENOSPC", "EFBIG", "EDQUOT", "EIO", "EROFS")
                 if hasattr(errno, n)}


@contextlib.contextmanager
def atomic_file(path, mode: str = "wb", encoding: str | None = None):
    """Context manager yielding a file object whose content replaces ``path`` on success
    (see the module's notes; errors name ``path``, not the temporary file)."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_file mode must be 'wb' or 'w', got {mode!r}")
    shown = os.fsdecode(path)  # (a bytes path is written as the str it decodes to)
    path = writable_target(shown)
    directory, base = os.path.split(path)
    tmp = _temporary_name(directory, base)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                     0o666)
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot write {shown}: {exc.strerror}") from None
    storing = False  # (past the caller's block: flush, fsync and rename are ours)
    try:
        f = os.fdopen(fd, mode) if encoding is None else os.fdopen(fd, mode, encoding=encoding)
        with f:
            if os.name == "posix":  # the replaced file's permissions, where the file system
                with contextlib.suppress(OSError):  # allows (Windows: a read-only flag only)
                    os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode) & 0o777)
            yield f
            storing = True
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        # storing the file failed (a full disk, a file size limit): the error named no
        # file, or the temporary one. In the caller's block only the errors of writing
        # are relabelled (a download's network errors there are its own).
        if isinstance(exc, OSError) and exc.errno is not None and exc.strerror and (
                storing or exc.errno in _WRITE_ERRNOS):
            raise type(exc)(exc.errno, f"cannot write {shown}: {exc.strerror}") from exc
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


class NotAFile(ValueError):
    """What :func:`seekable` refuses, worded for the caller to put after the path."""


def seekable(f, limit: int, what: str):
    """``(stream, size)`` for reading the open binary file ``f``: ``f`` and its size for a
    regular file; for a pipe or socket (``... | digitcore ... /dev/stdin``: it cannot seek
    back and its size reads 0), its bytes read whole, a MiB at a time up to ``limit``
    (``f.read(limit)`` would reserve all of it up front), as a BytesIO. NotAFile past the
    limit (``cat /dev/zero |``) or for a device; ``what`` names the file expected."""
    import io

    st = os.fstat(f.fileno())
    if stat.S_ISREG(st.st_mode):
        return f, st.st_size
    if not (stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode)):
        raise NotAFile(f"is a device, not {what}")
    chunks, total = [], 0
    while chunk := f.read(1 << 20):
        total += len(chunk)
        if total > limit:
            raise NotAFile(f"more than {limit:,} bytes from a pipe: give the file's path")
        chunks.append(chunk)
    return io.BytesIO(b"".join(chunks)), total
