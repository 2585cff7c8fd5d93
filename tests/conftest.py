"""Shared test configuration.

Tests run against the *installed* package; CI sets DIGITCORE_EXPECT_INSTALLED=1 and
checks that digitcore is imported from site-packages, not from a source tree.

Strict skips: with DIGITCORE_STRICT_SKIPS=1 (CI sets it, in .ci/run and .ci/sanitize) every
skipped test fails, unless the skip matches an entry of ALLOWED_SKIPS below. A skip means a
check did not run; in CI that is a failure unless someone wrote down why it is fine.

To allow a new skip (say a test that needs an optional package CI cannot install), add an
AllowedSkip to ALLOWED_SKIPS with: a glob on the test id as pytest prints it without its
folder ("test_export.py::test_onnx*"), a regular expression found in the skip's reason,
why CI may skip it, and optionally ``when``, a function that says whether the allowance
applies on this machine. Prefer making CI install what the test needs (pyproject's test
extra, .ci/run) over allowing its skip. xfail is not a skip and is not affected.
"""

import contextlib
import dataclasses
import fnmatch
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path

# scikit-learn's check_array_api_input (in test_estimator's estimator checks) runs only when
# this is set before SciPy is first imported; otherwise it skips.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

STRICT_SKIPS = os.environ.get("DIGITCORE_STRICT_SKIPS", "") == "1"


@dataclasses.dataclass(frozen=True)
class AllowedSkip:
    test: str                   # fnmatch glob on "test_file.py::test_name[params]"
    reason: str                 # regex searched for in the skip reason
    why: str                    # why CI may skip it (printed in the summary)
    when: Callable[[], bool] = lambda: True   # does the allowance apply here?


def _not_root():
    return sys.platform != "linux" or os.geteuid() != 0


ALLOWED_SKIPS = (
    AllowedSkip("test_ops.py::test_adam_avx2_and_generic_paths_give_the_same_bits",
                r"needs a CPU with AVX2",
                "compares the AVX2 build with the portable one; a CPU without AVX2 (CI's qemu "
                "Nehalem step) has only the portable path",
                when=lambda: not __import__("digitcore._ops", fromlist=["_ops"]).cpu_has_avx2()),
    AllowedSkip("*avx512*", r"needs a CPU with AVX-512",
                "compare the AVX-512 kernels' bits with the AVX2 ones; a CPU without AVX-512 "
                "(most AMD before Zen 4, many laptops, CI's qemu Nehalem step) runs only the "
                "AVX2 ones",
                when=lambda: not __import__("digitcore._ops", fromlist=["_ops"]).cpu_has_avx512()),
    AllowedSkip("test_faults.py::*", r"mounting a tmpfs needs root on Linux",
                "a real full disk needs mount(2); GitHub's runners are not root (CI here is)",
                when=_not_root),
    AllowedSkip("test_atomic.py::test_a_directory_without_write_permission_is_named",
                r"which root bypasses",
                "root may create files in a directory without write permission; CI here is "
                "root, a user's machine and GitHub's runners are not",
                when=lambda: not _not_root()),
    AllowedSkip("*", r"full MNIST files not (available|present)",
                "the suite must pass without the 11 MB MNIST files; CI sets "
                "DIGITCORE_SHARED_MNIST, and then they must be there",
                when=lambda: not os.environ.get("DIGITCORE_SHARED_MNIST")),
    AllowedSkip("test_docs.py::test_every_public_name_is_in_the_api_reference",
                r"no docs build at",
                "needs a Sphinx build of docs/ (minutes); .ci/run builds it and sets "
                "DIGITCORE_REQUIRE_DOCS=1, and then a missing build fails",
                when=lambda: os.environ.get("DIGITCORE_REQUIRE_DOCS") != "1"),
    AllowedSkip("test_openmp_coexist.py::*", r"under the ASan preload",
                "torch and scikit-learn under the sanitizer runtime's preload are not what "
                "users load; the test runs in .ci/run's plain test run",
                when=lambda: os.environ.get("DIGITCORE_SANITIZED") == "1"),
    AllowedSkip("test_package.py::*", r"only checked when CI says|source tree run",
                "these check the installed package; a source-tree run (PYTHONPATH=src) has "
                "none, and CI, which installs the wheel, sets DIGITCORE_EXPECT_INSTALLED=1",
                when=lambda: os.environ.get("DIGITCORE_EXPECT_INSTALLED") != "1"),
    AllowedSkip("test_estimator.py::test_sklearn_estimator_checks*"
                "check_classifiers_multilabel_output_format_decision_function*",
                r"does not have a decision_function method",
                "scikit-learn's own MLPClassifier has no decision_function either, and its "
                "check skips itself for such estimators"),
)


