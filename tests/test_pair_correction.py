"""The fitted pair correction of the cg_langevin score (openmm_mlcg.train.fits.pair_correction, prior.PairCorrection)."""
import numpy as np
import pytest
import torch
from prior_fakes import FakeTraj, ZeroScore
from test_bond_prior import _dimer_data

from openmm_mlcg.priors import ScoreTerms, pair_key
from openmm_mlcg.priors.pair_correction import PairCorrection


def _pair_model(m):
    """A cg_langevin model with an ideal-gas Score GNN on m NON-bonded C-O bead pairs (one atom per bead)."""
    from openmm_mlcg.cg.mapping import CGMapping
    from openmm_mlcg.model import CGDynamicsModel
    from openmm_mlcg.nn import DynamicsGNN, EmbeddingGNN
    from openmm_mlcg.cg.topology import FineGraph

    graph = FineGraph.from_arrays(["C", "O"] * m, np.tile([12.011, 15.999], m), np.zeros((0, 2), dtype=int),
                                  residue_names=["CO"] * (2 * m))
    mapping = CGMapping.from_graph(graph, 1)
    emb = EmbeddingGNN(2, 6, hidden=4, layers=1)
    meta = dict(model_time_step_ps=2.0, history=2, cutoff_nm=0.5, velocity_std=0.2, acceleration_std=0.3,
                atom_type_vocabulary=["C", "O"], sampler="cg_langevin", temperature_K=300.0, cg_langevin_steps=15,
                cg_langevin_sigma_nm=0.015, sigmas_nm=[0.02, 0.01], cg_langevin_mass_floor_amu=40.0)
    model = CGDynamicsModel(emb, DynamicsGNN(embedding_dim=emb.out_dim, history=2, hidden=8, layers=1),
                            ZeroScore(), meta).eval()
    return model, mapping


def _pair_frames(n_frames, m, r0, sd, seed):
    """(F, 2m, 3) frames of m C-O pairs at distance ~ N(r0, sd^2), random orientations, far apart."""
    g = torch.Generator().manual_seed(seed)
    return np.stack([_dimer_data(m, r0, sd, g).numpy() for _ in range(n_frames)])


def test_fit_recovers_the_smoothed_pair_score_of_an_ideal_gas_model():
    from openmm_mlcg.train.fits.pair_correction import fit_pair_correction

    m, r0, sd = 40, 0.3, 0.02
    model, mapping = _pair_model(m)
    o_type = str(mapping.bead_types[1])
    frames = _pair_frames(30, m, r0, sd, seed=0)
    fit = fit_pair_correction(model, [FakeTraj(frames, None)], [mapping], [o_type], draws=8)
    assert fit["pairs"] == [pair_key(mapping.bead_types[0], o_type), pair_key(o_type, o_type)]
    assert fit["held_out"][fit["ridge"]] < 0            # it predicts the other half better than no correction
    tab = fit["table"]
    knots = tab["r_min_nm"] + tab["dr_nm"] * np.arange(len(tab["scores"][fit["pairs"][0]]))
    g = np.array(tab["scores"][fit["pairs"][0]])
    # exact: the relative vector of a pair is smoothed by s^2 = sigma_C^2 + sigma_O^2 per axis, so its radial law is
    # ~ N(r0 + s^2 / r0, sd^2 + s^2) with an r^2 Jacobian; the score pushing the beads apart is d/dr log(p / r^2)
    sig = model.metadata.cg_langevin_sigmas(torch.as_tensor(np.asarray(mapping.bead_masses))).reshape(-1)
    s2 = float(sig[0] ** 2 + sig[1] ** 2)
    exact = -(knots - (r0 + s2 / r0)) / (sd ** 2 + s2) - 2.0 / knots
    dense = np.abs(knots - r0) < 1.5 * np.sqrt(sd ** 2 + s2)
    assert dense.sum() >= 4
    np.testing.assert_allclose(g[dense], exact[dense], atol=0.12 * np.ptp(exact[dense]))
    assert np.allclose(tab["scores"][pair_key(o_type, o_type)], 0.0, atol=1e-6)   # no O-O pair within reach


