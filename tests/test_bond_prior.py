"""The harmonic-bond prior: statistics from data, its score, its law under the sampler, training and runtime.

Known answers: (1) the bond-length mean and variance of hand-built frames, one bond across the periodic boundary;
(2) the score is minus the gradient of an independent numpy energy (central finite differences); (3) the
Langevin sampler on the prior alone draws bond lengths from N(r0 + s^2 / r0, v + s^2), which is also the law of
the noise-smoothed data the Score GNN is trained on; (4) with a zero network, the denoising loss of dimer data
is lower with the prior than without (the trainer feeds it), and a bundle that records it has it at run time.
"""
import math

import numpy as np
import pytest
import torch
from prior_fakes import FakeMap, FakeTraj, ZeroScore

from openmm_mlcg.generators import cg_langevin as C
from openmm_mlcg.priors import pair_key
from openmm_mlcg.priors.bonds import bond_parameters, bond_score, bond_statistics



def test_bond_statistics_known_lengths():
    box = np.eye(3) * 3.0
    # A0-B1: 0.30 then 0.34 nm; A2-B3 across the boundary (x 2.9 and 0.12 -> 0.22 nm) then 0.26 nm; B1-B3 not bonded
    f0 = [[1.0, 1.0, 1.0], [1.3, 1.0, 1.0], [2.9, 2.0, 2.0], [0.12, 2.0, 2.0]]
    f1 = [[1.0, 1.0, 1.0], [1.0, 1.34, 1.0], [2.9, 2.0, 2.0], [2.9, 2.0, 2.26]]
    got = bond_statistics([FakeTraj([f0, f1], box)], [FakeMap("ABAB", [[0, 1], [2, 3]])])
    lengths = np.array([0.30, 0.22, 0.34, 0.26])
    assert set(got) == {pair_key("B", "A")}
    assert got["A|B"][0] == pytest.approx(lengths.mean(), abs=1e-9)
    assert got["A|B"][1] == pytest.approx(lengths.var(), abs=1e-9)
    with pytest.raises(ValueError, match="mappings"):
        bond_statistics([FakeTraj([f0], box)], [])


def test_bond_parameters_and_score_is_minus_the_energy_gradient():
    table = {"A|B": (0.3, 4e-4)}
    bonds = torch.tensor([[0, 2], [1, 3]])  # A0-B1 (listed), A2-C3 (not listed: no force)
    par = bond_parameters(["A", "B", "A", "C"], bonds, table)
    assert par[0].tolist() == [0.3, 4e-4] and math.isinf(float(par[1, 1]))
    sigma = torch.tensor([[0.02], [0.01], [0.02], [0.02]], dtype=torch.float64)
    x = torch.tensor([[0, 0, 0], [0.2, 0.25, 0.05], [1, 1, 1], [1.3, 1, 1]], dtype=torch.float64)

    def energy(y):  # U/kT of the A-B bond at the smoothed mean and variance, numpy, independent of the code
        s2 = 0.02 ** 2 + 0.01 ** 2
        r0, v = 0.3 + s2 / 0.3, 4e-4 + s2
        r = np.linalg.norm(y[1] - y[0])
        return (r - r0) ** 2 / (2 * v) + 2 * np.log(r)

    score = bond_score(x, bonds, par, sigma).numpy()
    y, h = x.numpy().copy(), 1e-7
    for a in range(2):
        for d in range(3):
            yp, ym = y.copy(), y.copy()
            yp[a, d] += h
            ym[a, d] -= h
            assert -(energy(yp) - energy(ym)) / (2 * h) == pytest.approx(score[a, d], rel=1e-5, abs=1e-4)
    assert np.all(score[2:] == 0)
    # minimum image: the same bond split across a periodic boundary has the same score
    box = torch.eye(3, dtype=torch.float64) * 2.0
    shifted = x.clone()
    shifted[1] += torch.tensor([2.0, 0.0, -2.0], dtype=torch.float64)
    assert torch.allclose(bond_score(shifted, bonds, par, sigma, box), bond_score(x, bonds, par, sigma))


