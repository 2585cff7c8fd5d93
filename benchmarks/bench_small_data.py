"""Accuracy on small data: the default recipe on MNIST subsets, tuned on validation splits.

Tuning (one JSON line per run; the test images are never touched): mnist-mini's 6,000
training images split 4,500 / 1,500, or the first 5,000 split 3,750 / 1,250 (--split5k):

    python benchmarks/bench_small_data.py --aug affine [--samples 240000] [--seed 0]

Report (--report, saved to benchmarks/results/bench_small_data.json): per seed,

- the validation split 4,500 / 1,500 with the default preset's recipe for that size
  (presets.augment_for) and the same without augmentation: the evidence for the choice;
- the README's main job, ``digitcore train`` on mnist-mini (the recipe the CLI picks for
  6,000 images), scored on mnist-mini's 1,000 test images, and its training wall time;
- the first 5,000 training images split 3,750 / 1,250, the same recipe, on the 1,250.

    python benchmarks/bench_small_data.py --report --seeds 0,1,2 [--threads 2]
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _results  # noqa: E402
import digitcore  # noqa: E402
from digitcore.presets import augment_for, build, get_preset  # noqa: E402


def train(x, y, seed, *, hidden, lr, dropout, bs, epochs, aug, warmup=0.0, l2=0.0, l1=0.0):
    net = digitcore.Network([784, *hidden, 10], dropout=dropout, seed=seed)
    tr = digitcore.Trainer(net, optimizer="adam", lr=lr, batch_size=bs, epochs=epochs,
                           lr_schedule="cosine", warmup=warmup, seed=seed, verbose=0,
                           augment=aug, l2=l2, l1=l1)
    t = time.perf_counter()
    tr.fit(x, y)
    return net, time.perf_counter() - t


def preset_run(x, y, seed, aug="recipe"):
    """The default preset as `digitcore train` runs it on len(x) images."""
    if aug == "recipe":
        aug = augment_for(get_preset("default"), len(x))
    net, tr = build("default", seed, len(x), augment=aug, trainer_kw=dict(verbose=0))
    t = time.perf_counter()
    tr.fit(x, y)
    return net, time.perf_counter() - t, aug


def splits():
    (x, y), (xt, yt) = digitcore.load_dataset("mnist-mini")
    (xtr, ytr), (xv, yv) = digitcore.train_val_split(x, y, 0.25, seed=12345)
    return {"mini": (x, y, xt, yt), "val": (xtr, ytr, xv, yv),
            "split5k": (x[:3750], y[:3750], x[3750:5000], y[3750:5000])}


def report(args):
    digitcore.show_config()
    data = splits()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for seed in seeds:
        for task, aug in (("val", "recipe"), ("val", None), ("mini", "recipe"),
                          ("split5k", "recipe")):
            x, y, xe, ye = data[task]
            net, wall, used = preset_run(x, y, seed, aug)
            row = {"task": task, "seed": seed, "augment": used, "n_train": len(x),
                   "n_eval": len(xe), "accuracy": net.score(xe, ye), "train_seconds": wall,
                   "threads": digitcore.get_num_threads()}
            rows.append(row)
            print(json.dumps(row), flush=True)

    def pct(task, aug_on):
        return [100 * r["accuracy"] for r in rows
                if r["task"] == task and (r["augment"] is not None) == aug_on]

    claims = {}
    for name, task, on in (("val_recipe", "val", True), ("val_plain", "val", False),
                           ("readme_job", "mini", True), ("split5k", "split5k", True)):
        acc = pct(task, on)
        claims[f"{name}_acc_pct_mean"] = statistics.mean(acc)
        claims[f"{name}_acc_pct_range"] = [min(acc), max(acc)]
    walls = [r["train_seconds"] for r in rows if r["task"] == "mini"]
    claims["readme_job_train_s_range"] = [min(walls), max(walls)]
    claims["seeds"] = len(seeds)
    print(json.dumps(claims, indent=1))
    _results.save(__file__, claims, rows, args.json)
    ok = (claims["readme_job_acc_pct_range"][0] >= 97.0
          and claims["split5k_acc_pct_range"][0] >= 96.0)
    print(f"targets (README job >= 97% on mnist-mini's test images, 5k split >= 96% on the "
          f"1,250): {'met' if ok else 'MISSED'} for every seed")
    return 0


def tune(a):
    data = splits()
    xtr, ytr, xv, yv = data["split5k" if a.split5k else "val"]
    aug = json.loads(a.aug) if a.aug.startswith("{") else a.aug
    epochs = -(-a.samples // len(xtr))
    net, wall = train(xtr, ytr, a.seed, hidden=[int(h) for h in a.hidden.split(",")],
                      lr=a.lr, dropout=a.dropout, bs=a.bs, epochs=epochs,
                      aug=None if aug == "none" else aug, warmup=a.warmup, l2=a.l2, l1=a.l1)
    print(json.dumps({"args": vars(a), "epochs": epochs, "val": net.score(xv, yv),
                      "wall": round(wall, 1)}), flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=None,
                    help="default: 1 when tuning, the CLI's default (all cores) with --report")
    ap.add_argument("--hidden", default="512")
    ap.add_argument("--samples", type=int, default=240000)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--dropout", type=float, default=0.3)
    ap.add_argument("--bs", type=int, default=128)
    ap.add_argument("--aug", default="none")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split5k", action="store_true")
    ap.add_argument("--warmup", type=float, default=0.0)
    ap.add_argument("--l2", type=float, default=0.0)
    ap.add_argument("--l1", type=float, default=0.0)
    ap.add_argument("--json", default=None, help="--report's results file (default: the "
                    "committed benchmarks/results/bench_small_data.json)")
    a = ap.parse_args()
    if a.threads is not None:
        digitcore.set_num_threads(a.threads)
    elif not a.report:
        digitcore.set_num_threads(1)
    return report(a) if a.report else tune(a)


if __name__ == "__main__":
    raise SystemExit(main())
