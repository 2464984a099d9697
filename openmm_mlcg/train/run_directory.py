"""The trainer's output directory: one writer at a time, and nothing left behind by a run that failed early.

A run holds the directory's lock (:func:`openmm_mlcg.util.locks.output_lock`) while it writes. When it fails before
a checkpoint exists there (a bad option found in the data, Ctrl-C, a diverged loss in the first steps), it removes
what it created, still holding the lock: the whole directory, and the parents it needed, when the directory did
not exist before; else only the entries that are new. Nothing that existed before the run is touched, and a run
with a checkpoint (its own or a resumed one) keeps everything: that run is resumable.
"""
from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from openmm_mlcg.util.locks import LOCK_NAME, output_lock

__all__ = ["CHECKPOINT_NAME", "refuse_busy", "run_directory"]

#: a run directory holding this file is resumable and never cleaned up
CHECKPOINT_NAME = "checkpoint.pt"


@contextlib.contextmanager
def run_directory(out, what: str = "train", name: str = "training.out_dir"):
    """Hold the lock of output directory ``out`` for the block (created if missing) and, when the block raises
    before ``out`` holds a checkpoint, remove what the block created (module docstring) and re-raise.

    Args:
        out: the output directory. what, name: the writer and the option naming ``out`` (for the lock's message).

    Raises:
        OutputLockedError: another process holds the lock. NotADirectoryError / PermissionError: ``out`` cannot
            be created.
    """
    out = Path(out)
    top = out
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    before = None if not out.exists() else {p.name for p in out.iterdir()}
    with output_lock(out, what, name):
        try:
            yield out
        except BaseException:
            if not (out / CHECKPOINT_NAME).exists():
                _remove_created(out, top, before)
            raise


def refuse_busy(out, what: str = "train", name: str = "training.out_dir") -> None:
    """Raise OutputLockedError when another process holds the lock of ``out``; probed only where its lock file
    exists, so nothing is created (a busy directory is reported before the checks that precede the lock).

    Raises:
        OutputLockedError: another writer holds the lock of ``out``.
    """
    if (Path(out) / LOCK_NAME).is_file():
        with output_lock(out, what, name):
            pass


def _remove_created(out: Path, top: Path, before) -> None:
    """Remove ``top`` (the first directory of ``out``'s path the run created) when ``before`` is None, else the
    entries of ``out`` whose names are not in ``before``."""
    if before is None:
        shutil.rmtree(top, ignore_errors=True)
        return
    for p in out.iterdir():
        if p.name in before:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
