"""Atomic file writing, deterministic npz archives and content hashing shared by mapping, cache, checkpoints
and bundles; what a file holds (:func:`describe_file`) and text input that refuses binary files
(:func:`read_text_file`).

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

__all__ = ["atomic_write", "sha256_arrays", "clean_stale_tmp", "write_npz", "file_digest", "ZIP_EPOCH",
           "describe_file", "check_input_file", "read_text_file"]

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


# ------------------------------------------------------------------------------------------- what a file holds
#: (leading bytes, offset, what) of binary formats users pass by mistake
_MAGIC = ((b"CORD", 4, "a DCD trajectory"), (b"\x89HDF\r\n\x1a\n", 0, "an HDF5 file (e.g. an mdtraj .h5 trajectory)"),
          (b"\x93NUMPY", 0, "a single .npy array"), (b"\x00\x00\x07\xcb", 0, "an XTC trajectory"),
          (b"OpenMM Binary Checkpoint", 0, "an OpenMM checkpoint"))


def _describe_zip(path: Path, size: int) -> str:
    """What a file that starts like a zip archive holds: a model bundle, an npz archive or another zip."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, EOFError):
        return f"a truncated or corrupt zip archive of {size} bytes"
    if "metadata.json" in names and any(n.endswith((".pt", ".pt2")) for n in names):
        return f"an openmm_mlcg model bundle (a zip archive of {size} bytes)"
    if names and all(n.endswith(".npy") for n in names):
        return f"an .npz archive of {size} bytes"
    return f"a zip archive of {size} bytes"


def describe_file(path) -> str:
    """A few words on what ``path`` holds (for error messages): empty, a model bundle, an npz or zip archive,
    a DCD/XTC/HDF5 trajectory, a .npy array, text (with its first line) or other binary data."""
    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        return f"an unreadable file ({exc.strerror or exc})"
    if size == 0:
        return "an empty file (0 bytes)"
    if head.startswith(b"PK\x03\x04"):
        return _describe_zip(p, size)
    for magic, offset, what in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return f"{what} of {size} bytes"
    if b"\x00" not in head:
        try:
            text = head.decode("utf-8")
            first = text.splitlines()[0] if text.strip() else text
            return f"a text file of {size} bytes starting with {first[:40]!r}"
        except UnicodeDecodeError:
            pass
    return f"binary data of {size} bytes starting with {head[:8]!r}"


def check_input_file(path, what: str, name: str = "path") -> Path:
    """``path`` as a Path that exists, is a file and is not empty.

    Raises:
        FileNotFoundError: missing. IsADirectoryError: a directory. ValueError: empty.
    """
    p = _existing_file(path, what, name)
    if p.stat().st_size == 0:
        raise ValueError(f"{name}: {what} file {p} is empty (0 bytes)")
    return p


def _existing_file(path, what: str, name: str) -> Path:
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"{name}: expected {what} file, got the directory {p}")
    if not p.is_file():
        raise FileNotFoundError(f"{name}: {what} file {p} does not exist")
    return p


def read_text_file(path, what: str, name: str = "path", hint: str = "") -> str:
    """The text of a UTF-8 file given as argument ``name`` (an empty file gives ``""``).

    Args:
        path: the file. what: what it should be, e.g. "a YAML config". name: the argument named in messages.
        hint: appended to the message when the file is binary, e.g. "did you swap BUNDLE and CONFIG?".

    Raises:
        FileNotFoundError: missing. IsADirectoryError: a directory.
        ValueError: binary content (NUL bytes or not UTF-8); the message names ``name``, the file, what was
            expected and what the file looks like (a model bundle, a DCD trajectory, ...).
    """
    p = _existing_file(path, what, name)
    text = _utf8_text(p.read_bytes())
    if text is None:
        raise ValueError(f"{name}: {p} is {describe_file(p)}, expected {what} (a text file)"
                         f"{'; ' + hint if hint else ''}")
    return text


def _utf8_text(data: bytes):
    """``data`` decoded as UTF-8, or None for binary data (a NUL byte in the first 8 KiB, or not UTF-8)."""
    if b"\x00" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None
