"""MNIST, Fashion-MNIST and the bundled mnist-mini subset; splitting and batching.

Finding, verifying and downloading the files is this module's own job, one path that
loading falls back along (places -> verification -> download -> loading, in that order
below; kept together because each step hands the next its files and
errors); splitting and batching arrays (train_val_split, one_hot, iter_batches, ...) are
defined in ``digitcore._prepare`` and public here.

Where the full datasets are looked for, in order: the ``data_dir`` argument,
``$DIGITCORE_DATA``, then the user cache dir (``$DIGITCORE_CACHE_DIR`` or the
platform convention, see :func:`get_cache_dir`). In each of those, the four files
under their canonical names (raw or ``.gz``) are looked for in ``mnist/`` and
torchvision's ``MNIST/raw/`` (``fashion-mnist/`` and ``FashionMNIST/raw/`` for
Fashion-MNIST), then in the directory itself.

Files found are verified once (SHA-256 of the decompressed content); the result
is remembered in ``<cache dir>/verified.json`` keyed by path, size and mtime, so
later loads only parse. When nothing is found and ``download=True``, the files
are fetched from public mirrors, verified while streaming, and renamed into
place atomically. Images stay uint8 everywhere: the network scales them.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import http.client
import importlib.resources
import json
import math
import os
import re
import sys
import time
import urllib.error
import urllib.request
import zlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from digitcore._version import __version__
from digitcore.errors import DatasetError
from digitcore._atomic import atomic_file
from digitcore.idx import read_idx, read_idx_sha256
# splitting and batching live in _prepare.py; this module is their public home
from digitcore._prepare import (  # noqa: F401
    as_2d_images, check_labels, iter_batches, one_hot, train_val_split)

__all__ = [
    "load_mnist", "load_fashion_mnist", "load_dataset", "resolve_default_dataset",
    "load_mnist_mini", "download_dataset", "get_cache_dir", "find_dataset_files",
    "load_test_split",
    "train_val_split", "one_hot", "as_2d_images", "check_labels", "iter_batches",
    "FILES", "MNIST_MIRRORS", "FASHION_MNIST_MIRRORS", "DATASET_NAMES",
]

#: Canonical file names, in the order (train images, train labels, test images, test labels).
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

#: Public mirrors tried in order (torchvision's order). Override with the ``mirrors``
#: argument of :func:`download_dataset` or ``$DIGITCORE_MNIST_MIRRORS`` (comma- or
#: space-separated base URLs).
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
#: torchvision's and keras' Fashion-MNIST locations; ``$DIGITCORE_FASHION_MNIST_MIRRORS``.
FASHION_MNIST_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
)

DATASET_NAMES = ("mnist", "fashion-mnist", "mnist-mini")

# Decompressed sizes of the four files (same for MNIST and Fashion-MNIST).
_SIZES = {
    "train-images-idx3-ubyte": 16 + 60000 * 784,
    "train-labels-idx1-ubyte": 8 + 60000,
    "t10k-images-idx3-ubyte": 16 + 10000 * 784,
    "t10k-labels-idx1-ubyte": 8 + 10000,
}

# connect timeout, read timeout (seconds)
DEFAULT_TIMEOUT = (10.0, 30.0)


@dataclass(frozen=True)
class _Spec:
    name: str
    title: str
    subdirs: tuple[str, ...]
    sha256: dict
    mirrors_attr: str
    mirrors_env: str
    sizes: dict = dataclasses.field(default_factory=lambda: dict(_SIZES))  # decompressed


_SPECS = {
    "mnist": _Spec(
        "mnist", "MNIST", ("mnist", "MNIST/raw"),
        {
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        "MNIST_MIRRORS", "DIGITCORE_MNIST_MIRRORS"),
    "fashion-mnist": _Spec(
        "fashion-mnist", "Fashion-MNIST", ("fashion-mnist", "FashionMNIST/raw"),
        {
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        "FASHION_MNIST_MIRRORS", "DIGITCORE_FASHION_MNIST_MIRRORS"),
}

# Bundled subset (scripts/make_mnist_mini.py): first 6000 training and first 1000 test
# examples of the official MNIST files. SHA-256 of the decompressed content.
MINI_PREFIX = "mnist-mini-"
MINI_COUNTS = (6000, 1000)
_MINI_SHA256 = {
    "train-images-idx3-ubyte": "2782ff6f3467f3487a520503c34fe99b761aa97623af029969e59716ac3585c3",
    "train-labels-idx1-ubyte": "0d830540a6191e75a9f5cd63cd5b4bde38960b893784bbf456d560179296d7cd",
    "t10k-images-idx3-ubyte": "de7c252b04f05e1f8309634180ccdf286dc6dbac8c579b74e76e02ae0331ca52",
    "t10k-labels-idx1-ubyte": "832c0d20f0dc42e575488c75a83a970787d4c8d4d05831b2ef03701b4a478a90",
}

_STAMP_FILE = "verified.json"


# ----------------------------------------------------------------------------- places

def get_cache_dir() -> Path:
    """The digitcore cache directory (not created).

    ``$DIGITCORE_CACHE_DIR`` if set; otherwise the platformdirs convention:
    ``$XDG_CACHE_HOME/digitcore`` or ``~/.cache/digitcore`` (Linux and other
    POSIX), ``~/Library/Caches/digitcore`` (macOS), ``%LOCALAPPDATA%\\digitcore\\Cache``
    (Windows).
    """
    env = os.environ.get("DIGITCORE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "digitcore" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "digitcore"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "digitcore"


def _spec(name: str) -> _Spec:
    key = _normalize_name(name)
    if key == "mnist-mini":  # (the callers of _spec look for, or fetch, four files)
        raise DatasetError("mnist-mini is bundled with digitcore: there are no files to "
                           "find or download; load it with load_dataset('mnist-mini')")
    if key not in _SPECS:
        raise DatasetError(f"unknown dataset {name!r} (expected one of {', '.join(DATASET_NAMES)})")
    return _SPECS[key]


def _normalize_name(name: str) -> str:
    key = str(name).strip().lower().replace("_", "-")
    return {"fashion": "fashion-mnist", "fashionmnist": "fashion-mnist",
            "mnistmini": "mnist-mini", "mini": "mnist-mini"}.get(key, key)


def _folder_dirs(spec: _Spec, base) -> list[Path]:
    """Where one base folder may hold ``spec``'s files: its dataset subfolders first (the
    base itself could hold the other dataset), then the base."""
    base = Path(base).expanduser()
    return [*(base / s for s in spec.subdirs), base]


def dataset_title(name: str) -> str:
    """The dataset's name as messages write it ("MNIST", "Fashion-MNIST")."""
    return _spec(name).title


