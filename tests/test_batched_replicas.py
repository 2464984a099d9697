"""Batched replicas (openmm_mlcg.model.replicas, openmm_mlcg.openmm.replicas): one disjoint-union graph per pass,
each replica on its own RNG stream, equal to its single-replica run."""
import numpy as np
import openmm
import pytest
import torch

from openmm_mlcg.bundle.export import load_bundle, save_bundle
from openmm_mlcg.model.replicas import ReplicaSimulator
from openmm_mlcg.model.simulator import LearnedSimulator
from openmm_mlcg.nn.dynamics_gnn import DynamicsGNN
from openmm_mlcg.nn.embedding import EmbeddingGNN
from openmm_mlcg.nn.score import ScoreGNN
from openmm_mlcg.openmm import LearnedIntegrator, create_cg_system, create_simulation
from openmm_mlcg.openmm.replicas import run_replicas, step_replicas
from openmm_mlcg.app.workflow import simulate_learned
from test_integrator import BOX, K, N, small_mapping

torch.set_num_threads(1)
#: a tiny cg_langevin bundle (the default generator): 3 sub-steps, friction and sigma of the SPE demo's order
CG_META = dict(model_time_step_ps=2.0, history=K, cutoff_nm=0.6, velocity_std=0.05, acceleration_std=0.05,
               atom_type_vocabulary=["C", "Li", "O"], sigmas_nm=[0.03, 0.005], sampler="cg_langevin",
               temperature_K=300.0, cg_langevin_steps=3, cg_langevin_sigma_nm=0.012,
               cg_langevin_sigma_mass_amu=20.0, cg_langevin_friction_per_ps=20.0)


@pytest.fixture(scope="module")
def mapping():
    return small_mapping()


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory, mapping):
    torch.manual_seed(0)
    emb = EmbeddingGNN(n_atom_types=3, hidden=8, layers=1)
    dyn = DynamicsGNN(embedding_dim=8, history=K, hidden=8, layers=1)
    score = ScoreGNN(latent_dim=8, hidden=8, layers=1)
    return save_bundle(tmp_path_factory.mktemp("bundle") / "model.mlcg", emb, dyn, score, CG_META, mapping=mapping)


@pytest.fixture(scope="module")
def bundle(bundle_path):
    return load_bundle(bundle_path)


@pytest.fixture(scope="module")
def frames():
    """(k+1, n, 3) unwrapped frames: beads on a jittered lattice (no overlaps) plus a small random walk."""
    rng = np.random.default_rng(1)
    grid = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3)[:N] * 1.0 + 0.5
    x0 = grid + rng.normal(0.0, 0.05, (N, 3))
    return np.concatenate([x0[None], x0[None] + np.cumsum(rng.normal(0.0, 0.01, (K, N, 3)), axis=0)])


