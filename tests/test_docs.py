"""The documentation users read: the README's Python examples run as written, and the
built API reference (Sphinx, docs/) lists every public name of the installed package.

The reference check reads the Sphinx inventory (objects.inv) of a docs build: the folder
in $DIGITCORE_DOCS_HTML, else ../docs/_build/html. .ci/run builds the docs first and sets
DIGITCORE_REQUIRE_DOCS=1, so a missing build fails there instead of skipping.
"""

from __future__ import annotations

import os
import re
import types
import zlib
from pathlib import Path

import pytest

import digitcore

HERE = Path(__file__).resolve().parent
REQUIRE_DOCS = os.environ.get("DIGITCORE_REQUIRE_DOCS") == "1"


def _readme():
    for p in (HERE.parent / "README.md", HERE / "README.md"):
        if p.exists():
            return p
    pytest.skip("README.md is not beside the tests (copy it with them)")


def readme_python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def expected_public_names() -> set[str]:
    """Every public name the package declares: digitcore.__all__ and each submodule's."""
    names = set()
    for name in digitcore.__all__:
        if name.startswith("__"):
            continue
        obj = getattr(digitcore, name)
        names.add(f"digitcore.{name}")
        if isinstance(obj, types.ModuleType):
            names.update(f"digitcore.{name}.{n}" for n in getattr(obj, "__all__", []))
    return names


def read_inventory(path: Path) -> set[str]:
    """Object names in a Sphinx objects.inv (version 2: 4 header lines, then zlib)."""
    data = path.read_bytes()
    header = data.split(b"\n", 4)
    assert header[0].startswith(b"# Sphinx inventory version 2"), header[0]
    body = zlib.decompress(header[4]).decode()
    return {line.split(" ", 1)[0] for line in body.splitlines()
            if re.match(r"\S+ py:\w+ ", line)}


@pytest.mark.slow
def test_readme_python_examples_run_as_written(tmp_path, monkeypatch):
    blocks = readme_python_blocks(_readme().read_text(encoding="utf-8"))
    assert len(blocks) >= 2, "the README lost its Python examples"
    if any("MLPClassifier" in b for b in blocks):
        pytest.importorskip("sklearn")
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "__readme__"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md python block {i + 1}", "exec"), ns)  # noqa: S102
    # what the first example promises: a trained network that reads digits, saved
    assert (tmp_path / "digits.safetensors").exists()
    net = digitcore.load_model(tmp_path / "digits.safetensors")
    assert net.score(ns["x_test"], ns["y_test"]) > 0.9


def test_every_public_name_is_in_the_api_reference():
    html = Path(os.environ.get("DIGITCORE_DOCS_HTML") or HERE.parent / "docs" / "_build" / "html")
    inv = html / "objects.inv"
    if not inv.exists():
        if REQUIRE_DOCS:
            pytest.fail(f"no docs build at {html} (DIGITCORE_REQUIRE_DOCS=1)")
        pytest.skip(f"no docs build at {html}: python -m sphinx -W -b html docs {html}")
    documented = read_inventory(inv)
    missing = sorted(expected_public_names() - documented)
    assert not missing, f"public names missing from the API reference: {missing}"


def test_expected_names_cover_the_package():
    # the reference check is only as good as this list: it must see submodules' names
    names = expected_public_names()
    assert "digitcore.Network" in names and "digitcore.metrics.confusion_matrix" in names
    assert "digitcore.trainer.EarlyStopping" in names
    assert not any(n.split(".")[-1].startswith("_") for n in names)
