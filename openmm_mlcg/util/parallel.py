"""Independent tasks (one system each) on ``dask.distributed``: a ``LocalCluster`` by default, or a cluster's
scheduler address.

``generate --workers N`` and ``openmm-mlcg campaign`` fan their systems out through :func:`map_tasks`.

Workers die with the parent: a ``LocalCluster`` starts each worker as a spawned (not forked: forking a process
whose OpenMM CPU thread pool is alive can deadlock) child process of a nanny that lives in this process; every
such child watches a pipe to its parent and exits at once when the parent is gone (``distributed.process``), so
a ``generate`` killed with SIGKILL leaves no worker appending frames while a rerun resumes the same directories
(tests/test_faults.py). Workers of a remote ``scheduler`` belong to that cluster and outlive this process.

A worker killed in the middle of a task (out of memory, a preempted node, a nanny restart) is replaced by its
nanny and the scheduler runs the task again elsewhere, up to ``distributed.scheduler.allowed-failures`` times
(default 3); a task that *raises* is run again up to ``retries`` times. Tasks must therefore be resumable: the
MD tasks here continue from their directory's checkpoint and cut the DCD/CSV back to it (``systems.md``).
"""
from __future__ import annotations

import contextlib
import logging
import uuid

__all__ = ["dask_client", "map_tasks", "check_cluster", "DEFAULT_RETRIES"]

#: times a task that raised is run again (a killed worker's task is rescheduled by the scheduler regardless)
DEFAULT_RETRIES = 2


def check_cluster(n_workers, scheduler) -> None:
    """Raises ValueError naming ``n_workers`` (an integer >= 1 or None) or ``scheduler`` (``tcp://host:port``)."""
    if n_workers is not None and (isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1):
        raise ValueError(f"n_workers: expected an integer >= 1 (or None), got {n_workers!r}")
    if scheduler is not None and (not isinstance(scheduler, str) or "://" not in scheduler):
        raise ValueError(f"scheduler: expected a scheduler address such as 'tcp://10.0.0.1:8786', got {scheduler!r}")


@contextlib.contextmanager
def dask_client(n_workers: int | None = None, scheduler: str | None = None, threads_per_worker: int = 1):
    """A ``distributed.Client``: on a new ``LocalCluster`` (``n_workers`` processes of ``threads_per_worker``
    threads, no dashboard) or, with ``scheduler``, on that running cluster (``n_workers`` is then ignored).

    The LocalCluster and its workers are closed on exit, and die with this process if it is killed.

    Raises:
        ValueError: ``n_workers`` not an integer >= 1, or ``scheduler`` not an address like ``tcp://host:8786``.
        OSError / TimeoutError: the scheduler cannot be reached.
    """
    check_cluster(n_workers, scheduler)
    from distributed import Client, LocalCluster

    if scheduler is not None:
        with Client(scheduler) as client:
            yield client
        return
    with LocalCluster(n_workers=n_workers, threads_per_worker=int(threads_per_worker), processes=True,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


def map_tasks(fn, jobs, n_workers: int | None = None, scheduler: str | None = None,
              retries: int = DEFAULT_RETRIES, name: str = "task") -> list:
    """``[fn(job) for job in jobs]`` as Dask tasks (in order), like ``ProcessPoolExecutor.map``.

    Args:
        fn: a picklable (module-level) function of one job.  jobs: the jobs, each picklable.
        n_workers: LocalCluster worker processes (default: one per CPU).  scheduler: a running cluster's
            scheduler address (``tcp://host:8786``) instead of a LocalCluster.
        retries: times a task that raised is run again.  name: the task key prefix shown by Dask.

    Returns:
        the results, in the order of ``jobs``.

    Raises:
        ValueError: bad ``n_workers`` / ``scheduler`` / ``retries``; the first exception of a task (after its
            retries) is re-raised; ``distributed.KilledWorker`` if a task's workers died too often.
    """
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries: expected an integer >= 0, got {retries!r}")
    jobs = list(jobs)
    with dask_client(n_workers, scheduler) as client:
        token = uuid.uuid4().hex[:8]
        futures = [client.submit(fn, job, key=f"{name}-{i}-{token}", retries=retries, pure=False)
                   for i, job in enumerate(jobs)]
        return client.gather(futures)
