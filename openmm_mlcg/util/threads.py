"""How many CPU threads torch uses: a sensible default for shared machines and one place that sets it.

torch's default (one thread per core) can be several times slower when another busy process shares the
machine (training went from 0.23 to 1.96 s/step next to another job; with one thread, 0.40 s/step), and the
results do not depend on it. The command line and the examples use :func:`default_threads` unless told.
"""
from __future__ import annotations

import os

__all__ = ["default_threads", "set_threads"]

#: upper bound of the default thread count
MAX_DEFAULT_THREADS = 4


def default_threads() -> int:
    """``min(4, number of CPUs this process may use)``."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_THREADS, n))


def set_threads(n=None) -> int:
    """Set torch's intra-op thread count to ``n`` (None: :func:`default_threads`); returns the value set.

    Raises:
        ValueError: ``n`` is not a positive integer.
    """
    import torch

    n = default_threads() if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads: expected a positive integer, got {n!r}")
    torch.set_num_threads(n)
    return n
