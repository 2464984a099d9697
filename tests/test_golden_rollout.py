"""The redesign keeps the numbers: bundles trained with a fixed seed roll out as they did before it.

``tests/data/golden_rollout.npz`` was written by this file (``OPENMM_MLCG_REGEN_GOLDEN=1 pytest
tests/test_golden_rollout.py``) at commit ab30745, the layout move before the generators and score terms went
behind their interfaces (issue 36). For each generator (the default ``cg_langevin`` with every score term and
post-training fit switched on, and the comparison generators ``ode``, ``interpolant`` and the paper's
``langevin``), a tiny model is trained for a few steps on a synthetic chain + ion system, exported, loaded, and
rolled out for a few model steps with a seeded generator; the test compares the positions and the fitted
frictions with the stored ones. A change in any generator, score term, fit or their order moves these numbers.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from openmm_mlcg.bundle.export import load_bundle
from openmm_mlcg.model.simulator import LearnedSimulator
from openmm_mlcg.train import TrainConfig, train_on_trajectories

GOLDEN = Path(__file__).parent / "data" / "golden_rollout.npz"
REGEN = os.environ.get("OPENMM_MLCG_REGEN_GOLDEN") == "1"
TINY = dict(embedding_hidden=16, embedding_layers=1, dynamics_hidden=16, dynamics_layers=1, score_hidden=16,
            score_layers=1, cutoff_nm=0.6)


def _system(seed=0, n_chains=3, n_ions=3, n_frames=50, box_nm=2.0):
    """Chains of 6 atoms (3 beads with group size 2: CG bonds and one angle each) and Li ions on a lattice,
    with an anti-persistent walk on top (deterministic: numpy RNG only)."""
    from openmm_mlcg.cg.mapping import CGMapping
    from openmm_mlcg.cg.topology import FineGraph
    from openmm_mlcg.data import CGTrajectory

    chain = ("C", "C", "O", "C", "C", "O")
    types, masses, bonds, res = [], [], [], []
    for _ in range(n_chains):
        o = len(types)
        types += list(chain)
        masses += [{"C": 12.011, "O": 15.999}[a] for a in chain]
        bonds += [(o + k, o + k + 1) for k in range(len(chain) - 1)]
        res += ["ETH"] * len(chain)
    types += ["Li"] * n_ions
    masses += [6.94] * n_ions
    res += ["LI"] * n_ions
    mapping = CGMapping.from_graph(FineGraph.from_arrays(types, masses, bonds, residue_names=res), 2)
    rng = np.random.default_rng(seed)
    n = mapping.n_beads
    grid = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n] * box_nm / 3
    x = np.zeros((n_frames, n, 3))
    x[0] = grid + rng.normal(0, 0.02, size=(n, 3))
    for c in range(n_chains):   # bonded beads 0.25 nm apart along x
        first = [b for b in range(n) if mapping.bead_types[b] != "Li"][3 * c: 3 * c + 3]
        for k, b in enumerate(first):
            x[0, b] = x[0, first[0]] + np.array([0.25 * k, 0.03 * k * k, 0.0])
    v = np.zeros((n, 3))
    for t in range(1, n_frames):
        v = -0.6 * v + rng.normal(0, 0.004, size=(n, 3))
        x[t] = x[t - 1] + v
    box = np.tile(np.eye(3) * box_nm, (n_frames, 1, 1))
    return CGTrajectory(x, box, np.arange(n_frames) * 1.0, 1.0, mapping.hash), mapping


CASES = {
    "cg_langevin": dict(sampler="cg_langevin", cg_langevin_steps=4, bond_prior=True, pair_correction_types=["Li"],
                        angle_correction_iterations=1, angle_correction_steps=10, calibration_lag=2,
                        calibration_starts=1, cg_langevin_reverse_levels=2, cg_langevin_denoise=0.5),
    "ode": dict(sampler="ode", n_levels=3, sigma_max_nm=0.05, sigma_min_nm=0.002),
    "interpolant": dict(sampler="interpolant", n_levels=3, sigma_max_nm=0.05, sigma_min_nm=0.002),
    "langevin": dict(sampler="langevin", schedule="paper", n_levels=2, steps_per_level=2, step_size_nm2=1e-6,
                     sigma_max_nm=0.05, sigma_min_nm=0.002),
}


def _rollout(tmp_path, name):
    torch.manual_seed(0)
    traj, mapping = _system()
    raw = dict(data=dict(history=2, stride=1, val_fraction=0.2, temperature_K=300.0), model=dict(TINY),
               score=dict(CASES[name]), optim=dict(lr=1e-3, lr_final=5e-4, batch_size=2),
               training=dict(n_steps=4, eval_every=2, checkpoint_every=2, seed=0, out_dir=str(tmp_path / name),
                             progress=False))
    bundle = load_bundle(train_on_trajectories([traj], [mapping], TrainConfig.from_dict(raw)))
    sim = LearnedSimulator(bundle, mapping)
    x, hist = sim.history_from_positions(traj.positions[-3:])
    gen = torch.Generator().manual_seed(7)
    xs, _ = sim.step(x, hist, torch.as_tensor(traj.box[-1]), n_steps=3, generator=gen)
    friction = np.asarray(sim.bead_friction).reshape(-1)
    return np.asarray(xs, dtype=np.float64), friction


@pytest.mark.parametrize("name", list(CASES))
def test_rollout_equals_the_one_before_the_redesign(tmp_path, name):
    positions, friction = _rollout(tmp_path, name)
    if REGEN:
        old = dict(np.load(GOLDEN)) if GOLDEN.exists() else {}
        old[f"{name}/positions"], old[f"{name}/friction"] = positions, friction
        GOLDEN.parent.mkdir(exist_ok=True)
        np.savez(GOLDEN, **old)
        pytest.skip("golden data written")
    ref = np.load(GOLDEN)
    # float tolerance: the same ops on another CPU may round differently; a changed generator, score term or fit
    # moves the beads by far more (the one-step displacement std of this system is ~4e-3 nm)
    np.testing.assert_allclose(positions, ref[f"{name}/positions"], rtol=0, atol=2e-5)
    np.testing.assert_allclose(friction, ref[f"{name}/friction"], rtol=1e-5, atol=1e-8)
