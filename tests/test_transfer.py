"""Bead types never seen in training take the tables of the nearest seen chemistry (openmm_mlcg.cg.similarity)."""
import numpy as np
import pytest
import torch

from openmm_mlcg.cg.similarity import BeadTypeTransfer, seen_bead_types
from openmm_mlcg.model.metadata import ModelMetadata
from openmm_mlcg.priors.bonds import HarmonicBonds

SEEN = ["C2H4O_5951", "C2H4_25d5", "C2H4_c7b9", "C3H6_a160", "CF3_9c81", "Li", "NO4S2_7dd1"]
ELEMENTS = BeadTypeTransfer(["C", "F", "H", "Li", "N", "O", "S", "Na"])


def test_composition_of_chemical_labels_only():
    assert ELEMENTS.composition("C2H4O_3fa2") == (("C", 2), ("H", 4), ("O", 1))
    assert ELEMENTS.composition("F6LiNO4S2_abcd") == (("F", 6), ("Li", 1), ("N", 1), ("O", 4), ("S", 2))
    assert ELEMENTS.composition("Li") == (("Li", 1),)
    # per-residue labels are not chemistry, even where their letters spell element symbols
    for label in ("MET0", "CYS3", "C2H4", "C2H4_xyz1", "Ar_0abc"):
        assert ELEMENTS.composition(label) is None, label
    # force-field atom types (the polymer benchmark's B1, B2, S1, S2) read with the vocabulary, not as elements
    ff = BeadTypeTransfer(["B1", "B2", "S1", "S2"])
    assert ff.composition("B12B2S1S22_7269") == (("B1", 2), ("B2", 1), ("S1", 1), ("S2", 2))
    assert ff.composition("B12S13_b270") == (("B1", 2), ("S1", 3))


def test_nearest_seen_chemistry_known_answers():
    # PCL's backbone bead: the two seen C2H4 beads (PEO, PTMO), not C3H6 (14 amu away)
    assert ELEMENTS.nearest("C2H4_ba4e", SEEN) == ("C2H4_25d5", "C2H4_c7b9")
    assert ELEMENTS.nearest("C3H6_fd27", SEEN) == ("C3H6_a160",)
    # C2H4O2: one oxygen (16 amu) from C2H4O, more from every other seen bead
    assert ELEMENTS.nearest("C2H4O2_0000", SEEN) == ("C2H4O_5951",)
    assert ELEMENTS.nearest("C2H4_25d5", SEEN) == ("C2H4_25d5",)      # a seen type is its own
    assert ELEMENTS.nearest("MET0", SEEN) == ()                       # no composition, nothing borrowed
    assert ELEMENTS.nearest("Na", SEEN) == ("Li",)                    # 16 amu from Li, more from any bead of atoms


def test_system_graph_compositions_and_masses():
    """The system's own bead compositions and atom masses come from its fine graph: a hydrogen mass of 3 amu
    (repartitioned) makes a CH2 difference cost 12 + 2 x 3 amu."""
    from types import SimpleNamespace
    graph = SimpleNamespace(n_beads=2, atom_types=torch.tensor([0, 1, 1, 0, 1, 1, 1, 1]),
                            masses=torch.tensor([12.0, 3.0, 3.0, 12.0, 3.0, 3.0, 3.0, 3.0]),
                            atom_to_bead=torch.tensor([0, 0, 0, 1, 1, 1, 1, 1]))
    tr = BeadTypeTransfer(["C", "H"], ["CH2_0000", "CH5_0000"], graph)
    assert tr.composition("CH2_0000") == (("C", 1), ("H", 2))
    assert tr.distance("C2H4_1111", "CH2_0000") == pytest.approx(18.0)
    with pytest.raises(ValueError, match="bead_types"):
        BeadTypeTransfer(["C", "H"], ["CH2_0000"], graph)


def test_type_and_pair_values_transfer_only_to_unlisted_types():
    friction = {"C2H4_25d5": 1000.0, "C2H4_c7b9": 10.0, "Li": 5.0}
    out = ELEMENTS.type_values(friction, ["C2H4_ba4e", "Li", "MET0"])
    assert out == {"C2H4_ba4e": pytest.approx(100.0)}                 # geometric mean of the tie; Li is listed
    walls = {"C2H4_25d5|C2H4_25d5": 0.35, "C2H4_c7b9|C2H4_c7b9": 0.30, "C2H4_25d5|Li": 0.25, "Li|Li": 0.43}
    got = ELEMENTS.pair_values(walls, ["C2H4_ba4e", "Li"])
    # (new, new) -> the smaller of the two C2H4 self walls; (new, Li) -> the only listed C2H4-Li wall; Li|Li listed
    assert got == {"C2H4_ba4e|C2H4_ba4e": 0.30, "C2H4_ba4e|Li": 0.25}


def _meta(rule, vocabulary=("Ar", "Kr"), **extra):
    return ModelMetadata.from_dict(dict(
        model_time_step_ps=2.0, history=2, cutoff_nm=0.5, velocity_std=0.2, acceleration_std=0.3,
        atom_type_vocabulary=list(vocabulary), sampler="cg_langevin", temperature_K=120.0, cg_langevin_steps=15,
        cg_langevin_sigma_nm=0.014, sigmas_nm=[0.04, 0.005], cg_langevin_friction_per_ps=1.0,
        unseen_bead_types=rule, **extra))


