"""The redesign keeps the numbers: bundles trained with a fixed seed roll out as they did before it.

``tests/data/golden_rollout.npz`` was written by this file (``OPENMM_MLCG_REGEN_GOLDEN=1 pytest
tests/test_golden_rollout.py``) at commit ab30745, the layout move before the generators and score terms went
behind their interfaces (issue 36). For each generator (the default ``cg_langevin`` with every score term and
post-training fit switched on, and the comparison generators ``ode``, ``interpolant`` and the paper's
``langevin``), a tiny model is trained for a few steps on a synthetic chain + ion system, exported, loaded, and
rolled out for a few model steps with a seeded generator; the test compares the positions and the fitted
frictions with the stored ones. A change in any generator, score term, fit or their order moves these numbers.
The ``cg_langevin`` case was written again when the friction fit changed on purpose (issue 38: the MSD's slope
over [L/2, L] instead of the MSD at L, a secant search instead of a bisection); the format-2 bundle keeps the
frictions fitted at ab30745 and is compared with that commit's rollout (``format2_cg_langevin``).
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

from chain_systems import chain_ion_system as _system

GOLDEN = Path(__file__).parent / "data" / "golden_rollout.npz"
REGEN = os.environ.get("OPENMM_MLCG_REGEN_GOLDEN") == "1"
TINY = dict(embedding_hidden=16, embedding_layers=1, dynamics_hidden=16, dynamics_layers=1, score_hidden=16,
            score_layers=1, cutoff_nm=0.6)


CASES = {
    "cg_langevin": dict(sampler="cg_langevin",
                        cg_langevin=dict(steps=4, calibration_lag=2, calibration_starts=1, reverse_levels=2,
                                         denoise=0.5),
                        terms=dict(bond_prior=True, pair_correction_types=["Li"], angle_correction_iterations=1,
                                   angle_correction_steps=10)),
    "ode": dict(sampler="ode", n_levels=3, sigma_max_nm=0.05, sigma_min_nm=0.002),
    "interpolant": dict(sampler="interpolant", n_levels=3, sigma_max_nm=0.05, sigma_min_nm=0.002),
    "langevin": dict(sampler="langevin", n_levels=2, langevin=dict(schedule="paper", steps_per_level=2,
                                                                  step_size_nm2=1e-6),
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


def test_format2_bundle_loads_migrated_and_rolls_out_the_same():
    """A bundle of format 2 (written at ab30745 by the cg_langevin case above, flat score-term keys) loads: its
    score terms move into ``score_terms``, and it rolls out as the freshly trained format-3 bundle does."""
    from openmm_mlcg.model.metadata import FORMAT_VERSION

    bundle = load_bundle(GOLDEN.parent / "format2_cg_langevin.mlcg")
    assert bundle.metadata.format_version == 2 and FORMAT_VERSION == 3
    assert list(bundle.metadata.score_terms) == ["excluded_volume", "bond_prior", "pair_correction",
                                                 "angle_correction"]
    assert "excluded_volume_nm" not in bundle.metadata and "pair_correction" not in bundle.metadata
    traj, mapping = _system()
    sim = LearnedSimulator(bundle, mapping)
    assert len(sim.score_terms) == 4
    x, hist = sim.history_from_positions(traj.positions[-3:])
    xs, _ = sim.step(x, hist, torch.as_tensor(traj.box[-1]), n_steps=3, generator=torch.Generator().manual_seed(7))
    # its frictions are those fitted at ab30745 (fixed-lag MSD): the rollout of the cg_langevin case at that commit
    np.testing.assert_allclose(np.asarray(xs), np.load(GOLDEN)["format2_cg_langevin/positions"], rtol=0, atol=2e-5)
