"""The bond-angle correction of the cg_langevin sampler (openmm_mlcg.priors.angles, openmm_mlcg.train.fits.angle_correction)."""
import numpy as np
import pytest
import torch
from prior_fakes import FakeTraj, ZeroScore

from openmm_mlcg.priors.angles import AngleCorrection, angle_key, angle_triplets, bond_angles
from openmm_mlcg.priors import pair_key

KNOTS = np.arange(0.0, 181.0, 5.0)


def _table(key, seed=0):
    u = np.random.default_rng(seed).normal(0.0, 2.0, KNOTS.size)
    u[0], u[-1] = u[1], u[-2]                              # flat ends, as the fit keeps them
    return {"knots_deg": KNOTS.tolist(), "U": {key: u.tolist()}}


def test_angle_triplets_and_angles_of_a_known_chain():
    trip = angle_triplets([(0, 1), (1, 2), (2, 3), (1, 4)])
    assert sorted(map(tuple, trip.tolist())) == [(0, 1, 2), (0, 1, 4), (1, 2, 3), (2, 1, 4)]
    x = torch.tensor([[1.0, 0, 0], [0, 0, 0], [0, 1.0, 0], [0, 1.0, 1.0], [-1.0, 0, 0]], dtype=torch.float64)
    th = np.degrees(bond_angles(x, torch.as_tensor(trip)).numpy())
    np.testing.assert_allclose(sorted(th), [90.0, 90.0, 90.0, 180.0], atol=1e-9)
    assert angle_key("O", "C", "N") == angle_key("N", "C", "O") == "N|C|O"


