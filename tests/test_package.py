"""The package as users get it: import cost, metadata, configuration, CLI basics."""

import os
import platform
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

import digitcore
from digitcore import _config, _ops


def test_imported_from_site_packages_when_installed():
    path = Path(digitcore.__file__).resolve()
    if os.environ.get("DIGITCORE_EXPECT_INSTALLED") != "1":
        pytest.skip("only checked when CI says the package is installed")
    purelib = Path(sysconfig.get_paths()["purelib"]).resolve()
    platlib = Path(sysconfig.get_paths()["platlib"]).resolve()
    assert purelib in path.parents or platlib in path.parents, path
    assert "site-packages" in str(path)


def test_version_is_pep440():
    from packaging.version import Version

    assert Version(digitcore.__version__) >= Version("0.1.0")


def test_import_is_light():
    code = ("import sys, digitcore; heavy = [m for m in ('matplotlib', 'PIL', 'sklearn', "
            "'safetensors', 'http.server', 'torch', 'digitcore._ops') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_show_config_reports_kernel_openmp_threads(capsys):
    digitcore.show_config()
    out = capsys.readouterr().out
    assert digitcore.__version__ in out
    assert "kernel" in out and ("avx2" in out or "generic" in out)
    assert "openmp" in out and "threads" in out


def test_set_num_threads_round_trip():
    from digitcore import _ops

    before = digitcore.get_num_threads()
    try:
        digitcore.set_num_threads(1)
        assert digitcore.get_num_threads() == 1
        if _ops.have_openmp():
            digitcore.set_num_threads(2)
            assert digitcore.get_num_threads() == 2
    finally:
        digitcore.set_num_threads(before)
    with pytest.raises(ValueError):
        digitcore.set_num_threads(-1)
    with pytest.raises(ValueError):
        digitcore.set_num_threads("2")
    with pytest.raises(ValueError, match="at most 1024 threads"):
        digitcore.set_num_threads(100_000)  # libgomp's team start overflowed its stack
    assert digitcore.get_num_threads() == before


@pytest.mark.skipif(not _ops.have_openmp(), reason="built without OpenMP")
def test_omp_num_threads_past_the_cap_is_capped():
    # OMP_NUM_THREADS=100000 crashed training's first parallel region (SIGSEGV in libgomp)
    code = ("import numpy as np, digitcore; print(digitcore.get_num_threads()); "
            "x = (np.arange(256 * 64).reshape(256, 64) % 7 == 0).astype(np.uint8); "
            "net = digitcore.Network([64, 8, 2], seed=0); "
            "digitcore.Trainer(net, epochs=1, batch_size=128, verbose=0).fit(x, (x[:, 0] > 0).astype(np.int64)); "
            "print(net.predict(x[:1]).size)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, OMP_NUM_THREADS="100000"), timeout=300)
    assert r.returncode == 0, r.stderr
    threads, answers = r.stdout.split()
    assert 1 <= int(threads) <= 1024 and answers == "1"  # (libgomp: 1024; another runtime
    # may cap lower)


def test_the_thread_cap_is_the_same_in_python_and_c():
    # the command line checks --threads against _config's copy, without loading _ops
    assert _config.MAX_THREADS == _ops.MAX_THREADS == 1024


def _run(*args, env=None):
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "digitcore", *args], capture_output=True,
                          text=True, env=full_env, timeout=300)


