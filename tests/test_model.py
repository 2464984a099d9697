"""CGDynamicsModel: one model object between trainer and runtime (typed metadata, shared predict path)."""
import numpy as np
import openmm
import pytest
import torch
from openmm import unit

from openmm_mlcg.bundle.export import load_bundle, save_bundle
from openmm_mlcg.bundle import load_model
from openmm_mlcg.model import CGDynamicsModel, ModelMetadata
from openmm_mlcg.nn import DynamicsGNN, EmbeddingGNN, ScoreGNN

torch.set_num_threads(1)

META = dict(model_time_step_ps=0.5, history=2, cutoff_nm=0.5, velocity_std=0.01, acceleration_std=0.02,
            atom_type_vocabulary=["C", "Li", "O"], sigmas_nm=[0.05, 0.001], langevin_steps_per_level=1)


def _chain_system(box_nm=None, seed=0, n_frames=24):
    """Three 4-atom chains (2 beads each) + 2 Li ions on an anti-persistent random walk (nm)."""
    from openmm_mlcg.data import CGTrajectory
    from openmm_mlcg.cg.mapping import CGMapping
    from openmm_mlcg.cg.topology import FineGraph

    types, masses, bonds, res = [], [], [], []
    for c in range(3):
        o = len(types)
        types += ["C", "C", "O", "C"]
        masses += [12.011, 12.011, 15.999, 12.011]
        bonds += [(o, o + 1), (o + 1, o + 2), (o + 2, o + 3)]
        res += ["ETH"] * 4
    types, masses, res = types + ["Li"] * 2, masses + [6.94] * 2, res + ["LI"] * 2
    mapping = CGMapping.from_graph(FineGraph.from_arrays(types, masses, bonds, residue_names=res), 2)
    rng = np.random.default_rng(seed)
    x = np.zeros((n_frames, mapping.n_beads, 3))
    x[0] = rng.uniform(0, 2.0, size=(mapping.n_beads, 3))
    v = rng.normal(0, 0.008, size=(mapping.n_beads, 3))
    for t in range(1, n_frames):
        v = -0.8 * v + rng.normal(0, 0.005, size=v.shape)
        x[t] = x[t - 1] + v
    box = None if box_nm is None else np.tile(np.eye(3) * box_nm, (n_frames, 1, 1))
    return CGTrajectory(x, box, np.arange(n_frames) * 0.5, 0.5, mapping.hash), mapping


def _train_tiny(out, traj, mapping):
    """Train 3 steps; return (bundle path, trainer-side model with the eager trained modules, config)."""
    from openmm_mlcg.train import TrainConfig, train_on_trajectories
    from openmm_mlcg.train.model_step import build_modules

    cfg = TrainConfig.from_dict(dict(
        data=dict(history=2, stride=1, val_fraction=0.0, temperature_K=300.0),
        model=dict(embedding_hidden=8, embedding_layers=1, dynamics_hidden=16, dynamics_layers=1, score_hidden=8,
                   score_layers=1, cutoff_nm=0.5),
        score=dict(n_levels=3, sigma_max_nm=0.05, sigma_min_nm=0.001),
        optim=dict(lr=3e-3, lr_final=1e-3, batch_size=4),
        training=dict(n_steps=3, eval_every=3, checkpoint_every=3, seed=0, out_dir=str(out), progress=False)))
    path = train_on_trajectories([traj], [mapping], cfg)
    meta = load_bundle(path).metadata
    modules = build_modules(cfg.model, len(meta["atom_type_vocabulary"]), cfg.data.history, cfg.score.sampler)
    state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)["modules"]
    for name, module in modules.items():
        module.load_state_dict(state[name])
    return path, CGDynamicsModel(modules["embedding"], modules["dynamics"], modules["score"], meta).eval(), cfg


def _trainer_prediction(model, traj, mapping, t):
    """The trainer's prediction (model.loss, validation mode) on the training window at frame t."""
    from openmm_mlcg.data import WindowDataset
    from openmm_mlcg.train.batching import collate

    ds = WindowDataset([traj], [mapping], history=model.history_length, stride=1)
    graphs = [model.system_graph(mapping)]
    batch = collate([ds[t - model.history_length]], graphs)
    assert float(batch.positions.sub(torch.as_tensor(traj.positions[t])).abs().max()) == 0.0
    with torch.no_grad():
        out = model.loss(batch, graphs, torch.Generator().manual_seed(0), train=False, return_prediction=True)
    return out["prediction"]


