"""Peak memory of a full-MNIST training run (784-256-128-10), against the 300 MB target.

    python benchmarks/bench_memory.py [--epochs 2]

Runs the training in a fresh subprocess and reads its peak resident set size, next to a
baseline process that only imports NumPy and digitcore and loads the data: both peaks are
reported (the training's against the target), and the gap between them is what training
itself holds (the uint8 images stay uint8). The run trains on the first 50,000 training
images, validates after each epoch on the last 10,000, then scores the test set.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _data import shared_mnist  # noqa: E402
import _results  # noqa: E402
CODE = """
import resource, sys, digitcore as dc
(x, y), (xt, yt) = dc.load_mnist(sys.argv[1], download=False)
if sys.argv[2] == "train":
    net = dc.Network([784, 256, 128, 10], seed=0)
    # validated on the last 10,000 training images (views: nothing copied), never the test set
    dc.Trainer(net, epochs=int(sys.argv[3]), seed=0, verbose=0).fit(
        x[:50_000], y[:50_000], validation_data=(x[50_000:], y[50_000:]))
    acc = net.score(xt, yt)
else:
    acc = float("nan")
kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(kb / 1024 if sys.platform != "darwin" else kb / 2**20, acc)
"""


def peak(data_dir, mode, epochs):
    out = subprocess.run([sys.executable, "-c", CODE, data_dir, mode, str(epochs)],
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=shared_mnist())
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--json", default=None, help="results file (default: the committed "
                    "benchmarks/results/bench_memory.json)")
    args = ap.parse_args()
    base, _ = peak(args.data_dir, "load", 0)
    train, acc = peak(args.data_dir, "train", args.epochs)
    print(f"peak RSS: {train:.0f} MB training 784-256-128-10 for {args.epochs} epochs "
          f"(test accuracy {acc:.2%}); {base:.0f} MB just loading the data; "
          f"target < 300 MB: {'met' if train < 300 else 'MISSED'}")
    _results.save(__file__, {"train_peak_rss_mb": train, "load_peak_rss_mb": base},
                  [{"epochs": args.epochs, "train_peak_rss_mb": train, "load_peak_rss_mb": base,
                    "test_accuracy": acc}], args.json)
    return 0 if train < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
