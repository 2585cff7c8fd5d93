"""Training reproduces recorded bits: a guard for refactors that must not change numbers.

Each configuration trains a small network for two epochs (full-batch ones a few steps)
and hashes (SHA-256) its parameters, its optimizer state and its predicted probabilities,
on 1, 2, 3 and 4 threads and on more threads than the machine has cores.
The hashes must be equal across thread counts (always checked) and equal to the ones
recorded in training_bits.json for this machine's kernel path, where recorded: the exact
bits depend on the instruction set and the compiler, so another platform only checks
the thread invariance.

The configurations cover every branch of the C training step: the sparse first layer
(uint8 and float input, "always" and too-dense batches falling back to the GEMM, one to
three layers), the dense path (standardised input), plain SGD (fused into the sparse
backward), momentum/Nesterov, RMSprop, Adam/AdamW, dropout, clipping, L2, leaky ReLU /
sigmoid / tanh, a short last batch, full-batch descent (its kept sparse input); and
inference on both sides of the sparse threshold.

Record new hashes only for a change meant to change numbers (say so in the commit):

    PYTHONPATH=src python tests/test_training_bits.py --record
"""

import hashlib
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import pytest

import digitcore
from digitcore import Network, Trainer
from kernel_config import config

RECORD = Path(__file__).with_name("training_bits.json")
# 1-4 threads and more threads than cores (oversubscribed: OpenMP still splits the fixed
# units of work, whichever thread takes them)
THREADS = (1, 2, 3, 4, (os.cpu_count() or 1) + 3)

# name: (layer sizes, Network kwargs, Trainer kwargs, data kind, sparse_input)
CONFIGS = {
    "sgd-sparse-u8": ([784, 96, 10], {}, dict(optimizer="sgd", lr=0.1), "u8", "auto"),
    "adam-dropout-leaky-u8": ([784, 136, 32, 10], dict(activation="leaky_relu", dropout=0.2),
                              dict(optimizer="adam", lr=2e-3), "u8", "auto"),
    "rmsprop-always-clip-f32": ([784, 40, 10], dict(activation="sigmoid"),
                                dict(optimizer="rmsprop", lr=1e-3, clip_norm=0.5, l2=1e-4),
                                "f32", "always"),
    "nesterov-one-layer-u8": ([784, 10], {}, dict(optimizer="nesterov", lr=0.05), "u8", "auto"),
    "adamw-mixed-density-u8": ([784, 70, 10], dict(dropout=0.1),
                               dict(optimizer="adamw", lr=1e-3, lr_schedule="cosine",
                                    batch_size=100), "mixed", "auto"),
    "momentum-dense-tanh": ([784, 48, 24, 16, 10], dict(activation="tanh", input_mean=0.13,
                                                        input_std=0.31),
                            dict(optimizer="momentum", lr=0.05, clip_norm=1.0), "u8", "auto"),
    # Adam on the sparse path with L1 and L2 (3 output blocks, the last one partial), and
    # with clipping by the global norm
    "adam-l1-l2-always-u8": ([784, 150, 10], {}, dict(optimizer="adam", lr=2e-3, l1=1e-4,
                                                      l2=1e-4), "u8", "always"),
    "adam-clip-u8": ([784, 64, 10], {}, dict(optimizer="adam", lr=2e-3, clip_norm=0.5),
                     "u8", "auto"),
    "adam-never-dropout-f32": ([784, 64, 32, 10], dict(dropout=0.3),
                               dict(optimizer="adam", lr=1e-3, l2=1e-4), "f32", "never"),
    # full-batch descent (the tutorial's), whose steps read the kept sparse input: one
    # output block with a masked tail (10), two blocks (64 + 36), and a data set too
    # dense for the sparse path
    "sgd-full-batch-u8": ([784, 10, 10], {}, dict(optimizer="sgd", lr=0.1, batch_size=None,
                                                  epochs=6), "u8", "auto"),
    "adam-full-batch-dropout-f32": ([784, 100, 24, 10], dict(dropout=0.1),
                                    dict(optimizer="adam", lr=1e-3, batch_size=None,
                                         epochs=4), "f32", "auto"),
    "momentum-full-batch-mixed": ([784, 30, 10], {}, dict(optimizer="momentum", lr=0.05,
                                                          batch_size=None, epochs=3),
                                  "mixed", "auto"),
}


