"""Readers that turn corrupt, truncated, empty or wrong-kind files into one clear error naming the file, what
was expected and what was found (instead of ``BadZipFile``, ``EOFError`` or numpy's pickle advice)."""
from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

__all__ = ["describe_file", "check_input_file", "read_npz", "read_json", "dcd_frames"]


def describe_file(path) -> str:
    """A few words on what ``path`` holds (for error messages): empty, text, zip archive, binary."""
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
        return f"a zip archive of {size} bytes"
    if head.startswith(b"\x93NUMPY"):
        return "a single .npy array"
    try:
        text = head.decode("utf-8")
        first = text.splitlines()[0] if text.strip() else text
        return f"a text file of {size} bytes starting with {first[:40]!r}"
    except UnicodeDecodeError:
        return f"binary data of {size} bytes starting with {head[:8]!r}"


def check_input_file(path, what: str, name: str = "path") -> Path:
    """``path`` as a Path that exists, is a file and is not empty.

    Raises:
        FileNotFoundError: missing. IsADirectoryError: a directory. ValueError: empty.
    """
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"{name}: expected {what} file, got the directory {p}")
    if not p.is_file():
        raise FileNotFoundError(f"{name}: {what} file {p} does not exist")
    if p.stat().st_size == 0:
        raise ValueError(f"{name}: {what} file {p} is empty (0 bytes)")
    return p


def read_npz(path, what: str, required=(), name: str = "path") -> dict:
    """All arrays of an ``.npz`` archive as a dict (read eagerly, pickles refused).

    Args:
        path: the file. what: what it should be (e.g. "CGMapping"). required: entries that must be present.
        name: argument named in messages.

    Raises:
        FileNotFoundError / IsADirectoryError: missing path or a directory.
        ValueError: empty, truncated or corrupt file, not an npz archive, or missing entries; the message
            names the file, the expected content and what was found.
    """
    p = check_input_file(path, f"a {what} .npz", name)
    try:
        data = np.load(p, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an archive")
        with data:
            out = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error, ValueError, KeyError, AttributeError) as exc:
        raise ValueError(f"{name}: {p} is not a readable {what} .npz archive (expected a complete npz written by "
                         f"openmm_mlcg, found {describe_file(p)}; {type(exc).__name__}: {exc})") from None
    missing = [k for k in required if k not in out]
    if missing:
        raise ValueError(f"{name}: {p} is not a {what} file: missing entries {missing} (found {sorted(out)})")
    return out


def read_json(path, what: str, name: str = "path") -> dict:
    """A JSON object from ``path``.

    Raises:
        FileNotFoundError / IsADirectoryError: missing path or a directory.
        ValueError: empty file, invalid JSON (with line and column) or not an object.
    """
    p = check_input_file(path, f"a {what} JSON", name)
    try:
        data = json.loads(p.read_text())
    except UnicodeDecodeError:
        raise ValueError(f"{name}: {p} is not {what} JSON (found {describe_file(p)})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name}: {p} is not valid {what} JSON: {exc.msg} at line {exc.lineno} column "
                         f"{exc.colno}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{name}: {p} should hold a JSON object ({what}), found {type(data).__name__}")
    return data


def dcd_frames(path):
    """Complete frames in a DCD file (from its size), or None if ``path`` is not a readable DCD file."""
    from .dcd import dcd_frame_count

    try:
        return dcd_frame_count(path)
    except Exception:  # not a DCD / unreadable: the caller reports its own error
        return None
