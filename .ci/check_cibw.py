"""Check the options cibuildwheel itself computes from pyproject.toml, per platform.

Run with the Python that has cibuildwheel (the tools venv of .ci/run), from the repository:
    python .ci/check_cibw.py
A platform table replaces the global value of an option unless it inherits (cibuildwheel's
configuration docs), so this asks cibuildwheel, not the TOML, what each build gets.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from cibuildwheel.options import CommandLineArguments, compute_options

ROOT = Path(__file__).resolve().parent.parent
# identifier -> environment variables that build must get (value None: must not be set):
# OpenMP off on macOS only (pyproject.toml says why)
WANT_ENV = {
    "cp311-manylinux_x86_64": {"DIGITCORE_OPENMP": None},
    "cp314-macosx_arm64": {"DIGITCORE_OPENMP": "0"},
    "cp311-macosx_x86_64": {"DIGITCORE_OPENMP": "0"},
    "cp313-win_amd64": {"DIGITCORE_OPENMP": None},
}
# identifier -> (test-requires that must be there, must not be there)
WANT_TEST = {
    "cp312-macosx_arm64": ({"scikit-learn", "torch"}, set()),
    "cp312-win_amd64": ({"scikit-learn", "torch"}, set()),
    "cp312-manylinux_x86_64": ({"scikit-learn"}, {"torch"}),
    # (no musllinux wheels of these: pip would build them from source in every test step)
    "cp312-musllinux_x86_64": ({"pytest", "pillow"},
                               {"torch", "onnxruntime", "onnx", "scikit-learn"}),
    "cp311-macosx_x86_64": (set(), {"torch"}),
}
PLATFORM = {"manylinux": "linux", "musllinux": "linux", "macosx": "macos", "win": "windows"}


def options_for(identifier: str):
    platform = PLATFORM[identifier.split("-", 1)[1].split("_", 1)[0]]
    args = dataclasses.replace(CommandLineArguments.defaults(), platform=platform,
                               package_dir=ROOT, config_file=str(ROOT / "pyproject.toml"))
    return compute_options(platform, args, env={}).build_options(identifier)


def main() -> int:
    bad = []
    for ident, want in WANT_ENV.items():
        env = options_for(ident).environment.as_dictionary(prev_environment={})
        for k, v in want.items():
            if env.get(k) != v:
                bad.append(f"{ident}: environment {k}={env.get(k)!r}, want {v!r} (all: {env})")
        print(f"{ident}: environment {env}")
    for ident, (must, must_not) in WANT_TEST.items():
        reqs = {r.split("=")[0].split("<")[0].split(">")[0].strip()
                for r in options_for(ident).test_requires}
        if not must <= reqs or reqs & must_not:
            bad.append(f"{ident}: test-requires {sorted(reqs)}, want {sorted(must)} "
                       f"and none of {sorted(must_not)}")
        print(f"{ident}: test-requires {sorted(reqs)}")
    # the test extra everywhere but musllinux, where onnxruntime, onnx and scikit-learn have
    # no wheel (the extra's other packages are test-requires there)
    for ident in ("cp311-manylinux_x86_64", "cp314-macosx_arm64", "cp313-win_amd64",
                  "cp312-musllinux_x86_64"):
        extras = set(options_for(ident).test_extras.strip("[]").split(",")) - {""}
        want = set() if "musllinux" in ident else {"test"}
        if extras != want:
            bad.append(f"{ident}: test-extras {sorted(extras)}, want {sorted(want)}")
        print(f"{ident}: test-extras {sorted(extras)}")
    # every wheel's tests check that they import the installed wheel; the interop ones also
    # require torch and scikit-learn
    for ident, extra in (("cp311-manylinux_x86_64", {}), ("cp313-win_amd64", {}),
                         ("cp312-macosx_arm64", {"DIGITCORE_REQUIRE_INTEROP": "1"})):
        env = options_for(ident).test_environment.as_dictionary(prev_environment={})
        want = {"DIGITCORE_EXPECT_INSTALLED": "1", **extra}
        if {k: env.get(k) for k in want} != want:
            bad.append(f"{ident}: test-environment {env}, want {want}")
        print(f"{ident}: test-environment {env}")
    for b in bad:
        print("ERROR:", b, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
