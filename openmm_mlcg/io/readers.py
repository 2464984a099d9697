"""Readers that turn corrupt, truncated, empty or wrong-kind files into one clear error naming the file, what
was expected and what was found (instead of ``BadZipFile``, ``EOFError`` or numpy's pickle advice)."""
from __future__ import annotations

import json
import zipfile
import zlib

import numpy as np

from ..util.io_utils import check_input_file, describe_file, read_text_file

__all__ = ["describe_file", "check_input_file", "read_npz", "read_json", "dcd_frames"]


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
    text = read_text_file(p, f"{what} JSON", name)  # binary -> ValueError naming what the file looks like
    try:
        data = json.loads(text)
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