def _dimer_data(m, r0, sd, generator):
    """(2m, 3) positions of m dimers, bond length ~ N(r0, sd^2), random orientations, far apart."""
    u = torch.randn(m, 3, dtype=torch.float64, generator=generator)
    u = u / u.norm(dim=-1, keepdim=True)
    r = r0 + sd * torch.randn(m, 1, dtype=torch.float64, generator=generator)
    a = torch.arange(m, dtype=torch.float64)[:, None] * torch.tensor([3.0, 0.0, 0.0], dtype=torch.float64)
    x = torch.empty(2 * m, 3, dtype=torch.float64)
    x[0::2], x[1::2] = a, a + r * u
    return x


def test_sampler_on_the_prior_draws_the_smoothed_data_bond_law():
    g = torch.Generator().manual_seed(3)
    m, r0, sd, sig = 4000, 0.30, 0.02, 0.018
    data = _dimer_data(m, r0, sd, g)
    bonds = torch.stack([torch.arange(0, 2 * m, 2), torch.arange(1, 2 * m, 2)])
    stats = bond_statistics([FakeTraj(data[None].numpy(), None)], [FakeMap("AB" * m, bonds.t().numpy())])
    par = bond_parameters(["A", "B"] * m, bonds, stats)
    sigma = torch.full((2 * m, 1), sig, dtype=torch.float64)
    noisy = data + sig * torch.randn(data.shape, dtype=torch.float64, generator=g)
    r_noisy = (noisy[1::2] - noisy[0::2]).norm(dim=-1)
    s2 = 2 * sig ** 2
    law_mean, law_sd = stats["A|B"][0] + s2 / stats["A|B"][0], math.sqrt(stats["A|B"][1] + s2)
    # the smoothed data follow the prior's law (the Score GNN then learns only a small residual) ...
    assert float(r_noisy.mean()) == pytest.approx(law_mean, abs=3 * law_sd / math.sqrt(m) + 3e-4)
    assert float(r_noisy.std()) == pytest.approx(law_sd, rel=0.04)
    # ... and so does the sampler on the prior alone (pre-Tweedie positions: the last score evaluation)
    last = {}

    def score(x):
        last["x"] = x
        return bond_score(x, bonds, par, sigma)

    kt_m = torch.full((2 * m, 1), 0.05, dtype=torch.float64)
    x = data.clone()
    for _ in range(6):
        x = C.sample(score, x, kt_m, 15, 2.0, 5.0, sigma, generator=g)
    r = (last["x"][1::2] - last["x"][0::2]).norm(dim=-1)
    assert float(r.mean()) == pytest.approx(law_mean, abs=4 * law_sd / math.sqrt(m))
    assert float(r.std()) == pytest.approx(law_sd, rel=0.05)
    # without the smoothing correction the sampled bond would be too narrow by far
    assert math.sqrt(stats["A|B"][1]) < 0.8 * float(r.std())



def _dimer_model(bond_prior):
    from openmm_mlcg.cg.mapping import CGMapping
    from openmm_mlcg.model import CGDynamicsModel
    from openmm_mlcg.nn import DynamicsGNN, EmbeddingGNN
    from openmm_mlcg.cg.topology import FineGraph

    m = 50
    graph = FineGraph.from_arrays(["C", "O"] * m, np.tile([12.011, 15.999], m),
                                  np.stack([np.arange(0, 2 * m, 2), np.arange(1, 2 * m, 2)], 1),
                                  residue_names=["CO"] * (2 * m))
    mapping = CGMapping.from_graph(graph, 1)
    emb = EmbeddingGNN(2, 6, hidden=4, layers=1)
    meta = dict(model_time_step_ps=2.0, history=2, cutoff_nm=0.5, velocity_std=0.2, acceleration_std=0.3,
                atom_type_vocabulary=["C", "O"], sampler="cg_langevin", temperature_K=300.0, cg_langevin_steps=15,
                cg_langevin_sigma_nm=0.015, sigmas_nm=[0.02, 0.01], cg_langevin_friction_per_ps=1.0,
                cg_langevin_mass_floor_amu=40.0)  # omega h of the bond ~ 1.6 (physical masses: 2.7, unstable)
    if bond_prior:
        types = list(mapping.bead_types)
        meta["bond_prior"] = {pair_key(types[0], types[1]): [0.3, 4e-4]}
    model = CGDynamicsModel(emb, DynamicsGNN(embedding_dim=emb.out_dim, history=2, hidden=8, layers=1),
                            ZeroScore(), meta).eval()
    return model, mapping


