"""Output paths checked before any work starts, so a long run does not fail at its last write."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["check_output_dir", "check_output_file"]


def _existing_ancestor(p: Path) -> Path:
    p = p.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output_dir(path, name: str = "out") -> Path:
    """``path`` is, or can be created as, a writable directory (nothing is created).

    Raises:
        NotADirectoryError: ``path`` or one of its parents is a file.
        PermissionError: the directory (or its nearest existing parent) is not writable.
    """
    p = Path(path)
    base = _existing_ancestor(p)
    if not base.is_dir():
        what = "is a file" if base == p.absolute() else f"has a parent {base} that is a file"
        raise NotADirectoryError(f"{name}: expected a directory, but {p} {what}")
    if not os.access(base, os.W_OK | os.X_OK):
        raise PermissionError(f"{name}: cannot write into {base} (permission denied) for output {p}")
    return p


def check_output_file(path, name: str = "out") -> Path:
    """``path`` can be written as a file: not a directory, and its directory is (or can be) writable.

    Raises:
        IsADirectoryError: ``path`` is a directory. NotADirectoryError / PermissionError: see
        :func:`check_output_dir` for its parent; PermissionError also for an existing read-only file.
    """
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"{name}: expected a file path, but {p} is a directory")
    check_output_dir(p.parent, name)
    if p.exists() and not os.access(p, os.W_OK) and not os.access(p.parent, os.W_OK):
        raise PermissionError(f"{name}: cannot overwrite {p} (permission denied)")
    return p
