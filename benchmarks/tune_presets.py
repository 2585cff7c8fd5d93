"""Validation accuracy of a preset, or of variants of it, on a split of MNIST's training images.

    python benchmarks/tune_presets.py --preset augmented [--set epochs=80 --set dropout=0.1]
                                      [--every 10] [--seeds 0] [--json FILE]
                                      [--proba-dir DIR] [--committee]

This is how the presets in src/digitcore/presets.py were chosen: each candidate trains on
the first 50,000 training images and is scored on the last 10,000 (`--val`), every
`--every` epochs and at the end; the 10,000 test images are never read. A run's weights
are the same for any thread count, so candidates may be compared across machines and
loads; their wall time is not measured here (bench_accuracy.py measures the chosen
presets on the full training set). `--set KEY=VALUE` overrides a preset entry (hidden
widths as `hidden=800,800`, `augment=none`, or an augmentation's own fields as
`augment=rotate=12,alpha=34,faint=0.06`). Results are saved, when `--json` names a
file, as the other benchmarks save theirs (benchmarks/_results.py).

Committees: `--proba-dir DIR` keeps each seed's validation probabilities (float32 .npy)
and its training time in DIR, named by the candidate and seed; a seed already there is
read back, not trained again, so two processes (e.g. one thread each,
DIGITCORE_NUM_THREADS=1) may train disjoint seeds and a last run gathers them all.
`--committee` then scores the committees of the first k seeds, k = 1 .. len(seeds): the
argmax of the mean of their probabilities (summed in float64, in seed order), as
`digitcore.Committee` answers.

A preset with `tta` (test-time augmentation, digitcore.augment.TTA; `--set tta=shift` or
`tta=none`) is scored with it, and its accuracies without it are reported beside; a
committee's figure is then the mean over members of each member's mean over the views,
which is Committee.predict_proba(x, tta=...) up to float64 rounding.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _data import shared_mnist  # noqa: E402
import _results  # noqa: E402
import digitcore  # noqa: E402
from digitcore.augment import parse_augment  # noqa: E402
from digitcore.presets import TRAINER_KEYS, build, get_preset, tta_of  # noqa: E402
from digitcore.trainer import LambdaCallback  # noqa: E402


def _value(key, text):
    if key == "hidden":
        return [int(v) for v in text.split(",")]
    if key == "augment" and "=" in text:
        # key=number pairs of digitcore.Augment's fields, read and checked as `digitcore
        # train --augment` reads them; the config records the fields given
        given = {part.partition("=")[0].strip() for part in text.split(",")}
        return {k: v for k, v in parse_augment(text).to_dict().items() if k in given}
    if key in ("augment", "tta"):
        return None if text == "none" else text
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def run(preset, split, seed, every, verbose, proba_dir=None):
    """Train one seed; returns (accuracy, curve, wall seconds, validation probabilities,
    threads it trained on). With ``proba_dir``, a seed whose probabilities are already
    saved there is read back."""
    (x, y), (xv, yv) = split
    if proba_dir is not None:
        key = json.dumps({"preset": preset, "n_train": len(x), "n_val": len(xv)},
                         sort_keys=True)
        stem = Path(proba_dir) / f"{hashlib.sha256(key.encode()).hexdigest()[:12]}-seed{seed}"
        if stem.with_suffix(".json").exists():
            meta = json.loads(stem.with_suffix(".json").read_text())
            proba = np.load(stem.with_suffix(".npy"))
            plain = np.load(f"{stem}-plain.npy") if tta_of(preset) else proba
            # (training is bitwise reproducible, but only for the same code: say which
            # commit trained it, and that its wall time is that run's)
            print(f"seed {seed}: read from {stem}.json (trained at commit "
                  f"{meta.get('commit') or 'unknown'}, this is {_results._commit()}; its "
                  f"{meta['wall_s']:.0f} s on {meta['threads']} thread(s) are that run's)",
                  flush=True)
            return (meta["val_accuracy"], meta["curve"], meta["wall_s"], proba, plain,
                    meta["threads"])
        acc, curve, wall, proba, plain, threads = run(preset, split, seed, every, verbose)
        Path(proba_dir).mkdir(parents=True, exist_ok=True)
        np.save(stem.with_suffix(".npy"), proba)
        if tta_of(preset):
            np.save(f"{stem}-plain.npy", plain)
        stem.with_suffix(".json").write_text(json.dumps(
            {"config": preset, "seed": seed, "val_accuracy": acc, "curve": curve,
             "wall_s": wall, "threads": threads, "commit": _results._commit()}) + "\n")
        return acc, curve, wall, proba, plain, threads
    curve = []
    t0 = time.perf_counter()

    def on_epoch_end(epoch, logs):
        if every and (epoch + 1) % every == 0 and epoch + 1 < preset["epochs"]:
            curve.append([epoch + 1, net.score(xv, yv, tta=tta_of(preset))])
            if verbose:
                print(f"  epoch {epoch + 1}: validation {curve[-1][1]:.2%} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)

    # the candidate as written: its epochs and augmentation whatever the split's size
    net, tr = build(preset, seed, len(x), epochs=preset["epochs"], augment=preset.get("augment"),
                    trainer_kw=dict(verbose=0, callbacks=[LambdaCallback(on_epoch_end)]))
    tr.fit(x, y)
    wall = time.perf_counter() - t0
    proba = net.predict_proba(xv, tta=tta_of(preset))
    plain = net.predict_proba(xv) if tta_of(preset) else proba
    acc = float(np.mean(np.argmax(proba, axis=1) == yv))
    curve.append([preset["epochs"], acc])
    return acc, curve, wall, proba, plain, digitcore.get_num_threads()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=shared_mnist())
    ap.add_argument("--preset", default="augmented")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--val", type=int, default=10_000, help="validation images, taken "
                    "from the end of the training set")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--every", type=int, default=10, help="score every N epochs (0: end)")
    ap.add_argument("--verbose", type=int, default=1)
    ap.add_argument("--json", default=None, help="save the results to this file")
    ap.add_argument("--proba-dir", default=None, help="keep (and reuse) each seed's "
                    "validation probabilities in this folder")
    ap.add_argument("--committee", action="store_true", help="also score the committees "
                    "of the first k seeds, k = 1 .. len(seeds)")
    args = ap.parse_args()
    preset = get_preset(args.preset)
    for item in args.set:
        key, sep, text = item.partition("=")
        if not sep or key not in preset and key not in TRAINER_KEYS and key not in ("augment",
                                                                                 "tta"):
            raise SystemExit(f"--set {item!r}: give KEY=VALUE with KEY one of "
                             f"{sorted(set(preset) | set(TRAINER_KEYS))}")
        preset[key] = _value(key, text)
    (x, y), _ = digitcore.load_mnist(args.data_dir, download=False)  # test set unused
    if not 0 < args.val < len(x):
        raise SystemExit(f"--val must be in [1, {len(x) - 1}], got {args.val}")
    split = (x[:-args.val], y[:-args.val]), (x[-args.val:], y[-args.val:])
    rows, probas, plains = [], [], []
    for seed in (int(s) for s in args.seeds.split(",")):
        acc, curve, wall, proba, plain, threads = run(preset, split, seed, args.every,
                                                      args.verbose, args.proba_dir)
        probas.append(proba)
        plains.append(plain)
        yv = split[1][1]
        plain_acc = float(np.mean(np.argmax(plain, axis=1) == yv))
        rows.append({"preset": args.preset, "overrides": args.set, "config": preset,
                     "seed": seed, "n_train": len(split[0][0]), "n_val": args.val,
                     "val_accuracy": acc, "val_accuracy_without_tta": plain_acc,
                     "curve": curve, "wall_s": wall, "threads": threads})
        without = f", {plain_acc:.2%} without tta" if tta_of(preset) else ""
        print(f"{args.preset} {' '.join(args.set)} seed {seed}: validation {acc:.2%}"
              f"{without} ({preset['epochs']} epochs, {wall:.0f} s)", flush=True)
    accs = [100 * r["val_accuracy"] for r in rows]
    claims = {"val_accuracy_pct_mean": sum(accs) / len(accs),
              "val_accuracy_pct_range": [min(accs), max(accs)]}
    if tta_of(preset):
        plain = [100 * r["val_accuracy_without_tta"] for r in rows]
        claims["val_accuracy_without_tta_pct_mean"] = sum(plain) / len(plain)
    if args.committee:
        yv = split[1][1]
        total = np.zeros(probas[0].shape, np.float64)
        total_plain = np.zeros(probas[0].shape, np.float64)
        for k, (proba, plain) in enumerate(zip(probas, plains), 1):
            total += proba
            total_plain += plain
            acc = 100 * float(np.mean(np.argmax(total, axis=1) == yv))
            walls = [r["wall_s"] for r in rows[:k]]
            claims[f"committee_k{k}_val_accuracy_pct"] = acc
            claims[f"committee_k{k}_member_wall_s_sum"] = sum(walls)
            without = ""
            if tta_of(preset):
                acc_plain = 100 * float(np.mean(np.argmax(total_plain, axis=1) == yv))
                claims[f"committee_k{k}_val_accuracy_without_tta_pct"] = acc_plain
                without = f" ({acc_plain:.2f}% without tta)"
            print(f"committee of {k} (seeds {[r['seed'] for r in rows[:k]]}): validation "
                  f"{acc:.2f}%{without}, members trained in {sum(walls):.0f} s "
                  f"(each {min(walls):.0f}-{max(walls):.0f} s)", flush=True)
    if args.json:
        _results.save(__file__, claims, rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
