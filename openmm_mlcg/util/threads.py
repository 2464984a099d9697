"""How many CPU threads torch uses: a default that survives shared machines, one place that sets it, and a
warning when the threads are starved.

torch's default (one thread per core) is several times slower when other busy processes share the cores: its
threads meet at barriers after every operation and each wait lasts a time slice of the other process. Measured
on a 2-core machine (docs/benchmarks.md, "threads"): the main job's training took 7-12 s per step with 2 threads
next to one other busy process, 0.5 s with 1 thread; on the idle machine 2 threads were faster than 1. So the
default counts the cores that are free now (the 1-minute load average), and :class:`ThreadWatch` warns when a
run's threads get much less CPU time than they ask for. Results do not depend on the thread count.
"""
from __future__ import annotations

import os
import time
import warnings

__all__ = ["default_threads", "set_threads", "usable_cpus", "ThreadWatch", "STARVED_FRACTION"]

#: upper bound of the default thread count
MAX_DEFAULT_THREADS = 4
#: a run whose threads got less than this fraction of the CPU time they asked for is oversubscribed
STARVED_FRACTION = 0.6


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_threads(cpus: int | None = None, load: float | None = None) -> int:
    """Threads for torch: the usable CPUs not busy with other work, rounded, between 1 and ``MAX_DEFAULT_THREADS``.

    Args:
        cpus: usable CPUs (None: :func:`usable_cpus`). load: how many CPUs other work keeps busy (None: the
            1-minute load average, ``os.getloadavg()``; 0 where the platform has none).
    """
    cpus = usable_cpus() if cpus is None else int(cpus)
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = 0.0
    free = int(cpus - max(0.0, float(load)) + 0.5)
    return max(1, min(MAX_DEFAULT_THREADS, free, cpus))


def set_threads(n=None) -> int:
    """Set torch's intra-op thread count to ``n``; returns the value set.

    ``n`` None: the ``OMP_NUM_THREADS`` environment variable when it holds a positive integer (the OpenMP and torch
    convention, and what ``torchrun`` sets for each rank), else :func:`default_threads`.

    Raises:
        ValueError: ``n`` is not a positive integer.
    """
    import torch

    if n is None:
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        n = int(env) if env.isdigit() and int(env) > 0 else default_threads()
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads: expected a positive integer, got {n!r}")
    torch.set_num_threads(n)
    return n


class ThreadWatch:
    """Warn once when torch's threads are starved by other processes (module docstring).

    Call :meth:`check` after units of work (e.g. training steps); after ``min_wall_s`` of wall time it compares
    the process CPU time with ``threads x wall time`` and warns (``RuntimeWarning``) when the process got less
    than ``STARVED_FRACTION`` of it, naming the measured share and the remedy (``--threads 1``). One thread is
    never starved in this sense (a slow single thread has nothing to wait for).
    """

    def __init__(self, what: str, min_wall_s: float = 20.0, threads: int | None = None):
        import torch

        self.what, self.min_wall_s = what, float(min_wall_s)
        self.threads = int(threads if threads is not None else torch.get_num_threads())
        self._wall0, self._cpu0 = time.perf_counter(), time.process_time()
        self.done = self.threads <= 1

    def check(self) -> float | None:
        """The CPU share measured so far (CPU time / (threads x wall time)) once ``min_wall_s`` have passed (and
        warn if it is below ``STARVED_FRACTION``), else None; checks once."""
        if self.done:
            return None
        wall = time.perf_counter() - self._wall0
        if wall < self.min_wall_s:
            return None
        self.done = True
        share = (time.process_time() - self._cpu0) / (self.threads * wall)
        if share < STARVED_FRACTION:
            warnings.warn(f"{self.what}: torch's {self.threads} threads got {100 * share:.0f} % of the CPU time they "
                          f"asked for over {wall:.0f} s: other processes share the cores and the threads wait for "
                          "each other (runs can be 10x slower); use --threads 1 (or set_threads(1))",
                          RuntimeWarning, stacklevel=2)
        return share
