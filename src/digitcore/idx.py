"""Read and write IDX files, the format MNIST and Fashion-MNIST ship in.

An IDX file is a 4-byte magic ``00 00 <type> <rank>``, then ``rank`` big-endian
uint32 dimensions, then the elements, big-endian, row-major. Files may be
gzip-compressed; compression is detected from the content (``1f 8b``), never
from the file name.

Everything is validated before the element buffer is allocated: a header that
promises more data than the file can hold fails at once, and a gzip stream is
inflated incrementally with a cap of the declared size + 1 bytes, so a lying
header (or a gzip bomb) fails fast with bounded memory.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from digitcore._atomic import NotAFile, atomic_file, seekable

from digitcore.errors import DatasetError

__all__ = ["read_idx", "write_idx", "IDX_TYPES"]

#: IDX type code -> big-endian NumPy dtype of the elements on disk.
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_TYPE_NAMES = {0x08: "ubyte", 0x09: "byte", 0x0B: "short", 0x0C: "int", 0x0D: "float",
               0x0E: "double"}
# native dtype kind+itemsize -> type code (for writing)
_CODE_OF = {(dt.kind, dt.itemsize): code for code, dt in IDX_TYPES.items()}

# NumPy 1.x arrays have at most 32 dimensions; nothing real comes close.
MAX_RANK = 32
_GZIP_MAGIC = b"\x1f\x8b"
# Deflate cannot expand data by more than about 1032:1, so a gzip file of c bytes
# cannot hold more than this many bytes; used to reject absurd headers before inflating.
_DEFLATE_MAX_RATIO = 1032
_CHUNK = 1 << 20  # compressed bytes read per step
_FIRST_ALLOC = 4 << 20  # grow the output from here when the gzip size hint disagrees
# ... or claims more than this many times the file's size (MNIST's images compress ~5:1)
_TRUST_RATIO = 64
# What an IDX file read from a pipe may hold (a file has its size; a pipe may never end).
MAX_PIPE_BYTES = 1 << 31


def _err(path, msg: str) -> DatasetError:
    return DatasetError(f"{os.fspath(path)}: {msg}")


class _Inflater:
    """Incremental gzip reader with exact-size reads and strict end-of-stream checks.

    Multi-member gzip files are accepted (as ``gzip`` does), and zero bytes after the
    last member (padding); anything else after it is an error.
    """

    def __init__(self, f: BinaryIO, path):
        self._f = f
        self._path = path
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._input = b""  # compressed bytes not yet given to the decompressor

    def _fail(self, msg: str) -> DatasetError:
        return _err(self._path, msg)

    def read_into(self, out: memoryview) -> int:
        """Fill ``out`` (bytes view) as far as the stream allows; return bytes written."""
        pos, want = 0, len(out)
        d = self._d
        while pos < want:
            if d.eof:
                rest = d.unused_data + self._input
                self._input = b""
                if not rest:
                    rest = self._f.read(_CHUNK)
                if not rest:
                    return pos  # clean end of the last member
                if not rest.strip(b"\x00"):
                    # zero padding after the last member, as gzip and Python's gzip allow
                    while rest:
                        rest = self._f.read(_CHUNK)
                        if rest.strip(b"\x00"):
                            raise self._fail("trailing bytes after the end of the gzip stream")
                    return pos
                if len(rest) < 2:
                    rest += self._f.read(1)
                if rest[:2] != _GZIP_MAGIC:
                    raise self._fail("trailing bytes after the end of the gzip stream")
                d = self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._input = rest
                continue
            data = d.unconsumed_tail or self._input
            self._input = b""
            if not data:
                data = self._f.read(_CHUNK)
                if not data:
                    raise self._fail("truncated gzip stream (compressed data ends early)")
            try:
                chunk = d.decompress(data, want - pos)
            except zlib.error as exc:
                raise self._fail(f"corrupt gzip stream ({exc})") from None
            n = len(chunk)
            out[pos:pos + n] = chunk
            pos += n
        return pos

    def read_exact(self, n: int, what: str) -> bytes:
        buf = bytearray(n)
        got = self.read_into(memoryview(buf))
        if got != n:
            raise self._fail(f"file ends inside the {what} ({got} of {n} bytes)")
        return bytes(buf)

    def expect_end(self) -> None:
        """Drive the stream to its end (checking CRC and length); fail on extra data."""
        extra = bytearray(1)
        if self.read_into(memoryview(extra)):
            raise self._fail("trailing bytes after the declared data")


def _parse_magic(path, magic: bytes) -> tuple[int, int]:
    if len(magic) < 4:
        raise _err(path, f"too short to be an IDX file ({len(magic)} bytes)")
    if magic[0] != 0 or magic[1] != 0:
        raise _err(path, f"not an IDX file (magic {magic[:4].hex(' ')}, expected 00 00 <type> <rank>)")
    code, rank = magic[2], magic[3]
    if code not in IDX_TYPES:
        raise _err(path, f"unknown IDX type code 0x{code:02X} (expected one of "
                         + ", ".join(f"0x{c:02X}" for c in IDX_TYPES) + ")")
    if not 1 <= rank <= MAX_RANK:
        raise _err(path, f"invalid IDX rank {rank} (expected 1..{MAX_RANK})")
    return code, rank


def _parse_dims(path, raw: bytes, rank: int) -> tuple[int, ...]:
    dims = struct.unpack(f">{rank}I", raw)
    for i, d in enumerate(dims):
        if d == 0:
            raise _err(path, f"dimension {i} is 0 (shape {dims})")
    return dims


def _declared_bytes(dims, dtype: np.dtype) -> int:
    n = 1
    for d in dims:
        n *= d  # Python ints: no overflow however large the header claims
    return n * dtype.itemsize


def _finish(buf: np.ndarray, dtype: np.dtype, dims) -> np.ndarray:
    """Reinterpret the big-endian byte buffer as a native-order array of shape dims."""
    arr = buf.view(dtype)
    if dtype.itemsize > 1 and not dtype.isnative:
        arr.byteswap(inplace=True)  # in place: no second copy of a large file
        arr = arr.view(dtype.newbyteorder("="))
    elif dtype.itemsize == 1:
        arr = arr.view(dtype.newbyteorder("="))
    return arr.reshape(dims)


def _read_raw(f: BinaryIO, path, size: int, hasher) -> np.ndarray:
    head = f.read(4)
    code, rank = _parse_magic(path, head)
    header_len = 4 + 4 * rank
    if size < header_len:
        raise _err(path, f"file ends inside the header ({size} bytes, rank {rank} needs "
                         f"{header_len})")
    dim_bytes = f.read(4 * rank)
    dims = _parse_dims(path, dim_bytes, rank)
    dtype = IDX_TYPES[code]
    need = _declared_bytes(dims, dtype)
    have = size - header_len
    if need > have:
        raise _err(path, f"truncated: header declares shape {dims} of {_TYPE_NAMES[code]} "
                         f"({need} bytes of data) but only {have} bytes follow")
    if need < have:
        raise _err(path, f"{have - need} trailing bytes after the declared data "
                         f"(shape {dims} of {_TYPE_NAMES[code]})")
    buf = _alloc(path, need)
    mv = memoryview(buf)
    got = 0
    while got < need:  # readinto may return short counts on some file objects
        n = f.readinto(mv[got:])
        if not n:
            raise _err(path, f"truncated while reading ({got} of {need} bytes)")
        got += n
    if hasher is not None:
        hasher.update(head)
        hasher.update(dim_bytes)
        hasher.update(mv)
    return _finish(buf, dtype, dims)


def _alloc(path, n: int) -> np.ndarray:
    """n bytes for the data of ``path``, or the DatasetError saying they are not to be had."""
    try:
        return np.empty(n, dtype=np.uint8)
    except MemoryError:
        raise _err(path, f"its data needs {n:,} bytes of memory, more than can be "
                         "allocated") from None


def _gzip_size_hint(f: BinaryIO, size: int) -> int | None:
    """ISIZE field of the last gzip member (uncompressed size mod 2**32), or None."""
    if size < 18:
        return None
    pos = f.tell()
    f.seek(size - 4)
    tail = f.read(4)
    f.seek(pos)
    return struct.unpack("<I", tail)[0] if len(tail) == 4 else None


def _read_gzip(f: BinaryIO, path, size: int, hasher) -> np.ndarray:
    isize = _gzip_size_hint(f, size)
    inf = _Inflater(f, path)
    head = inf.read_exact(4, "IDX header")
    code, rank = _parse_magic(path, head)
    dim_bytes = inf.read_exact(4 * rank, "IDX header")
    dims = _parse_dims(path, dim_bytes, rank)
    dtype = IDX_TYPES[code]
    need = _declared_bytes(dims, dtype)
    total = 4 + 4 * rank + need
    limit = size * _DEFLATE_MAX_RATIO + 1024
    if total > limit:
        raise _err(path, f"header declares shape {dims} of {_TYPE_NAMES[code]} ({need} bytes) "
                         f"but a {size}-byte gzip file cannot hold more than about {limit} bytes")
    # Honest files: the gzip trailer says how big the data is, so allocate once (when it
    # is a plausible multiple of the file: the trailer is the file's own word, and 40 MB
    # could otherwise claim 40 GB). Otherwise grow as data actually arrives, so memory
    # follows the real payload.
    trusted = isize == total % (1 << 32) and need <= _TRUST_RATIO * size
    cap = need if trusted else min(need, _FIRST_ALLOC)
    buf = _alloc(path, cap)
    got = 0
    while True:
        got += inf.read_into(memoryview(buf)[got:])
        if got < cap or cap == need:
            break
        new = _alloc(path, min(need, 2 * cap))
        new[:cap] = buf
        buf, cap = new, new.size
    if got < need:
        raise _err(path, f"truncated: header declares shape {dims} of {_TYPE_NAMES[code]} "
                         f"({need} bytes of data) but the stream holds only {got}")
    inf.expect_end()
    if hasher is not None:
        hasher.update(head)
        hasher.update(dim_bytes)
        hasher.update(memoryview(buf))
    return _finish(buf, dtype, dims)


def _read_idx(path, hasher=None) -> np.ndarray:
    """read_idx that also feeds the decompressed file content to ``hasher``."""
    if os.path.isdir(path):  # (open() would say so on POSIX; Windows: PermissionError)
        raise _err(path, "is a directory, not an IDX file")
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise _err(path, "no such file") from None
    except OSError as exc:
        raise _err(path, f"cannot open ({exc.strerror or exc})") from None
    with f:
        try:
            f, size = seekable(f, MAX_PIPE_BYTES, "an IDX file")  # (a pipe read whole)
        except NotAFile as exc:
            raise _err(path, str(exc)) from None
        except OSError as exc:
            raise _err(path, f"cannot read ({exc})") from None
        try:
            start = f.read(2)
            f.seek(0)
            if start == _GZIP_MAGIC:
                return _read_gzip(f, path, size, hasher)
            return _read_raw(f, path, size, hasher)
        except OSError as exc:
            raise _err(path, f"cannot read ({exc})") from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed) into a NumPy array.

    Parameters
    ----------
    path : str or path-like
        The file. gzip compression is detected from the first two bytes.

    Returns
    -------
    ndarray
        Shape as declared in the header, native byte order, dtype uint8 / int8 /
        int16 / int32 / float32 / float64 for type codes 0x08 / 0x09 / 0x0B / 0x0C /
        0x0D / 0x0E. The array is writable, and a view of a buffer of its own (no
        other array or file shares its memory; ``resize`` needs a copy).

    Raises
    ------
    DatasetError
        Naming the file and the problem: bad magic, unknown type code, rank not in
        1..32, a zero dimension, a payload shorter or longer than declared, a
        truncated or corrupt gzip stream.
    """
    return _read_idx(path)


