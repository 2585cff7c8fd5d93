"""digitcore._atomic: what an atomic write does to the path it is given.

Every file digitcore writes (models, checkpoints, IDX, ONNX, plots) goes through
atomic_file, which replaces the target by renaming a temporary file over it. These tests
pin what that means for paths that are not plain files: a symbolic link, a file with its
own permissions, a device, a directory, a directory that does not exist.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import sys

import numpy as np
import pytest

from digitcore import Network, load_model
from digitcore._atomic import atomic_file, atomic_write_bytes, writable_target

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file semantics")


@posix_only
def test_a_symlink_is_followed_and_kept(tmp_path):
    # the rename used to replace the link itself with a regular file, leaving the file
    # it pointed to as it was
    real = tmp_path / "real.bin"
    real.write_bytes(b"old")
    link = tmp_path / "link.bin"
    link.symlink_to(real.name)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and os.readlink(link) == real.name
    assert real.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.bin", "real.bin"]


@posix_only
def test_a_replaced_file_keeps_its_permissions(tmp_path):
    # a 0600 model came back 0644 (the umask's default for a new file)
    path = tmp_path / "m.safetensors"
    Network([4, 3], seed=0).save(path)
    os.chmod(path, 0o600)
    net = Network([4, 3], seed=1)
    net.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    np.testing.assert_array_equal(load_model(path).flat_parameters, net.flat_parameters)


@posix_only
def test_a_device_is_refused_and_left_alone():
    # saving to /dev/full as root replaced the device node with a model file
    before = os.stat("/dev/null")
    with pytest.raises(OSError, match="cannot write /dev/null: it is not a regular file"):
        Network([4, 3], seed=0).save("/dev/null")
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(IsADirectoryError, match="it is a directory"):
        atomic_write_bytes(tmp_path, b"x")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_directory_is_named_not_the_temporary_file(tmp_path):
    # the error used to name '.m.safetensors.92438664cd76.tmp'
    target = tmp_path / "nope" / "m.safetensors"
    with pytest.raises(FileNotFoundError) as info:
        Network([4, 3], seed=0).save(target)
    assert f"cannot write {target}: there is no directory {target.parent}" in str(info.value)
    assert ".tmp" not in str(info.value) and info.value.errno == errno.ENOENT


@posix_only
def test_a_file_system_that_refuses_chmod_still_saves(tmp_path, monkeypatch):
    # (some FUSE/SMB mounts answer EPERM): the mode is a courtesy, the save goes on
    from digitcore import _atomic

    path = tmp_path / "x.bin"
    path.write_bytes(b"old")

    def refuse(*a, **k):
        raise PermissionError(errno.EPERM, "not permitted")

    monkeypatch.setattr(_atomic.os, "chmod", refuse)
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]


@posix_only
def test_setuid_and_setgid_bits_are_not_copied(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"old")
    os.chmod(path, 0o6750)
    atomic_write_bytes(path, b"new")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o750


def test_writable_target_answers_the_real_path(tmp_path):
    path = tmp_path / "a.bin"
    assert writable_target(path) == os.path.realpath(path)  # (need not exist)
    if os.name == "posix":
        (tmp_path / "l.bin").symlink_to("a.bin")
        assert writable_target(tmp_path / "l.bin") == os.path.realpath(path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="POSIX permissions, which root bypasses")
def test_a_directory_without_write_permission_is_named(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match=f"cannot write {ro / 'm.bin'}"):
            atomic_write_bytes(ro / "m.bin", b"x")
    finally:
        ro.chmod(0o700)


@posix_only
def test_a_read_only_file_is_not_replaced(tmp_path, monkeypatch):
    """A file the user made read-only (0444) was replaced by every save: its directory
    was writable, and a rename needs nothing of the file. Refused, as open(path, "w")
    would refuse it. (Root may write any file, and os.access says so: as root, the test
    answers os.access from the mode bits, as for the file's owner.)"""
    path = tmp_path / "m.bin"
    path.write_bytes(b"precious")
    path.chmod(0o444)
    if os.name == "posix" and os.geteuid() == 0:
        real_access = os.access

        def owner_access(p, mode, **kw):
            if os.path.isfile(p) and mode & os.W_OK:
                return bool(os.stat(p).st_mode & stat.S_IWUSR)
            return real_access(p, mode, **kw)

        monkeypatch.setattr(os, "access", owner_access)
    with pytest.raises(PermissionError, match=f"cannot write {re.escape(str(path))}: the "
                                              "file is read-only"):
        atomic_write_bytes(path, b"new")
    with pytest.raises(PermissionError, match="read-only"):
        Network([4, 3], seed=0).save(path)
    assert path.read_bytes() == b"precious"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        atomic_write_bytes(fifo, b"x")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


@pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="needs /proc/self/fd")
def test_standard_output_as_a_pipe_is_named_as_one():
    """`digitcore export m.safetensors /dev/stdout | wc -c` said "No such file or
    directory": the realpath of /dev/stdout on a pipe is /proc/PID/fd/pipe:[N], a name
    that does not exist. The pipe is what is checked now, and refused as one."""
    import subprocess
    import sys

    code = ("import sys; from digitcore._atomic import writable_target\n"
            "try:\n    writable_target('/dev/stdout')\n"
            "except OSError as e:\n    print(e, file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=60)
    assert "cannot write /dev/stdout: it is not a regular file" in r.stderr, r.stderr


@posix_only  # (Windows limits the whole path to 260 characters unless long paths are on)
def test_a_file_name_near_the_length_limit_is_written(tmp_path):
    # the temporary file was named .{name}.{12 hex}.tmp, 18 bytes longer: a legal name of
    # 238 to 255 bytes could not be saved (`digitcore train --out` failed after training)
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    for name in ("a" * (limit - 12) + ".safetensors", "b" * (limit - 30) + ".safetensors"):
        atomic_write_bytes(tmp_path / name, b"first")
        atomic_write_bytes(tmp_path / name, b"second")
        assert (tmp_path / name).read_bytes() == b"second"
    assert sorted(p.name[0] for p in tmp_path.iterdir()) == ["a", "b"]  # no temporary left


def test_a_bytes_path_is_written(tmp_path):
    # writable_target took bytes paths, atomic_file then mixed them with str (TypeError)
    net = Network([4, 3], seed=0)
    net.save(os.fsencode(tmp_path / "m.safetensors"))
    back = load_model(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(back.flat_parameters, net.flat_parameters)
    atomic_write_bytes(os.fsencode(tmp_path / "b.bin"), b"x")
    assert (tmp_path / "b.bin").read_bytes() == b"x"


def test_the_module_needs_no_third_party_import():
    # cli imports writable_target at its top: `digitcore --help` must stay NumPy-free
    import subprocess

    code = ("import sys; import digitcore._atomic; "
            "print(sorted(m for m in ('numpy', 'PIL') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_a_failed_write_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch, where):
    """A full disk or a file size limit surfaced as '[Errno 27] File too large', naming
    no file (digitcore train --out printed only that, after the training)."""
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")
    said = re.escape(f"cannot write {target}: File too large")

    def fail(*args, **kwargs):
        raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))

    if where == "write":
        with pytest.raises(OSError, match=said) as info:
            with atomic_file(target) as f:
                monkeypatch.setattr(f, "write", fail)
                f.write(b"new")
    else:
        monkeypatch.setattr(os, where, fail)
        with pytest.raises(OSError, match=said) as info:
            atomic_write_bytes(target, b"new")
        monkeypatch.undo()
    assert info.value.errno == errno.EFBIG
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin"]


def test_other_errors_in_the_block_keep_their_own_words(tmp_path):
    """A download writes inside atomic_file's block: a network reset there is not a
    failure to write the file."""
    target = tmp_path / "data.gz"
    with pytest.raises(ConnectionResetError) as info:
        with atomic_file(target) as f:
            f.write(b"part")
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
    assert "cannot write" not in str(info.value)
    assert not target.exists() and list(tmp_path.iterdir()) == []