def _single(sim, x, h, box, seed, n_steps, refine=True):
    return sim.step(x, h, box, n_steps, refine=refine, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("refine", [True, False])
def test_batched_replicas_equal_single_runs_with_the_same_seeds(bundle, mapping, frames, refine):
    sim = LearnedSimulator(bundle, mapping)
    assert sim.refines and sim.model.metadata.sampler == "cg_langevin"
    x, h = sim.history_from_positions(frames)
    box = torch.tensor(BOX)
    seeds = [11, 12, 13]
    xb, hb = ReplicaSimulator(sim, mapping, 3).step([x] * 3, [h] * 3, box, 5, refine=refine, seeds=seeds)
    for r, seed in enumerate(seeds):
        xs, hs = _single(sim, x, h, box, seed, 5, refine)
        assert (xs - x).abs().max() > 1e-3                          # the replica did move
        torch.testing.assert_close(xb[r], xs, rtol=0, atol=1e-5)
        torch.testing.assert_close(hb[r], hs, rtol=0, atol=1e-5)


def test_replicas_of_two_systems_of_different_sizes(bundle, mapping, frames):
    """A disjoint union of a 26-bead and a 13-bead system (other box, other bonds): each as alone."""
    small = small_mapping(group_size=4)
    sims = [LearnedSimulator(bundle, mapping), LearnedSimulator(bundle, small)]
    assert sims[1].n_beads < sims[0].n_beads
    rng = np.random.default_rng(3)
    states = [sims[0].history_from_positions(frames),
              sims[1].history_from_positions(rng.uniform(0, 2.5, (1, sims[1].n_beads, 3))
                                             + np.cumsum(rng.normal(0, 0.01, (K + 1, sims[1].n_beads, 3)), 0))]
    boxes = [torch.tensor(BOX), torch.eye(3, dtype=torch.float64) * 2.5]
    rs = ReplicaSimulator(bundle, [mapping, small])
    assert rs.sizes == [sims[0].n_beads, sims[1].n_beads]
    xb, _ = rs.step([s[0] for s in states], [s[1] for s in states], boxes, 3, seeds=[4, 5])
    for r in range(2):
        xs, _ = _single(sims[r], *states[r], boxes[r], [4, 5][r], 3)
        torch.testing.assert_close(xb[r], xs, rtol=0, atol=1e-5)


def test_replicas_with_different_seeds_diverge_and_equal_seeds_agree(bundle, mapping, frames):
    sim = LearnedSimulator(bundle, mapping)
    x, h = sim.history_from_positions(frames)
    xb, _ = ReplicaSimulator(sim, mapping, 3).step([x] * 3, [h] * 3, torch.tensor(BOX), 3, seeds=[1, 2, 1])
    assert (xb[0] - xb[1]).abs().max() > 1e-2
    torch.testing.assert_close(xb[0], xb[2], rtol=0, atol=1e-6)


def test_bad_replica_inputs_name_the_argument(bundle, mapping, frames):
    sim = LearnedSimulator(bundle, mapping)
    x, h = sim.history_from_positions(frames)
    with pytest.raises(ValueError, match="n_replicas: expected an integer >= 1, got 0"):
        ReplicaSimulator(sim, mapping, 0)
    with pytest.raises(ValueError, match="n_replicas"):
        ReplicaSimulator(sim, mapping)
    rs = ReplicaSimulator(sim, mapping, 2)
    with pytest.raises(ValueError, match=r"seeds: expected 2 entries \(one per replica\), got 3"):
        rs.step([x] * 2, [h] * 2, None, 1, seeds=[0, 1, 2])
    with pytest.raises(ValueError, match=r"positions: expected 2 entries"):
        rs.step([x] * 3, [h] * 2, None, 1)
    with pytest.raises(ValueError, match=r"replica 1: history: expected shape"):
        rs.step([x] * 2, [h, h[1:]], None, 1)
    with pytest.raises(ValueError, match="seeds, generators"):
        rs.step([x] * 2, [h] * 2, None, 1, seeds=[0, 1], generators=[None, None])
    with pytest.raises(ValueError, match=r"seeds\[1\]: expected an integer >= 0, got -1"):
        rs.step([x] * 2, [h] * 2, None, 1, seeds=[0, -1])
    with pytest.raises(ValueError, match="seeds: expected one seed per replica"):
        run_replicas(sim.model, mapping, frames, BOX, 2, [], [])


def _simulation(bundle, mapping, frames, seed):
    top, system = create_cg_system(mapping, BOX)
    integ = LearnedIntegrator(bundle, mapping=mapping, history=frames, seed=seed, device="cpu")
    sim = create_simulation(top, system, integ, openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(frames[-1])
    return sim


def test_run_replicas_writes_what_single_openmm_runs_write(bundle, mapping, frames, tmp_path):
    """One DCD and CSV per replica, equal (to float rounding) to simulate_learned with the same seed."""
    runs = run_replicas(bundle, mapping, frames, BOX, 4, [tmp_path / "a", tmp_path / "b"], seeds=[3, 7],
                        report_interval=2, device="cpu")
    for run, seed, name in zip(runs, [3, 7], "ab"):
        alone = simulate_learned(bundle, mapping, frames, BOX, 4, tmp_path / f"alone_{name}", report_interval=2,
                                 seed=seed, device="cpu")
        assert run["positions"].shape == alone["positions"].shape == (3, N, 3)
        np.testing.assert_allclose(run["positions"], alone["positions"], rtol=0, atol=1e-4)  # DCD: float32
        np.testing.assert_allclose(run["time_ps"], alone["time_ps"])
        rows = (tmp_path / name / "learned.csv").read_text().splitlines()
        assert rows[0] == (tmp_path / f"alone_{name}" / "learned.csv").read_text().splitlines()[0]
        assert len(rows) == 3 and run["ns_per_hour"] > 0
    assert np.abs(runs[0]["positions"][-1] - runs[1]["positions"][-1]).max() > 1e-2


def test_step_replicas_continues_like_simulation_step(bundle, mapping, frames):
    """Counter-based seeds: 2 + 3 batched steps equal 5 Simulation.step steps of each replica alone."""
    sims = [_simulation(bundle, mapping, frames, s) for s in (0, 1)]
    step_replicas(sims, 2)
    step_replicas(sims, 3)
    for sim, seed in zip(sims, (0, 1)):
        alone = _simulation(bundle, mapping, frames, seed)
        alone.step(5)
        assert sim.currentStep == alone.currentStep == 5
        pos = [s.context.getState(getPositions=True).getPositions(asNumpy=True)._value for s in (sim, alone)]
        np.testing.assert_allclose(pos[0], pos[1], rtol=0, atol=1e-5)
        np.testing.assert_allclose(sim.integrator.get_history(), alone.integrator.get_history(), rtol=0, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batched_replicas_on_cuda_equal_single_runs(bundle, mapping, frames):
    """On the GPU: per-replica CUDA generators, batched R=3 equals each replica alone (and stays on the device)."""
    sim = LearnedSimulator(bundle, mapping, device="cuda")
    x, h = sim.history_from_positions(frames)
    box = torch.tensor(BOX, device="cuda")
    xb, _ = ReplicaSimulator(sim, mapping, 3).step([x] * 3, [h] * 3, box, 3, seeds=[1, 2, 3])
    for r, seed in enumerate([1, 2, 3]):
        xs, _ = sim.step(x, h, box, 3, generator=torch.Generator(device="cuda").manual_seed(seed))
        assert xb[r].device.type == "cuda"
        torch.testing.assert_close(xb[r], xs, rtol=0, atol=1e-5)
