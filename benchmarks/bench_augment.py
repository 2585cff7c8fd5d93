"""Cost of augmentation: training epochs with and without it, alternating in one run.

    python benchmarks/bench_augment.py [--hidden 800] [--augment full|KEY=V,...]
                                       [--rounds 5] [--samples 60000] [--threads 2]
                                       [--dropout 0]

Each round trains one epoch (of --samples MNIST training images; the bundled mnist-mini
when full MNIST is not found, its results then in bench_augment-mnist-mini.json unless
--json names a file) without augmentation and one with it, on the same network
shape (Adam, no dropout, as the presets that augment train), in alternating order (plain
first in even rounds, augmented first in odd ones), and prints both times; the verdict is
the median of the per-round ratios (with / without), against the issue's target of less
than 10% extra. The kernel alone
is timed in the same rounds as training calls it: ops.augment over the same images in
batches of 128, into one reused buffer.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import shared_mnist  # noqa: E402

import _results  # noqa: E402
import digitcore  # noqa: E402
from digitcore.augment import parse_augment  # noqa: E402

HERE = Path(__file__).resolve().parent
BATCH = 128  # epoch()'s Trainer default


def epoch(x, y, hidden, augment, seed, dropout):
    net = digitcore.Network([784, *hidden, 10], dropout=dropout, seed=seed)
    tr = digitcore.Trainer(net, optimizer="adam", lr=2e-3, epochs=1, seed=seed, verbose=0,
                           augment=augment)
    t = time.perf_counter()
    tr.fit(x, y)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=shared_mnist())
    ap.add_argument("--hidden", default="800")
    ap.add_argument("--augment", default="full", help="a name (full, affine, ...) or "
                    "key=value,... of digitcore.Augment's fields, as digitcore train takes")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--samples", type=int, default=60000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dropout", type=float, default=0.0,
                    help="the network's dropout (the presets that augment use none)")
    ap.add_argument("--json", default=None, help="results file (default: the committed "
                    "benchmarks/results/bench_augment.json)")
    args = ap.parse_args()
    digitcore.set_num_threads(args.threads)
    digitcore.show_config()
    try:
        (x, y), _ = digitcore.load_mnist(args.data_dir, download=False)
        dataset = "mnist"
    except Exception:
        (x, y), _ = digitcore.load_dataset("mnist-mini")
        dataset = "mnist-mini"
    x, y = x[:args.samples], y[:args.samples]
    hidden = [int(h) for h in args.hidden.split(",")]
    aug = parse_augment(args.augment)
    if aug is None:
        raise SystemExit("--augment none: nothing to compare")
    bank = aug.bank(1, 0)
    plain, augmented, kernel, ratios = [], [], [], []
    order = np.random.default_rng(0).permutation(len(x)).astype(np.int64)
    out = np.empty((BATCH, *x.shape[1:]), x.dtype)
    for a in (None, aug):  # warm up both paths
        epoch(x[:2048], y[:2048], hidden, a, 0, args.dropout)
    for r in range(args.rounds):
        if r % 2 == 0:
            a = epoch(x, y, hidden, None, r, args.dropout)
            b = epoch(x, y, hidden, aug, r, args.dropout)
        else:
            b = epoch(x, y, hidden, aug, r, args.dropout)
            a = epoch(x, y, hidden, None, r, args.dropout)
        t = time.perf_counter()
        for b0 in range(0, len(x), BATCH):
            rows = order[b0:b0 + BATCH]
            digitcore.ops.augment(x, rows, bank=bank, seed=r, stream=b0,
                                  out=out[:len(rows)], **aug.kernel_args())
        k = time.perf_counter() - t
        plain.append(a)
        augmented.append(b)
        kernel.append(k)
        ratios.append(b / a)
        print(f"round {r + 1}: epoch {a:.3f} s plain, {b:.3f} s augmented ({b / a:.3f}x); "
              f"ops.augment over the {len(x):,} images {k:.3f} s ({k / a:.1%} of an epoch)",
              flush=True)
    med = statistics.median(ratios)
    print(f"784-{args.hidden}-10, {len(x):,} images, {args.threads} threads, augment "
          f"{args.augment!r}: median epoch {statistics.median(plain):.3f} s plain, "
          f"{statistics.median(augmented):.3f} s augmented; median ratio {med:.3f} "
          f"(+{med - 1:.1%}; target < +10%: {'met' if med < 1.10 else 'MISSED'}); the kernel "
          f"alone {statistics.median(kernel) / statistics.median(plain):.1%} of an epoch")
    print("per-round ratios:", " ".join(f"{q:.3f}" for q in ratios))
    kern = statistics.median(kernel) / statistics.median(plain)
    _results.save(__file__, {"extra_epoch_pct": 100 * (med - 1),
                             "extra_epoch_pct_range": [100 * (min(ratios) - 1),
                                                       100 * (max(ratios) - 1)],
                             "kernel_pct_of_epoch": 100 * kern},
                  [{"round": i + 1, "plain_s": a, "augmented_s": b, "kernel_s": k}
                   for i, (a, b, k) in enumerate(zip(plain, augmented, kernel))]
                  + [{"network": f"784-{args.hidden}-10", "images": len(x), "dataset": dataset,
                      "threads": args.threads, "dropout": args.dropout, "augment": args.augment,
                      "augment_fields": aug.to_dict()}],
                  # (not full MNIST: the committed file's figures are full MNIST's)
                  path=args.json or (_results.RESULTS / "bench_augment-mnist-mini.json"
                                     if dataset == "mnist-mini" else None))
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
