"""Accuracy on small data, for tuning: mnist-mini's 6,000 training images split
4,500 / 1,500 (validation; the test images are not touched), or the first 5,000 split
3,750 / 1,250 (--split5k). One JSON line per run.

    python benchmarks/bench_small_data.py --aug full [--samples 240000] [--seed 0]
"""
import sys, time, json, argparse
import numpy as np, digitcore
ap = argparse.ArgumentParser()
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
a = ap.parse_args()
digitcore.set_num_threads(1)
(x, y), (xt, yt) = digitcore.load_dataset("mnist-mini")
if a.split5k:
    xtr, ytr, xv, yv = x[:3750], y[:3750], x[3750:5000], y[3750:5000]
else:
    (xtr, ytr), (xv, yv) = digitcore.train_val_split(x, y, 0.25, seed=12345)
aug = json.loads(a.aug) if a.aug.startswith("{") else a.aug
epochs = -(-a.samples // len(xtr))
net = digitcore.Network([784, *map(int, a.hidden.split(",")), 10], dropout=a.dropout, seed=a.seed)
tr = digitcore.Trainer(net, optimizer="adam", lr=a.lr, batch_size=a.bs, epochs=epochs,
                       lr_schedule="cosine", warmup=a.warmup, seed=a.seed, verbose=0, augment=aug, l2=a.l2)
t = time.perf_counter(); tr.fit(xtr, ytr); wall = time.perf_counter() - t
print(json.dumps({"args": vars(a), "epochs": epochs, "val": net.score(xv, yv), "wall": round(wall, 1)}), flush=True)
