"""Every figure the README and docs/ quote matches the committed benchmark results.

A figure is quoted as a Markdown link to its results file, titled with the claim's name:
``[106 MB](https://github.com/digitcore/digitcore/blob/main/benchmarks/results/bench_memory.json
"train_peak_rss_mb")`` (see benchmarks/_results.py). These tests read the repository's documents, so they need the
repository's README.md, docs/ and benchmarks/results/ beside tests/ (.ci/run copies them).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# [figure](<any prefix>benchmarks/results/<file>.json "claim"); documents use the absolute
# GitHub address (a relative one breaks the Sphinx build of the README), the test reads
# the file of the same name here
LINK = re.compile(r"\[([^\]]+)\]\((?:[^)\s]*/)?benchmarks/results/([\w.-]+\.json)\s+\"([^\"]+)\"\)")
NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def _documents():
    if not (ROOT / "README.md").is_file() or not (ROOT / "benchmarks" / "results").is_dir():
        pytest.skip(f"README.md and benchmarks/results/ are not in {ROOT} (copy the "
                    "repository's README.md, docs/ and benchmarks/ beside tests/)")
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def figure_mismatch(text, claim):
    """Why the figure `text` does not show `claim` (None if it does): each number of the
    text must equal the claim (a number, or a [low, high] pair for a range) rounded to the
    decimals the text shows."""
    numbers = NUMBER.findall(text)
    values = claim if isinstance(claim, list) else [claim]
    if len(numbers) != len(values):
        return f"{text!r} shows {len(numbers)} number(s), the claim has {len(values)}: {claim}"
    for shown, value in zip(numbers, values):
        plain = shown.replace(",", "")
        decimals = len(plain.split(".")[1]) if "." in plain else 0
        if f"{value:.{decimals}f}" != plain:
            return f"{text!r} shows {shown}, the committed result is {value:.{decimals}f} ({value})"
    return None


def _links():
    out = []
    for doc in _documents():
        for lineno, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            for m in LINK.finditer(line):
                out.append((f"{doc.relative_to(ROOT).as_posix()}:{lineno}", doc, *m.groups()))
    return out


def test_every_quoted_figure_matches_its_committed_result():
    problems, cache = [], {}
    for where, doc, text, target, key in _links():
        path = ROOT / "benchmarks" / "results" / target
        if not path.is_file():
            problems.append(f"{where}: {target} does not exist")
            continue
        claims = cache.setdefault(path, json.loads(path.read_text())["claims"])
        if key not in claims:
            problems.append(f"{where}: {path.name} has no claim {key!r}")
            continue
        why = figure_mismatch(text, claims[key])
        if why:
            problems.append(f"{where}: {key}: {why}")
    assert not problems, "\n".join(problems)


def test_results_files_say_what_ran_where_and_when():
    _documents()
    files = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
    for path in files:
        r = json.loads(path.read_text())
        for field in ("benchmark", "command", "date", "machine", "claims", "rows"):
            assert field in r, f"{path.name} lacks {field!r}"
        assert (ROOT / "benchmarks" / r["benchmark"]).is_file(), (path.name, r["benchmark"])
        assert r["command"].startswith(f"python benchmarks/{r['benchmark']}"), r["command"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r["date"]), r["date"]
        assert r["machine"].get("cpu") and r["machine"].get("cores"), r["machine"]


@pytest.mark.parametrize("text, claim, ok", [
    ("98.31%", 98.312, True), ("98.31%", 98.3, False), ("98.3%", 98.26, True),
    ("0.12-0.20 s", [0.118, 0.2], True), ("0.12-0.20 s", [0.118, 0.21], False),
    ("0.12-0.20 s", 0.12, False), ("~1.5x", 1.46, True), ("~1.5x", 1.44, False),
    ("10,000 images/s", 10000.4, True), ("104 MB", 104.6, False),
])
def test_figure_mismatch(text, claim, ok):
    assert (figure_mismatch(text, claim) is None) == ok


# A measured-looking figure: a number (or a range) with a unit of time, speed, size or a
# ratio/percentage. Such a figure in README.md or docs/ must be a link to a committed result
# (above), unless UNBACKED_OK says why it is not a measurement of digitcore.
FIGURE = re.compile(r"(?<![\w.\-/])\d[\d,]*(?:\.\d+)?(?:-\d[\d,]*(?:\.\d+)?)?"
                    r"(?:x\b|\s?(?:%|ms\b|s\b|µs|us\b|GFLOP/s|GF/s|MB\b|GB\b|KB\b|"
                    r"samples/s|images/s|min\b|minutes?\b|seconds?\b))")
# documents that are not claims about digitcore: the project's brief (reference systems'
# speeds and published results, measured before this code), and the dated performance log
# (history, each figure with the commit that measured it)
NOT_CLAIMS = {"docs/DESIGN.md", "docs/perf-log.md"}
# (document, figure as written, why it needs no benchmark)
UNBACKED_OK = {
    ("README.md", "10%"): "the issue's target for augmentation cost, not a measurement",
    ("README.md", "0.2%"): "the shape check's false-reject setting (FALSE_REJECT), not a "
                           "measurement",
    ("docs/ARCHITECTURE.md", "0.25 s"): "a design parameter: the work per C call it aims at",
    ("docs/ARCHITECTURE.md", "512 KB"): "a design parameter: the packed-B size limit",
}


def unlinked_figures(text, doc="README.md"):
    """(line number, figure) of each measured-looking figure in `text` that is not written
    as a link to a committed result, outside code blocks and inline code."""
    out, code = [], False
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            code = not code
            continue
        if code:
            continue
        plain = re.sub(r"`[^`]*`", "", LINK.sub("", line))
        for m in FIGURE.finditer(plain):
            if (doc, m.group(0)) not in UNBACKED_OK:
                out.append((lineno, m.group(0)))
    return out


def test_no_measured_figure_without_its_result():
    problems = []
    for doc in _documents():
        name = doc.relative_to(ROOT).as_posix()  # ("docs/DESIGN.md" on Windows too)
        if name in NOT_CLAIMS:
            continue
        problems += [f"{name}:{n}: {fig!r} is not a link to benchmarks/results (write it as "
                     f"[{fig}](.../benchmarks/results/<file>.json \"<claim>\"), or remove it)"
                     for n, fig in unlinked_figures(doc.read_text(encoding="utf-8"), name)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("text, found", [
    ("an epoch takes 0.12 s", ["0.12 s"]),
    ("2.5x faster, 98.31% and 120 GFLOP/s", ["2.5x", "98.31%", "120 GFLOP/s"]),
    ("0.10-0.12 s per epoch", ["0.10-0.12 s"]),
    ('[0.12 s](https://x/benchmarks/results/bench_train.json "b128_2t") per epoch', []),
    ("a 784-128-10 network, 6 epochs, 784 x 128 weights", []),
    ("inline `0.5 s` and\n```\n3.2x\n```\n", []),
])
def test_unlinked_figures_finds_measurements_only(text, found):
    assert [f for _, f in unlinked_figures(text)] == found


def test_a_partial_benchmark_run_does_not_replace_the_committed_results(tmp_path):
    """bench_gemm --quick, bench_train --configs, bench_accuracy --presets and the like
    wrote their few claims over the committed file, dropping figures the README quotes;
    bench_busy --busy 17 (or without the committed --n 60000), fewer --rounds, or a run
    with DIGITCORE_NUM_THREADS=1 wrote other measurements under the same claims."""
    if not (ROOT / "benchmarks" / "_results.py").is_file():
        pytest.skip(f"benchmarks/ is not in {ROOT}")
    import importlib.util

    spec = importlib.util.spec_from_file_location("_results", ROOT / "benchmarks" / "_results.py")
    results = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(results)
    committed = tmp_path / "bench_x.json"
    mine = dict(cmd="python benchmarks/bench_x.py", env={})  # (not this process's)
    assert results._default_path("bench_x", {"a": 1}, tmp_path, **mine) == committed
    committed.write_text(json.dumps({"claims": {"a": 1, "b": 2}}))
    assert results._default_path("bench_x", {"a": 3, "b": 4, "c": 5}, tmp_path,
                                 **mine) == committed
    assert results._default_path("bench_x", {"a": 3}, tmp_path, **mine) == \
        tmp_path / "bench_x-partial.json"
    # a run with other options measures something else under the same claims
    committed.write_text(json.dumps({"claims": {"a": 1}, "command":
                                     "python benchmarks/bench_x.py --rounds 9 --n 60000"}))
    for cmd, replaces in (("python benchmarks/bench_x.py --rounds 9 --n 60000", True),
                          ("python benchmarks/bench_x.py --n=60000 --rounds 11 --json=", True),
                          ("python benchmarks/bench_x.py --rounds 9 --n 60000 --data-dir d", True),
                          ("python benchmarks/bench_x.py --rounds 3 --n 60000", False),
                          ("python benchmarks/bench_x.py --n 60000", False),
                          ("python benchmarks/bench_x.py --rounds 9", False),
                          ("python benchmarks/bench_x.py --rounds 9 --n 60000 --busy 17", False),
                          ("python benchmarks/bench_x.py --rounds 9 --n 6000", False)):
        got = results._default_path("bench_x", {"a": 2}, tmp_path, cmd=cmd, env={})
        assert got == (committed if replaces else tmp_path / "bench_x-partial.json"), cmd
    # ... and so does one whose environment sets threads or kernels otherwise
    cmd = "python benchmarks/bench_x.py --rounds 9 --n 60000"
    assert results._default_path("bench_x", {"a": 2}, tmp_path, cmd=cmd,
                                 env={"DIGITCORE_NUM_THREADS": "1"}) != committed
    assert results.measured_env({"DIGITCORE_AVX512": "0", "OMP_WAIT_POLICY": "active",
                                 "DIGITCORE_DATA": "d", "KMP_DUPLICATE_LIB_OK": "True",
                                 "HOME": "/root"}) == {"DIGITCORE_AVX512": "0",
                                                       "OMP_WAIT_POLICY": "active"}
    committed.write_text(json.dumps({"claims": {"a": 1}, "command": cmd,
                                     "env": {"DIGITCORE_AVX512": "0"}}))
    assert results._default_path("bench_x", {"a": 2}, tmp_path, cmd=cmd,
                                 env={"DIGITCORE_AVX512": "0"}) == committed
    assert results._default_path("bench_x", {"a": 2}, tmp_path, cmd=cmd, env={}) != committed
