"""The torch thread default counts the free cores; a starved run is warned about."""
import time

import pytest

from openmm_mlcg.util.threads import STARVED_FRACTION, ThreadWatch, default_threads


def test_default_threads_counts_free_cores():
    assert default_threads(cpus=2, load=0.1) == 2      # idle 2-core machine: both cores
    assert default_threads(cpus=2, load=1.0) == 1      # one other busy process: one thread, never two
    assert default_threads(cpus=2, load=7.0) == 1      # overloaded: still one
    assert default_threads(cpus=16, load=0.0) == 4     # capped
    assert default_threads(cpus=16, load=13.6) == 2
    assert 1 <= default_threads() <= 4                 # this machine, whatever its load


def test_thread_watch_warns_when_the_threads_get_no_cpu_time():
    """A 'run' that only waits (sleep: no CPU time) with 2 threads asked for is starved: one warning, share ~0;
    a busy single thread is never reported."""
    watch = ThreadWatch("training", min_wall_s=0.2, threads=2)
    assert watch.check() is None                        # too early to say
    time.sleep(0.25)
    with pytest.warns(RuntimeWarning, match=r"training: torch's 2 threads got \d+ % .*--threads 1"):
        share = watch.check()
    assert share < STARVED_FRACTION
    assert watch.check() is None                        # warns once
    single = ThreadWatch("training", min_wall_s=0.0, threads=1)
    assert single.check() is None


def test_set_threads_takes_omp_num_threads_when_set(monkeypatch):
    """torchrun sets OMP_NUM_THREADS=1 per rank: the default must honour it, not pick from the load."""
    import torch

    import openmm_mlcg.util.threads as threads

    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "default_threads", lambda: 3)      # the load-aware default, fixed for the test
    set_threads = threads.set_threads
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert set_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "not a number")     # ignored: the load-aware default
        assert set_threads() == 3
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert set_threads() == 3 and set_threads(2) == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