def test_metadata_rule_friction_and_validation():
    by_type = {"C2H4_25d5": 1000.0, "C2H4_c7b9": 10.0}
    on, off = _meta("nearest_composition", ("C", "H"), cg_langevin_friction_by_type=by_type), \
        _meta("none", ("C", "H"), cg_langevin_friction_by_type=by_type)
    assert on.cg_langevin_frictions(["C2H4_ba4e", "C2H4_25d5", "MET0"]) == pytest.approx([100.0, 1000.0, 1.0])
    assert off.cg_langevin_frictions(["C2H4_ba4e", "C2H4_25d5"]) == pytest.approx([1.0, 1000.0])
    assert ModelMetadata.from_dict(on.to_dict()).unseen_bead_types == "nearest_composition"
    with pytest.raises(ValueError, match="unseen_bead_types.*'nearest'"):
        _meta("nearest")


def test_transferred_bond_prior_holds_an_unseen_bond():
    table = {"C2H4_25d5|C2H4_25d5": [0.40, 1e-4], "C2H4_c7b9|C2H4_c7b9": [0.44, 3e-4]}
    got = HarmonicBonds.transferred(table, ["C2H4_ba4e"], ELEMENTS)
    assert got["C2H4_ba4e|C2H4_ba4e"] == pytest.approx([0.42, 2e-4])
    assert HarmonicBonds.transferred(table, ["C2H4_25d5"], ELEMENTS) == table


def test_trained_model_runs_a_system_with_a_bead_type_it_never_saw(tmp_path):
    """Train (a few steps, the default generator and fits) on chains C-C-O-C-C-O + Li, then run chains
    C-C-O-C-C-C-O + Li: the new chain's beads are types no table lists; they get the friction and walls of the
    nearest seen chemistry, not the global friction and no wall, and the run stays finite."""
    from chain_systems import chain_ion_mapping, chain_ion_system

    from openmm_mlcg.bundle.export import load_bundle
    from openmm_mlcg.model.simulator import LearnedSimulator
    from openmm_mlcg.train import TrainConfig, train_on_trajectories

    torch.manual_seed(0)
    traj, mapping = chain_ion_system()
    tiny = dict(embedding_hidden=16, embedding_layers=1, dynamics_hidden=16, dynamics_layers=1, score_hidden=16,
                score_layers=1, cutoff_nm=0.6)
    raw = dict(data=dict(history=2, stride=1, val_fraction=0.2, temperature_K=300.0), model=tiny,
               score=dict(cg_langevin=dict(steps=4, calibration_lag=2, calibration_starts=1)),
               optim=dict(lr=1e-3, batch_size=2),
               training=dict(n_steps=4, eval_every=2, checkpoint_every=2, seed=0, out_dir=str(tmp_path / "m"),
                             progress=False))
    bundle = load_bundle(train_on_trajectories([traj], [mapping], TrainConfig.from_dict(raw)))
    meta = bundle.metadata
    new = chain_ion_mapping(3, 3, ("C", "C", "O", "C", "C", "C", "O"))
    unseen = sorted(set(new.bead_types) - set(mapping.bead_types))
    assert unseen and not set(unseen) & seen_bead_types(meta)
    with pytest.warns(UserWarning, match=r"bead type\(s\) never seen in training take the friction and walls"):
        sim = LearnedSimulator(bundle, new)
    friction = dict(zip(new.bead_types, sim.bead_friction.reshape(-1).tolist()))
    transfer = meta.bead_type_transfer(new.bead_types, sim.graph)
    for t in unseen:
        near = transfer.nearest(t, meta.cg_langevin_friction_by_type)
        assert near, t
        expected = np.exp(np.mean([np.log(meta.cg_langevin_friction_by_type[k]) for k in near]))
        assert friction[t] == pytest.approx(expected)
    walls = sim.score_terms.get("excluded_volume")
    names = sorted(set(new.bead_types))
    r0 = {(a, b): float(walls.r0_nm[i, j]) for i, a in enumerate(names) for j, b in enumerate(names)}
    assert all(r0[(t, t)] > 0 for t in unseen)
    # without the rule the same bundle gives the unseen pairs no wall at all
    from openmm_mlcg.priors import ScoreTerms
    off_meta = type(meta).from_dict({**meta.to_dict(), "unseen_bead_types": "none"})
    off = ScoreTerms.from_metadata(off_meta, new.bead_types, sim.graph).get("excluded_volume")
    assert all(float(off.r0_nm[names.index(t), names.index(t)]) == 0.0 for t in unseen)
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3)[:new.n_beads] * 2.0 / 3
    frames = grid[None] + np.cumsum(rng.normal(0, 0.004, (3, new.n_beads, 3)), 0)
    x, hist = sim.history_from_positions(frames)
    xs, _ = sim.step(x, hist, torch.eye(3, dtype=torch.float64) * 2.0, n_steps=5,
                     generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(xs).all()