def _search_dirs(spec: _Spec, data_dir) -> list[Path]:
    bases = []
    if data_dir is not None:
        bases.append(Path(data_dir).expanduser())
    env = os.environ.get("DIGITCORE_DATA")
    if env:
        bases.append(Path(env).expanduser())
    bases.append(get_cache_dir())
    dirs: list[Path] = []
    for base in bases:
        for d in _folder_dirs(spec, base):
            if d not in dirs:
                dirs.append(d)
    return dirs


def _file_in(directory: Path, name: str) -> Path | None:
    # raw first (cheapest to read); Kaggle-style "train-images.idx3-ubyte" too
    dotted = name.replace("-idx", ".idx")
    for cand in (name, name + ".gz", dotted, dotted + ".gz"):
        p = directory / cand
        if p.is_file():
            return p
    return None


def _complete_folders(dirs, files):
    """``{file: path}`` of ``files`` for each of ``dirs`` that holds them all, in order."""
    for d in dirs:
        found = {f: _file_in(d, f) for f in files}
        if all(found.values()):
            yield found


def find_dataset_files(name: str = "mnist", data_dir=None, files=FILES) -> dict[str, Path] | None:
    """Locate the four files of ``name`` locally (or those of ``files``: ``FILES[2:]``
    for the test split alone), without reading or downloading.

    Returns ``{canonical name: path}`` from the first directory (in lookup order)
    that holds all of them, or None.
    """
    return next(_complete_folders(_search_dirs(_spec(name), data_dir), files), None)


def folder_has_dataset(name: str, data_dir, files=FILES) -> bool:
    """Whether ``data_dir`` itself (or its dataset subfolder) holds all of ``name``'s four
    files (or of ``files``): the folder a user named, without the search's other places
    ($DIGITCORE_DATA, the cache)."""
    return next(_complete_folders(_folder_dirs(_spec(name), data_dir), files), None) is not None