def test_score_is_minus_the_energy_gradient_with_zero_net_force_and_torque_and_finite_when_straight():
    g = np.random.default_rng(1)
    m = 6
    x = torch.tensor(g.normal(0, 0.2, (3 * m, 3)) + np.repeat(np.arange(m)[:, None] * [1.5, 0, 0], 3, 0))
    x[-1] = 2 * x[-2] - x[-3]                              # the last trimer exactly straight (180 deg)
    types = ["O", "C", "O"] * m
    bonds = [(3 * k + i, 3 * k + i + 1) for k in range(m) for i in (0, 1)]
    corr = AngleCorrection(types, bonds, _table("O|C|O"))
    s = corr.score(x)
    assert torch.isfinite(s).all()
    h = 1e-6
    for i in range(3 * m - 3):                             # central differences of the energy (bent trimers)
        for d in range(3):
            xp, xm = x.clone(), x.clone()
            xp[i, d] += h
            xm[i, d] -= h
            fd = -(corr.energy(xp) - corr.energy(xm)) / (2 * h)
            assert float(s[i, d]) == pytest.approx(float(fd), rel=1e-4, abs=1e-5)
    assert torch.allclose(s.sum(0), torch.zeros(3, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(torch.linalg.cross(x, s).sum(0), torch.zeros(3, dtype=torch.float64), atol=1e-9)
    box = torch.eye(3, dtype=torch.float64) * 2.0         # periodic: one image shift changes nothing
    y = x.clone()
    y[1] += torch.tensor([2.0, -2.0, 0.0], dtype=torch.float64)
    assert torch.allclose(corr.score(y, box=box), corr.score(x, box=box), atol=1e-9)


def test_bad_tables_are_refused_by_name():
    from openmm_mlcg.model.metadata import ModelMetadata

    for bad, match in (({"knots_deg": [0, 90, 80], "U": {"A|B|A": [0, 0, 0]}}, "knots_deg"),
                       ({"knots_deg": [0, 90, 180], "U": {"A|B|A": [0, 0]}}, r"A\|B\|A"),
                       ({"knots_deg": [0, 90, 180], "U": {"A|B": [0, 0, 0]}}, r"A\|B"),
                       ({"knots_deg": [0, 90, 180], "U": {"A|B|A": [0, float("nan"), 0]}}, r"A\|B\|A"),
                       ({"knots_deg": [0, 90, 180], "U": {}}, "'U'")):
        with pytest.raises(ValueError, match=match):
            AngleCorrection(["A", "B", "A"], [(0, 1), (1, 2)], bad)
    base = dict(model_time_step_ps=2.0, history=2, cutoff_nm=0.5, velocity_std=0.2, acceleration_std=0.3,
                atom_type_vocabulary=["C"], sigmas_nm=[0.02, 0.01])
    good = _table("A|B|A")
    assert ModelMetadata.from_dict(ModelMetadata.from_dict(dict(base, angle_correction=good), "m").to_dict(),
                                   "m").score_terms["angle_correction"] == good
    with pytest.raises(ValueError, match="angle_correction"):
        ModelMetadata.from_dict(dict(base, angle_correction={"knots_deg": [0], "U": {}}), "metadata")


def _trimer_model(m):
    """A cg_langevin model of m O-C-O trimers (one atom per bead): ideal-gas Score GNN + harmonic-bond prior."""
    from openmm_mlcg.cg.mapping import CGMapping
    from openmm_mlcg.model import CGDynamicsModel
    from openmm_mlcg.nn import DynamicsGNN, EmbeddingGNN
    from openmm_mlcg.cg.topology import FineGraph

    bonds = np.array([(3 * k + i, 3 * k + i + 1) for k in range(m) for i in (0, 1)])
    graph = FineGraph.from_arrays(["O", "C", "O"] * m, np.tile([15.999, 12.011, 15.999], m), bonds,
                                  residue_names=["OCO"] * (3 * m))
    mapping = CGMapping.from_graph(graph, 1)
    emb = EmbeddingGNN(2, 6, hidden=4, layers=1)
    types = list(mapping.bead_types)
    meta = dict(model_time_step_ps=2.0, history=2, cutoff_nm=0.5, velocity_std=0.2, acceleration_std=0.3,
                atom_type_vocabulary=["C", "O"], sampler="cg_langevin", temperature_K=300.0, cg_langevin_steps=15,
                cg_langevin_sigma_nm=0.015, sigmas_nm=[0.02, 0.01], cg_langevin_friction_per_ps=1.0,
                cg_langevin_mass_floor_amu=100.0, bond_prior={pair_key(types[0], types[1]): [0.3, 4e-4]})
    model = CGDynamicsModel(emb, DynamicsGNN(embedding_dim=emb.out_dim, history=2, hidden=8, layers=1),
                            ZeroScore(), meta).eval()
    return model, mapping


def _trimer_frames(n_frames, m, seed):
    """(F, 3m, 3) frames: bonds 0.3 nm, the O-C-O angle 50 % near 90 and 50 % near 160 deg (sd 10 deg)."""
    g = np.random.default_rng(seed)
    out = np.empty((n_frames, 3 * m, 3))
    for f in range(n_frames):
        theta = np.radians(np.where(g.random(m) < 0.5, 90.0, 160.0) + g.normal(0, 10.0, m))
        u = g.normal(size=(m, 3))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        w = np.cross(u, g.normal(size=(m, 3)))
        w /= np.linalg.norm(w, axis=1, keepdims=True)
        c = np.arange(m)[:, None] * np.array([3.0, 0.0, 0.0])
        v = np.cos(theta)[:, None] * u + np.sin(theta)[:, None] * w
        out[f, 0::3], out[f, 1::3], out[f, 2::3] = c + 0.3 * u, c, c + 0.3 * v
    return out


def test_fit_recovers_a_bimodal_angle_law_that_the_ideal_gas_misses():
    from openmm_mlcg.train.fits.angle_correction import fit_angle_correction

    m = 30
    model, mapping = _trimer_model(m)
    types = [str(t) for t in mapping.bead_types]
    key = angle_key(types[0], types[1], types[2])
    frames = _trimer_frames(40, m, seed=0)
    fit = fit_angle_correction(model, [FakeTraj(frames, None)], [mapping], iterations=6, steps=60, starts=2, seed=0)
    assert fit["keys"] == [key] and fit["n_samples"][key] == 40 * m
    dev = [d[key] for d in fit["deviation"]]
    assert dev[0] > 0.8                                    # the ideal gas: sin(theta), no barrier
    assert dev[-1] < 0.15                                  # 1200 data angles: the noise floor is ~0.05
    u = np.array(fit["table"]["U"][key])
    knots = np.array(fit["table"]["knots_deg"])
    at = lambda deg: u[np.argmin(np.abs(knots - deg))]    # noqa: E731
    assert at(125) - max(at(90), at(160)) > 1.0            # a barrier between the two conformers, in kT
    assert "angle_correction" not in model.metadata.score_terms   # the model is left as it was
    # the runtime applies the fitted table
    from openmm_mlcg.model.simulator import LearnedSimulator
    model.metadata = model.metadata.with_score_term("angle_correction", fit["table"])
    sim = LearnedSimulator(model, mapping)
    assert sim.score_terms is not None and sim.score_terms.get("angle_correction") is not None
    assert sim.score_terms.get("angle_correction").keys == [key]
    with pytest.raises(ValueError, match="iterations"):
        fit_angle_correction(model, [FakeTraj(frames, None)], [mapping], iterations=0)


def test_trainer_fits_records_and_the_runtime_applies_the_angle_correction(tmp_path):
    from test_train import _chain_system, _config

    from openmm_mlcg.bundle.export import load_bundle
    from openmm_mlcg.model.simulator import LearnedSimulator
    from openmm_mlcg.train import TrainConfig, train_on_trajectories

    traj, mapping = _chain_system(n_ions=3, n_frames=40, chain=("C", "C", "O", "C", "C", "O"))
    assert len(angle_triplets(mapping.cg_bonds)) > 0
    cfg = _config(tmp_path / "ac", data=dict(val_fraction=0.0),
                  score=dict(sampler="cg_langevin", sigma_max_nm=None, sigma_min_nm=None,
                             cg_langevin=dict(calibration_starts=2, calibration_lag=2),
                             terms=dict(angle_correction_iterations=1, angle_correction_steps=10)))
    bundle = load_bundle(train_on_trajectories([traj], [mapping], cfg))
    table = bundle.metadata.score_terms["angle_correction"]
    fit = bundle.metadata["angle_correction_fit"]
    assert sorted(table["U"]) == fit["keys"] and len(fit["deviation"]) == 2 and fit["steps"] == 10
    assert bundle.metadata["friction_calibration"]["friction_per_ps"] > 0     # refitted with the table
    sim = LearnedSimulator(bundle, mapping)
    assert sim.score_terms is not None and sim.score_terms.get("angle_correction") is not None
    for bad in ({"angle_correction_iterations": -1, "sampler": "cg_langevin"},
                {"angle_correction_iterations": 2, "sampler": "ode"},
                {"angle_correction_steps": 5, "sampler": "cg_langevin"}):
        with pytest.raises(ValueError, match="score.angle_correction"):
            TrainConfig.from_dict({"score": bad})
