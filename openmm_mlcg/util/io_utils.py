"""Atomic file writing, deterministic npz archives and content hashing shared by mapping, cache, checkpoints
and bundles.

Temporary files of :func:`atomic_write` are named ``.<target>.<pid>.<random>.tmp`` beside the target; a write
that was killed leaves one behind, and the next atomic write into the same directory removes those whose
process no longer runs (and legacy ``.<target>.<random>.tmp`` files older than :data:`LEGACY_TMP_AGE_S`).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["atomic_write", "sha256_arrays", "clean_stale_tmp", "write_npz", "file_digest", "ZIP_EPOCH"]

#: fixed timestamp of every member of archives we write (zip cannot store dates before 1980)
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
#: legacy temporary files (no pid in the name) older than this are stale
LEGACY_TMP_AGE_S = 600.0
_TMP_PID = re.compile(r"^\..+\.(\d+)\.[A-Za-z0-9_]+\.tmp$")
_TMP_LEGACY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale_tmp(directory) -> list:
    """Remove temporary files left in ``directory`` by killed atomic writes; returns the removed paths."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    now = time.time()
    for e in entries:
        name = e.name
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        m = _TMP_PID.match(name)
        try:
            if m:
                stale = int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1)))
            else:
                stale = bool(_TMP_LEGACY.match(name)) and now - e.stat().st_mtime > LEGACY_TMP_AGE_S
            if stale and e.is_file(follow_symlinks=False):
                os.unlink(e.path)
                removed.append(Path(e.path))
        except OSError:
            continue
    return removed


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb"):
    """Open a temporary file beside ``path`` and move it over ``path`` only if the block succeeds.

    A crash or exception inside the block leaves any previous ``path`` untouched; temporary files of earlier
    killed writes into the same directory are removed first (:func:`clean_stale_tmp`).

    Raises:
        FileNotFoundError: the parent directory of ``path`` does not exist.
        IsADirectoryError: ``path`` is an existing directory.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"path: parent directory {path.parent} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"path: expected a file path, but {path} is a directory")
    clean_stale_tmp(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_npz(fh, arrays: dict, compress: bool = False) -> None:
    """Write ``arrays`` as an ``.npz`` archive readable by ``np.load`` with byte-identical output for identical
    content (sorted names, fixed member timestamps), unlike ``np.savez`` which stamps the current time."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(fh, "w", compression=method, allowZip64=True) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_EPOCH)
            info.compress_type = method
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def file_digest(path, chunk: int = 1 << 20) -> str:
    """BLAKE2b (128-bit, hex) of a file's bytes, read in chunks (content key for caches)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sha256_arrays(*arrays, extra: str = "") -> str:
    """Hex SHA-256 of the dtype, shape and bytes of each array, followed by ``extra``."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    h.update(extra.encode())
    return h.hexdigest()