def incomplete_dataset_files(name: str, data_dir, files=FILES) -> tuple[Path, list[str]] | None:
    """``(folder, the file names it lacks)`` for ``data_dir`` (or its dataset subfolder)
    when it holds some of ``name``'s four files (or of ``files``) but not all (a partial
    copy, which the search would pass over for another folder or the bundled subset),
    else None."""
    if data_dir is None:
        return None
    partial = None
    for d in _folder_dirs(_spec(name), data_dir):
        found = {f: _file_in(d, f) for f in files}
        if all(found.values()):
            return None  # (a complete set in one of its folders is what the search takes)
        if any(found.values()) and partial is None:
            partial = d, [f for f, p in found.items() if p is None]
    return partial


# ----------------------------------------------------------------------------- verification

class _Stamps:
    """``verified.json`` in the cache dir: path -> (size, mtime_ns, sha256) of checked files."""

    def __init__(self):
        self.path = get_cache_dir() / _STAMP_FILE
        self.entries: dict = {}
        self.dirty = False
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and isinstance(data.get("files"), dict):
                self.entries = data["files"]
        except (OSError, ValueError, RecursionError):  # (a damaged cache is ignored)
            pass

    @staticmethod
    def _key(path: Path) -> str:
        return str(Path(path).resolve())

    def ok(self, path: Path, st: os.stat_result, sha: str) -> bool:
        """Whether ``path`` as it is now was checked and had SHA-256 ``sha`` (known()'s
        tests: a same-size copy with the old mtime over it is hashed again)."""
        return self.known(path, st) == sha

    def known(self, path: Path, st: os.stat_result) -> str | None:
        """The SHA-256 recorded for ``path`` as it is now, or None: size and mtime, and its
        inode and change time too (a file replaced by a copy that keeps its size and
        mtime, cp -p or rsync -a, gets a new inode or change time)."""
        e = self.entries.get(self._key(path))
        if isinstance(e, dict) and e.get("size") == st.st_size \
                and e.get("mtime_ns") == st.st_mtime_ns and isinstance(e.get("sha256"), str) \
                and e.get("ino") == st.st_ino and e.get("ctime_ns") == st.st_ctime_ns:
            return e["sha256"]
        return None

    def add(self, path: Path, st: os.stat_result, sha: str) -> None:
        self.entries[self._key(path)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                         "ino": st.st_ino, "ctime_ns": st.st_ctime_ns,
                                         "sha256": sha}
        self.dirty = True

    def save(self) -> None:
        """Write atomically; a read-only cache only costs re-hashing next time."""
        if not self.dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(self.path, "w", encoding="utf-8") as f:
                json.dump({"version": 1, "files": self.entries}, f, indent=1, sort_keys=True)
        except OSError:
            pass
        self.dirty = False


def _known_hashes() -> dict[str, str]:
    out = {}
    for spec in _SPECS.values():
        for f, h in spec.sha256.items():
            out[h] = f"{spec.title} {f}"
    for f, h in _MINI_SHA256.items():
        out[h] = f"mnist-mini {f}"
    return out


class _OtherDataset(DatasetError):
    """A dataset file holding another dataset's file of the same name (MNIST and
    Fashion-MNIST name their files alike)."""


def _mismatch(path, what: str, got: str, expected: str) -> DatasetError:
    known = _known_hashes().get(got)
    title = what.rsplit(" ", 1)[0]
    spec = next((sp for sp in _SPECS.values() if sp.title == title), None)
    if known and spec is not None and not known.startswith(title + " "):
        folder = Path(path).parent
        if folder.name in spec.subdirs or "/".join(folder.parts[-2:]) in spec.subdirs:
            where = f"{folder} is {title}'s own folder: put {title}'s files there instead"
        else:
            where = (f"keep it, and put {title}'s files in a folder of their own, such as "
                     f"{folder / spec.subdirs[0]} (looked in first)")
        return _OtherDataset(
            f"{os.fspath(path)} is the {known} file, not {what}: the two datasets name "
            f"their files alike, so one folder holds one of them; {where}.")
    hint = (f"it is the {known} file" if known else
            "the file is corrupt, truncated or not the official one")
    return DatasetError(
        f"{os.fspath(path)}: SHA-256 of the decompressed content is {got}, expected {expected} "
        f"for {what}; {hint}. Delete it to re-download, or pass verify=False "
        "(digitcore train --no-verify) to use your own IDX files.")


