"""The linear-in-history baseline reaches the known optimal NLL of processes that are linear in their history."""
import math

import numpy as np
import pytest

from openmm_mlcg.data import CGTrajectory, WindowDataset
from openmm_mlcg.cg.mapping import CGMapping
from openmm_mlcg.cg.topology import FineGraph
from openmm_mlcg.train.baseline import linear_history_nll


def _datasets(phi: float, n=40, n_frames=400, seed=0):
    """Beads whose displacements follow d' = phi d + xi (phi = 0: free Brownian motion)."""
    rng = np.random.default_rng(seed)
    mapping = CGMapping.from_graph(FineGraph.from_arrays(["Ar"] * n, [39.95] * n, None), 1)
    d = np.zeros((n_frames - 1, n, 3))
    d[0] = rng.normal(0, 0.05, (n, 3))
    for t in range(1, n_frames - 1):
        d[t] = phi * d[t - 1] + rng.normal(0, 0.05, (n, 3))
    x = np.cumsum(np.concatenate([rng.uniform(0, 4, (1, n, 3)), d]), 0)
    half = n_frames // 2

    def traj(sl):
        xs = x[sl]
        return CGTrajectory(xs, None, np.arange(len(xs)) * 1.0, 1.0, mapping.hash)

    tr = WindowDataset([traj(slice(0, half))], [mapping], history=3, stride=1)
    va = WindowDataset([traj(slice(half, None))], [mapping], history=3, stride=1)
    acc = tr.velocity_statistics()["acceleration_std"]
    return tr, va, [mapping.bead_types], acc


def test_baseline_nll_of_brownian_motion_is_the_analytic_optimum():
    """Free Brownian motion: a = d_{t+1} - d_t, best predictor -d_t, residual std 1/sqrt(2) in a_std units, so
    NLL = 0.5 + log(1/sqrt 2) + 0.5 log(2 pi) = 1.0724 nats; an untrained N(0, 1) model would give 1.419."""
    tr, va, types, acc = _datasets(0.0)
    nll = linear_history_nll(tr, va, types, types, acc, max_windows=200)
    assert nll == pytest.approx(0.5 + math.log(1 / math.sqrt(2)) + 0.5 * math.log(2 * math.pi), abs=0.02)


def test_baseline_captures_anti_persistent_history():
    """d' = -0.8 d + xi: a = -1.8 d + xi is linear in the history; the residual std is sigma / a_std."""
    tr, va, types, acc = _datasets(-0.8)
    nll = linear_history_nll(tr, va, types, types, acc, max_windows=200)
    s = 0.05 / acc
    assert nll == pytest.approx(0.5 + math.log(s) + 0.5 * math.log(2 * math.pi), abs=0.03)


def test_baseline_bad_arguments():
    tr, va, types, _ = _datasets(0.0, n_frames=40)
    with pytest.raises(ValueError, match="acceleration_std"):
        linear_history_nll(tr, va, types, types, 0.0)
    assert math.isnan(linear_history_nll(tr, [], types, types, 1.0))
