"""How well a model reads photograph-like digits through ``preprocess_image``.

The pictures come from tests/photo_digits.py (seeded): MNIST test digits enlarged,
given pen strokes of random width, placed off-centre on paper and corrupted like phone
photos and scans (lighting, shadows, texture, noise, blur, specks, borders, frames,
ruled lines, coloured ink, dark boards). Prints the model's accuracy on the clean 28x28
digits, on the photos, on the photos of the digits it reads when clean (what the
preprocessing keeps), per corruption, and how it answers pictures with no digit.

    python benchmarks/bench_real_images.py [--model M.safetensors] [--n 1000] [--seed 0]

Without --model it trains the ``default`` preset (seed 0) on full MNIST when found
locally, else on the bundled mnist-mini. Digits come from the test split of the same data.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

import _results  # noqa: E402
from photo_digits import CORRUPTIONS, non_digits, photo_set  # noqa: E402


def _model(path):
    from digitcore import datasets
    from digitcore.modelio import load_model
    from digitcore.network import Network
    from digitcore.presets import epochs_for, get_preset
    from digitcore.trainer import Trainer

    name, (x_tr, y_tr), test, _ = datasets.resolve_default_dataset()
    if path:
        return load_model(path), name, test
    cfg = get_preset("default")
    net = Network([784, *cfg["hidden"], 10], activation=cfg["activation"],
                  dropout=cfg["dropout"], seed=0)
    Trainer(net, optimizer=cfg["optimizer"], lr=cfg["lr"], batch_size=cfg["batch_size"],
            epochs=epochs_for(cfg, len(x_tr)), lr_schedule=cfg["lr_schedule"], seed=0,
            verbose=0).fit(x_tr, y_tr)
    return net, name, test


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the results here instead of "
                    "benchmarks/results/bench_real_images.json")
    args = ap.parse_args(argv)
    net, name, (x_te, y_te) = _model(args.model)
    x, y = x_te[:args.n], y_te[:args.n]
    clean_ok = net.predict(x.reshape(len(x), -1)) == y
    pics, labels, applied = photo_set(x, y, seed=args.seed)
    t0 = time.perf_counter()
    pred = np.full(len(pics), -1)
    for i, p in enumerate(pics):
        try:
            pred[i] = net.predict_image(p)[0]
        except ValueError:  # NoDigitError: counted as wrong
            pass
    per_image_ms = (time.perf_counter() - t0) / len(pics) * 1000
    ok = pred == labels
    print(f"model: {net!r}, trained on {name}; {len(pics)} photos of {name} test digits, "
          f"seed {args.seed}")
    print(f"clean 28x28 digits:            {clean_ok.mean():.2%}")
    print(f"photo-like pictures:           {ok.mean():.2%}  "
          f"({(pred == -1).sum()} refused as no digit; {per_image_ms:.1f} ms per picture)")
    print(f"photos of digits read clean:   {ok[clean_ok].mean():.2%}")
    print("by corruption (photo accuracy, images):")
    rows = []
    for c in CORRUPTIONS:
        m = np.array([c in a for a in applied])
        if m.any():
            print(f"  {c:14s} {ok[m].mean():7.2%} {m.sum():5d}")
            rows.append({"corruption": c, "accuracy": float(ok[m].mean()), "n": int(m.sum())})
    m = np.array([not a for a in applied])
    if m.any():
        print(f"  {'(none)':14s} {ok[m].mean():7.2%} {m.sum():5d}")
    print("pictures with no digit:")
    for what, img in non_digits(args.seed):
        try:
            d, p = net.predict_image(img)
            print(f"  {what}: read as {d} ({p[d]:.0%})")
            rows.append({"non_digit": what, "read_as": int(d), "probability": float(p[d])})
        except ValueError as exc:
            print(f"  {what}: refused: {exc}")
            rows.append({"non_digit": what, "refused": str(exc)})
    _results.save(__file__, {"clean_accuracy_pct": 100 * float(clean_ok.mean()),
                             "photo_accuracy_pct": 100 * float(ok.mean()),
                             "photo_of_clean_read_pct": 100 * float(ok[clean_ok].mean())},
                  [{"model": repr(net), "data": name, "n": len(pics)}] + rows, args.json)


if __name__ == "__main__":
    main()
