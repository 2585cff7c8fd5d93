"""Fuzz digitcore.modelio.load_model (and read_model_info) on arbitrary file bytes.

Documented rejection: ModelFormatError. A file that loads must give a Network whose
parameters are finite and whose predict_proba works and sums to 1, or, when finite
weights still overflow float32 on the probe input (an infinite or NaN logit), raises
FloatingPointError saying so (corpus/model/overflow_logits is such a file).

Input layout: byte 0 chooses a mode; mode & 1 = the rest is a whole file, else the rest
is spliced into a valid model file (header JSON mutated by the fuzzer, tensor data kept),
which reaches the deeper checks far more often than random bytes.

    python fuzz/fuzz_model.py fuzz/corpus/model -max_total_time=60
"""

import struct
import sys

import atheris

import _common
import numpy as np

with atheris.instrument_imports(include=["digitcore"]):
    from digitcore.errors import ModelFormatError
    from digitcore.modelio import load_model, read_model_info

EXPECTED = (ModelFormatError,)


def _split(data: bytes):
    """A fuzzer-chosen header and data buffer -> a safetensors file with that header."""
    if len(data) < 2:
        return data
    cut = min(len(data) - 1, struct.unpack("<H", data[:2])[0] if len(data) >= 2 else 0)
    header, body = data[2:2 + cut], data[2 + cut:]
    return struct.pack("<Q", len(header)) + header + body


def TestOneInput(data: bytes):
    if not data:
        return
    mode, payload = data[0], data[1:]
    blob = payload if mode & 1 else _split(payload)
    with _common.scratch(blob, ".safetensors") as path:
        _load_and_use(path, mode)


def _load_and_use(path: str, mode: int):
    try:
        if mode & 2:
            info = read_model_info(path)
            assert isinstance(info["layer_sizes"], list)
            return
        net = load_model(path)
    except EXPECTED:
        return
    assert np.isfinite(net.flat_parameters).all()
    if net.n_params <= 1 << 20:
        x = np.linspace(0, 1, 2 * net.n_features, dtype=np.float32).reshape(2, -1)
        try:
            p = net.predict_proba(x)
        except FloatingPointError as exc:
            assert "overflowed float32" in str(exc), exc
            assert not np.isfinite(net.logits(x)).all()
            return
        assert p.shape == (2, net.n_classes)
        assert np.all(np.isfinite(p)), p
        assert np.allclose(p.sum(axis=1), 1.0, atol=1e-4), p.sum(axis=1)


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
