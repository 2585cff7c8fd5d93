#!/usr/bin/env python3
"""Build the bundled "mnist-mini" subset shipped in src/digitcore/_data/.

The subset is the first N_TRAIN training and first N_TEST test examples of the
official MNIST files, in the official order, written as gzip-compressed IDX
(level 9, no name, mtime 0). The script verifies the source files against the
official SHA-256s, writes the four subset files and README.md (provenance,
checksums, licence), checks the size budget, and prints the checksum table that
belongs in ``digitcore.datasets._MINI_SHA256``.

Usage::

    python scripts/make_mnist_mini.py [--src /work/shared/data/mnist] \
        [--out src/digitcore/_data] [--n-train 6000] [--n-test 1000]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from digitcore.idx import idx_header, read_idx, sha256_idx, write_idx  # noqa: E402

OFFICIAL_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
PREFIX = "mnist-mini-"
BUDGET = 1_500_000  # bytes, all four compressed files together


def find_source(src: Path, name: str) -> Path:
    for cand in (src / name, src / f"{name}.gz"):
        if cand.is_file():
            return cand
    raise SystemExit(f"error: {name}[.gz] not found in {src}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=ROOT.parent / "shared/data/mnist")
    ap.add_argument("--out", type=Path, default=ROOT / "src/digitcore/_data")
    ap.add_argument("--n-train", type=int, default=6000)
    ap.add_argument("--n-test", type=int, default=1000)
    args = ap.parse_args(argv)

    counts = {"train": args.n_train, "t10k": args.n_test}
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    total = 0
    for name, official in OFFICIAL_SHA256.items():
        src = find_source(args.src, name)
        got = sha256_idx(src)
        if got != official:
            raise SystemExit(f"error: {src} has SHA-256 {got}, expected the official {official}")
        n = counts[name.split("-")[0]]
        full = read_idx(src)
        if n > len(full):
            raise SystemExit(f"error: asked for {n} examples but {src} has {len(full)}")
        subset = full[:n]
        dest = args.out / f"{PREFIX}{name}.gz"
        write_idx(dest, subset, compresslevel=9)
        raw_sha = hashlib.sha256(idx_header(subset) + subset.tobytes()).hexdigest()
        assert sha256_idx(dest) == raw_sha
        size = dest.stat().st_size
        total += size
        rows.append((name, dest.name, n, subset.shape, size, raw_sha))
        print(f"{dest.name}: {n} examples, shape {subset.shape}, {size} bytes gz, "
              f"sha256 (decompressed) {raw_sha}")
    print(f"total compressed: {total} bytes (budget {BUDGET})")
    if total > BUDGET:
        raise SystemExit("error: over the size budget; lower --n-train / --n-test")

    write_readme(args.out / "README.md", rows, total, args.n_train, args.n_test)
    print("\n_MINI_SHA256 = {")
    for name, fname, *_, sha in rows:
        print(f'    "{name}": "{sha}",')
    print("}")
    return 0


def write_readme(path: Path, rows, total: int, n_train: int, n_test: int) -> None:
    lines = [
        "# Bundled data: mnist-mini",
        "",
        "A small, deterministic subset of MNIST shipped inside digitcore so that",
        "`digitcore train` and the tests work offline. Load it with",
        "`digitcore.load_dataset(\"mnist-mini\")`.",
        "",
        "## Composition",
        "",
        f"- training set: the first {n_train:,} examples of the official training files",
        "  (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`), in the official order;",
        f"- test set: the first {n_test:,} examples of the official test files",
        "  (`t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`), in the official order.",
        "",
        "Images are 28x28 uint8, labels uint8 0-9, stored as gzip-compressed IDX",
        f"(level 9, empty name, mtime 0). Total size: {total:,} bytes.",
        "",
        "## Checksums",
        "",
        "SHA-256 of the decompressed IDX content (gzip bytes may differ between zlib",
        "versions; digitcore verifies the decompressed content on load):",
        "",
        "| file | examples | shape | gz bytes | SHA-256 (decompressed) |",
        "|---|---|---|---|---|",
    ]
    for _name, fname, n, shape, size, sha in rows:
        lines.append(f"| `{fname}` | {n} | {shape} | {size} | `{sha}` |")
    lines += [
        "",
        "## Provenance",
        "",
        "Produced by `scripts/make_mnist_mini.py` from the four official MNIST files,",
        "which the script first checks against the official SHA-256s of their",
        "decompressed content:",
        "",
    ]
    for name, sha in OFFICIAL_SHA256.items():
        lines.append(f"- `{name}` `{sha}`")
    lines += [
        "",
        "## Licence and attribution",
        "",
        "The MNIST database is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges",
        "(http://yann.lecun.com/exdb/mnist/). It is distributed under the Creative Commons",
        "Attribution-Share Alike 3.0 licence (CC BY-SA 3.0,",
        "https://creativecommons.org/licenses/by-sa/3.0/). This subset is a modified",
        "version only in that it keeps the first N examples of each official file; it is",
        "distributed under the same licence, with attribution to the authors above.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
