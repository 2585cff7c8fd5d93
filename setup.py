"""Native build of digitcore; all metadata lives in pyproject.toml.

The C kernels in csrc/ are compiled as their own static library with strict C11
warnings (they never include Python headers), then linked into one Cython
extension, digitcore._ops.

Files named *_avx2.c get AVX2+FMA flags and nothing else does: the dispatcher in
csrc/cpu.c only calls them when the CPU has AVX2 (never -march=native).

Build switches (environment variables):
  DIGITCORE_DEBUG=1      -O0 -g, asserts on
  DIGITCORE_SANITIZE=1   AddressSanitizer + UndefinedBehaviorSanitizer (gcc/clang)
  DIGITCORE_OPENMP=0     build single-threaded even where the compiler has OpenMP
  DIGITCORE_OPENMP_PREFIX  where libomp lives (macOS; default: Homebrew's)
"""

from __future__ import annotations

import glob
import os
import platform
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _flag(name: str, default: str = "0") -> bool:
    return os.environ.get(name, default).strip().lower() in {"1", "true", "yes", "on"}


DEBUG = _flag("DIGITCORE_DEBUG")
SANITIZE = _flag("DIGITCORE_SANITIZE")
OPENMP = _flag("DIGITCORE_OPENMP", "1")
IS_X86 = platform.machine().lower() in {"x86_64", "amd64", "i686", "x86"}

C_SOURCES = sorted(glob.glob(os.path.join("csrc", "*.c")))
if not C_SOURCES:
    sys.exit("setup.py: no C sources in csrc/ (incomplete sdist?)")


class BuildExt(build_ext):
    """Compile csrc/ into a static library with per-file flags, then the extension."""

    def _flags(self):
        ctype = self.compiler.compiler_type
        if ctype == "msvc":
            base = ["/std:c11", "/W3", "/Od" if DEBUG else "/O2"]
            if DEBUG:
                base.append("/Zi")
            omp_c = omp_l = []
            if OPENMP:
                omp_c = ["/openmp"]
            return dict(base=base, strict=[], avx2=["/arch:AVX2"], omp_c=omp_c, omp_l=omp_l,
                        ext=[], link=[])
        # -fno-math-errno: nothing reads errno, and it lets gcc vectorize sqrtf loops (Adam)
        base = ["-std=c11", "-fPIC", "-fno-strict-aliasing", "-fno-math-errno"]
        base += ["-O0", "-g", "-UNDEBUG"] if DEBUG else ["-O3", "-g0", "-DNDEBUG"]
        strict = ["-Wall", "-Wextra", "-Wpedantic", "-Wshadow", "-Wconversion",
                  "-Wno-sign-conversion", "-Werror=implicit-function-declaration",
                  "-Werror=incompatible-pointer-types", "-Werror=return-type"]
        link = []
        if SANITIZE:
            san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
                   "-fno-sanitize-recover=undefined"]
            base += san + ["-g"]
            link += san
        omp_c, omp_l = [], []
        if OPENMP:
            if sys.platform == "darwin":
                prefix = os.environ.get("DIGITCORE_OPENMP_PREFIX") or (
                    "/opt/homebrew/opt/libomp" if platform.machine() == "arm64"
                    else "/usr/local/opt/libomp")
                if os.path.isdir(prefix):
                    omp_c = ["-Xpreprocessor", "-fopenmp", f"-I{prefix}/include"]
                    omp_l = [f"-L{prefix}/lib", "-lomp"]
            else:
                omp_c, omp_l = ["-fopenmp"], ["-fopenmp"]
        avx2 = ["-mavx2", "-mfma"] if IS_X86 else []
        ext = ["-Wno-unused-function", "-Wno-unreachable-code"]
        return dict(base=base, strict=strict, avx2=avx2, omp_c=omp_c, omp_l=omp_l, ext=ext,
                    link=link)

    def build_extensions(self):
        f = self._flags()
        objects = []
        tmp = os.path.join(self.build_temp, "csrc")
        for src in C_SOURCES:
            is_avx2 = src.endswith("_avx2.c")
            if is_avx2 and not IS_X86:
                continue
            extra = f["base"] + f["strict"] + f["omp_c"] + (f["avx2"] if is_avx2 else [])
            objects += self.compiler.compile(
                [src], output_dir=tmp, include_dirs=["csrc"], extra_postargs=extra,
                macros=[("DIGITCORE_HAVE_AVX2_TU", "1")] if IS_X86 else [],
                depends=glob.glob(os.path.join("csrc", "*.h")))
        lib_dir = os.path.join(self.build_temp, "lib")
        self.compiler.create_static_lib(objects, "digitcore_kernels", output_dir=lib_dir)
        for ext in self.extensions:
            ext.library_dirs.append(lib_dir)
            ext.libraries.insert(0, "digitcore_kernels")
            ext.extra_compile_args += f["base"] + f["ext"] + f["omp_c"]
            ext.extra_link_args += f["omp_l"] + f["link"]
            # the static library is rebuilt above; make the extension depend on it
            ext.depends += C_SOURCES
        super().build_extensions()


extensions = [
    Extension(
        "digitcore._ops",
        sources=["src/digitcore/_ops.pyx"],
        include_dirs=["csrc", np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION"),
                       ("NPY_TARGET_VERSION", "NPY_2_0_API_VERSION")],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": 3, "boundscheck": False, "wraparound": False,
                             "cdivision": True, "initializedcheck": False},
        annotate=False,
    ),
    cmdclass={"build_ext": BuildExt},
)
