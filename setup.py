"""Native build of digitcore; all metadata lives in pyproject.toml.

The C kernels in csrc/ are compiled as their own static library with strict C11
warnings (they never include Python headers), then linked into one Cython
extension, digitcore._ops.

Files named *_avx2.c get AVX2+FMA flags, *_avx512.c AVX-512F flags, and nothing else
does: the dispatcher in csrc/cpu.c only calls them when the CPU has that instruction set
(never -march=native).

Build switches (environment variables):
  DIGITCORE_DEBUG=1      -O0 -g, asserts on (-O1 with DIGITCORE_SANITIZE=1)
  DIGITCORE_SANITIZE=1   AddressSanitizer + UndefinedBehaviorSanitizer (gcc/clang)
  DIGITCORE_OPENMP=0     build single-threaded (the only way to build without OpenMP: a
                         compiler without a working OpenMP runtime is an error, never a
                         quiet single-threaded build)
  DIGITCORE_OPENMP_PREFIX  where libomp lives (macOS; default: Homebrew's prefix for the
                         TARGET architecture)

The target architecture, not the build machine's, picks the AVX2 files and the libomp
prefix: ARCHFLAGS (macOS, set by cibuildwheel: "-arch x86_64"), else setuptools' plat_name,
which honours _PYTHON_HOST_PLATFORM (cibuildwheel, macOS) and VSCMD_ARG_TGT_ARCH (MSVC).
"""

from __future__ import annotations

import glob
import os
import platform
import re
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _flag(name: str, default: str = "0") -> bool:
    return os.environ.get(name, default).strip().lower() in {"1", "true", "yes", "on"}


DEBUG = _flag("DIGITCORE_DEBUG")
SANITIZE = _flag("DIGITCORE_SANITIZE")
OPENMP = _flag("DIGITCORE_OPENMP", "1")
X86_ARCHS = {"x86_64", "amd64", "x64", "i686", "i386", "x86"}


def target_arch(plat_name: str, environ=os.environ, machine: str | None = None) -> str:
    """The architecture the extension is built FOR (lower case), e.g. "x86_64", "arm64".

    macOS: ARCHFLAGS ("-arch x86_64"), which cibuildwheel sets and the compiler obeys;
    one architecture only (a universal2 build would need per-slice AVX2 flags). Otherwise
    the last part of setuptools' plat_name ("macosx-11.0-arm64", "linux-x86_64",
    "win-amd64"), which follows _PYTHON_HOST_PLATFORM and VSCMD_ARG_TGT_ARCH; on a universal2
    Python (python.org's) without ARCHFLAGS, this machine's architecture, which
    build_extensions then narrows the compiler's "-arch" flags to (one_arch).
    """
    archs = re.findall(r"-arch\s+(\S+)", environ.get("ARCHFLAGS", ""))
    if len(set(archs)) > 1:
        raise SystemExit(f"setup.py: ARCHFLAGS={environ['ARCHFLAGS']!r} asks for several "
                         "architectures; build one wheel per architecture (no universal2)")
    if archs:
        return archs[0].lower()
    arch = plat_name.rsplit("-", 1)[-1].lower()
    if arch == "universal2":
        return (machine or platform.machine()).lower()
    return arch


def one_arch(command: list, arch: str) -> list:
    """A compiler or linker command with its "-arch X" pairs replaced by one "-arch arch"
    at the end (what ARCHFLAGS does to a universal2 Python's flags; at the end, so a
    command of several words, "ccache clang" or "xcrun clang", keeps its program)."""
    out, skip = [], False
    for word in command:
        if skip:
            skip = False
        elif word == "-arch":
            skip = True
        else:
            out.append(word)
    return out + ["-arch", arch]


def homebrew_libomp(arch: str) -> str:
    """Homebrew's libomp for a target: arm64 Homebrew lives in /opt/homebrew, Intel in /usr/local."""
    return "/opt/homebrew/opt/libomp" if arch == "arm64" else "/usr/local/opt/libomp"


C_SOURCES = sorted(glob.glob(os.path.join("csrc", "*.c")))
if not C_SOURCES:
    sys.exit("setup.py: no C sources in csrc/ (incomplete sdist?)")


