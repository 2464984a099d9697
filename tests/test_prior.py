"""The excluded-volume prior: closest approach from data, the wall's score, its Boltzmann law, the runtime path.

Known answers: (1) the closest non-bonded approach of a hand-built configuration (bonded pairs excluded, the
minimum image across the periodic boundary); (2) the wall score is minus the gradient of its energy (central
finite differences of an independent numpy energy); (3) tethered pairs sampled by the Langevin sampler with the
wall follow p(r) ~ r^2 exp(-r^2 / 4 s^2 - ((r0 - r) / w)^2) (numerical quadrature); (4) an ideal gas run by
``LearnedSimulator`` from a bundle that records the wall keeps its beads apart, without it they overlap.
"""
import math

import numpy as np
import pytest
import torch
from prior_fakes import FakeMap, FakeTraj, ZeroScore

from openmm_mlcg.generators import cg_langevin as C
from openmm_mlcg.priors import pair_key
from openmm_mlcg.priors.excluded_volume import ExcludedVolume, closest_approach



def test_closest_approach_known_configuration():
    box = np.eye(3) * 3.0
    # A0-A1 bonded at 0.1 nm (excluded), A0-B2 0.25 nm across the boundary (x 0.1 and 2.85), A1-B3 0.5 nm;
    # a second frame brings A1 and B3 to 0.42 nm
    f0 = [[0.1, 1.0, 1.0], [0.2, 1.0, 1.0], [2.85, 1.0, 1.0], [0.2, 1.5, 1.0]]
    f1 = [[0.1, 1.0, 1.0], [0.2, 1.0, 1.0], [2.85, 1.0, 1.0], [0.2, 1.42, 1.0]]
    got = closest_approach([FakeTraj([f0, f1], box)], [FakeMap("AABB", [[0, 1]])], cutoff_nm=1.0)
    assert got[pair_key("A", "B")] == pytest.approx(0.25, abs=1e-9)
    assert got[pair_key("B", "A")] == pytest.approx(0.25, abs=1e-9)
    assert "A|A" not in got  # the only A-A pair is bonded: no wall
    d23 = math.dist(f1[2], [f1[3][0] + 3.0, f1[3][1], 1.0])  # B2-B3 minimum image
    assert got["B|B"] == pytest.approx(min(1.0, d23), abs=1e-9)
    with pytest.raises(ValueError, match="cutoff_nm"):
        closest_approach([FakeTraj([f0], box)], [FakeMap("AABB", [[0, 1]])], cutoff_nm=0.0)


def _pair_edges(x):
    n = x.shape[0]
    i = torch.arange(0, n, 2)
    src = torch.cat([i, i + 1])
    dst = torch.cat([i + 1, i])
    return torch.stack([src, dst]), x[dst] - x[src], torch.zeros(src.shape[0], dtype=torch.long)


def test_wall_score_is_minus_the_energy_gradient():
    r0, w = 0.4, 0.05
    ev = ExcludedVolume(["A", "B"] * 3, {"A|B": r0}, w)
    x = torch.tensor([[0, 0, 0], [0.3, 0.1, 0], [1, 1, 1], [1.2, 1.1, 0.9], [2, 2, 2], [2.5, 2, 2]], dtype=torch.float64)

    def energy(y):  # U/kT, numpy, independent of the code under test
        total = 0.0
        for a in range(0, 6, 2):
            r = np.linalg.norm(y[a + 1] - y[a])
            total += ((r0 - r) / w) ** 2 if r < r0 else 0.0
        return total

    score = ev.score(x, _pair_edges(x)).numpy()
    y, h = x.numpy().copy(), 1e-6
    for a in range(6):
        for d in range(3):
            yp, ym = y.copy(), y.copy()
            yp[a, d] += h
            ym[a, d] -= h
            assert -(energy(yp) - energy(ym)) / (2 * h) == pytest.approx(score[a, d], abs=1e-5)
    assert np.all(score[4:] == 0)  # the third pair is beyond r0
    # bonded edges (edge_type 1) and type pairs not in the table feel no wall
    ei, vec, et = _pair_edges(x)
    assert torch.all(ev.score(x, (ei, vec, torch.ones_like(et))) == 0)
    assert torch.all(ExcludedVolume(["A", "C"] * 3, {"A|B": r0}, w).score(x, _pair_edges(x)) == 0)
    with pytest.raises(ValueError, match="width_nm"):
        ExcludedVolume(["A"], {}, 0.0)