def test_star_import_and_introspection_work_without_scikit_learn():
    # __all__ named MLPClassifier, so `from digitcore import *`, help(digitcore) and
    # inspect.getmembers raised the ImportError meant for using it on a plain install
    code = textwrap.dedent("""
        import sys
        sys.modules["sklearn"] = None  # (as if not installed)
        import inspect, pydoc
        import digitcore
        from digitcore import *
        assert "MLPClassifier" not in dir(digitcore) and "Network" in dir(digitcore)
        names = dict(inspect.getmembers(digitcore))
        assert "Trainer" in names and "estimator" not in names
        pydoc.render_doc(digitcore)
        try:
            digitcore.MLPClassifier
        except ImportError as exc:
            print(exc)
        """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "needs scikit-learn" in r.stdout


def test_env_threads_and_kernel_are_read():
    r = subprocess.run(
        [sys.executable, "-c", "import digitcore; print(digitcore.get_num_threads(), "
         "digitcore.kernel_path())"],
        capture_output=True, text=True,
        env=dict(os.environ, DIGITCORE_NUM_THREADS="1", DIGITCORE_KERNEL="generic"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "generic"]


def test_env_settings_apply_to_a_program_that_uses_only_ops():
    # digitcore.ops loaded the compiled module without applying them: 2 threads, avx2
    code = ("import numpy as np; from digitcore import ops; import digitcore._ops as c; "
            "ops.gemm(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32)); "
            "print(c.get_num_threads(), c.kernel_path())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, DIGITCORE_NUM_THREADS="1", DIGITCORE_KERNEL="generic"),
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "generic"]
    r = subprocess.run([sys.executable, "-c", "from digitcore import ops"], capture_output=True,
                       text=True, env=dict(os.environ, DIGITCORE_TEAM="bogus"), timeout=120)
    assert r.returncode != 0 and "DIGITCORE_TEAM must be" in r.stderr


@pytest.mark.parametrize("value", ["zero", "0", "100000"])
def test_bad_thread_env_is_a_clear_error(value):
    r = subprocess.run([sys.executable, "-c", "import digitcore; digitcore.get_num_threads()"],
                       capture_output=True, text=True,
                       env=dict(os.environ, DIGITCORE_NUM_THREADS=value))
    assert r.returncode != 0
    assert "DIGITCORE_NUM_THREADS" in r.stderr


def test_a_bad_env_setting_is_refused_every_time_not_once():
    # the first call raised, and later ones ran with the defaults, the setting dropped
    code = textwrap.dedent("""
        import digitcore
        for _ in range(2):
            try:
                digitcore.get_num_threads()
            except ValueError as exc:
                print("refused:", exc)
        """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, DIGITCORE_TEAM="bogus"), timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("refused: DIGITCORE_TEAM must be") == 2


def test_bad_kernel_env_is_a_clear_error():
    r = subprocess.run([sys.executable, "-c", "import digitcore; digitcore.kernel_path()"],
                       capture_output=True, text=True,
                       env=dict(os.environ, DIGITCORE_KERNEL="sse9"))
    assert r.returncode != 0
    assert "DIGITCORE_KERNEL=sse9: unknown kernel path 'sse9'" in r.stderr
    # the command line says so in one line (avx2 on a CPU without AVX2 was a RuntimeError,
    # a traceback from every command)
    r = subprocess.run([sys.executable, "-m", "digitcore", "config"], capture_output=True,
                       text=True, env=dict(os.environ, DIGITCORE_KERNEL="sse9"), timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "DIGITCORE_KERNEL=sse9" in r.stderr


def _gemm_tile_under(value):
    return subprocess.run([sys.executable, "-c", "from digitcore import _config; "
                           "print(_config._ops().gemm_tile())"],
                          capture_output=True, text=True,
                          env=dict(os.environ, DIGITCORE_AVX512=value))


def test_avx512_env_is_read():
    off = _gemm_tile_under("0")
    assert off.returncode == 0, off.stderr
    assert off.stdout.split() == ["avx2" if _ops.cpu_has_avx2() else "generic"]
    on = _gemm_tile_under("1")
    if _ops.cpu_has_avx512():
        assert on.returncode == 0, on.stderr
        assert on.stdout.split() == ["avx512"]
    else:  # asked for, and the CPU lacks it: an error that says so
        assert on.returncode != 0
        assert "DIGITCORE_AVX512=1, but this CPU lacks AVX-512 (F, CD, DQ, BW, VL)" in on.stderr
    # the command line says so in one line (a RuntimeError's traceback, even from
    # `digitcore config`, the command for checking a setup)
    r = subprocess.run([sys.executable, "-m", "digitcore", "config"], capture_output=True,
                       text=True, env=dict(os.environ, DIGITCORE_AVX512="1"))
    if _ops.cpu_has_avx512():
        assert r.returncode == 0, r.stderr
    else:
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.strip().count("\n") == 0 and "lacks AVX-512 (F, CD, DQ, BW, VL)" in r.stderr


FIVE = ("f", "cd", "dq", "bw", "vl")  # the AVX-512 subsets the *_avx512.c files may use


def _os_says_avx512():
    """Whether the OS reports AVX-512 F, CD, DQ, BW and VL usable, asked the OS's own way; None where this
    test does not know how."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    if sys.platform.startswith("linux"):
        try:  # Linux lists a flag only when the kernel also saves its registers
            text = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
        flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                      if line.startswith("flags")), None)
        return None if flags is None else {f"avx512{x}" for x in FIVE} <= set(flags)
    if sys.platform == "darwin":  # XCR0 says nothing before a thread's first use
        def sysctl(name):
            r = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True)
            return r.stdout.strip() if r.returncode == 0 else ""
        major, minor = (int(v) for v in sysctl("kern.osrelease").split(".")[:2])
        return all(sysctl(f"hw.optional.avx512{x}") == "1" for x in FIVE) and \
            (major, minor) >= (21, 3)
    return None


def test_avx512_detection_agrees_with_the_os():
    want = _os_says_avx512()
    if want is None:
        pytest.skip(f"no way to ask {sys.platform} {platform.machine()} about AVX-512 here")
    assert _ops.cpu_has_avx512() == (want and _ops.cpu_has_avx2())


def test_bad_avx512_env_is_a_clear_error():
    r = _gemm_tile_under("yes")
    assert r.returncode != 0
    assert "DIGITCORE_AVX512 must be 0 or 1, got 'yes'" in r.stderr


def test_cli_version_and_help():
    r = _run("--version")
    assert r.returncode == 0 and digitcore.__version__ in r.stdout
    r = _run("--help")
    assert r.returncode == 0
    for cmd in ("train", "evaluate", "predict", "info", "bench"):
        assert cmd in r.stdout


def test_console_script_installed():
    scripts = Path(sysconfig.get_paths()["scripts"])
    exe = scripts / ("digitcore.exe" if os.name == "nt" else "digitcore")
    if not exe.exists():
        pytest.skip("console script not installed in this environment (source tree run)")
    r = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and digitcore.__version__ in r.stdout


def test_libgomp_spin_set_only_while_loading():
    # _config sets GOMP_SPINCOUNT for the moment the compiled module loads libgomp (a
    # short spin: see _config), removes it afterwards, and leaves a user's value alone
    code = ("import os, digitcore, digitcore.ops; digitcore.set_num_threads(1); "
            "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))")
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["None", "None"]
    out = subprocess.run([sys.executable, "-c", code], env=dict(env, GOMP_SPINCOUNT="7"),
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["7", "None"]


def test_libgomp_loads_with_the_short_spin_unless_the_user_chose_a_policy():
    # what the environment holds at the moment digitcore._ops (and libgomp with it) loads:
    # digitcore's spin count, the user's own GOMP_SPINCOUNT, or nothing added beside the
    # user's OMP_WAIT_POLICY
    code = ("import importlib.abc, os, sys\n"
            "class Spy(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name == 'digitcore._ops':\n"
            "            print('at-load', os.environ.get('GOMP_SPINCOUNT'), flush=True)\n"
            "sys.meta_path.insert(0, Spy())\n"
            "import digitcore\n"
            "digitcore.set_num_threads(1)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    for extra, want in (({}, _config._GOMP_SPINCOUNT), ({"GOMP_SPINCOUNT": "7"}, "7"),
                        ({"OMP_WAIT_POLICY": "active"}, "None")):
        out = subprocess.run([sys.executable, "-c", code], env=dict(env, **extra),
                             capture_output=True, text=True, check=True).stdout.split("\n")
        assert [line for line in out if line.startswith("at-load")] == [f"at-load {want}"], extra


def test_type_stub_declares_every_public_name_of_the_compiled_module():
    """py.typed promises types: a function of digitcore._ops missing from _ops.pyi is a
    missing attribute to a type checker (augment and elastic_bank once were)."""
    import ast
    import types

    stub = Path(digitcore.__file__).with_name("_ops.pyi")
    tree = ast.parse(stub.read_text(encoding="utf-8"))
    declared = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            declared.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            declared.add(node.target.id)
    public = {name for name, v in vars(_ops).items()
              if not name.startswith("_") and not isinstance(v, types.ModuleType)
              and getattr(v, "__module__", "digitcore._ops") == "digitcore._ops"}
    assert "augment" in public and "elastic_bank" in public
    assert public - declared == set()