class BuildExt(build_ext):
    """Compile csrc/ into a static library with per-file flags, then the extension."""

    def _probe(self, source: str, cflags, lflags) -> str | None:
        """Compile and link a tiny program with these flags: None, or the error's last line."""
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "probe.c")
            with open(src, "w") as f:
                f.write(source)
            try:
                objs = self.compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
                self.compiler.link_executable(objs, "probe", output_dir=tmp,
                                              extra_postargs=lflags)
            except Exception as e:  # CompileError / LinkError, OSError for a missing compiler
                return (str(e).strip().splitlines()[-1:] or [""])[0]
        return None

    def _require_compiler(self):
        """A plain C program builds, or a message that says the compiler is the problem
        (not OpenMP, whose probe would otherwise be the first to fail)."""
        error = self._probe("int main(void) { return 0; }\n", [], [])
        if error is not None:
            raise SystemExit(
                f"setup.py: no working C compiler (CC={os.environ.get('CC', '(default)')}): "
                f"{error}\n"
                "digitcore's kernels are C and are compiled on install when no wheel fits "
                "this platform. Install one (Debian/Ubuntu: apt install gcc python3-dev; "
                "macOS: xcode-select --install; Windows: the Visual Studio Build Tools), or "
                "point CC at a working one.")

    def _openmp_works(self, omp_c, omp_l) -> bool:
        """Compile and link a tiny OpenMP program with these flags (the runtime is there)."""
        error = self._probe(
            "#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n",
            omp_c, omp_l)
        self._omp_error = error or ""
        return error is None

    def _require_openmp(self, omp_c, omp_l, where: str):
        if not self._openmp_works(omp_c, omp_l):
            raise SystemExit(
                f"setup.py: OpenMP does not work with this compiler ({where}): "
                f"{self._omp_error}\n"
                "Install the OpenMP runtime (Debian/Ubuntu: libomp-dev for clang, it comes with "
                "gcc; macOS: brew install libomp, or point DIGITCORE_OPENMP_PREFIX at it), "
                "or build single-threaded on purpose with DIGITCORE_OPENMP=0.")

    def _flags(self):
        ctype = self.compiler.compiler_type
        if ctype == "msvc":
            base = ["/std:c11", "/W3", "/Od" if DEBUG else "/O2"]
            if DEBUG:
                base.append("/Zi")
            omp_c = omp_l = []
            if OPENMP:
                omp_c = ["/openmp"]
                self._require_openmp(omp_c, omp_l, "MSVC /openmp")
            return dict(base=base, strict=[], avx2=["/arch:AVX2"], avx512=["/arch:AVX512"],
                        omp_c=omp_c, omp_l=omp_l, ext=[], link=[])
        # -fno-math-errno: nothing reads errno, and it lets gcc vectorize sqrtf loops (Adam)
        base = ["-std=c11", "-fPIC", "-fno-strict-aliasing", "-fno-math-errno"]
        # a sanitized debug build is -O1, as AddressSanitizer's documentation advises for
        # reasonable speed (CI runs the whole suite under it)
        debug_opt = "-O1" if SANITIZE else "-O0"
        base += [debug_opt, "-g", "-UNDEBUG"] if DEBUG else ["-O3", "-g0", "-DNDEBUG"]
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
                prefix = (os.environ.get("DIGITCORE_OPENMP_PREFIX")
                          or homebrew_libomp(self.target_arch))
                omp_c = ["-Xpreprocessor", "-fopenmp", f"-I{prefix}/include"]
                omp_l = [f"-L{prefix}/lib", "-lomp"]
                where = f"libomp for {self.target_arch} in {prefix}"
            else:
                omp_c, omp_l = ["-fopenmp"], ["-fopenmp"]
                where = "-fopenmp"
            self._require_openmp(omp_c, omp_l, where)
        avx2 = ["-mavx2", "-mfma"] if self.is_x86 else []
        avx512 = ["-mavx512f", "-mavx2", "-mfma"] if self.is_x86 else []
        ext = ["-Wno-unused-function", "-Wno-unreachable-code"]
        return dict(base=base, strict=strict, avx2=avx2, avx512=avx512, omp_c=omp_c,
                    omp_l=omp_l, ext=ext, link=link)

    def build_extensions(self):
        self.target_arch = target_arch(self.plat_name)
        self.is_x86 = self.target_arch in X86_ARCHS
        if self.plat_name.endswith("universal2") and "ARCHFLAGS" not in os.environ:
            # both slices would get one set of flags: the x86_64 one without its AVX2
            # kernels, and with OpenMP a libomp of one architecture that fails to link.
            # (A wheel built so, pip wheel ., is still tagged universal2, though it holds
            # this machine's slice only: set ARCHFLAGS to build wheels to pass around.)
            for attr in ("compiler", "compiler_so", "compiler_cxx", "linker_so", "linker_exe"):
                cmd = getattr(self.compiler, attr, None)
                if isinstance(cmd, list) and cmd:
                    setattr(self.compiler, attr, one_arch(cmd, self.target_arch))
        print(f"digitcore: building for {self.target_arch} "
              f"({'AVX2 kernels included' if self.is_x86 else 'no AVX2 kernels'}, "
              f"OpenMP {'on' if OPENMP else 'off (DIGITCORE_OPENMP=0)'})")
        self._require_compiler()
        f = self._flags()
        objects = []
        tmp = os.path.join(self.build_temp, "csrc")
        for src in C_SOURCES:
            isa = "avx2" if src.endswith("_avx2.c") else "avx512" if src.endswith(
                "_avx512.c") else None
            if isa and not self.is_x86:
                continue
            extra = f["base"] + f["strict"] + f["omp_c"] + (f[isa] if isa else [])
            objects += self.compiler.compile(
                [src], output_dir=tmp, include_dirs=["csrc"], extra_postargs=extra,
                macros=[("DIGITCORE_HAVE_AVX2_TU", "1"), ("DIGITCORE_HAVE_AVX512_TU", "1")]
                if self.is_x86 else [],
                depends=glob.glob(os.path.join("csrc", "*.h")))
        lib_dir = os.path.join(self.build_temp, "lib")
        # ar adds and replaces members but never drops one: the object of a removed source
        # (mlp.o after mlp.c was split) stayed in the archive and its dc_mlp_train, not
        # the new one, was linked. Start from an empty archive.
        lib_path = self.compiler.library_filename("digitcore_kernels", output_dir=lib_dir)
        if os.path.exists(lib_path):
            os.remove(lib_path)
        self.compiler.create_static_lib(objects, "digitcore_kernels", output_dir=lib_dir)
        for ext in self.extensions:
            ext.library_dirs.append(lib_dir)
            ext.libraries.insert(0, "digitcore_kernels")
            ext.extra_compile_args += f["base"] + f["ext"] + f["omp_c"]
            ext.extra_link_args += f["omp_l"] + f["link"]
            # the static library is rebuilt above; make the extension depend on it
            ext.depends += C_SOURCES + [lib_path]
        super().build_extensions()


def main():
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


if __name__ == "__main__":  # setuptools runs setup.py as __main__; .ci/check_setup.py imports it
    main()
