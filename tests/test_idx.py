"""IDX reading and writing: every type code and rank, raw and gzip, and a corpus of
malformed files that must fail fast, with bounded memory, as DatasetError."""

from __future__ import annotations

import gzip
import os
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from digitcore import DatasetError, read_idx, write_idx
from digitcore.idx import IDX_TYPES, idx_header, read_idx_sha256, sha256_idx

TYPES = [(0x08, np.uint8), (0x09, np.int8), (0x0B, np.int16), (0x0C, np.int32),
         (0x0D, np.float32), (0x0E, np.float64)]


def idx_bytes(code: int, dims, payload: bytes) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def sample(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return (rng.standard_normal(shape) * 1e3).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dt)


# ----------------------------------------------------------------------------- valid files

@pytest.mark.parametrize("code,dtype", TYPES)
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4), (2, 1, 3, 2)])
@pytest.mark.parametrize("compressed", [False, True])
def test_read_hand_built_files(tmp_path, code, dtype, shape, compressed):
    a = sample(dtype, shape, seed=code)
    data = idx_bytes(code, shape, a.astype(np.dtype(dtype).newbyteorder(">")).tobytes())
    p = tmp_path / "f.idx"
    p.write_bytes(gz(data) if compressed else data)
    b = read_idx(p)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative
    assert b.shape == shape
    np.testing.assert_array_equal(a, b)
    assert b.flags.writeable and b.flags.c_contiguous
    assert sha256_idx(p) == __import__("hashlib").sha256(data).hexdigest()
    c, digest = read_idx_sha256(p)
    np.testing.assert_array_equal(a, c)
    assert c.dtype == b.dtype and digest == sha256_idx(p)