def test_fit_refuses_bad_input():
    from openmm_mlcg.train.fits.pair_correction import fit_pair_correction

    model, mapping = _pair_model(4)
    frames = _pair_frames(4, 4, 0.3, 0.02, seed=1)
    with pytest.raises(ValueError, match="types"):
        fit_pair_correction(model, [FakeTraj(frames, None)], [mapping], ["Li"])
    with pytest.raises(ValueError, match="draws"):
        fit_pair_correction(model, [FakeTraj(frames, None)], [mapping], [str(mapping.bead_types[0])], draws=0)


def test_runtime_correction_is_the_interpolated_table_with_newtons_third_law():
    from openmm_mlcg.model import ModelMetadata
    from openmm_mlcg.nn.neighbors import build_edges

    table = {"r_min_nm": 0.2, "dr_nm": 0.05, "scores": {pair_key("A", "B"): [0.0, 10.0, -20.0, 0.0]}}
    corr = PairCorrection(["A", "B", "B"], table)
    x = torch.tensor([[0.0, 0.0, 0.0], [0.275, 0.0, 0.0], [0.0, 0.0, 0.9]], dtype=torch.float64)
    s = corr.score(x, build_edges(x, None, 1.0, torch.zeros((0, 2), dtype=torch.long)))
    # r = 0.275 nm: halfway between the knots 0.25 (10 /nm) and 0.30 (-20 /nm): -5 /nm, i.e. attraction; the
    # third bead is beyond the table (0.9 nm)
    torch.testing.assert_close(s[0], torch.tensor([5.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(s[1], torch.tensor([-5.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(s[2], torch.zeros(3, dtype=torch.float64))
    meta = ModelMetadata.from_dict(dict(history=2, cutoff_nm=1.0, model_time_step_ps=2.0, velocity_std=0.1,
                                        acceleration_std=0.1, atom_type_vocabulary=["C"], sigmas_nm=[0.02, 0.01],
                                        sampler="cg_langevin", temperature_K=300.0, cg_langevin_sigma_nm=0.015,
                                        pair_correction=table))
    again = ModelMetadata.from_dict(meta.to_dict())
    assert again.score_terms["pair_correction"] == table
    graph = type("G", (), {"cg_bond_prior": None, "n_beads": 3, "atom_types": torch.zeros(3, dtype=torch.long),
                           "masses": torch.full((3,), 12.0), "atom_to_bead": torch.arange(3)})()
    terms = ScoreTerms.from_metadata(again, ["A", "B", "B"], graph)
    assert terms is not None and terms.get("pair_correction") is not None
    bad = dict(table, scores={pair_key("A", "B"): [0.0, float("nan")]})
    with pytest.raises(ValueError, match="pair_correction"):
        ModelMetadata.from_dict(dict(meta.to_dict(), pair_correction=bad))


def test_trainer_fits_records_and_the_runtime_applies_the_correction(tmp_path):
    from test_train import _chain_system, _config

    from openmm_mlcg.bundle.export import load_bundle
    from openmm_mlcg.model.simulator import LearnedSimulator
    from openmm_mlcg.train import TrainConfig, train_on_trajectories

    traj, mapping = _chain_system(n_ions=3, n_frames=40)
    li = [t for t in mapping.bead_types if str(t) == "Li"]
    assert li, mapping.bead_types
    cfg = _config(tmp_path / "pc", data=dict(val_fraction=0.0),
                  score=dict(sampler="cg_langevin", sigma_max_nm=None, sigma_min_nm=None,
                             cg_langevin=dict(calibration_starts=2, calibration_lag=2),
                             terms=dict(pair_correction_types=["Li"])))
    bundle = load_bundle(train_on_trajectories([traj], [mapping], cfg))
    table = bundle.metadata.score_terms["pair_correction"]
    assert table and all("Li" in key.split("|") for key in table["scores"])
    fit = bundle.metadata["pair_correction_fit"]                    # the cross-validation record
    assert fit["pairs"] == sorted(table["scores"]) and len(fit["held_out"]) >= 2
    sim = LearnedSimulator(bundle, mapping)
    assert sim.score_terms is not None and sim.score_terms.get("pair_correction") is not None
    with pytest.raises(ValueError, match="score.terms.pair_correction_types"):
        TrainConfig.from_dict({"score": {"terms": {"pair_correction_types": []}}})
    with pytest.raises(ValueError, match="score.terms.pair_correction_types"):
        TrainConfig.from_dict({"score": {"sampler": "ode", "terms": {"pair_correction_types": ["Li"]}}})
    with pytest.raises(ValueError, match="score.terms.pair_correction_types"):
        TrainConfig.from_dict({"model": {"score_energy": True},
                               "score": {"relative_entropy": {"steps": 10}, "terms": {"pair_correction_types": ["Li"]}}})


class _ExactPairScore(torch.nn.Module):
    """sigma x the smoothed pair score of test_fit_recovers...: d/dr log(p / r^2), p ~ N(r0 + s2 / r0, sd^2 + s2)."""

    def __init__(self, r0, sd, s2):
        super().__init__()
        self.r0, self.sd, self.s2 = r0, sd, s2

    def forward(self, latent, residual, displacement, edge_index, edge_vec, edge_type, sigma, cutoff: float = 1.0,
                length_scale: float = 1.0):
        r = edge_vec.norm(dim=-1, keepdim=True)
        g = -(r - (self.r0 + self.s2 / self.r0)) / (self.sd ** 2 + self.s2) - 2.0 / r
        pair = torch.zeros(latent.shape[0], 3, dtype=edge_vec.dtype).index_add_(0, edge_index[0], -g * edge_vec / r)
        return sigma.reshape(-1, 1) * pair


def test_identity_check_tells_the_exact_score_from_a_wrong_one_and_the_fit_repairs_it():
    from openmm_mlcg.train.fits.pair_correction import contact_identity_check, fit_pair_correction

    m, r0, sd = 40, 0.3, 0.02
    model, mapping = _pair_model(m)
    frames = [FakeTraj(_pair_frames(20, m, r0, sd, seed=3), None)]
    key = pair_key(mapping.bead_types[0], mapping.bead_types[1])
    zero = contact_identity_check(model, frames, [mapping], contact_nm=0.4)[key]
    sig = model.metadata.cg_langevin_sigmas(torch.as_tensor(np.asarray(mapping.bead_masses))).reshape(-1)
    model.score = _ExactPairScore(r0, sd, float(sig[0] ** 2 + sig[1] ** 2))
    exact = contact_identity_check(model, frames, [mapping], contact_nm=0.4)[key]
    assert zero["n"] == exact["n"] > 0.99 * 20 * m * 8                # nearly every pair, every draw, once
    assert abs(zero["difference"]) > 10 * zero["se"]                 # the ideal gas misses the pair's score
    assert abs(exact["difference"]) < 0.1 * abs(zero["difference"])  # the exact one satisfies the identity
    with pytest.raises(ValueError, match="contact_nm"):
        contact_identity_check(model, frames, [mapping], contact_nm=0.0)
    model.score = ZeroScore()
    fit = fit_pair_correction(model, frames, [mapping], [str(mapping.bead_types[1])])
    before, after = fit["identity_check"]["before"][key], fit["identity_check"]["after"][key]
    assert abs(after["difference"]) < 0.2 * abs(before["difference"])   # (the ridge leaves a little)
    assert abs(after["difference"]) < 3 * after["se"]
