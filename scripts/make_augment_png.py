"""Draw docs/images/augment.png, the README's picture of training-time augmentation.

    python scripts/make_augment_png.py [--out docs/images/augment.png]

Rows: the first 6 images of the bundled mnist-mini; columns: each image as it is, then
7 draws of the "full" recipe (affine + elastic + stroke), as Trainer(augment="full")
deforms them in training (digitcore.plots.plot_augmented, seed 0). Offline, a few seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import digitcore
from digitcore import plots


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" /
                                         "images" / "augment.png"))
    args = ap.parse_args()
    (x, _), _ = digitcore.load_dataset("mnist-mini")
    plots.plot_augmented(x, "full", n=6, k=7, path=args.out, seed=0)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