def test_big_endian_values(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(idx_bytes(0x0B, (3,), b"\x01\x02\xff\xfe\x80\x00"))
    np.testing.assert_array_equal(read_idx(p), np.array([0x0102, -2, -32768], np.int16))
    p.write_bytes(idx_bytes(0x0D, (1,), b"\x3f\x80\x00\x00"))
    assert read_idx(p)[0] == np.float32(1.0)
    p.write_bytes(idx_bytes(0x0C, (1,), b"\x00\x01\x00\x00"))
    assert read_idx(p)[0] == 65536


@pytest.mark.parametrize("code,dtype", TYPES)
@pytest.mark.parametrize("name", ["a.idx", "a.gz", "a.idx.gz"])
@pytest.mark.parametrize("compress", [False, True])
def test_write_read_round_trip(tmp_path, code, dtype, name, compress):
    a = sample(dtype, (4, 3, 2), seed=code)
    p = tmp_path / name
    write_idx(p, a, compress=compress)
    raw = p.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == compress  # detected by content, not by name
    data = gzip.decompress(raw) if compress else raw
    assert data[:4] == bytes([0, 0, code, 3])
    np.testing.assert_array_equal(read_idx(p), a)


def test_write_infers_gzip_from_suffix_and_is_reproducible(tmp_path):
    a = sample(np.uint8, (10, 28, 28))
    write_idx(tmp_path / "a.gz", a)
    write_idx(tmp_path / "b.gz", a)
    write_idx(tmp_path / "c", a)
    assert (tmp_path / "a.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()
    assert (tmp_path / "c").read_bytes()[:4] == b"\x00\x00\x08\x03"


def test_write_accepts_other_byte_orders_and_layouts(tmp_path):
    a = sample(np.int32, (6, 5)).astype(">i4")
    write_idx(tmp_path / "be", a)
    np.testing.assert_array_equal(read_idx(tmp_path / "be"), a)
    f = np.asfortranarray(sample(np.float64, (4, 3)))
    write_idx(tmp_path / "f", f[:, ::2])
    np.testing.assert_array_equal(read_idx(tmp_path / "f"), f[:, ::2])


@pytest.mark.parametrize("bad", [np.zeros(3, np.int64), np.zeros(3, bool), np.zeros(3, np.uint16),
                                 np.zeros(3, np.float16), np.zeros(3, np.complex64),
                                 np.array(5, np.uint8), np.zeros((0, 3), np.uint8),
                                 np.array(["a"], dtype=object)])
def test_write_rejects_unrepresentable(tmp_path, bad):
    p = tmp_path / "out"
    with pytest.raises(DatasetError):
        write_idx(p, bad)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("level", [42, -1, 2.5, True, "6"])
def test_write_names_a_bad_compresslevel(tmp_path, level):
    # 42 failed inside zlib: "Invalid initialization option"
    with pytest.raises(ValueError, match=r"compresslevel must be an int in 0\.\.9"):
        write_idx(tmp_path / "x.idx.gz", np.zeros(3, np.uint8), compresslevel=level)
    assert list(tmp_path.iterdir()) == []


def test_write_is_atomic(tmp_path, monkeypatch):
    p = tmp_path / "a.idx"
    write_idx(p, np.arange(5, dtype=np.uint8))
    before = p.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_idx(p, np.arange(9, dtype=np.uint8))
    monkeypatch.undo()
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.idx"]  # temp file cleaned up


def test_written_file_mode_is_not_private(tmp_path):
    if os.name != "posix":
        pytest.skip("POSIX file modes")
    p = tmp_path / "a.idx"
    write_idx(p, np.arange(5, dtype=np.uint8))
    assert p.stat().st_mode & 0o044  # mkstemp's 0600 was relaxed to the umask default


def test_zero_padding_after_the_gzip_stream_is_read(tmp_path):
    """gzip -t and Python's gzip accept zero bytes after the last member (tape or block
    padding); the reader called them trailing bytes. Anything else there is still one."""
    p = tmp_path / "padded.gz"
    for pad in (b"\x00", bytes(4), bytes(3 << 20)):
        p.write_bytes(gz(GOOD) + pad)
        np.testing.assert_array_equal(read_idx(p), np.arange(16, dtype=np.uint8).reshape(4, 2, 2))
    for tail in (b"\x00\x01", bytes(5) + b"x", bytes(2 << 20) + b"\x07"):
        p.write_bytes(gz(GOOD) + tail)
        with pytest.raises(DatasetError, match="trailing bytes after the end of the gzip"):
            read_idx(p)


def test_multi_member_gzip_is_read(tmp_path):
    a = np.arange(100, dtype=np.uint8)
    data = idx_bytes(0x08, (100,), a.tobytes())
    p = tmp_path / "m.gz"
    p.write_bytes(gz(data[:30]) + gz(data[30:]))
    np.testing.assert_array_equal(read_idx(p), a)


def test_a_large_file_is_read_in_one_copy(tmp_path):
    """A bulk read, not element by element (a timed comparison with np.frombuffer stood
    here: speed is for benchmarks/, and a parser ten times slower passed it): reading 15.7
    MB of images peaks at about one copy of them, raw or gzipped (its decompressed stream
    read in pieces into the array)."""
    import gzip
    import tracemalloc

    a = sample(np.uint8, (20000, 28, 28))
    p = tmp_path / "big"
    write_idx(p, a)
    (tmp_path / "big.gz").write_bytes(gzip.compress(p.read_bytes(), compresslevel=1))
    for path, most in ((p, 1.1), (tmp_path / "big.gz", 1.6)):
        tracemalloc.start()
        try:
            got = read_idx(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        np.testing.assert_array_equal(got, a)
        assert peak < most * a.nbytes, (path.name, peak / a.nbytes)


_dtypes = st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
_arrays = _dtypes.flatmap(lambda dt: hnp.arrays(
    dt, hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=6)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=_arrays, compress=st.booleans())
def test_hypothesis_round_trip(tmp_path, a, compress):
    p = tmp_path / "h.idx"
    write_idx(p, a, compress=compress)
    b = read_idx(p)
    assert b.dtype == a.dtype and b.shape == a.shape
    np.testing.assert_array_equal(b, a)  # NaNs compare equal here
    assert b.tobytes() == a.tobytes()  # bit-exact (signed zeros, NaN payloads)


# ----------------------------------------------------------------------------- malformed corpus

GOOD = idx_bytes(0x08, (4, 2, 2), bytes(range(16)))


def _crc_corrupt() -> bytes:
    b = bytearray(gz(GOOD))
    b[-8] ^= 0xFF  # CRC32 field of the trailer
    return bytes(b)


def _deflate_corrupt() -> bytes:
    data = idx_bytes(0x08, (1000,), np.random.default_rng(1).integers(0, 255, 1000, np.uint8).tobytes())
    b = bytearray(gz(data))
    b[len(b) // 2] ^= 0x55
    return bytes(b)


def _bomb_small_header() -> bytes:
    # header says 10 bytes; the stream then inflates to 200 MB of zeros
    co = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [co.compress(idx_bytes(0x08, (10,), bytes(10)))]
    zeros = bytes(1 << 20)
    for _ in range(200):
        parts.append(co.compress(zeros))
    parts.append(co.flush())
    return b"".join(parts)


def _bomb_big_header() -> bytes:
    # tiny gzip file that declares 10**12 elements
    return gz(idx_bytes(0x08, (1000000, 1000000), bytes(64)))


def _lying_but_plausible() -> bytes:
    # 300 KB of incompressible data, header claims 256 MB: passes the deflate-ratio
    # bound, so the reader must grow its buffer as data arrives, not allocate 256 MB
    payload = np.random.default_rng(2).integers(0, 255, 300_000, np.uint8).tobytes()
    return gz(idx_bytes(0x08, (16384, 16384), payload))


def _forged_trailer() -> bytes:
    # the same, with the gzip trailer's size field (the last 4 bytes, the file's own
    # word) forged to agree with the header: it was trusted, and 256 MB allocated at once
    # (a 40 MB file so forged asked for 37 GB: a MemoryError)
    data = bytearray(_lying_but_plausible())
    data[-4:] = struct.pack("<I", (8 + 16384 * 16384 + 4) % (1 << 32))
    return bytes(data)


MALFORMED = {
    "empty": (b"", "too short"),
    "short_magic": (b"\x00\x00\x08", "too short"),
    "bad_magic": (b"\x12\x34\x08\x01" + b"\x00\x00\x00\x01" + b"\x00", "not an IDX file"),
    "bad_type_code": (idx_bytes(0x0A, (1,), b"\x00"), "type code 0x0A"),
    "rank_0": (b"\x00\x00\x08\x00" + b"\x00", "rank 0"),
    "huge_rank": (b"\x00\x00\x08\xff" + bytes(8), "rank 255"),
    "header_cut": (b"\x00\x00\x08\x03\x00\x00\x00\x02", "header"),
    "zero_dim": (idx_bytes(0x08, (3, 0), b""), "dimension 1 is 0"),
    "huge_dims_raw": (idx_bytes(0x08, (1000000, 1000000), bytes(84)), "truncated"),
    "huge_dims_every": (idx_bytes(0x0E, (0xFFFFFFFF,) * 4, bytes(100)), "truncated"),
    "declared_gt_payload": (idx_bytes(0x0B, (10,), bytes(19)), "truncated"),
    "trailing_bytes": (GOOD + b"\x00", "1 trailing bytes"),
    "gz_trailing_payload": (gz(GOOD + b"xyz"), "trailing bytes"),
    "gz_trailing_garbage": (gz(GOOD) + b"garbage", "trailing bytes after the end of the gzip"),
    "gz_declared_gt_payload": (gz(GOOD[:-3]), "truncated"),
    "gz_truncated_stream": (gz(GOOD)[:-6], "truncated gzip stream"),
    "gz_truncated_in_header": (gz(GOOD)[:12], "truncated gzip stream"),
    "gz_bad_crc": (_crc_corrupt(), "corrupt gzip stream"),
    "gz_corrupt_deflate": (_deflate_corrupt(), "gzip"),
    "gz_bad_magic_inside": (gz(b"\x01\x02\x08\x01" + bytes(5)), "not an IDX file"),
    "gz_bomb_lying_header": (_bomb_small_header(), "trailing bytes"),
    "gz_declares_1e12": (_bomb_big_header(), "cannot hold"),
    "gz_lying_plausible": (_lying_but_plausible(), "truncated"),
    "gz_forged_trailer": (_forged_trailer(), "corrupt gzip stream"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_fails_fast_with_bounded_memory(tmp_path, case):
    data, needle = MALFORMED[case]
    p = tmp_path / f"{case}.bin"
    p.write_bytes(data)
    tracemalloc.start()
    t = time.perf_counter()
    try:
        with pytest.raises(DatasetError) as info:
            read_idx(p)
        elapsed = time.perf_counter() - t
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    msg = str(info.value)
    assert str(p) in msg, msg
    assert needle in msg, msg
    assert peak < 8 << 20, f"peak {peak} bytes"
    assert elapsed < 2.0, elapsed
    assert isinstance(info.value, ValueError)


def test_missing_file_and_directory(tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match="no such file"):
        read_idx(tmp_path / "nope")
    with pytest.raises(DatasetError, match="directory"):
        read_idx(tmp_path)
    # Windows refuses to open a folder with a PermissionError, not IsADirectoryError
    from digitcore import idx

    def windows_open(path, *args, **kwargs):
        if os.path.isdir(path):
            raise PermissionError(13, "Permission denied", str(path))
        return open(path, *args, **kwargs)

    monkeypatch.setattr(idx, "open", windows_open, raising=False)
    with pytest.raises(DatasetError, match="is a directory, not an IDX file"):
        read_idx(tmp_path)


def test_header_helper_matches_file(tmp_path):
    a = np.zeros((2, 3), np.float32)
    assert idx_header(a) == bytes([0, 0, 0x0D, 2]) + struct.pack(">2I", 2, 3)
    assert set(IDX_TYPES) == {c for c, _ in TYPES}


@pytest.mark.skipif(not os.path.isdir("/dev/fd"), reason="needs /dev/fd")
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_a_pipe_is_read(tmp_path, name):
    # a pipe (`cat a.idx | ... /dev/stdin`) raised io.UnsupportedOperation ("not
    # seekable") naming no file; it is read whole first
    a = (np.arange(600) % 256).astype(np.uint8).reshape(20, 30)
    write_idx(tmp_path / name, a)
    r, w = os.pipe()
    try:
        os.write(w, (tmp_path / name).read_bytes())
        os.close(w)
        np.testing.assert_array_equal(read_idx(f"/dev/fd/{r}"), a)
    finally:
        os.close(r)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_device_is_refused_not_read_forever():
    with pytest.raises(DatasetError, match="/dev/zero: is a device, not an IDX file"):
        read_idx("/dev/zero")


def test_a_bytes_path_is_read_and_written(tmp_path):
    a = np.arange(6, dtype=np.uint8).reshape(2, 3)
    write_idx(os.fsencode(tmp_path / "a.idx.gz"), a)  # (a TypeError from pathlib before)
    np.testing.assert_array_equal(read_idx(os.fsencode(tmp_path / "a.idx.gz")), a)


def test_write_refuses_a_path_ending_in_a_slash(tmp_path):
    """Path() dropped the slash, and write_idx("dir/x/", a) wrote a file named x."""
    with pytest.raises(IsADirectoryError, match="names a directory"):
        write_idx(str(tmp_path / "x") + os.sep, np.arange(3, dtype=np.uint8))
    assert list(tmp_path.iterdir()) == []
