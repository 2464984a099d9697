"""Silence what C extensions print on the process's standard output while we read a file.

mdtraj's DCD reader (the VMD ``dcdplugin``) prints ``dcdplugin) detected standard 32-bit DCD file of native
endianness`` and ``dcdplugin) CHARMM format DCD file ...`` with C ``printf`` every time it opens a DCD, which
floods the output of every command that reads trajectories. Python's ``sys.stdout`` cannot catch it: the
text goes straight to file descriptor 1. :func:`quiet_c_stdout` points descriptor 1 at ``/dev/null`` around
such calls and restores it afterwards; :func:`quiet_iter` does the same around each step of a lazy reader
(``mdtraj.iterload`` opens the file on its first step).

Python-level prints are flushed before the redirection, so nothing of ours is lost; text that other threads
print to stdout *during* a read is dropped (reads are short and our commands print from one thread).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["quiet_c_stdout", "quiet_iter"]

T = TypeVar("T")


def _flush_c_stdio() -> None:
    """``fflush(NULL)``: push C-level buffered output (written by C code) to its descriptor now."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # no libc symbols here (e.g. some Windows builds): nothing to do
        pass


@contextlib.contextmanager
def quiet_c_stdout():
    """Within the block, output written to file descriptor 1 (C ``printf``) is discarded.

    Re-entrant; a no-op where descriptor 1 cannot be duplicated (closed stdout, unusual embeddings).
    """
    for stream in (sys.stdout, sys.__stdout__):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        saved = os.dup(1)
    except OSError:
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            _flush_c_stdio()
            os.dup2(devnull, 1)
        finally:
            os.close(devnull)
        yield
    finally:
        _flush_c_stdio()        # what C code buffered inside the block goes to /dev/null, not to the terminal
        os.dup2(saved, 1)
        os.close(saved)


def quiet_iter(iterable: Iterable[T]) -> Iterator[T]:
    """Iterate ``iterable`` with :func:`quiet_c_stdout` around each step (for lazy readers such as
    ``mdtraj.iterload``); the caller's loop body runs with stdout restored."""
    it = iter(iterable)
    while True:
        with quiet_c_stdout():
            try:
                item = next(it)
            except StopIteration:
                return
        yield item
