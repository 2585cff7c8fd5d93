"""Test accuracy and wall time of the documented presets on MNIST.

    python benchmarks/bench_accuracy.py [--presets default,best,tutorial,mini,augmented]
                                        [--seeds 0,1,2]
    python benchmarks/bench_accuracy.py --presets committee [--seeds 0]

Trains on the 60,000 MNIST training images (the 6,000-image mnist-mini for `mini`) and
reports accuracy on the 10,000 test images (1,000 for mini), with the wall time of
training, for each seed, then the mean and spread (min, max) per preset, against the
targets from the project's issues. The presets were chosen on validation splits of the
training images; this benchmark only reports their test accuracy. A preset with `members`
(`committee`) trains that many networks, seeds SEED, SEED+1, ..., one after another; its
time is theirs together, its accuracy their Committee's, and each member's own test
accuracy is reported beside it. A preset with `tta` (test-time augmentation) is scored
with it (`model.score(x, y, tta=...)`, as `digitcore train` scores it), and also without.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _data import shared_mnist  # noqa: E402
import _results  # noqa: E402
import digitcore  # noqa: E402
from digitcore.committee import Committee  # noqa: E402
from digitcore.presets import build_committee, get_preset, members_of, tta_of  # noqa: E402

TARGETS = {  # preset: (min accuracy, max wall seconds) -- None: report only
    "default": (0.975, 15.0),
    "best": (0.986, 30.0),
    "augmented": (0.993, 180.0),
    "committee": (0.995, 600.0),
    "tutorial": (None, None),
    "mini": (0.97, None),
}


def run(preset_name, data, seed, verbose):
    (x, y), (xt, yt) = data
    # the recipe `digitcore train` runs on len(x) images (epochs_for, augment_for)
    name = "default" if preset_name == "mini" else preset_name
    runs = build_committee(name, seed, len(x), members_of(get_preset(name)),
                           trainer_kw=dict(verbose=verbose))
    t = time.perf_counter()
    for _, tr in runs:
        tr.fit(x, y)
    wall = time.perf_counter() - t
    net, tr = runs[0]
    tta = tta_of(get_preset(name))
    model = net if len(runs) == 1 else Committee([m for m, _ in runs])
    row = {"preset": preset_name, "network": repr(model), "epochs": tr.epochs, "seed": seed,
           "augment": None if tr.augment is None else tr.augment.to_dict(),
           "tta": tta, "test_accuracy": model.score(xt, yt, tta=tta), "train_seconds": wall,
           "threads": digitcore.get_num_threads(), "kernel": digitcore.kernel_path()}
    if tta:
        row["test_accuracy_without_tta"] = model.score(xt, yt)
    if len(runs) > 1:
        row.update(members=len(runs), member_seeds=[seed + j for j in range(len(runs))],
                   member_test_accuracy=[m.score(xt, yt) for m, _ in runs])
        if tta:
            row["member_test_accuracy_with_tta"] = [m.score(xt, yt, tta=tta) for m, _ in runs]
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=shared_mnist())
    ap.add_argument("--presets", default="default,best,tutorial,mini")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    ap.add_argument("--verbose", type=int, default=2)
    ap.add_argument("--json", default=None, help="results file (default: the committed "
                    "benchmarks/results/bench_accuracy.json)")
    args = ap.parse_args()
    digitcore.show_config()
    full = digitcore.load_mnist(args.data_dir, download=False)
    mini = digitcore.load_dataset("mnist-mini")
    rows, ok = [], True
    seeds = [int(v) for v in args.seeds.split(",")]
    for name, seed in ((n, sd) for n in args.presets.split(",") for sd in seeds):
        r = run(name, mini if name == "mini" else full, seed, args.verbose)
        acc_t, time_t = TARGETS.get(name, (None, None))
        verdict = []
        if acc_t is not None:
            verdict.append(f"accuracy target {acc_t:.1%}: "
                           f"{'met' if r['test_accuracy'] >= acc_t else 'MISSED by %.2f pt' % (100 * (acc_t - r['test_accuracy']))}")
        if time_t is not None:
            verdict.append(f"time target {time_t:.0f} s: "
                           f"{'met' if r['train_seconds'] <= time_t else 'MISSED by %.1f s' % (r['train_seconds'] - time_t)}")
        ok &= all("MISSED" not in v for v in verdict)
        r["verdict"] = verdict
        rows.append(r)
        print(f"{name:9s} {r['network']}: {r['test_accuracy']:.2%} in {r['train_seconds']:.1f} s "
              f"({r['epochs']} epochs, seed {r['seed']}); " + "; ".join(verdict), flush=True)
        if r["tta"]:
            print(f"          scored with test-time augmentation {r['tta']!r}; without it "
                  f"{r['test_accuracy_without_tta']:.2%}", flush=True)
        if "member_test_accuracy" in r:
            print("          its members alone: " + ", ".join(
                f"{a:.2%}" for a in r["member_test_accuracy"]), flush=True)
        if "member_test_accuracy_with_tta" in r:
            print(f"          its members alone with {r['tta']!r}: " + ", ".join(
                f"{a:.2%}" for a in r["member_test_accuracy_with_tta"]), flush=True)
    claims = {}
    for r in rows:
        claims[f"{r['preset']}_seed{r['seed']}_accuracy_pct"] = 100 * r["test_accuracy"]
        claims[f"{r['preset']}_seed{r['seed']}_train_s"] = r["train_seconds"]
        if r["tta"]:
            claims[f"{r['preset']}_seed{r['seed']}_accuracy_without_tta_pct"] = (
                100 * r["test_accuracy_without_tta"])
        if "member_test_accuracy" in r:
            accs = [100 * a for a in r["member_test_accuracy"]]
            claims[f"{r['preset']}_seed{r['seed']}_member_accuracy_range_pct"] = [min(accs),
                                                                                 max(accs)]
    for name in dict.fromkeys(r["preset"] for r in rows):
        accs = [100 * r["test_accuracy"] for r in rows if r["preset"] == name]
        secs = [r["train_seconds"] for r in rows if r["preset"] == name]
        if len(accs) > 1:
            claims[f"{name}_mean_accuracy_pct"] = sum(accs) / len(accs)
            claims[f"{name}_accuracy_range_pct"] = [min(accs), max(accs)]
            claims[f"{name}_mean_train_s"] = sum(secs) / len(secs)
            print(f"{name:9s} {len(accs)} seeds: mean {sum(accs) / len(accs):.2f}%, "
                  f"{min(accs):.2f}-{max(accs):.2f}%, mean {sum(secs) / len(secs):.1f} s")
    _results.save(__file__, claims, rows, args.json)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