def idx_header(array: np.ndarray) -> bytes:
    """The IDX header (magic + dimensions) for ``array``; validates dtype and shape."""
    dt = array.dtype
    code = _CODE_OF.get((dt.kind, dt.itemsize)) if dt.kind in "uif" else None
    if code is None or (dt.kind == "u" and dt.itemsize != 1):
        raise DatasetError(
            f"cannot write dtype {dt} as IDX (supported: uint8, int8, int16, int32, "
            "float32, float64)")
    if not 1 <= array.ndim <= MAX_RANK:
        raise DatasetError(f"cannot write a {array.ndim}-d array as IDX (rank 1..{MAX_RANK})")
    if any(d == 0 or d >= 1 << 32 for d in array.shape):
        raise DatasetError(f"cannot write shape {array.shape} as IDX (each dimension "
                           "must be 1..2**32-1)")
    return bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)


def write_idx(path: str | os.PathLike, array, *, compress: bool | None = None,
              compresslevel: int = 6) -> None:
    """Write ``array`` as an IDX file, atomically.

    The data goes to a temporary file in the same directory, is flushed and
    fsynced, then renamed over ``path`` with ``os.replace``: readers see the old
    file or the complete new one, never a partial write.

    Parameters
    ----------
    path : str or path-like
    array : array_like
        dtype uint8, int8, int16, int32, float32 or float64 (any byte order);
        rank 1..32; every dimension >= 1.
    compress : bool, optional
        gzip the file. Default: when ``path`` ends with ``.gz``. The gzip header
        carries no name and mtime 0, so output is reproducible.
    compresslevel : int
        gzip level 0..9 (0: stored, no compression).
    """
    if isinstance(compresslevel, bool) or not isinstance(compresslevel, (int, np.integer)) \
            or not 0 <= compresslevel <= 9:
        raise ValueError(f"compresslevel must be an int in 0..9, got {compresslevel!r}")
    arr = np.asarray(array)
    header = idx_header(arr)
    be = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder(">"))
    payload = memoryview(be.reshape(-1).view(np.uint8))
    path = os.fsdecode(path)  # (a bytes path too, as open() takes; kept as a string:
    # Path() drops a trailing slash, which atomic_file refuses as naming a directory)
    if compress is None:
        compress = Path(path).name.endswith(".gz")
    with atomic_file(path) as f:
        if compress:
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0,
                               compresslevel=compresslevel) as gz:
                gz.write(header)
                gz.write(payload)
        else:
            f.write(header)
            f.write(payload)


def read_idx_sha256(path: str | os.PathLike) -> tuple[np.ndarray, str]:
    """:func:`read_idx` and the SHA-256 hex digest of the file's decompressed content, in
    one pass over the file (how :mod:`digitcore.datasets` verifies the files it loads)."""
    h = hashlib.sha256()
    arr = _read_idx(path, h)
    return arr, h.hexdigest()


def sha256_idx(path) -> str:
    """SHA-256 hex digest of the decompressed content of an IDX file (validates it too)."""
    return read_idx_sha256(path)[1]