def test_tethered_pairs_sample_the_wall_boltzmann_law():
    g = torch.Generator().manual_seed(4)
    m, s, r0, w = 3000, 0.25, 0.4, 0.05
    ev = ExcludedVolume(["A"] * (2 * m), {"A|A": r0}, w)

    def score(x):
        e = _pair_edges(x)
        r = x[0::2] - x[1::2]
        tether = torch.empty_like(x)
        tether[0::2], tether[1::2] = -r / (2 * s * s), r / (2 * s * s)  # U/kT = |r|^2 / (4 s^2) per pair
        return tether + ev.score(x, e)

    x = torch.randn(2 * m, 3, dtype=torch.float64, generator=g) * 0.3
    kt_m = torch.full((2 * m, 1), 0.025, dtype=torch.float64)
    for _ in range(8):
        x = C.sample(score, x, kt_m, 15, 2.0, 1.0, 1e-5, generator=g)
    r = (x[0::2] - x[1::2]).norm(dim=-1).numpy()
    grid = np.linspace(1e-4, 3.0, 30001)
    p = grid ** 2 * np.exp(-grid ** 2 / (4 * s * s) - np.where(grid < r0, ((r0 - grid) / w) ** 2, 0.0))
    p /= np.trapezoid(p, grid)
    below = float(np.trapezoid(np.where(grid < r0 - w, p, 0), grid))  # ~2 % inside the wall
    free = grid ** 2 * np.exp(-grid ** 2 / (4 * s * s))
    free_below = float(np.trapezoid(np.where(grid < r0 - w, free, 0), grid) / np.trapezoid(free, grid))
    assert free_below > 5 * below  # the wall matters
    se = math.sqrt(below * (1 - below) / m)
    assert abs(float(np.mean(r < r0 - w)) - below) < 4 * se + 0.003, (float(np.mean(r < r0 - w)), below)
    assert float(np.mean(r)) == pytest.approx(float(np.trapezoid(grid * p, grid)), rel=0.03)



@pytest.mark.parametrize("table,rule,walled", [
    ("Ar|Ar", "nearest_composition", True),    # the system's own type pair
    ("Kr|Kr", "nearest_composition", True),    # a type the bundle never saw: the nearest seen chemistry's wall
    ("Kr|Kr", "none", False),                  # ... and without the rule, no wall
    (None, "nearest_composition", False)])
def test_simulator_applies_the_recorded_wall(table, rule, walled):
    from openmm_mlcg.cg.mapping import CGMapping
    from openmm_mlcg.model import CGDynamicsModel
    from openmm_mlcg.nn import DynamicsGNN, EmbeddingGNN
    from openmm_mlcg.model.simulator import LearnedSimulator
    from openmm_mlcg.cg.topology import FineGraph

    n, side = 200, 2.0  # 25 beads/nm^3: an ideal gas at this density has many pairs closer than 0.15 nm
    graph = FineGraph.from_arrays(["Ar"] * n, np.full(n, 39.948), np.zeros((0, 2), dtype=int), residue_names=["AR"] * n)
    mapping = CGMapping.from_graph(graph, 1)
    emb = EmbeddingGNN(2, 6, hidden=4, layers=1)
    meta = dict(model_time_step_ps=2.0, history=2, cutoff_nm=0.5, velocity_std=0.2, acceleration_std=0.3,
                atom_type_vocabulary=["Ar", "Kr"], sampler="cg_langevin", temperature_K=120.0, cg_langevin_steps=15,
                cg_langevin_sigma_nm=0.014, sigmas_nm=[0.04, 0.005], cg_langevin_friction_per_ps=1.0,
                unseen_bead_types=rule)
    if table:
        meta.update(excluded_volume_nm={table: 0.33}, excluded_volume_width_nm=0.042)
    model = CGDynamicsModel(emb, DynamicsGNN(embedding_dim=emb.out_dim, history=2, hidden=8, layers=1), ZeroScore(),
                            meta).eval()
    sim = LearnedSimulator(model, mapping)
    assert (sim.excluded_volume is not None) == (table is not None)
    x = torch.rand(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * side
    box = torch.eye(3, dtype=torch.float64) * side
    hist = torch.zeros(2, n, 3, dtype=torch.float64)
    close = 0
    for k in range(4):
        x, hist = sim.step(x, hist, box, n_steps=3, generator=torch.Generator().manual_seed(k))
        d = x[:, None] - x[None]
        d = d - side * torch.round(d / side)
        r = d.norm(dim=-1) + torch.eye(n, dtype=torch.float64) * 10
        close += int((r < 0.15).sum()) // 2
    # U(0.15 nm) = ((0.33 - 0.15) / 0.042)^2 = 18 kT: no pair that close with the wall; about 20 per frame without
    assert (close == 0) if walled else (close > 20), close
