"""Properties of the C sources that no compiler on this machine checks.

Windows wheels are built with MSVC's /openmp, which implements OpenMP 2.0 only: a newer
construct (``atomic write``, tasks, ``collapse``, min/max reductions, ...) compiles here
with GCC and fails the Windows build (C3005).
"""

import re
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parent.parent / "csrc"

# OpenMP past 2.0, as it appears after "#pragma omp" or in a clause
NEWER_OPENMP = re.compile(
    r"#\s*pragma\s+omp\s+(atomic\s+(read|write|update|capture)|task|taskwait|taskgroup|"
    r"taskloop|simd|declare|cancel|teams|target|distribute|ordered\s+depend)\b|"
    r"\bcollapse\s*\(|\breduction\s*\(\s*(min|max)\b|\bschedule\s*\(\s*auto\b|"
    r"\bproc_bind\s*\(|\bdepend\s*\(")


def sources():
    if not CSRC.is_dir():
        pytest.skip("the C sources are not beside the tests (an installed test run)")
    return sorted(CSRC.glob("**/*.[ch]"))


def test_openmp_stays_within_what_msvc_compiles():
    found = []
    for path in sources():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if NEWER_OPENMP.search(line):
                found.append(f"{path.name}:{n}: {line.strip()}")
    assert found == []


def test_the_check_finds_what_it_looks_for():
    for line in ("#pragma omp atomic write", "#pragma omp parallel for collapse(2)",
                 "#pragma omp parallel for reduction(max : m)", "#  pragma omp task"):
        assert NEWER_OPENMP.search(line), line
    for line in ("#pragma omp atomic", "#pragma omp critical(dc_x)",
                 "#pragma omp parallel for schedule(dynamic, 4) reduction(+ : n)"):
        assert not NEWER_OPENMP.search(line), line
