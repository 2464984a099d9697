"""Worker processes that die with their parent.

``generate --workers N`` runs systems in a ``ProcessPoolExecutor``. If the parent is killed (SIGKILL, OOM
killer), plain pool workers keep running and keep appending frames while a rerun resumes the same
directories. Here every worker (spawned, not forked: forking a process whose OpenMM CPU thread pool is alive
can deadlock) asks the kernel for SIGKILL when its parent dies (Linux ``PR_SET_PDEATHSIG``, best effort) and
also polls its parent pid from a daemon thread, exiting as soon as it changes.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor

__all__ = ["worker_pool", "POLL_INTERVAL_S"]

POLL_INTERVAL_S = 0.5
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int, interval: float) -> None:
    """Pool initializer: exit when the parent ``parent_pid`` is gone."""
    with contextlib.suppress(Exception):  # Linux only; the poll below covers the rest
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:  # parent died before we got here
        os._exit(1)

    def watch():
        """Exit this process as soon as its parent is gone (polled every ``interval`` s)."""
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def worker_pool(n_workers: int, interval: float = POLL_INTERVAL_S) -> ProcessPoolExecutor:
    """A spawn-context ``ProcessPoolExecutor`` whose workers exit when this process dies."""
    return ProcessPoolExecutor(max_workers=int(n_workers), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_die_with_parent, initargs=(os.getpid(), float(interval)))