def test_runtime_one_step_equals_trainer_prediction_bit_for_bit(tmp_path):
    from openmm_mlcg.openmm import LearnedIntegrator, create_cg_system, create_simulation

    traj, mapping = _chain_system()
    path, trainer_model, _ = _train_tiny(tmp_path / "run", traj, mapping)
    k, t = trainer_model.history_length, 6
    pred = _trainer_prediction(trainer_model, traj, mapping, t)
    frames = traj.positions[t - k:t + 1]
    integ = LearnedIntegrator(path, mapping=mapping, history=frames, refine=False, deterministic=True, device="cpu")
    top, system = create_cg_system(mapping, None)
    sim = create_simulation(top, system, integ, openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(frames[-1])
    sim.step(1)
    x = sim.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    assert pred.mean_pos.dtype == torch.float64
    np.testing.assert_array_equal(x, pred.mean_pos.numpy())          # bit for bit
    assert not np.array_equal(x, frames[-1])
    # the normalised quantities themselves: the runtime model's Gaussian equals the trainer's
    runtime = integ._simulator
    xt, ht = runtime.history_from_positions(frames)
    mean_pos, std_pos, latent = runtime.predict(xt, ht, None)
    assert torch.equal(mean_pos, pred.mean_pos) and torch.equal(std_pos, pred.std_pos)
    assert torch.equal(latent, pred.latent)


def test_periodic_prediction_equals_trainer_bit_for_bit(tmp_path):
    from openmm_mlcg.model.simulator import LearnedSimulator

    traj, mapping = _chain_system(box_nm=2.0, seed=1)
    path, trainer_model, _ = _train_tiny(tmp_path / "run", traj, mapping)
    t = 9
    pred = _trainer_prediction(trainer_model, traj, mapping, t)
    sim = LearnedSimulator(load_bundle(path), mapping)
    x, h = sim.history_from_positions(traj.positions[t - 2:t + 1])
    box = torch.as_tensor(traj.box[t])
    mean_pos, std_pos, latent = sim.predict(x, h, box)
    assert torch.equal(mean_pos, pred.mean_pos) and torch.equal(std_pos, pred.std_pos)
    assert torch.equal(latent, pred.latent)


def _modules(history=2):
    torch.manual_seed(0)
    return (EmbeddingGNN(3, 6, hidden=8, layers=1), DynamicsGNN(8, history=history, hidden=8, layers=1),
            ScoreGNN(8, 8, 1))


def test_metadata_record_validates_and_round_trips():
    rec = ModelMetadata.from_dict(dict(META, train_config={"a": 1}))
    assert rec.history == 2 and rec.atom_type_vocabulary == ("C", "Li", "O") and rec.extra == {"train_config": {"a": 1}}
    assert ModelMetadata.from_dict(rec.to_dict()) == rec
    with pytest.raises(ValueError, match=r"missing required keys \['cutoff_nm'\]"):
        ModelMetadata.from_dict({k: v for k, v in META.items() if k != "cutoff_nm"})
    with pytest.raises(ValueError, match=r"\['velocity_std'\]: expected a positive finite number"):
        ModelMetadata.from_dict(dict(META, velocity_std=0.0))
    with pytest.raises(ValueError, match=r"\['sampler'\]: expected one of"):
        ModelMetadata.from_dict(dict(META, sampler="euler"))
    with pytest.raises(ValueError, match=r"\['history'\]: expected an integer >= 1"):
        ModelMetadata.from_dict(dict(META, history=0))
    with pytest.raises(ValueError, match=r"history is 2 but hyperparameters\['dynamics'\]\['history'\] is 3"):
        ModelMetadata.from_dict(dict(META, hyperparameters={"dynamics": {"history": 3}}))
    with pytest.raises(ValueError, match=r"\['cg_langevin_mass_floor_amu'\]: expected a positive finite number"):
        ModelMetadata.from_dict(dict(META, cg_langevin_mass_floor_amu=-1.0))
    # the sampler's masses: Li+ (6.94 amu) raised to a 40 amu floor gets the same noise level as a 40 amu bead;
    # heavier beads keep sigma ~ 1 / sqrt(m); without a floor (old bundles) Li+ gets sqrt(40 / 6.94) x wider
    lam = dict(META, sampler="cg_langevin", temperature_K=300.0, cg_langevin_sigma_nm=0.02,
               cg_langevin_sigma_mass_amu=40.0)
    masses = torch.tensor([6.94, 40.0, 160.0], dtype=torch.float64)
    floored = ModelMetadata.from_dict(dict(lam, cg_langevin_mass_floor_amu=40.0))
    assert ModelMetadata.from_dict(floored.to_dict()) == floored
    assert floored.cg_langevin_sigmas(masses).reshape(-1).tolist() == pytest.approx([0.02, 0.02, 0.01])
    assert floored.cg_langevin_masses(masses).reshape(-1).tolist() == pytest.approx([40.0, 40.0, 160.0])
    plain = ModelMetadata.from_dict(lam)
    assert "cg_langevin_mass_floor_amu" not in plain.to_dict()
    assert float(plain.cg_langevin_sigmas(masses)[0]) == pytest.approx(0.02 * (40.0 / 6.94) ** 0.5)


def test_inconsistent_or_old_bundle_is_refused(tmp_path):
    import json
    import zipfile

    def tampered(name, **changes):
        path = tmp_path / name
        with zipfile.ZipFile(tmp_path / "ok.mlcg") as src, zipfile.ZipFile(path, "w") as dst:
            for member in src.namelist():
                data = src.read(member)
                if member == "metadata.json":
                    data = json.dumps(dict(json.loads(data), **changes)).encode()
                dst.writestr(member, data)
        return path

    # k stored twice (metadata history and the Dynamics GNN's own): compared on save, on load and by the model
    with pytest.raises(ValueError, match=r"history is 2 but hyperparameters\['dynamics'\]\['history'\] is 3"):
        save_bundle(tmp_path / "k.mlcg", *_modules(history=3), META)
    with pytest.raises(ValueError, match="history is 2 but the Dynamics GNN takes 3"):
        CGDynamicsModel(*_modules(history=3), META)
    ok = load_model(save_bundle(tmp_path / "ok.mlcg", *_modules(), META))
    assert ok.history_length == 2 and float(ok.velocity_std) == 0.01 and ok.sigmas_nm.dtype == torch.float64
    assert dict(ok.named_buffers()).keys() >= {"velocity_std", "acceleration_std", "sigmas_nm"}
    with pytest.raises(ValueError, match="history is 3 but hyperparameters"):
        load_model(tampered("k.mlcg", history=3))
    # a format-1 bundle (before the residual mean) gives the reason, not a crash
    with pytest.raises(ValueError, match=r"format_version expected one of \(2, 3\), got 1.*retrained"):
        load_model(tampered("old.mlcg", format_version=1))


def test_judged_window_never_overlaps_training():
    from openmm_mlcg.experiments.protocol import train_judge_split

    for n_frames, n_train, k, stride in [(30, 10, 3, 2), (121, 40, 3, 2), (1001, 100, 20, 3), (12, 6, 1, 5)]:
        split = train_judge_split(n_frames, n_train, k, stride)
        train = set(range(*split.train))
        judged = set(range(*split.judge))
        assert train and judged and not train & judged
        assert max(train) < min(judged) and max(judged) < n_frames
        assert set(split.start_frames.tolist()) <= train and len(split.start_frames) == k + 1
        assert np.all(np.diff(split.start_frames) == stride) and split.start_frames[-1] == n_train
        # the rollout's frames 1..n_steps land inside the judged window at the model step
        rollout = split.start_frames[-1] + stride * np.arange(1, split.n_steps + 1)
        assert set(rollout.tolist()) <= judged
    with pytest.raises(ValueError, match="n_frames: expected >"):
        train_judge_split(11, 10, 2, 2)
    with pytest.raises(ValueError, match="n_train_frames: expected >= history"):
        train_judge_split(100, 3, 2, 2)