def _shared_mnist():
    env = os.environ.get("DIGITCORE_SHARED_MNIST")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [p / "shared" / "data" / "mnist" for p in here.parents]
    for c in candidates:
        if (c / "train-images-idx3-ubyte.gz").exists():
            return c
    return None


SHARED_MNIST = _shared_mnist()


@pytest.fixture
def shared_mnist():
    """Folder with the full MNIST files; skips the test when they are absent."""
    if SHARED_MNIST is None:
        pytest.skip("full MNIST files not available (set DIGITCORE_SHARED_MNIST)")
    return SHARED_MNIST


@pytest.fixture
def rng(request):
    """A seeded generator; the seed is printed when a test fails (in the captured output)."""
    seed = int(os.environ.get("DIGITCORE_TEST_SEED", "12345"))
    print(f"[{request.node.name}] seed={seed}")
    return np.random.default_rng(seed)


@contextlib.contextmanager
def _kernel_threads(n):
    from digitcore import _ops

    old = _ops.get_num_threads()
    _ops.set_num_threads(n)
    try:
        yield
    finally:
        _ops.set_num_threads(old)


@pytest.fixture
def num_threads():
    """``with num_threads(n):`` runs the block with the kernels on n threads, then puts the
    count back (also when the block fails)."""
    return _kernel_threads


@pytest.fixture
def hide_pillow(monkeypatch):
    """A function that, called, makes `import PIL` (and its submodules) fail for the rest
    of the test, as on an installation without Pillow (digitcore imports it lazily)."""
    import builtins

    real_import = builtins.__import__

    def no_pil(name, *args, **kwargs):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("No module named 'PIL'")
        return real_import(name, *args, **kwargs)

    return lambda: monkeypatch.setattr(builtins, "__import__", no_pil)


@pytest.fixture
def sigint_deliverable():
    """SIGINT handled as Python handles it by default (KeyboardInterrupt), for a test that
    sends it to itself or to a process it starts. A run started where SIGINT is ignored (a
    background job of a non-interactive shell: `nohup pytest ... &` in a script) ignores it
    too, and so does every process the run starts, so the signal would never arrive. A
    handler, unlike an ignored signal, is not passed on to a started program: it begins
    with the default action, and Python's KeyboardInterrupt."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's cache or network from tests."""
    monkeypatch.setenv("DIGITCORE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("DIGITCORE_DATA", raising=False)


# ---------------------------------------------------------------------------- strict skips

def _test_id(nodeid):
    path, _, rest = nodeid.partition("::")
    return f"{os.path.basename(path)}::{rest}" if rest else os.path.basename(path)


def _skip_reason(report):
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return longrepr[2].removeprefix("Skipped: ")
    return str(longrepr)


def allowed_skip(test_id, reason):
    """The ALLOWED_SKIPS entry that allows this skip here, or None."""
    for entry in ALLOWED_SKIPS:
        if (fnmatch.fnmatchcase(test_id, entry.test) and re.search(entry.reason, reason)
                and entry.when()):
            return entry
    return None


_allowed_seen = []


def _allowance(report):
    """(test id, reason, the AllowedSkip or None) of a strict run's skip, else None."""
    if not (STRICT_SKIPS and report.skipped) or hasattr(report, "wasxfail"):
        return None
    test_id, reason = _test_id(report.nodeid), _skip_reason(report)
    return test_id, reason, allowed_skip(test_id, reason)


def _enforce(report):
    found = _allowance(report)
    if found is None or found[2] is not None:
        return
    test_id, reason, _ = found
    report.outcome = "failed"
    report.longrepr = (f"{test_id} skipped ({reason}) and DIGITCORE_STRICT_SKIPS=1 makes a skip "
                       "a failure: make it run (install what it needs), or add an AllowedSkip "
                       "with the reason to ALLOWED_SKIPS in tests/conftest.py")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _enforce(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield          # a module-level importorskip skips a whole file at collection
    _enforce(outcome.get_result())


def _note(report):
    # the reports as the process that prints the summary sees them (with pytest-xdist,
    # the controller: the workers made them)
    found = _allowance(report)
    if found is not None and found[2] is not None:
        _allowed_seen.append((found[0], found[1], found[2].why))


def pytest_runtest_logreport(report):
    _note(report)


def pytest_collectreport(report):
    _note(report)


def pytest_terminal_summary(terminalreporter):
    if STRICT_SKIPS:
        terminalreporter.write_line(
            f"DIGITCORE_STRICT_SKIPS=1: {len(_allowed_seen)} allowed skip(s)")
        for test_id, reason, why in _allowed_seen:
            terminalreporter.write_line(f"  {test_id}: {reason} (allowed: {why})")
