"""Relative-entropy fine-tuning (openmm_mlcg.train.fits.relative_entropy).

Known answer: for E_theta(x) = theta x^2 / 2 the model law is N(0, 1 / theta); descending the contrastive
divergence with exact model samples is maximum likelihood, so theta goes to 1 / var(data). Then the fine-tuning
of a real energy-based model: it changes the Score GNN only, is reproducible from its seed, and refuses a model
without an energy.
"""
import dataclasses

import numpy as np
import pytest
import torch

from openmm_mlcg.train.fits.relative_entropy import contrastive_divergence, fine_tune_relative_entropy


def test_contrastive_divergence_descent_is_maximum_likelihood_for_a_gaussian():
    g = torch.Generator().manual_seed(0)
    data = 0.5 * torch.randn(20000, generator=g, dtype=torch.float64)        # variance 0.25: theta* = 4
    theta = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([theta], lr=2.0)
    for _ in range(300):
        with torch.no_grad():
            model = torch.randn(20000, generator=g, dtype=torch.float64) / torch.sqrt(theta)  # exact samples
        loss = contrastive_divergence(0.5 * theta * data ** 2, 0.5 * theta * model ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(theta.detach()) == pytest.approx(1.0 / float(data.var()), rel=0.05)
    with pytest.raises(ValueError, match="e_data/e_model"):
        contrastive_divergence(torch.zeros(0), torch.zeros(3))


def _model_and_data(score_energy=True, seed=0):
    """A tiny periodic system of 12 bonded dimers with an (untrained) cg_langevin model and 6 frames."""
    from openmm_mlcg.data import CGTrajectory
    from openmm_mlcg.cg.mapping import CGMapping
    from openmm_mlcg.model import CGDynamicsModel
    from openmm_mlcg.nn import DynamicsGNN, EmbeddingGNN, EnergyScoreGNN, ScoreGNN
    from openmm_mlcg.cg.topology import FineGraph

    n_dimers, box = 12, 2.0
    types = ["C"] * (2 * n_dimers)
    bonds = [(2 * i, 2 * i + 1) for i in range(n_dimers)]
    graph = FineGraph.from_arrays(types, [12.011] * len(types), bonds, residue_names=["DIM"] * len(types))
    mapping = CGMapping.from_graph(graph, 1)
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, box, (6, n_dimers, 3))
    half = rng.normal(0, 0.02, (6, n_dimers, 3)) + np.array([0.075, 0, 0])
    frames = np.stack([centres - half, centres + half], axis=2).reshape(6, 2 * n_dimers, 3)
    traj = CGTrajectory(frames, np.tile(np.eye(3) * box, (6, 1, 1)), np.arange(6) * 2.0, 2.0, mapping.hash)
    torch.manual_seed(seed)
    emb = EmbeddingGNN(1, 6, hidden=8, layers=1)
    score = (EnergyScoreGNN if score_energy else ScoreGNN)(latent_dim=emb.out_dim, hidden=8, layers=1)
    meta = dict(model_time_step_ps=2.0, history=2, cutoff_nm=0.5, velocity_std=0.1, acceleration_std=0.1,
                atom_type_vocabulary=["C"], sampler="cg_langevin", temperature_K=300.0, cg_langevin_steps=4,
                cg_langevin_sigma_nm=0.02, sigmas_nm=[0.06, 0.007])
    model = CGDynamicsModel(emb, DynamicsGNN(embedding_dim=emb.out_dim, history=2, hidden=8, layers=1), score,
                            meta).eval()
    return model, traj, mapping, model.system_graph(mapping)


def test_fine_tuning_changes_only_the_score_and_is_reproducible():
    runs = []
    for _ in range(2):
        model, traj, mapping, graph = _model_and_data()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        info = fine_tune_relative_entropy(model, [traj], [mapping], [graph], n_steps=6, lr=1e-3, seed=3,
                                          n_chains=2, batch_size=2)
        after = model.state_dict()
        changed = {k for k in before if not torch.equal(before[k], after[k])}
        assert changed and all(k.startswith("score.") for k in changed), changed
        assert not model.score.training and model.metadata.cg_langevin_denoise == 1.0   # restored
        assert info["steps"] == 6 and np.isfinite([info["cd_last"], info["dsm_last"]]).all()
        runs.append(after)
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_fine_tuning_and_config_refuse_a_score_without_an_energy():
    from openmm_mlcg.train.config import TrainConfig

    model, traj, mapping, graph = _model_and_data(score_energy=False)
    with pytest.raises(ValueError, match="energy-based"):
        fine_tune_relative_entropy(model, [traj], [mapping], [graph], n_steps=2, lr=1e-3, seed=0)
    model, traj, mapping, graph = _model_and_data()
    with pytest.raises(ValueError, match="n_steps"):
        fine_tune_relative_entropy(model, [traj], [mapping], [graph], n_steps=0, lr=1e-3, seed=0)
    with pytest.raises(ValueError, match="periodic"):
        fine_tune_relative_entropy(model, [dataclasses.replace(traj, box=None)], [mapping], [graph], n_steps=1,
                                   lr=1e-3, seed=0)
    with pytest.raises(ValueError, match="score.relative_entropy.steps"):
        TrainConfig.from_dict({"score": {"relative_entropy": {"steps": 10}}})
    cfg = TrainConfig.from_dict({"model": {"score_energy": True}, "score": {"relative_entropy": {"steps": 10}}})
    assert cfg.score.relative_entropy.steps == 10
