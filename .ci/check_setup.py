"""setup.py chooses the AVX2 files and the libomp prefix from the TARGET architecture.

An x86_64 wheel cross-built on an arm64 machine (cibuildwheel on macOS sets ARCHFLAGS and
_PYTHON_HOST_PLATFORM; MSVC sets VSCMD_ARG_TGT_ARCH, which setuptools' plat_name follows)
must keep its AVX2 kernels and link an x86_64 libomp, and the reverse. Imports setup.py
without building (it only builds when run as __main__).

    python .ci/check_setup.py      (needs numpy, Cython and setuptools, as setup.py does)
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("digitcore_setup", ROOT / "setup.py")
setup_py = importlib.util.module_from_spec(spec)
sys.argv = ["setup.py"]
import os  # noqa: E402

os.chdir(ROOT)
spec.loader.exec_module(setup_py)

# (plat_name as setuptools computes it, environment) -> (target arch, AVX2 files, libomp)
CASES = [
    ("macosx-11.0-arm64", {"ARCHFLAGS": "-arch x86_64"}, "x86_64", True, "/usr/local/opt/libomp"),
    ("macosx-10.9-x86_64", {"ARCHFLAGS": "-arch arm64"}, "arm64", False, "/opt/homebrew/opt/libomp"),
    ("macosx-10.13-x86_64", {}, "x86_64", True, "/usr/local/opt/libomp"),
    ("macosx-11.0-arm64", {}, "arm64", False, "/opt/homebrew/opt/libomp"),
    ("linux-x86_64", {}, "x86_64", True, None),
    ("linux-aarch64", {}, "aarch64", False, None),
    ("win-amd64", {}, "amd64", True, None),
    ("win-arm64", {}, "arm64", False, None),
]
# a universal2 Python (python.org's) without ARCHFLAGS: this machine's architecture
CASES += [
    ("macosx-10.9-universal2", {}, "arm64", False, "/opt/homebrew/opt/libomp"),
    ("macosx-10.9-universal2", {}, "x86_64", True, "/usr/local/opt/libomp"),
]
bad = 0
for plat, env, arch, avx2, omp in CASES:
    got = setup_py.target_arch(plat, env, machine=arch if "universal2" in plat else None)
    got_avx2 = got in setup_py.X86_ARCHS
    ok = got == arch and got_avx2 == avx2 and (omp is None or setup_py.homebrew_libomp(got) == omp)
    bad += not ok
    print(f"{'ok ' if ok else 'BAD'} plat_name={plat:20} {env!s:28} -> {got} "
          f"AVX2={'yes' if got_avx2 else 'no'}" + (f" libomp={setup_py.homebrew_libomp(got)}"
                                                    if omp else ""))
try:
    setup_py.target_arch("macosx-10.9-universal2", {"ARCHFLAGS": "-arch arm64 -arch x86_64"})
except SystemExit as e:
    print("ok  universal2 refused:", e)
else:
    print("BAD universal2 accepted")
    bad += 1
# and the compiler's flags narrowed to it
cmd = ["ccache", "clang", "-arch", "arm64", "-arch", "x86_64", "-O3", "-arch", "arm64"]
got = setup_py.one_arch(cmd, "x86_64")
ok = got == ["ccache", "clang", "-O3", "-arch", "x86_64"]
bad += not ok
print(f"{'ok ' if ok else 'BAD'} one_arch: {cmd} -> {got}")
sys.exit(1 if bad else 0)
