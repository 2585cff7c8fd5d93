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

import contextlib
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
            "openmp": bool(digitcore._ops.have_openmp()), "peers": _peers(), "blas": _blas()}


def _peers():
    """The installed versions of the systems benchmarks compare with (not imported)."""
    from importlib import metadata

    found = {}
    for name in ("torch", "scikit-learn", "scipy", "threadpoolctl"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def _blas():
    """NumPy's BLAS as threadpoolctl sees it (library, version, CPU kernel), if it can."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return [{k: info.get(k) for k in ("internal_api", "version", "architecture")}
            for info in threadpool_info() if info.get("user_api") == "blas"]


def command(argv=None):
    argv = sys.argv if argv is None else argv
    script = Path(argv[0]).resolve()
    try:
        shown = script.relative_to(Path(__file__).resolve().parents[1])
    except ValueError:
        shown = script
    return " ".join(["python", str(shown), *argv[1:]])


# options that say where the data is or what is printed, not what is measured
_FREE_OPTIONS = {"--json", "--data-dir", "--fashion-dir", "--verbose", "--cache", "--workers"}
# options that say how often: a run with fewer than the committed run's may not replace it
# (a [low, high] claim over the rounds, a median of fewer, would be another figure)
_COUNT_OPTIONS = {"--rounds", "--repeats"}
# environment variables that change what a benchmark measures (recorded in "env")
_ENV_NAMES = {"DIGITCORE_AVX512", "DIGITCORE_KERNEL", "DIGITCORE_NUM_THREADS", "DIGITCORE_TEAM"}
_ENV_PREFIXES = ("OMP_", "GOMP_", "KMP_", "OPENBLAS_", "MKL_")
_ENV_IGNORED = {"KMP_DUPLICATE_LIB_OK", "KMP_INIT_AT_FORK"}  # (scikit-learn's import sets them)


def measured_env(environ=None) -> dict:
    """The variables of ``environ`` (default: this process's) that change what the
    benchmark measures: digitcore's kernel, thread and team settings and the OpenMP and
    BLAS ones."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in sorted(environ.items())
            if (k in _ENV_NAMES or k.startswith(_ENV_PREFIXES)) and k not in _ENV_IGNORED}


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


def _fewer(mine: str | None, theirs: str | None) -> bool:
    """Whether a count option's value ``mine`` is below the committed ``theirs`` (or
    either is not given: the default is not known from a command line)."""
    try:
        return int(mine) < int(theirs)
    except (TypeError, ValueError):
        return mine != theirs


def _differences(mine: dict, theirs: dict) -> list:
    return sorted(k for k in mine.keys() | theirs.keys()
                  if (_fewer(mine.get(k), theirs.get(k)) if k in _COUNT_OPTIONS
                      else mine.get(k) != theirs.get(k)))


def _default_path(stem, claims, results=None, cmd=None, env=None):
    """Where a run without --json writes: the committed results file, unless the run is
    not a rerun of the committed one; then ``<stem>-partial.json`` beside it, which is
    not committed. Not a rerun: it lacks some of the committed claims (--cases,
    --configs, --presets, --quick, a peer missing), which would drop figures the
    documents quote; or its options are not the committed command's (--busy 17 or
    --n 1000 measure something else under the same claims), --rounds and --repeats
    excepted when at least as many; or its environment's measured_env is not the
    committed run's (DIGITCORE_NUM_THREADS=1, DIGITCORE_AVX512=0). ``cmd`` and ``env``:
    this run's command line and measured_env (default: :func:`command`, this process's)."""
    committed = (results or RESULTS) / f"{stem}.json"
    try:
        old = json.loads(committed.read_text())
        old_claims, old_cmd, old_env = old["claims"], old.get("command"), old.get("env", {})
        set(old_claims)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return committed
    partial = committed.with_name(f"{stem}-partial.json")
    missing = sorted(set(old_claims) - set(claims))
    env = measured_env() if env is None else env
    why = None
    if missing:
        why = (f"this run lacks {len(missing)} of the committed claims "
               f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
    elif old_cmd is not None and (differ := _differences(
            _options(command() if cmd is None else cmd), _options(old_cmd))):
        why = (f"this run's options are not the committed run's ({', '.join(differ)}; it "
               f"ran: {old_cmd})")
    elif env != old_env:
        differ = sorted(k for k in env.keys() | old_env.keys() if env.get(k) != old_env.get(k))
        why = (f"this run's environment is not the committed run's ({', '.join(differ)}; "
               f"it ran with {old_env or 'none of them set'})")
    if why is None:
        return committed
    print(f"{why}: results go to {partial.name}; {committed.name} is left as it was "
          f"(--json names a file)")
    return partial


def destination(stem, claim_names, json=None):
    """(results file, whether it is the committed one) for a run that will claim
    ``claim_names``: ``json`` when given, else :func:`_default_path`'s choice. Scripts
    that also write a bundled file (a model) write it only when this run is the
    committed one."""
    path = Path(json) if json else _default_path(stem, dict.fromkeys(claim_names))
    return path, path.resolve() == (RESULTS / f"{stem}.json").resolve()


def best_seconds(rows, row, same):
    """Each system's fastest time (``rows[i]["seconds"]``) over the rows ``same`` as
    ``row`` (a case key) at ``row``'s thread count or fewer: the time a user with that
    many cores would get from it (a peer slower on 2 threads than on 1 runs on 1)."""
    best = {}
    for o in rows:
        if same(o) == same(row) and o["threads"] <= row["threads"]:
            for k, v in o["seconds"].items():
                best[k] = min(best.get(k, v), v)
    return best


def save(benchmark, claims, rows, path=None):
    """Write the results file of `benchmark` (its __file__); returns the path written."""
    name = Path(benchmark).name
    bad = {k: v for k, v in claims.items()
           if not (isinstance(v, (int, float)) or (isinstance(v, list) and len(v) == 2))}
    if bad:
        raise ValueError(f"claims must be numbers or [low, high] pairs: {bad}")
    out = {"benchmark": name, "command": command(),
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "machine": machine(), "env": measured_env(), "claims": claims, "rows": rows}
    path = Path(path) if path else _default_path(Path(name).stem, claims)
    path.parent.mkdir(parents=True, exist_ok=True)
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(out, indent=1) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    print(f"wrote {path}")
    return path
