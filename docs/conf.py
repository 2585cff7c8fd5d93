"""Sphinx configuration: a guide from the README, the tutorial notebook (executed on every
build, so it cannot rot) and an API reference generated from the package itself.

Build (what .ci/run does; warnings are errors):
    pip install ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html

The reference lists every name in ``digitcore.__all__`` and every name in the ``__all__``
of each public submodule, read from the installed package at build time: a name someone
adds to the package appears without anyone editing these pages.
"""

from __future__ import annotations

import types
from pathlib import Path

import digitcore

project = "digitcore"
author = "digitcore developers"
copyright = "digitcore developers, MIT licence"
version = release = digitcore.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_nb",
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
# only these pages: the developer notes beside them in docs/ (ARCHITECTURE.md, RELEASING.md,
# ...) stay in the repository, and a new note there cannot break the build
include_patterns = ["index.md", "guide.md", "tutorial.ipynb", "reference/*.rst"]
exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints"]
html_theme = "pydata_sphinx_theme"
html_title = f"digitcore {release}"
html_theme_options = {"navigation_with_keys": False}

autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
numpydoc_show_class_members = False   # autodoc lists the members once
numpydoc_class_members_toctree = False
numpydoc_validation_checks: set[str] = set()
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]   # the README's headings start at level 1 on its page

# the tutorial runs on every build; an error in a cell fails the build
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_timeout = 600
nb_execution_in_temp = True   # the files the tutorial writes stay out of the source tree

intersphinx_mapping = {}  # offline: no inventories fetched


def public_api():
    """(top-level names, {submodule: its __all__}) as the package declares them."""
    top, modules = [], {}
    for name in sorted(digitcore.__all__):
        obj = getattr(digitcore, name)
        if isinstance(obj, types.ModuleType):
            modules[name] = sorted(getattr(obj, "__all__", []))
        elif not name.startswith("__"):
            top.append(name)
    return top, modules


def _directive(qualname, obj):
    if isinstance(obj, type):
        return "autoclass"
    if callable(obj):
        return "autofunction"
    return "autodata"


def write_reference(app):
    top, modules = public_api()
    out = Path(app.srcdir) / "reference"
    out.mkdir(exist_ok=True)
    lines = ["API reference", "=============", "",
             "Generated from the installed package: every name in ``digitcore.__all__``,",
             "then every public submodule with the names in its ``__all__``.", "",
             ".. toctree::", "   :maxdepth: 1", "", "   toplevel"]
    lines += [f"   {m}" for m in modules] + [""]
    pages = {"index": "\n".join(lines)}
    body = ["Top-level names", "===============", "", ".. currentmodule:: digitcore", ""]
    for name in top:
        obj = getattr(digitcore, name)
        body += [f".. {_directive(name, obj)}:: {name}"]
        body += ["   :members:", ""] if isinstance(obj, type) else [""]
    pages["toplevel"] = "\n".join(body)
    for m, names in modules.items():
        title = f"digitcore.{m}"
        pages[m] = "\n".join([title, "=" * len(title), "", f".. automodule:: digitcore.{m}",
                              "   :no-members:", ""]
                             + [x for n in names for x in _module_entry(m, n)])
    for stem, text in pages.items():
        path = out / f"{stem}.rst"
        if not path.exists() or path.read_text() != text:   # unchanged files keep their mtime
            path.write_text(text)
    for stale in out.glob("*.rst"):
        if stale.stem not in pages:
            stale.unlink()


def _module_entry(module, name):
    obj = getattr(getattr(digitcore, module), name)
    d = _directive(name, obj)
    entry = [f".. {d}:: digitcore.{module}.{name}"]
    if d == "autoclass":
        entry.append("   :members:")
    return entry + [""]


def skip_foreign_members(app, what, name, obj, skip, options):
    """scikit-learn adds set_*_request methods to estimators; they are its API, not ours."""
    if (getattr(obj, "__module__", None) or "").startswith("sklearn."):
        return True
    return None


def setup(app):
    app.connect("builder-inited", write_reference)
    app.connect("autodoc-skip-member", skip_foreign_members)
