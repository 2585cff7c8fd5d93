"""Committed benchmark results: every figure the README and docs/ quote comes from here.

Each benchmark ends with ``save(__file__, claims, rows)``, which writes
``benchmarks/results/<benchmark>.json`` (committed, not ignored):

    {"benchmark": "bench_train.py",
     "command": "python benchmarks/bench_train.py --repeats 5",   # exactly what ran
     "date": "2026-12-03T10:02:11Z",
     "machine": {"cpu": ..., "cores": 2, "platform": ..., "python": ..., "numpy": ...,
                 "digitcore": ..., "commit": ..., "kernel": "avx2", "openmp": true},
     "claims": {"b128_epoch_s_2t": 0.131, ...},   # the figures a document may quote
     "rows": [...]}                                # everything else the run measured

A document quotes a claim as a Markdown link whose text is the figure and whose title is
the claim's name, so the benchmark is named next to the number (the absolute address, as
Sphinx builds the README too and fails on a relative link to a non-page):

    [106 MB](https://github.com/digitcore/digitcore/blob/main/benchmarks/results/bench_memory.json "train_peak_rss_mb")

A claim is a number, or a [low, high] pair for a range ("0.12-0.20 s"), in the units the
document writes. tests/test_claims.py checks that every such link names a committed
results file and claim, and that the figure equals the claim rounded to the decimals the
document shows. Rerun the benchmark, commit its JSON, and update the figures together.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _commit():
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--",
                                "csrc", "src", "benchmarks/*.py", "setup.py",
                                "pyproject.toml", "tests/photo_digits.py"],
                               capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+local changes" if dirty else "")) or None


def machine():
    """Where and on what the benchmark ran."""
    import numpy as np

    import digitcore

    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__,
            "digitcore": digitcore.__version__, "commit": _commit(),
            "kernel": digitcore.kernel_path(), "gemm": digitcore._ops.gemm_tile(),
            "openmp": bool(digitcore._ops.have_openmp())}


def command(argv=None):
    argv = sys.argv if argv is None else argv
    script = Path(argv[0]).resolve()
    try:
        shown = script.relative_to(Path(__file__).resolve().parents[1])
    except ValueError:
        shown = script
    return " ".join(["python", str(shown), *argv[1:]])


# options that change how often or from where a benchmark measures, not what it measures
_FREE_OPTIONS = {"--json", "--data-dir", "--fashion-dir", "--rounds", "--repeats", "--verbose"}


def _options(cmd) -> dict:
    """The options of a recorded command line (``python benchmarks/x.py --a 1 --b=2 --c``
    -> {"--a": "1", "--b": "2", "--c": ""}), without _FREE_OPTIONS and without a trailing
    note such as "(with DIGITCORE_AVX512=0 in the environment)"."""
    if not isinstance(cmd, str):
        return {}
    import shlex

    try:
        words = shlex.split(cmd.split(" (", 1)[0])
    except ValueError:
        words = cmd.split()
    opts, key = {}, None
    for w in words[2:]:  # (after "python" and the script)
        if w.startswith("--"):
            key, _, value = w.partition("=")
            opts[key] = value
        elif key is not None:
            opts[key] = f"{opts[key]} {w}".strip()
    return {k: v for k, v in opts.items() if k not in _FREE_OPTIONS}


def _default_path(stem, claims, results=None, cmd=None):
    """Where a run without --json writes: the committed results file, unless the run lacks
    some of that file's claims (a partial run: --cases, --configs, --presets, --quick, a
    peer missing), which would drop figures the documents quote, or the run's options are
    not the committed run's (other than --rounds, --repeats and the like: --busy 17 or
    --n 1000 measures something else under the same claims); then
    ``<stem>-partial.json`` beside it, which is not committed. ``cmd``: this run's
    command line (default: :func:`command`)."""
    committed = (results or RESULTS) / f"{stem}.json"
    try:
        old = json.loads(committed.read_text())
        old_claims, old_cmd = old["claims"], old.get("command")
        set(old_claims)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return committed
    partial = committed.with_name(f"{stem}-partial.json")
    missing = sorted(set(old_claims) - set(claims))
    if missing:
        print(f"this run lacks {len(missing)} of the committed claims ({', '.join(missing[:3])}"
              f"{', ...' if len(missing) > 3 else ''}): results go to {partial.name}; "
              f"{committed.name} is left as it was (a full run replaces it; --json names a "
              f"file)")
        return partial
    mine, theirs = _options(command() if cmd is None else cmd), _options(old_cmd)
    if old_cmd is not None and mine != theirs:
        differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
        print(f"this run's options differ from the committed run's ({', '.join(differ)}; "
              f"it ran: {old_cmd}): results go to {partial.name}; {committed.name} is left "
              f"as it was (--json names a file)")
        return partial
    return committed


def save(benchmark, claims, rows, path=None):
    """Write the results file of `benchmark` (its __file__); returns the path written."""
    name = Path(benchmark).name
    bad = {k: v for k, v in claims.items()
           if not (isinstance(v, (int, float)) or (isinstance(v, list) and len(v) == 2))}
    if bad:
        raise ValueError(f"claims must be numbers or [low, high] pairs: {bad}")
    out = {"benchmark": name, "command": command(),
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "machine": machine(), "claims": claims, "rows": rows}
    path = Path(path) if path else _default_path(Path(name).stem, claims)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path}")
    return path
