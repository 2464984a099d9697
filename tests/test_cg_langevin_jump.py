"""The "jump and relax" long step of cg_langevin (``cg_langevin_relax_ps``): the Dynamics GNN's draw over the model
step, then Langevin sub-steps over relax_ps only.

An ideal gas (zero learned score, beads further apart than the cutoff) makes both parts exact: a bead's
displacement over one model step is the Dynamics GNN's Gaussian (mean, std) plus free Langevin motion over
relax_ps from fresh Maxwell-Boltzmann velocities, whose variance per axis is 2 (kT/m) / gamma^2 (gamma T - 1 +
exp(-gamma T)) at T = relax_ps (Uhlenbeck & Ornstein 1930), not at the model step.
"""
import math

import numpy as np
import pytest
import torch

from openmm_mlcg.bundle.export import load_bundle, save_bundle
from openmm_mlcg.cg.mapping import CGMapping
from openmm_mlcg.cg.topology import FineGraph
from openmm_mlcg.generators.cg_langevin import BOLTZMANN_KJ_PER_MOL_K, CGLangevinConfig
from openmm_mlcg.model.simulator import LearnedSimulator
from openmm_mlcg.nn import DynamicsGNN, EmbeddingGNN

torch.set_num_threads(1)
TEMP, MASS, GAMMA = 300.0, 39.948, 5.0
DT, RELAX, N = 10.0, 0.5, 27


class _ZeroScore(torch.nn.Module):
    """A Score GNN of an ideal gas: the equilibrium score is zero everywhere."""

    def forward(self, latent, residual, displacement, edge_index, edge_vec, edge_type, sigma, cutoff: float = 1.0,
                length_scale: float = 1.0):
        return torch.zeros(latent.shape[0], 3, dtype=latent.dtype)


def _bundle(tmp_path, relax_ps):
    graph = FineGraph.from_arrays(["Ar"] * N, np.full(N, MASS), np.zeros((0, 2), dtype=int), residue_names=["AR"] * N)
    mapping = CGMapping.from_graph(graph, 1)
    torch.manual_seed(0)
    emb = EmbeddingGNN(1, 6, hidden=4, layers=1)
    meta = dict(model_time_step_ps=DT, history=2, cutoff_nm=0.5, velocity_std=0.3, acceleration_std=0.1,
                atom_type_vocabulary=["Ar"], sampler="cg_langevin", temperature_K=TEMP, cg_langevin_steps=20,
                cg_langevin_sigma_nm=0.05, sigmas_nm=[0.1, 0.01], cg_langevin_friction_per_ps=GAMMA,
                cg_langevin_relax_ps=relax_ps)
    path = save_bundle(tmp_path / f"gas_{relax_ps}.mlcg", emb,
                       DynamicsGNN(embedding_dim=emb.out_dim, history=2, hidden=8, layers=1), _ZeroScore(), meta,
                       mapping=mapping)
    return path, mapping


def _free_variance(t_ps: float) -> float:
    """Per-axis variance (nm^2) of a free Langevin particle over t_ps from a thermal velocity."""
    u = BOLTZMANN_KJ_PER_MOL_K * TEMP / MASS
    return 2.0 * u / GAMMA ** 2 * (GAMMA * t_ps - 1.0 + math.exp(-GAMMA * t_ps))


def _steps(sim, repeats=60):
    grid = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3)[:N] * 1.0
    x0, hist = sim.history_from_positions(np.repeat(grid[None], 3, 0))
    mean, std, _ = sim.predict(x0, hist, None)
    out = [sim.step(x0, hist, None, 1, generator=torch.Generator().manual_seed(s))[0] for s in range(repeats)]
    return torch.stack(out) - x0, mean - x0, std


def test_jump_is_the_dynamics_draw_and_relaxation_spans_relax_ps(tmp_path):
    path, mapping = _bundle(tmp_path, RELAX)
    sim = LearnedSimulator(load_bundle(path), mapping)
    assert sim.model.gnn_passes_per_step() == 1 + 20 + 1      # one Dynamics pass + N + 1 Score passes
    d, mean, std = _steps(sim)
    assert float((std - std[0]).abs().max()) < 1e-9             # identical environments: one Gaussian for all
    expected = float((std[0] ** 2).mean()) + _free_variance(RELAX)
    # the two parts are of comparable size, so a missing jump or a relaxation over the model step would show
    assert 0.3 < _free_variance(RELAX) / expected < 0.8 and _free_variance(DT) > 5 * expected
    var = float(((d - mean) ** 2).mean())
    assert var == pytest.approx(expected, rel=0.06)
    assert float((d - mean).mean(dim=(0, 1)).abs().max()) < 4 * math.sqrt(expected / d[..., 0].numel())


def test_without_relax_ps_the_step_is_the_plain_sub_stepping(tmp_path):
    path, mapping = _bundle(tmp_path, None)
    sim = LearnedSimulator(load_bundle(path), mapping)
    assert sim.model.gnn_passes_per_step() == 20 + 1             # no Dynamics pass
    d, _, _ = _steps(sim)
    assert float((d ** 2).mean()) == pytest.approx(_free_variance(DT), rel=0.06)


def test_relax_ps_config_is_checked():
    with pytest.raises(ValueError, match=r"score\.cg_langevin\.relax_ps"):
        CGLangevinConfig(relax_ps=0.0).check("score.cg_langevin")
