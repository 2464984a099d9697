"""One writer per output directory: an exclusive ``filelock`` lock file ``.openmm-mlcg.lock`` inside it.

Nested use in one process (the CLI around a library call that locks the same directory) is re-entrant; a second
process (or a second thread) gets :class:`OutputLockedError` naming the lock file at once instead of both
writing interleaved frames.
"""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from filelock import FileLock, Timeout

__all__ = ["output_lock", "OutputLockedError", "LOCK_NAME"]

LOCK_NAME = ".openmm-mlcg.lock"
_held: dict = {}  # resolved directory -> [FileLock, depth, owner thread id]
_guard = threading.Lock()


class OutputLockedError(RuntimeError):
    """Another process is writing into the same output directory."""


@contextlib.contextmanager
def output_lock(directory, what: str = "openmm-mlcg", name: str = "out_dir", timeout: float = 0.0):
    """Hold the lock of output ``directory`` (created if missing) for the duration of the block.

    Args:
        directory: the output directory. what: the writer, for the message (e.g. "generate").
        name: the argument naming the directory. timeout: seconds to wait for a busy lock (0: fail at once).

    Raises:
        OutputLockedError: another writer holds it (message names the lock file and the pid recorded there).
        NotADirectoryError / PermissionError: the directory cannot be created.
    """
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise NotADirectoryError(f"{name}: expected a directory, but {d} is a file")
    d.mkdir(parents=True, exist_ok=True)
    key = str(d.resolve())
    me = threading.get_ident()
    with _guard:
        entry = _held.get(key)
        if entry is not None and entry[2] == me:
            entry[1] += 1
            reentered = True
        else:
            reentered = False
    if not reentered:
        path = d / LOCK_NAME
        lock = FileLock(str(path), timeout=timeout, is_singleton=False, thread_local=False)
        try:
            lock.acquire()
        except Timeout:
            owner = ""
            with contextlib.suppress(OSError, ValueError):
                owner = f" by pid {int((d / (LOCK_NAME + '.pid')).read_text())}"
            raise OutputLockedError(f"{name}: {d} is being written{owner} (lock file {path} is held); wait for "
                                    f"the other {what} run to finish or choose another output") from None
        with contextlib.suppress(OSError):
            (d / (LOCK_NAME + ".pid")).write_text(str(os.getpid()))
        with _guard:
            _held[key] = [lock, 1, me]
    try:
        yield d
    finally:
        with _guard:
            entry = _held[key]
            entry[1] -= 1
            last = entry[1] == 0
            if last:
                del _held[key]
        if last:
            with contextlib.suppress(OSError):
                (d / (LOCK_NAME + ".pid")).unlink()
            entry[0].release()