def _dimer_items(n_windows, g):
    items = []
    for _ in range(n_windows):
        x = _dimer_data(50, 0.3, 0.02, g).numpy()
        items.append(dict(system=0, positions=x, history_velocities=np.zeros((2, 100, 3)),
                          target_acceleration=np.zeros((100, 3)), next_positions=x, box=None))
    return items


def test_trainer_denoising_loss_includes_the_prior():
    from dataclasses import replace

    from openmm_mlcg.generators.cg_langevin import CGLangevin
    from openmm_mlcg.train.batching import collate

    model, mapping = _dimer_model(True)
    assert mapping.cg_bonds.shape == (50, 2)
    graph = model.system_graph(mapping)
    batch = collate(_dimer_items(16, torch.Generator().manual_seed(0)), [graph])
    assert batch.cg_bond_prior.shape == (16 * 50, 2)
    with torch.no_grad():
        h = model.embed(graph).repeat(16, 1)
        with_prior = float(CGLangevin.loss(model, None, batch.positions, h, batch, torch.Generator().manual_seed(1)))
        without = float(CGLangevin.loss(model, None, batch.positions, h, replace(batch, cg_bond_prior=None),
                                        torch.Generator().manual_seed(1)))  # the same noise
    # zero network: 0.5 x 3 axes = 1.5 without the prior (std 0.03 here). With the exact prior the relative radial
    # noise of a dimer (one unit-variance coordinate) is predictable, a fraction 2 s^2 / (v + 2 s^2) of it: the
    # loss drops by 0.5 E[s^2 / (v + 2 s^2)], s log-uniform over sigmas_nm [0.01, 0.02]
    lam = np.exp(np.linspace(np.log(0.01), np.log(0.02), 1001))
    drop = 0.5 * float(np.mean(lam ** 2 / (4e-4 + 2 * lam ** 2)))
    assert without == pytest.approx(1.5, abs=0.12)
    assert without - with_prior == pytest.approx(drop, rel=0.15), (without, with_prior, drop)


@pytest.mark.parametrize("bond_prior", [True, False])
def test_runtime_uses_the_recorded_prior(bond_prior):
    from openmm_mlcg.model.simulator import LearnedSimulator

    model, mapping = _dimer_model(bond_prior)
    assert (model.system_graph(mapping).cg_bond_prior is not None) == bond_prior
    sim = LearnedSimulator(model, mapping)
    assert (sim.score_terms is not None and sim.score_terms.get("bond_prior") is not None) == bond_prior
    g = torch.Generator().manual_seed(2)
    x = torch.as_tensor(_dimer_items(1, g)[0]["positions"])
    x, _ = sim.step(x, torch.zeros(2, 100, 3, dtype=torch.float64), n_steps=4, generator=g)
    r = (x[1::2] - x[0::2]).norm(dim=-1)
    if bond_prior:  # an ideal gas of dimers keeps its bonds at the recorded length; without, they fly apart
        assert float(r.mean()) == pytest.approx(0.3, abs=0.01) and float(r.std()) < 0.04
    else:
        assert float(r.mean()) > 0.6


def test_metadata_validates_and_round_trips_the_bond_prior():
    from openmm_mlcg.model.metadata import ModelMetadata

    base = dict(model_time_step_ps=2.0, history=2, cutoff_nm=0.5, velocity_std=0.2, acceleration_std=0.3,
                atom_type_vocabulary=["C"], sigmas_nm=[0.02, 0.01])
    meta = ModelMetadata.from_dict(dict(base, bond_prior={"A|B": [0.3, 4e-4]}), "metadata")
    assert ModelMetadata.from_dict(meta.to_dict(), "m").score_terms["bond_prior"] == {"A|B": [0.3, 4e-4]}
    for bad in ([0.3], [0.3, -1.0], [float("nan"), 1e-4], "x"):
        with pytest.raises(ValueError, match=r"bond_prior.*A\|B"):
            ModelMetadata.from_dict(dict(base, bond_prior={"A|B": bad}), "metadata")
