"""How well a model reads photograph-like digits through ``preprocess_image``.

The pictures come from tests/photo_digits.py (seeded): MNIST digits enlarged, given pen
strokes of random width, placed off-centre on paper and corrupted like phone photos and
scans (lighting, shadows, texture, noise, blur, specks, borders, frames, ruled lines,
coloured ink, dark boards). Prints the model's accuracy on the clean 28x28 digits, on
the photos, on the photos of the digits it reads when clean (what the preprocessing
keeps), per corruption (in the mixed set, and each corruption alone against the same
picture without it), on the same digits written with a broad marker and cropped close
(tight_crop), and how it answers pictures with no digit: blank paper, specks,
noise, blobs, and --strokes drawings of each of tests/photo_digits.py's STROKE_SHAPES
(signs, letters and shapes made of pen strokes, half of them photo-like).

    python benchmarks/bench_real_images.py [--model M.safetensors|pretrained] [--n 1000]
                                           [--seed 0] [--tta none|shift]
    python benchmarks/bench_real_images.py --dev [--n 1000]

Without --model it trains the ``default`` preset (seed 0) on full MNIST when found (in
--data-dir, default the shared MNIST folder, then digitcore's usual places), else on
the bundled mnist-mini; ``--model pretrained`` is the bundled pretrained model. Pictures
are read with the test-time augmentation the model records (``digitcore predict``'s
default; --tta overrides it), and then, if that is one, also without it. The reported
run reads digits of the test split with generator seed --seed and saves
benchmarks/results/bench_real_images.json.

``--dev`` is the development set the preprocessing is tuned on, kept apart from the
reported one: the model is trained on all but the last sixth of the training images,
the digits come from that held-out sixth (never the test split), the generator's seed
is 1000 + --seed, and nothing is saved.
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
from _data import shared_mnist  # noqa: E402

import _results  # noqa: E402
from photo_digits import (CORRUPTIONS, non_digit_strokes, non_digits, photo_digit,  # noqa: E402
                          photo_set, tight_crop)

DEV_SEED = 1000
# Margins around a broad-marker digit for tests/photo_digits.py's tight_crop pictures,
# fractions of the digit's height.
TIGHT_MARGINS = (0.0, 0.05, 0.1)




def _model(path, data_dir, dev):
    from digitcore import datasets
    from digitcore.modelio import load_model
    from digitcore.presets import build

    name, (x_tr, y_tr), test, _ = datasets.resolve_default_dataset(data_dir)
    if dev:  # the last sixth of the training images is the development set's digits
        cut = len(x_tr) - len(x_tr) // 6
        (x_tr, y_tr), test = (x_tr[:cut], y_tr[:cut]), (x_tr[cut:], y_tr[cut:])
    if path == "pretrained":
        from digitcore import load_pretrained

        return load_pretrained(), name, test
    if path:
        return load_model(path), name, test
    net, trainer = build("default", 0, len(x_tr), trainer_kw=dict(verbose=0))
    trainer.fit(x_tr, y_tr)
    return net, name, test


SHAPE_CHECK = -2  # refused by preprocess_image's shape check (step 9); other refusals -1


def _read(net, pics, tta=None):
    pred = np.full(len(pics), -1)
    for i, p in enumerate(pics):
        try:
            pred[i] = net.predict_image(p, tta=tta)[0]
        except ValueError as exc:  # NoDigitError: counted as wrong
            if "do not look like a digit" in str(exc):
                pred[i] = SHAPE_CHECK
    return pred


def _alone(net, x, y, seed, tta):
    """Each corruption alone, on the same digit at the same size and place as the picture
    with none (the generator draws those first)."""
    base = _read(net, [photo_digit(d, np.random.default_rng([seed, i]), set())[0]
                       for i, d in enumerate(x)], tta) == y
    print(f"each corruption alone, {len(x)} digits (accuracy; lost/gained against no "
          f"corruption, {base.mean():.2%}):")
    alone = {"none": float(base.mean())}
    for c in CORRUPTIONS:
        got = _read(net, [photo_digit(d, np.random.default_rng([seed, i]), {c})[0]
                          for i, d in enumerate(x)], tta) == y
        alone[c] = float(got.mean())
        print(f"  {c:14s} {got.mean():7.2%}  -{(base & ~got).sum()} +{(~base & got).sum()}")
    return {"alone_accuracy": alone, "n": len(x)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="a model file, or 'pretrained' (the "
                    "bundled model); default: train the default preset")
    ap.add_argument("--tta", choices=["none", "shift"], default=None, help="read with this "
                    "test-time augmentation (default: the model's, as digitcore predict)")
    ap.add_argument("--data-dir", default=shared_mnist(required=False))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dev", action="store_true", help="the development set (see above); "
                    "prints, saves nothing")
    ap.add_argument("--alone", type=int, default=None, help="digits for the each-"
                    "corruption-alone table (default: all --n)")
    ap.add_argument("--strokes", type=int, default=20, help="drawings of each stroke shape "
                    "that is not a digit")
    ap.add_argument("--json", default=None, help="write the results here instead of "
                    "benchmarks/results/bench_real_images.json")
    args = ap.parse_args(argv)
    from digitcore.augment import model_tta

    net, name, (x_te, y_te) = _model(args.model, args.data_dir, args.dev)
    tta = model_tta(net, args.tta)
    seed = DEV_SEED + args.seed if args.dev else args.seed
    x, y = x_te[:args.n], y_te[:args.n]
    # (the clean digits read as the photos are: with the model's test-time augmentation)
    clean_ok = net.predict(x.reshape(len(x), -1), tta=tta) == y
    pics, labels, applied = photo_set(x, y, seed=seed)
    t0 = time.perf_counter()
    pred = _read(net, pics, tta)
    per_image_ms = (time.perf_counter() - t0) / len(pics) * 1000
    ok = pred == labels
    split = "held-out training" if args.dev else "test"
    print(f"model: {net!r}, trained on {name}; {len(pics)} photos of {name} {split} digits, "
          f"generator seed {seed}; test-time augmentation {tta or 'none'}")
    print(f"clean 28x28 digits:            {clean_ok.mean():.2%}")
    print(f"photo-like pictures:           {ok.mean():.2%}  "
          f"({(pred < 0).sum()} refused as no digit, {(pred == SHAPE_CHECK).sum()} of them "
          f"by the shape check; {per_image_ms:.1f} ms per picture)")
    print(f"photos of digits read clean:   {ok[clean_ok].mean():.2%}")
    ok_plain = ok
    if tta:
        ok_plain = _read(net, pics) == labels
        print(f"photo-like pictures, no {tta}: {ok_plain.mean():.2%}  (-{(ok_plain & ~ok).sum()}"
              f" +{(~ok_plain & ok).sum()} with it)")
    print("by corruption, in the mixed set (photo accuracy, images):")
    rows = []
    for c in CORRUPTIONS:
        m = np.array([c in a for a in applied])
        if m.any():
            print(f"  {c:14s} {ok[m].mean():7.2%} {m.sum():5d}")
            rows.append({"corruption": c, "accuracy": float(ok[m].mean()), "n": int(m.sum())})
    m = np.array([not a for a in applied])
    if m.any():
        print(f"  {'(none)':14s} {ok[m].mean():7.2%} {m.sum():5d}")
    # each corruption alone, on the same digit, size and place as the picture without any
    n_alone = min(len(x), args.n if args.alone is None else args.alone)
    if n_alone:
        rows.append(_alone(net, x[:n_alone], y[:n_alone], seed, tta))
    # digits written with a broad marker, the picture cropped close around them
    tight = {}
    for margin in TIGHT_MARGINS:
        crops = [tight_crop(d, np.random.default_rng([seed, i, 2]), margin)
                 for i, d in enumerate(x)]
        tight[margin] = got = _read(net, crops, tta) == y
        print(f"broad-marker digits cropped to {margin:.0%} around them: {got.mean():.2%}")
    print("pictures with no digit:")
    for what, img in non_digits(seed):
        try:
            d, p = net.predict_image(img, tta=tta)
            print(f"  {what}: read as {d} ({p[d]:.0%})")
            rows.append({"non_digit": what, "read_as": int(d), "probability": float(p[d])})
        except ValueError as exc:
            print(f"  {what}: refused: {exc}")
            rows.append({"non_digit": what, "refused": str(exc)})
    drawings = non_digit_strokes(seed, per_shape=args.strokes)
    what = np.array([w for w, _ in drawings])
    gone = _read(net, [img for _, img in drawings], tta) < 0
    refused = {k: float(gone[what == k].mean()) for k in dict.fromkeys(what)}
    if refused:
        print(f"stroke drawings that are not digits, {args.strokes} of each, refused: "
              f"{np.mean(list(refused.values())):.1%}")
        print("  " + ", ".join(f"{k} {v:.0%}" for k, v in refused.items()))
        rows.append({"stroke_drawings_refused": refused, "per_shape": args.strokes})
    if args.dev:
        return
    claims = {"clean_accuracy_pct": 100 * float(clean_ok.mean()),
              "photo_accuracy_pct": 100 * float(ok.mean()),
              "photo_of_clean_read_pct": 100 * float(ok[clean_ok].mean()),
              "photo_refused_pct": 100 * float((pred < 0).mean()),
              "photo_refused_by_shape_check_pct": 100 * float((pred == SHAPE_CHECK).mean())}
    claims.update({f"tight_crop_{round(100 * m)}pct_accuracy_pct": 100 * float(got.mean())
                   for m, got in tight.items()})
    if tta:
        claims["photo_accuracy_without_tta_pct"] = 100 * float(ok_plain.mean())
    if refused:
        claims["stroke_drawings_refused_pct"] = 100 * float(np.mean(list(refused.values())))
        claims.update({f"{k}_refused_pct": 100 * refused[k]
                       for k in ("plus", "minus", "x", "triangle") if k in refused})
    path = args.json
    if path is None and name == "mnist-mini":  # (the committed figures are full MNIST's)
        path = _results.RESULTS / ("bench_real_images"
                                   + ("-pretrained" if args.model == "pretrained" else "")
                                   + "-mnist-mini.json")
    _results.save(__file__, claims,
                  [{"model": repr(net), "data": name, "n": len(pics), "tta": tta}] + rows,
                  path)


if __name__ == "__main__":
    main()