def _load_verified(path: Path, expected: str | None, what: str, stamps: _Stamps | None):
    if expected is None:
        return read_idx(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot stat ({exc})") from None
    if stamps is not None and stamps.ok(path, st, expected):
        return read_idx(path)
    known = stamps.known(path, st) if stamps is not None else None
    if known is not None and known != expected and known in _known_hashes():
        raise _mismatch(path, what, known, expected)  # (another dataset's, hashed before)
    arr, got = read_idx_sha256(path)
    if got != expected:
        if stamps is not None and got in _known_hashes():
            stamps.add(path, st, got)  # (skipped without hashing next time)
        raise _mismatch(path, what, got, expected)
    if stamps is not None:
        try:
            st2 = path.stat()
        except OSError:
            st2 = None
        if st2 is not None and (st2.st_size, st2.st_mtime_ns) == (st.st_size, st.st_mtime_ns):
            stamps.add(path, st, expected)
    return arr


def _check_pair(x: np.ndarray, y: np.ndarray, xpath, ypath) -> None:
    if x.ndim != 3 or x.dtype != np.uint8:
        raise DatasetError(f"{xpath}: expected uint8 images of shape (n, h, w), "
                           f"got {x.dtype} {x.shape}")
    if y.ndim != 1 or y.dtype != np.uint8:
        raise DatasetError(f"{ypath}: expected uint8 labels of shape (n,), got {y.dtype} {y.shape}")
    if len(x) != len(y):
        raise DatasetError(f"{ypath} has {len(y)} labels but {xpath} has {len(x)} images")


def _load_files(paths: dict, files, hashes: dict | None, title: str, stamps: _Stamps | None):
    """``{name: array}`` of ``files`` (pairs of images and labels), each verified against
    ``hashes`` (None: not verified), each pair checked to match and hold examples."""
    arrays = {}
    try:
        for f in files:
            expected = hashes[f] if hashes is not None else None
            arrays[f] = _load_verified(Path(paths[f]), expected, f"{title} {f}", stamps)
    finally:
        if stamps is not None:
            stamps.save()
    for images, labels in zip(files[::2], files[1::2]):
        _check_pair(arrays[images], arrays[labels], paths[images], paths[labels])
    for f in files:
        if len(arrays[f]) == 0:
            raise DatasetError(f"{paths[f]}: holds no examples")
    return arrays


# ----------------------------------------------------------------------------- download

# A download's temporary file (atomic_file's ".NAME.gz.HEX.tmp") untouched this long was
# left by a process killed while downloading (a live one writes it continuously).
_STALE_DOWNLOAD_S = 3600.0


def _drop_stale_downloads(dest: Path) -> None:
    """Remove the temporary files killed downloads into ``dest`` left (up to ~10 MB each,
    never trusted, but never removed either)."""
    now = time.time()
    for f in FILES:
        for tmp in dest.glob(f".{glob.escape(f)}.gz.*.tmp"):
            with contextlib.suppress(OSError):
                if now - tmp.stat().st_mtime > _STALE_DOWNLOAD_S:
                    tmp.unlink()


def _mirrors(spec: _Spec, mirrors) -> tuple[str, ...]:
    if mirrors is None:
        env = os.environ.get(spec.mirrors_env, "").strip()
        mirrors = re.split(r"[\s,]+", env) if env else globals()[spec.mirrors_attr]
    if isinstance(mirrors, str):
        mirrors = (mirrors,)
    out = tuple(m.strip() for m in mirrors if m and m.strip())
    if not out:
        raise DatasetError(f"no download mirrors configured for {spec.title}")
    return out


def _check_timeout(timeout) -> tuple[float, float]:
    """download_dataset's ``timeout`` as (connect, read) seconds, each finite and > 0; a
    ValueError naming it otherwise (it was reported as every mirror failing)."""
    parts = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    try:
        if len(parts) != 2 or any(isinstance(t, bool) for t in parts):
            raise TypeError
        out = (float(parts[0]), float(parts[1]))
    except (TypeError, ValueError):
        raise ValueError(f"timeout must be seconds (a number) or a (connect, read) pair of "
                         f"them, got {timeout!r}") from None
    if not all(math.isfinite(t) and t > 0 for t in out):
        raise ValueError(f"timeout must be finite and positive, got {timeout!r}")
    return out


def _url(base: str, fname: str) -> str:
    return base if base.endswith(fname) else base.rstrip("/") + "/" + fname


class _Progress:
    def __init__(self, label: str, total: int | None, stream):
        self.label, self.total, self.stream = label, total, stream
        self.last = 0.0

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < 0.1:
            return
        self.last = now
        mb = done / 1e6
        if self.total:
            pct = min(100, 100 * done // self.total)
            bar = "#" * (pct // 4)
            msg = f"\r{self.label} [{bar:<25}] {pct:3d}% {mb:.1f}/{self.total / 1e6:.1f} MB"
        else:
            msg = f"\r{self.label} {mb:.1f} MB"
        self.stream.write(msg + ("\n" if final else ""))
        self.stream.flush()


def _set_read_timeout(resp, seconds: float) -> None:
    # urllib applies one timeout to connect and reads; after connecting, give reads
    # their own (longer) limit. Best effort: the attribute path is an implementation detail.
    try:
        resp.fp.raw._sock.settimeout(seconds)
    except AttributeError:
        pass


def _fetch(url: str, target: Path, expected_sha: str, expected_size: int,
           timeout: tuple[float, float], show_progress: bool) -> None:
    """Download one .gz to a temp file next to target, verify while streaming, rename."""
    connect_t, read_t = timeout
    max_compressed = expected_size + (1 << 20)  # gzip never grows data by more than this
    req = urllib.request.Request(url, headers={"User-Agent": f"digitcore/{__version__}"})
    # (a temporary file beside target, created as open() creates files: the umask decides
    # its permissions; flushed, fsynced and renamed over target, or removed on any error)
    with atomic_file(target) as out:
        with urllib.request.urlopen(req, timeout=connect_t) as resp:
            _set_read_timeout(resp, read_t)
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > max_compressed:
                raise DatasetError(f"server announces {total} bytes, more than "
                                   f"{max_compressed} possible for this file")
            bar = (_Progress(f"Downloading {target.name}", total, sys.stderr)
                   if show_progress else None)
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            h = hashlib.sha256()
            n_in = n_out = 0
            while True:
                chunk = resp.read(1 << 16)
                if not chunk:
                    break
                if d.eof:
                    raise DatasetError("unexpected data after the end of the gzip stream")
                n_in += len(chunk)
                if n_in > max_compressed:
                    raise DatasetError(f"download exceeds {max_compressed} bytes")
                out.write(chunk)
                data = chunk
                while data and not d.eof:
                    try:
                        piece = d.decompress(data, expected_size + 1 - n_out)
                    except zlib.error as exc:
                        raise DatasetError(f"not a valid gzip stream ({exc})") from None
                    n_out += len(piece)
                    if n_out > expected_size:
                        raise DatasetError(f"decompresses to more than the expected "
                                           f"{expected_size} bytes")
                    h.update(piece)
                    data = d.unconsumed_tail
                if d.eof and d.unused_data:
                    raise DatasetError("unexpected data after the end of the gzip stream")
                if bar:
                    bar.update(n_in)
            if bar:
                bar.update(n_in, final=True)
        if total is not None and n_in != total:
            raise DatasetError(f"connection closed after {n_in} of {total} bytes")
        if not d.eof:
            raise DatasetError(f"truncated gzip stream ({n_in} bytes received)")
        got = h.hexdigest()
        if n_out != expected_size or got != expected_sha:
            raise DatasetError(f"content has SHA-256 {got} ({n_out} bytes), expected "
                               f"{expected_sha} ({expected_size} bytes)")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"{exc.reason}"
    if isinstance(exc, TimeoutError):
        return f"timed out ({exc})" if str(exc) else "timed out"
    return f"{type(exc).__name__}: {exc}" if not isinstance(exc, DatasetError) else str(exc)


def download_dataset(name: str = "mnist", dest_dir=None, *, mirrors: Sequence[str] | None = None,
                     timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
                     progress: bool | None = None) -> dict[str, Path]:
    """Download the four files of ``name`` ("mnist" or "fashion-mnist") as ``.gz``.

    Each file is streamed to a temporary file in ``dest_dir``, verified (SHA-256 and
    size of the decompressed content, decompressed with a size cap) and renamed into
    place; a failed or interrupted download leaves nothing a later load would trust.
    Files already in ``dest_dir`` are kept (they are verified when loaded).

    Parameters
    ----------
    dest_dir : path, optional
        Default ``<cache dir>/<name>``; created if needed.
    mirrors : sequence of str, optional
        Base URLs tried in order. Default ``$DIGITCORE_MNIST_MIRRORS`` /
        ``$DIGITCORE_FASHION_MNIST_MIRRORS`` (comma- or space-separated) or
        :data:`MNIST_MIRRORS` / :data:`FASHION_MNIST_MIRRORS`.
    timeout : float or (connect, read)
        Seconds; a single number is used for both.
    progress : bool, optional
        Progress bar on stderr; default only when stderr is a terminal.

    Returns
    -------
    dict
        ``{canonical name: path}`` of the four files.
    """
    spec = _spec(name)
    timeout = _check_timeout(timeout)
    bases = _mirrors(spec, mirrors)
    if progress is None:
        progress = bool(getattr(sys.stderr, "isatty", lambda: False)())
    dest = Path(dest_dir).expanduser() if dest_dir is not None else get_cache_dir() / spec.name
    # the folders this call creates: removed again if nothing could be downloaded into
    # them (a mistyped data_dir leaves no empty tree behind)
    # (the normalized absolute path: "typo/../data" is data/, and typo/ is neither made
    # nor removed; os.path's tests take an unreadable path for a missing one, never raise)
    dest = Path(os.path.abspath(dest))
    created = []
    for d in (dest, *dest.parents):
        if not os.path.lexists(d):
            created.append(d)
        elif not os.path.isdir(d):
            raise DatasetError(f"cannot download into {dest}: {d} is a file, not a folder")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create download directory {dest} ({exc})") from None
    _drop_stale_downloads(dest)
    stamps = _Stamps()
    result: dict[str, Path] = {}
    try:
        for f in FILES:
            existing = _file_in(dest, f)
            if existing is not None:
                result[f] = existing
                continue
            target = dest / (f + ".gz")
            tried = []
            for base in bases:
                url = _url(base, target.name)
                try:
                    # (again: another process's failed download into the same new
                    # folder may have removed it since)
                    dest.mkdir(parents=True, exist_ok=True)
                    _fetch(url, target, spec.sha256[f], spec.sizes[f], timeout, progress)
                except (OSError, http.client.HTTPException, DatasetError, ValueError) as exc:
                    tried.append(f"  {url}: {_describe(exc)}")
                    continue
                try:
                    stamps.add(target, target.stat(), spec.sha256[f])
                except OSError:
                    pass
                result[f] = target
                break
            else:
                raise DatasetError(
                    f"could not download {spec.title} file {target.name}; tried:\n"
                    + "\n".join(tried)
                    + f"\nTo install {spec.title} by hand, download "
                    + ", ".join(x + ".gz" for x in FILES)
                    + f" from one of these mirrors (or any copy of the official files) and put "
                    f"them in {dest} (raw or .gz), or in a directory you pass as data_dir= or "
                    f"name in $DIGITCORE_DATA. Other mirrors: set ${spec.mirrors_env}.")
    finally:
        # on any way out, an error or Ctrl-C too: what was verified is remembered, and
        # the folders this call made are removed if nothing arrived in them
        stamps.save()
        if not result:
            for d in created:  # (innermost first; one holding anything stays)
                try:
                    d.rmdir()
                except OSError:
                    break
    return result


# ----------------------------------------------------------------------------- loading

def _not_found(spec: _Spec, data_dir) -> DatasetError:
    dirs = _search_dirs(spec, data_dir)
    try:
        bases = _mirrors(spec, None)
    except DatasetError:  # (an empty $..._MIRRORS must not hide what is missing)
        bases = globals()[spec.mirrors_attr]
    return DatasetError(
        f"{spec.title} not found: looked for " + ", ".join(FILES) + " (raw or .gz) in:\n"
        + "\n".join(f"  {d}" for d in dirs)
        + f"\nTo get it: call digitcore.load_dataset({spec.name!r}, download=True) (on the "
        f"command line: --download; about 11 MB "
        f"into {_download_dir(spec, data_dir) or get_cache_dir() / spec.name}), or download the four .gz files from {bases[0]} "
        f"and put them in one of the directories above (or set $DIGITCORE_DATA).")


def load_test_split(name: str = "mnist", data_dir=None, *, verify: bool = True):
    """``(x_test, y_test)`` of ``name`` from its two test files alone (what an evaluation
    reads: the training files need not be there), found as :func:`load_dataset` finds
    files; "mnist-mini": its bundled test split. Never downloads. ``verify`` as in
    :func:`load_mnist`; DatasetError naming the problem."""
    key = _normalize_name(name)
    if key == "mnist-mini":
        return load_mnist_mini(verify=verify)[1]
    spec = _spec(key)
    arrays, paths = _read_first(spec, _search_dirs(spec, data_dir), FILES[2:], verify)
    if arrays is None:
        raise _not_found(spec, data_dir)
    return _split(arrays, paths)[1]


def _download_dir(spec: _Spec, data_dir) -> Path | None:
    """Where a download with ``data_dir`` goes: its dataset subfolder ("DIR/mnist",
    "DIR/fashion-mnist"), which the search looks in before DIR itself, so the two datasets
    (whose files have the same names) never meet in one folder. None: the cache's."""
    return None if data_dir is None else Path(data_dir).expanduser() / spec.subdirs[0]


def _read_first(spec: _Spec, dirs, files, verify: bool):
    """``({file: array}, {file: path})`` of ``files`` from the first of ``dirs`` that holds
    them all, past folders holding the other dataset's files of the same names (a folder,
    $DIGITCORE_DATA or the cache's base holding MNIST where Fashion-MNIST's files are
    looked for: MNIST's, skipped); ``(None, None)`` when none holds them, and the first
    such refusal when only the other dataset's were found. Without ``verify`` nothing is
    hashed, so nothing tells the two apart: the first folder's files are read."""
    hashes, stamps = (spec.sha256, _Stamps()) if verify else (None, None)
    other = None
    for found in _complete_folders(dirs, files):
        try:
            return _load_files(found, files, hashes, spec.title, stamps), found
        except _OtherDataset as exc:
            other = other or exc
    if other is not None:
        raise other
    return None, None


def _split(arrays: dict, paths: dict):
    """(train pair or None, test pair) of the arrays _read_first read; the two image
    sizes must agree."""
    test = arrays[FILES[2]], arrays[FILES[3]]
    if FILES[0] not in arrays:
        return None, test
    if arrays[FILES[0]].shape[1:] != arrays[FILES[2]].shape[1:]:
        raise DatasetError(
            f"{paths[FILES[2]]} holds images of shape {arrays[FILES[2]].shape[1:]} but "
            f"{paths[FILES[0]]} holds {arrays[FILES[0]].shape[1:]}: training and test "
            "images must have the same size")
    return (arrays[FILES[0]], arrays[FILES[1]]), test


def _load(spec: _Spec, data_dir, download: bool, verify: bool):
    try:
        arrays, paths = _read_first(spec, _search_dirs(spec, data_dir), FILES, verify)
    except _OtherDataset:
        if not download:
            raise
        arrays = None
    if arrays is None:
        if not download:
            raise _not_found(spec, data_dir)
        paths = download_dataset(spec.name, _download_dir(spec, data_dir))
        arrays, paths = _read_first(spec, [Path(paths[FILES[0]]).parent], FILES, verify)
    return _split(arrays, paths)


def read_folder(name: str, folder, *, verify: bool = True, test_only: bool = False):
    """``(train pair or None, test pair, the folder read)`` of ``name``'s files in
    ``folder`` or its dataset subfolder only (what ``digitcore ... --data-dir DIR``
    reads: none of the search's other places). DatasetError when they are not there."""
    spec = _spec(name)
    files = FILES[2:] if test_only else FILES
    arrays, paths = _read_first(spec, _folder_dirs(spec, folder), files, verify)
    if arrays is None:
        raise DatasetError(f"no {spec.title} files in {folder} (" + ", ".join(files)
                           + ", raw or .gz, in it or in its dataset subfolder)")
    return (*_split(arrays, paths), Path(paths[files[0]]).parent)


def load_mnist(data_dir=None, *, download: bool = True, verify: bool = True):
    """Load MNIST as ``(x_train, y_train), (x_test, y_test)``, like keras.

    Parameters
    ----------
    data_dir : path, optional
        Looked in first, itself and its ``mnist`` subfolder (then ``$DIGITCORE_DATA``,
        then the cache dir); a download goes into ``data_dir/mnist`` when given (default:
        ``<cache dir>/mnist``): Fashion-MNIST's files have the same names, and go into
        ``data_dir/fashion-mnist``.
    download : bool
        Fetch from the public mirrors when no local copy is found.
    verify : bool
        Check SHA-256s (once per file; remembered in the cache dir). Turn off for
        your own IDX files in the MNIST layout; without it nothing tells MNIST's files
        from Fashion-MNIST's (they have the same names): the first folder's are read.

    Returns
    -------
    (x_train, y_train), (x_test, y_test)
        uint8 images ``(60000, 28, 28)`` / ``(10000, 28, 28)``, uint8 labels.

    Raises
    ------
    DatasetError
        Not found (with how to get it), download failed, malformed file, checksum
        mismatch, or image and label counts that differ.
    """
    return _load(_SPECS["mnist"], data_dir, download, verify)


def load_fashion_mnist(data_dir=None, *, download: bool = True, verify: bool = True):
    """Load Fashion-MNIST (Zalando, MIT licence); same contract as :func:`load_mnist`."""
    return _load(_SPECS["fashion-mnist"], data_dir, download, verify)


def load_mnist_mini(*, verify: bool = True):
    """The bundled subset: first 6000 training and first 1000 test MNIST examples."""
    root = importlib.resources.files("digitcore").joinpath("_data")
    arrays = []
    for f in FILES:
        fname = MINI_PREFIX + f + ".gz"
        with importlib.resources.as_file(root.joinpath(fname)) as p:
            if not Path(p).is_file():
                raise DatasetError(
                    f"bundled file digitcore/_data/{fname} is missing: the package was "
                    "installed without its data files (reinstall digitcore)")
            arrays.append(_load_verified(Path(p), _MINI_SHA256[f] if verify else None,
                                         f"mnist-mini {f}", None))
    _check_pair(arrays[0], arrays[1], FILES[0], FILES[1])
    _check_pair(arrays[2], arrays[3], FILES[2], FILES[3])
    return (arrays[0], arrays[1]), (arrays[2], arrays[3])


def load_dataset(name: str, data_dir=None, *, download: bool = True, verify: bool = True):
    """Load "mnist", "fashion-mnist" or "mnist-mini" (bundled; never downloads).

    Same return value and errors as :func:`load_mnist`. There is no silent
    fallback: ``load_dataset("mnist", download=False)`` without local files raises.
    """
    key = _normalize_name(name)
    if key == "mnist-mini":
        return load_mnist_mini(verify=verify)
    return _load(_spec(key), data_dir, download, verify)


def resolve_default_dataset(data_dir=None, *, verify: bool = True, test_only: bool = False):
    """The data ``digitcore train`` uses: full MNIST if present locally, else mnist-mini.

    Never downloads. Returns ``(name, (x_train, y_train), (x_test, y_test), notice)``
    where ``notice`` is None for full MNIST, or a one-line string saying the bundled
    subset is used and how to get the full dataset. Local MNIST files that fail
    verification raise DatasetError rather than being skipped (but for Fashion-MNIST's
    files, passed over as every loader passes them). With ``verify=False`` the local
    files in the MNIST layout are used without checksums (a user's own IDX
    data); their name is then ``"IDX files in <folder>"``. With ``test_only`` (what
    ``digitcore evaluate`` reads) only the two test files are looked for and read, and
    the training pair is None.
    """
    files = FILES[2:] if test_only else FILES
    spec = _SPECS["mnist"]
    arrays, paths = _read_first(spec, _search_dirs(spec, data_dir), files, verify)
    if arrays is not None:
        name = "mnist" if verify else f"IDX files in {Path(paths[files[0]]).parent}"
        return (name, *_split(arrays, paths), None)
    train, test = load_mnist_mini()
    notice = (f"Full MNIST not found locally; using the bundled mnist-mini subset "
              f"({MINI_COUNTS[0]:,} train / {MINI_COUNTS[1]:,} test images). "
              "Get the full dataset with digitcore.load_mnist(download=True).")
    return "mnist-mini", None if test_only else train, test, notice