def _data(kind, n=700, seed=3):
    """MNIST-like digits: a blob of ink in the middle of a 28x28 frame ("mixed": every
    eighth image also has a noisy background, so some batches are too dense for the
    sparse buffer)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    centre = ((yy - 14) ** 2 + (xx - 14) ** 2) < 81
    x = np.zeros((n, 28, 28), np.uint8)
    ink = rng.random((n, 28, 28)) < 0.45
    x[ink & centre] = rng.integers(1, 256, size=int((ink & centre).sum()), dtype=np.uint8)
    y = rng.integers(0, 10, size=n)
    x[np.arange(n), y + 4, 2 + 2 * y] = 255  # a class-dependent pixel, so there is a signal
    if kind == "mixed":
        noisy = np.arange(n) % 8 == 0
        x[noisy] |= rng.integers(1, 64, size=(int(noisy.sum()), 28, 28), dtype=np.uint8)
    x = x.reshape(n, 784)
    if kind == "f32":
        x = x.astype(np.float32) / 255.0
    return x, y


def _hash(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        if a is not None:
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def train_hash(name, threads):
    sizes, net_kw, tr_kw, kind, sparse = CONFIGS[name]
    x, y = _data(kind)
    old = digitcore.get_num_threads()
    digitcore.set_num_threads(threads)
    try:
        net = Network(sizes, seed=11, **net_kw)
        trainer = Trainer(net, seed=5, verbose=0, **{"batch_size": 64, "epochs": 2, **tr_kw})
        trainer._sparse_input = sparse
        trainer.fit(x, y)
        opt = trainer.optimizer
        return _hash(net.flat_parameters, opt.grad_avg, opt.sq_avg,
                     net.predict_proba(x[:300]), net.predict_proba(x[300:400]))
    finally:
        digitcore.set_num_threads(old)


def _platform_key():
    """The bits depend on the OS's libm (exp, tanh), the CPU and the kernel path."""
    libc = "-".join(filter(None, platform.libc_ver()[:1])) or "libc?"
    return f"{sys.platform}-{libc}-{platform.machine().lower()}-{digitcore.kernel_path()}"


def _recorded():
    if not RECORD.exists():
        return {}
    return json.loads(RECORD.read_text()).get(_platform_key(), {})


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_training_bits(name):
    hashes = {t: train_hash(name, t) for t in THREADS}
    assert len(set(hashes.values())) == 1, f"{name}: bits depend on the thread count: {hashes}"
    want = _recorded().get(name)
    if want is None:
        pytest.skip(f"no recorded bits for {_platform_key()}; thread invariance checked")
    assert hashes[1] == want, (f"{name}: training bits changed on {_platform_key()} "
                               f"({hashes[1]} != recorded {want})")


@pytest.mark.skipif(not digitcore._ops.cpu_has_avx512(), reason="needs a CPU with AVX-512")
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_training_bits_do_not_depend_on_avx512(name):
    # the AVX2 path's GEMM runs a 6x32 AVX-512 tile where the CPU has it, with the 6x16
    # AVX2 tile's bits: a CPU without AVX-512 (the recorded key is the same) trains alike
    with config("avx2", 1):
        without = train_hash(name, 1)
    with config("avx512", 1):
        with_it = train_hash(name, 1)
    assert with_it == without


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit(__doc__)
    table = json.loads(RECORD.read_text()) if RECORD.exists() else {}
    table[_platform_key()] = {name: train_hash(name, 1) for name in sorted(CONFIGS)}
    RECORD.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(json.dumps(table[_platform_key()], indent=1))
