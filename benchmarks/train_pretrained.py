"""Build the bundled pretrained model (digitcore.load_pretrained) and measure it.

    python benchmarks/train_pretrained.py [--preset NAME] [--seed 0] [--members K]
                                          [--threads N] [--dtype auto|float16|float32]
                                          [--data-dir DIR]

Trains preset NAME (default: "augmented", the frontier preset; "best" without it) on all
60,000 MNIST training images -- the preset was chosen on a validation split carved from
them, never on the test set -- with seed SEED, or with --members K a committee of K such
networks (seeds SEED .. SEED+K-1, their probabilities averaged: digitcore.Committee), then:

- with ``--dtype auto`` stores the model rounded to float16 only when that leaves the
  number of correctly read training images unchanged (else float32): a choice the test
  set plays no part in; then measures the test accuracy (10,000 images) of both;
- writes ``src/digitcore/_data/pretrained-mnist.safetensors`` with the recipe, the
  accuracy and the SHA-256 of its tensor data in its metadata, refusing a file over
  4 MB (digitcore.pretrained.MAX_BYTES), and ``benchmarks/results/train_pretrained.json``,
  which the README's model card quotes -- when the run repeats the command that wrote
  that file (``python benchmarks/train_pretrained.py --preset committee --seed 0
  --members 2 --threads 2``); any other run writes ``train_pretrained-partial.json`` and
  its model beside it (``--out`` and ``--json`` name other files).

Training is bitwise reproducible for any thread count, so the same preset, seed and
digitcore version give the same file (its bytes do not record times or threads).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _data import shared_mnist  # noqa: E402
import _results  # noqa: E402
import digitcore  # noqa: E402
from digitcore.presets import PRESETS, members_of, tta_of  # noqa: E402
from digitcore.pretrained import (MAX_BYTES, PRETRAINED_FILE, save_pretrained,  # noqa: E402
                                  train_pretrained)

# the frontier preset (augmented digits, issue 19's >= 99.3%) when presets.py has it
DEFAULT_PRESET = next((p for p in ("frontier", "augmented") if p in PRESETS), "best")
DEFAULT_OUT = HERE.parent / "src" / "digitcore" / "_data" / PRETRAINED_FILE
TARGET_ACCURACY = 0.993  # issue 19: the bundled model reads >= 99.3% of the test set




def _rounded_to(net, dtype):
    """The network as a model file of `dtype` stores it (written and read back)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.safetensors"
        net.save(path, dtype=dtype)
        return digitcore.load_model(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS),
                    help=f"training recipe (default: {DEFAULT_PRESET})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--members", type=int, default=None,
                    help="networks in the model, of seeds SEED, SEED+1, ... (default: the "
                         "preset's `members`, else 1); more than 1 makes a committee")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--dtype", choices=["auto", "float16", "float32"], default="auto",
                    help="storage of the parameters; auto: float16 when it gets as many "
                         "training images right as float32 (never the test set)")
    ap.add_argument("--data-dir", default=shared_mnist(required=False),
                    help="folder with the four MNIST files (default: $DIGITCORE_SHARED_MNIST "
                         "or the shared folder beside the repository)")
    ap.add_argument("--out", default=None,
                    help="model file to write (default: the bundled one, "
                         "src/digitcore/_data/pretrained-mnist.safetensors, when this run "
                         "repeats the committed run's command; else beside the results "
                         "file, as <results>.safetensors)")
    ap.add_argument("--json", default=None, help="results file (default: the committed "
                    "benchmarks/results/train_pretrained.json)")
    ap.add_argument("--verbose", type=int, default=1)
    args = ap.parse_args(argv)
    # refused before the data are read and hours are spent training
    if args.members is not None and args.members < 1:
        ap.error(f"--members must be at least 1, got {args.members}")
    members = members_of(PRESETS[args.preset]) if args.members is None else args.members
    shape = digitcore.Network([784, *PRESETS[args.preset]["hidden"], 10])
    n_params = members * shape.n_params
    least = "float32" if args.dtype == "float32" else "float16"
    if n_params * (4 if least == "float32" else 2) > MAX_BYTES:
        ap.error(f"{members} x {'-'.join(map(str, shape.layer_sizes))} is {n_params:,} "
                 f"parameters: over the {MAX_BYTES:,}-byte budget of the bundled model even "
                 f"as {least}")
    if args.threads:
        digitcore.set_num_threads(args.threads)
    digitcore.show_config()
    (x, y), (xt, yt) = digitcore.load_mnist(args.data_dir, download=False)
    (_, _), (xm, ym) = digitcore.load_dataset("mnist-mini")
    who = (f"seed {args.seed}" if members == 1 else
           f"{members} networks of seeds {args.seed}..{args.seed + members - 1}")
    print(f"training preset {args.preset!r}, {who}, on {len(x):,} MNIST images, "
          f"{digitcore.get_num_threads()} threads", flush=True)
    t0 = time.perf_counter()
    net, history = train_pretrained(x, y, args.preset, args.seed, members=members,
                                    verbose=args.verbose)
    train_s = time.perf_counter() - t0
    histories = history if isinstance(history, list) else [history]

    net16 = _rounded_to(net, "float16")
    # the storage chosen on the training images, never the test set, read as the file
    # will be (with the preset's test-time augmentation)
    tta = tta_of(PRESETS[args.preset])
    train32, train16 = net.predict(x, tta=tta), net16.predict(x, tta=tta)
    train_right32, train_right16 = int((train32 == y).sum()), int((train16 == y).sum())
    dtype = args.dtype
    if dtype == "auto":
        dtype = "float16" if train_right16 == train_right32 else "float32"
    print(f"training images read right: float32 {train_right32:,}, float16 {train_right16:,} "
          f"({int((train32 != train16).sum())} answers changed by the rounding)", flush=True)
    pred32, pred16 = net.predict(xt), net16.predict(xt)
    right32, right16 = int((pred32 == yt).sum()), int((pred16 == yt).sum())
    changed = int((pred32 != pred16).sum())
    print(f"test accuracy: float32 {right32 / len(yt):.2%}, float16 {right16 / len(yt):.2%} "
          f"({changed} of {len(yt):,} predictions changed by the rounding); storing {dtype}",
          flush=True)
    stored = net16 if dtype == "float16" else net
    acc = (right16 if dtype == "float16" else right32) / len(yt)
    mini_acc = stored.score(xm, ym)
    metadata = {"dataset": "mnist", "n_test": int(len(yt)), "test_accuracy": acc,
                "mnist_mini_test_accuracy": mini_acc, "storage_dtype": dtype}
    # the preset's test-time augmentation: recorded, so `digitcore evaluate` scores the
    # file with it, as `digitcore train` scored the preset
    if tta:
        metadata.update(tta=tta, test_accuracy_with_tta=stored.score(xt, yt, tta=tta))
        print(f"test accuracy with test-time augmentation {tta!r}: "
              f"{metadata['test_accuracy_with_tta']:.2%}", flush=True)
    # the bundled model is replaced only by a rerun of the recipe its results describe
    # (another preset, seed or member count would ship a model the model card does not
    # describe): otherwise the model goes beside this run's results file
    keys = ["test_accuracy_pct", "test_accuracy_float32_pct", "test_accuracy_float16_pct",
            "float16_changed_predictions", "train_right_float32", "train_right_float16",
            "mnist_mini_test_accuracy_pct", "train_s", "file_mb", "epochs", "members",
            *(["test_accuracy_with_tta_pct"] if tta else []),
            *(["member_test_accuracy_pct_min", "member_test_accuracy_pct_max"]
              if members > 1 else [])]
    json_path, committed = _results.destination(Path(__file__).stem, keys, args.json)
    out = Path(args.out) if args.out else (
        DEFAULT_OUT if committed else json_path.with_suffix(".safetensors"))
    digest = save_pretrained(net, out, dtype=dtype, metadata=metadata)
    size = os.path.getsize(out)
    # what users get must be what was measured: read it back as they do
    check = digitcore.load_model(out)
    if not (check.predict(xt) == stored.predict(xt)).all():
        raise SystemExit(f"{out}: the written model does not predict as measured")
    verdict = (f"target {TARGET_ACCURACY:.1%}: "
               + ("met" if acc >= TARGET_ACCURACY
                  else f"MISSED by {100 * (TARGET_ACCURACY - acc):.2f} pt"))
    print(f"wrote {out}: {size:,} bytes ({dtype}, budget {MAX_BYTES:,}), "
          f"test accuracy {acc:.2%} ({verdict}), trained in {train_s:.1f} s, "
          f"weights_sha256 {digest}", flush=True)
    claims = {
        "test_accuracy_pct": 100 * acc,
        "test_accuracy_float32_pct": 100 * right32 / len(yt),
        "test_accuracy_float16_pct": 100 * right16 / len(yt),
        "float16_changed_predictions": changed,
        "train_right_float32": train_right32,
        "train_right_float16": train_right16,
        "mnist_mini_test_accuracy_pct": 100 * mini_acc,
        "train_s": train_s,
        "file_mb": size / 1e6,
        "epochs": len(histories[0]),
        "members": members,
    }
    if tta:
        claims["test_accuracy_with_tta_pct"] = 100 * metadata["test_accuracy_with_tta"]
    if members > 1:
        # each member alone, as stored: what the committee adds over its networks
        alone = [100 * float((m.predict(xt) == yt).mean()) for m in stored.members]
        claims["member_test_accuracy_pct_min"] = min(alone)
        claims["member_test_accuracy_pct_max"] = max(alone)
        print("members alone: " + " / ".join(f"{a:.2f}%" for a in alone), flush=True)
    rows = [{"preset": args.preset, "recipe": net.training_summary["recipe"],
             "seed": args.seed, "members": members, "threads": digitcore.get_num_threads(),
             "kernel": digitcore.kernel_path(), "storage_dtype": dtype, "file": PRETRAINED_FILE,
             "file_bytes": size, "weights_sha256": digest,
             "file_sha256": net.training_summary["file_sha256"], "verdict": verdict,
             "history": [{k: v for k, v in h.history.items()
                          if k in ("loss", "accuracy", "seconds")} for h in histories]}]
    assert sorted(claims) == sorted(keys), (sorted(claims), sorted(keys))
    _results.save(__file__, claims, rows, json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
