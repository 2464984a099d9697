"""Tests for openmm_mlcg.openmm.LearnedIntegrator with a small, randomly initialised bundle."""
import csv
import warnings

import mdtraj
import numpy as np
import openmm
import pytest
import torch
from openmm import app, unit

from openmm_mlcg.bundle.export import load_bundle, save_bundle
from openmm_mlcg.cg.mapping import CGMapping
from openmm_mlcg.nn.dynamics_gnn import DynamicsGNN
from openmm_mlcg.nn.embedding import EmbeddingGNN
from openmm_mlcg.nn.score import ScoreGNN
from openmm_mlcg.openmm import LearnedIntegrator, create_cg_system, create_simulation, load_dcd, read_dcd_header
from openmm_mlcg.cg.topology import FineGraph

torch.set_num_threads(1)
K = 3
DT = 2.0  # ps per model step
BOX = np.eye(3) * 3.0
N = 26


def small_mapping(group_size=2):
    types = ["Li"] * 20 + ["C", "O", "C", "O"] * 3
    masses = [6.94] * 20 + [12.011, 15.999, 12.011, 15.999] * 3
    bonds = [(20 + 4 * m + i, 20 + 4 * m + i + 1) for m in range(3) for i in range(3)]
    graph = FineGraph.from_arrays(types, masses, bonds, residue_names=["LI"] * 20 + ["PEO"] * 12)
    return CGMapping.from_graph(graph, group_size)


@pytest.fixture(scope="module")
def mapping():
    return small_mapping()


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory, mapping):
    torch.manual_seed(0)
    emb = EmbeddingGNN(n_atom_types=3, hidden=8, layers=1)
    dyn = DynamicsGNN(embedding_dim=8, history=K, hidden=8, layers=1)
    score = ScoreGNN(latent_dim=8, hidden=8, layers=1)
    meta = dict(model_time_step_ps=DT, history=K, cutoff_nm=0.6, velocity_std=0.01, acceleration_std=0.002,
                atom_type_vocabulary=["C", "Li", "O"], sigmas_nm=[0.01, 0.001], langevin_steps_per_level=2,
                langevin_step_size_nm2=1e-7)
    return save_bundle(tmp_path_factory.mktemp("bundle") / "model.mlcg", emb, dyn, score, meta, mapping=mapping)


@pytest.fixture(scope="module")
def bundle(bundle_path):
    return load_bundle(bundle_path)


@pytest.fixture(scope="module")
def frames():
    """(k+1, n, 3) unwrapped frames: random positions plus a small random walk."""
    rng = np.random.default_rng(1)
    x0 = rng.uniform(0.0, 3.0, (N, 3))
    steps = rng.normal(0.0, 0.01, (K, N, 3))
    return np.concatenate([x0[None], x0[None] + np.cumsum(steps, axis=0)])


def make_sim(bundle, mapping, frames, seed=0, platform="Reference", **kwargs):
    top, system = create_cg_system(mapping, BOX)
    integ = LearnedIntegrator(bundle, history=frames, seed=seed, device="cpu", **kwargs)
    sim = create_simulation(top, system, integ, openmm.Platform.getPlatformByName(platform))
    sim.context.setPositions(frames[-1])
    return sim


def positions(sim):
    return sim.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)


def test_step_size_and_time_advance(bundle, mapping, frames):
    sim = make_sim(bundle, mapping, frames)
    assert sim.integrator.getStepSize().value_in_unit(unit.picosecond) == pytest.approx(DT)
    sim.step(3)
    state = sim.context.getState(getPositions=True, getVelocities=True)
    assert sim.currentStep == 3
    assert state.getTime().value_in_unit(unit.picosecond) == pytest.approx(3 * DT)
    x = state.getPositions(asNumpy=True)._value
    assert np.all(np.isfinite(x)) and not np.allclose(x, frames[-1])
    hist = sim.integrator.get_history()
    assert hist.shape == (K, N, 3)
    np.testing.assert_allclose(state.getVelocities(asNumpy=True)._value, hist[-1] / DT, rtol=1e-10, atol=1e-12)


def test_simulation_with_stock_reporters(tmp_path, bundle, mapping, frames):
    sim = make_sim(bundle, mapping, frames, platform="CPU")
    dcd, log = tmp_path / "cg.dcd", tmp_path / "log.csv"
    sim.reporters.append(app.DCDReporter(str(dcd), 2, enforcePeriodicBox=False))
    sim.reporters.append(app.StateDataReporter(str(log), 2, step=True, time=True, kineticEnergy=True))
    sim.reporters.append(app.CheckpointReporter(str(tmp_path / "chk.bin"), 3))
    sim.reporters.append(app.XTCReporter(str(tmp_path / "cg.xtc"), 2, enforcePeriodicBox=False))
    sim.step(6)
    del sim.reporters[:]  # flush/close files
    header = read_dcd_header(dcd)
    assert header["timestep_ps"] == pytest.approx(DT, rel=1e-6) and header["interval"] == 2
    traj = load_dcd(dcd, sim.topology)
    assert traj.n_frames == 3
    np.testing.assert_allclose(traj.time, np.array([1, 2, 3]) * 2 * DT, rtol=1e-6)
    np.testing.assert_allclose(traj.xyz[-1], positions(sim), atol=1e-5)  # unwrapped, float32 in DCD
    xtc = mdtraj.load(str(tmp_path / "cg.xtc"), top=mdtraj.Topology.from_openmm(sim.topology))
    np.testing.assert_allclose(xtc.time, np.array([1, 2, 3]) * 2 * DT, rtol=1e-6)  # stock mdtraj reads XTC time
    with open(log) as fh:
        rows = list(csv.reader(fh))
    times = [float(r[1]) for r in rows[1:]]
    assert [int(r[0]) for r in rows[1:]] == [2, 4, 6]
    np.testing.assert_allclose(times, np.array([2, 4, 6]) * DT)
    sim.loadCheckpoint(str(tmp_path / "chk.bin"))  # written by CheckpointReporter at step 6
    assert sim.currentStep == 6


def test_step_without_context_raises(bundle, frames):
    integ = LearnedIntegrator(bundle, history=frames, device="cpu")
    with pytest.raises(RuntimeError, match="not attached to a Context"):
        integ.step(1)


def test_mismatched_mapping_raises(bundle, bundle_path):
    other = small_mapping(group_size=1)
    with pytest.raises(ValueError, match="mapping"):
        LearnedIntegrator(bundle, mapping=other, device="cpu")
    with pytest.raises(ValueError, match="mapping"):
        LearnedIntegrator(bundle_path, mapping=other, device="cpu")


def test_transfer_runs_a_bound_bundle_on_another_mapping(bundle, bundle_path):
    """transfer=True runs the bundle (bound to the 2-atom-bead mapping) on a 1-atom-bead mapping of the same atom
    types: the beads move and the clock advances; transfer without a mapping is refused."""
    other = small_mapping(group_size=1)
    assert other.n_beads != N
    rng = np.random.default_rng(3)
    x0 = rng.uniform(0.0, 3.0, (other.n_beads, 3))
    hist = np.concatenate([x0[None], x0[None] + np.cumsum(rng.normal(0.0, 0.01, (K, other.n_beads, 3)), axis=0)])
    for b in (bundle, bundle_path):
        top, system = create_cg_system(other, BOX)
        integ = LearnedIntegrator(b, mapping=other, history=hist, device="cpu", transfer=True)
        sim = create_simulation(top, system, integ, openmm.Platform.getPlatformByName("Reference"))
        sim.context.setPositions(hist[-1])
        sim.step(2)
        x = positions(sim)
        assert x.shape == (other.n_beads, 3) and np.all(np.isfinite(x)) and not np.allclose(x, hist[-1])
    xml = openmm.XmlSerializer.serialize(integ)
    with pytest.raises(ValueError, match="mapping"):
        LearnedIntegrator.from_xml(xml, bundle_path, mapping=other, device="cpu")
    again = LearnedIntegrator.from_xml(xml, bundle_path, mapping=other, device="cpu", transfer=True)
    np.testing.assert_allclose(again.get_history(), integ.get_history())
    with pytest.raises(ValueError, match="transfer=True needs"):
        LearnedIntegrator(bundle_path, mapping=None, device="cpu", transfer=True)


def test_wrong_system_raises(bundle, frames):
    system = openmm.System()
    for _ in range(N - 1):
        system.addParticle(10.0)
    integ = LearnedIntegrator(bundle, device="cpu")
    ctx = openmm.Context(system, integ, openmm.Platform.getPlatformByName("Reference"))
    integ.attach(ctx)
    ctx.setPositions(np.zeros((N - 1, 3)))
    with pytest.raises(ValueError, match="particles"):
        integ.step(1)


def test_bad_history_shape_raises(bundle, frames):
    with pytest.raises(ValueError, match="history"):
        LearnedIntegrator(bundle, history=frames[1:], device="cpu")
    with pytest.raises(ValueError, match="seed"):
        LearnedIntegrator(bundle, seed=-1, device="cpu")
    longer = np.concatenate([frames[:1] - 0.01, frames])  # only the last k+1 frames count
    np.testing.assert_allclose(LearnedIntegrator(bundle, history=longer, device="cpu").get_history(),
                               np.diff(frames, axis=0), atol=1e-12)


def test_positions_not_set_raises(bundle, mapping):
    top, system = create_cg_system(mapping, BOX)
    sim = create_simulation(top, system, LearnedIntegrator(bundle, device="cpu"),
                            openmm.Platform.getPlatformByName("Reference"))
    with pytest.raises(RuntimeError, match="setPositions"):
        sim.step(1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_model_with_reference_context_matches_cpu(bundle, mapping, frames):
    a = make_sim(bundle, mapping, frames, refine=False, deterministic=True)
    top, system = create_cg_system(mapping, BOX)
    integ = LearnedIntegrator(load_bundle(bundle.path), history=frames, device="cuda", refine=False,
                              deterministic=True)
    b = create_simulation(top, system, integ, openmm.Platform.getPlatformByName("Reference"))
    b.context.setPositions(frames[-1])
    a.step(3)
    b.step(3)
    np.testing.assert_allclose(positions(b), positions(a), atol=1e-4)


def test_split_steps_equal_one_call(bundle, mapping, frames):
    a, b = make_sim(bundle, mapping, frames, seed=3), make_sim(bundle, mapping, frames, seed=3)
    a.step(4)
    b.step(1)
    b.step(3)
    np.testing.assert_array_equal(positions(a), positions(b))
    c = make_sim(bundle, mapping, frames, seed=4)
    c.step(4)
    assert not np.allclose(positions(a), positions(c))  # the seed matters (refinement noise)


@pytest.mark.parametrize("how", ["checkpoint", "state"])
def test_checkpoint_restores_history_and_rng(tmp_path, bundle, mapping, frames, how):
    sim = make_sim(bundle, mapping, frames, seed=7)
    sim.step(2)
    path = str(tmp_path / ("chk.bin" if how == "checkpoint" else "state.xml"))
    (sim.saveCheckpoint if how == "checkpoint" else sim.saveState)(path)
    sim.step(3)
    expected = positions(sim)
    # a fresh integrator with another seed and no history: everything must come from the file
    top, system = create_cg_system(mapping, BOX)
    fresh = create_simulation(top, system, LearnedIntegrator(bundle, seed=99, device="cpu"),
                              openmm.Platform.getPlatformByName("Reference"))
    (fresh.loadCheckpoint if how == "checkpoint" else fresh.loadState)(path)
    assert fresh.integrator.seed == 7 and fresh.currentStep == 2
    fresh.step(3)
    np.testing.assert_allclose(positions(fresh), expected, atol=1e-6, rtol=0)
    # the same simulation reloading its own older checkpoint must drop its cached history
    (sim.loadCheckpoint if how == "checkpoint" else sim.loadState)(path)
    sim.step(3)
    np.testing.assert_allclose(positions(sim), expected, atol=1e-6, rtol=0)


def test_save_load_state_file(tmp_path, bundle, mapping, frames):
    sim = make_sim(bundle, mapping, frames, seed=5)
    sim.step(2)
    sim.integrator.save_state(tmp_path / "integ.npz")
    sim.step(2)
    expected = positions(sim)
    other = make_sim(bundle, mapping, frames, seed=1)
    other.integrator.load_state(tmp_path / "integ.npz")
    assert other.currentStep == 2
    other.step(2)
    np.testing.assert_allclose(positions(other), expected, atol=1e-6, rtol=0)


def test_xml_round_trip(bundle, mapping, frames):
    sim = make_sim(bundle, mapping, frames, seed=11, refine=False)
    sim.step(1)
    xml = openmm.XmlSerializer.serialize(sim.integrator)
    plain = openmm.XmlSerializer.deserialize(xml)
    assert type(plain) is openmm.CustomIntegrator
    restored = LearnedIntegrator.from_xml(plain, bundle, device="cpu")
    assert restored.seed == 11 and restored.refine is False
    assert restored.getStepSize().value_in_unit(unit.picosecond) == pytest.approx(DT)
    np.testing.assert_allclose(restored.get_history(), sim.integrator.get_history(), atol=1e-12)
    with pytest.raises(ValueError, match="LearnedIntegrator"):
        LearnedIntegrator.from_xml(openmm.XmlSerializer.serialize(openmm.CustomIntegrator(1.0)), bundle)


def test_external_positions_are_used(bundle, mapping, frames):
    sim = make_sim(bundle, mapping, frames)
    sim.step(1)
    moved = positions(sim) + np.array([0.3, -0.2, 0.1])
    sim.context.setPositions(moved)
    with pytest.warns(UserWarning, match="positions changed"):
        sim.step(1)
    # x_new = x_set + v_new (update rule), so the step started from the externally set positions
    np.testing.assert_allclose(positions(sim) - moved, sim.integrator.get_history()[-1], atol=1e-9)


def test_warm_start_without_history(bundle, mapping, frames):
    top, system = create_cg_system(mapping, BOX)
    sim = create_simulation(top, system, LearnedIntegrator(bundle, device="cpu", refine=False),
                            openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(frames[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "positions changed" warning on a warm start
        sim.step(2)
    assert np.abs(sim.integrator.get_history()[-1]).max() > 0
    assert np.all(sim.integrator.get_history()[0] == 0)  # oldest entry still the zero warm start


def test_nan_stops_with_step_number_and_keeps_finite_state(bundle, mapping, frames):
    sim = make_sim(bundle, mapping, frames)
    sim.step(1)
    model = sim.integrator._simulator.model
    real_step, calls = model.step, []

    def poisoned(*args, **kwargs):  # the third model step of the next call produces NaN
        calls.append(1)
        x, h = real_step(*args, **kwargs)
        return (x * float("nan"), h) if len(calls) == 3 else (x, h)

    model.step = poisoned
    with pytest.raises(RuntimeError, match="step 4"):
        sim.step(5)
    assert len(calls) == 5  # one simulator call ran the five steps
    x = positions(sim)
    assert np.all(np.isfinite(x))
    assert sim.currentStep == 3  # the two good steps were written
    assert sim.context.getState().getTime().value_in_unit(unit.picosecond) == pytest.approx(3 * DT)


def test_huge_acceleration_std_gives_nonfinite_error(bundle, mapping, frames):
    sim = make_sim(bundle, mapping, frames, refine=False)
    sim.step(1)
    before = positions(sim)
    sim.integrator._simulator.model.acceleration_std.fill_(float("inf"))  # the model's own NaN/inf check fires
    with pytest.raises(RuntimeError, match="non-finite positions at step 2"):
        sim.step(3)
    np.testing.assert_array_equal(positions(sim), before)
    assert sim.currentStep == 1


def test_reporter_columns_mean_what_the_docs_say(tmp_path, bundle, mapping, frames):
    """Stock StateDataReporter: PE is 0 without added forces and 'Temperature' is the kinetic temperature of
    displacement / model step (openmm_mlcg.openmm.reporter); CGStateDataReporter refuses the columns without a
    physical meaning and writes the others."""
    from openmm_mlcg.openmm import CGStateDataReporter

    sim = make_sim(bundle, mapping, frames)
    log = tmp_path / "stock.csv"
    sim.reporters.append(app.StateDataReporter(str(log), 1, step=True, potentialEnergy=True, temperature=True))
    x0 = positions(sim)
    sim.step(1)
    del sim.reporters[:]
    row = [float(v) for v in open(log).read().splitlines()[1].split(",")]
    v = (positions(sim) - x0) / DT                                   # nm/ps, mean velocity over the step
    kb = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)
    t_expected = float((mapping.bead_masses[:, None] * v ** 2).sum() / (3 * mapping.n_beads * kb))
    assert row[1] == 0.0
    assert row[2] == pytest.approx(t_expected, rel=1e-4)
    with pytest.raises(ValueError, match="temperature.*displacements per model step"):
        CGStateDataReporter(str(tmp_path / "x.csv"), 1, time=True, temperature=True)
    with pytest.raises(ValueError, match="totalEnergy.*no energy"):
        CGStateDataReporter(str(tmp_path / "x.csv"), 1, totalEnergy=True)
    ok = tmp_path / "cg.csv"
    sim.reporters.append(CGStateDataReporter(str(ok), 1, step=True, time=True, density=True))
    sim.step(2)
    del sim.reporters[:]
    rows = open(ok).read().splitlines()
    assert rows[0].startswith('#"Step","Time (ps)","Density') and len(rows) == 3


# ----------------------------------------------------------------------------------------- attaching
def _moved_and_clock(ctx, x0, n_done):
    state = ctx.getState(getPositions=True)
    x = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    assert ctx.getStepCount() == n_done
    assert state.getTime().value_in_unit(unit.picosecond) == pytest.approx(n_done * DT, rel=1e-12)
    assert np.all(np.isfinite(x)) and not np.allclose(x, x0)


def test_every_stepping_path_moves_beads_and_clock(bundle, mapping, frames):
    """Simulation.step, Simulation.runForClockTime and integrator.step after Context(...) + attach."""
    ref = make_sim(bundle, mapping, frames, seed=2, refine=False)
    ref.step(3)
    expected = positions(ref)
    sim = make_sim(bundle, mapping, frames, seed=2, refine=False)
    sim.step(3)
    _moved_and_clock(sim.context, frames[-1], 3)
    np.testing.assert_array_equal(positions(sim), expected)
    sim = make_sim(bundle, mapping, frames, seed=2, refine=False)
    sim.runForClockTime(0.3 * unit.second)
    n = sim.context.getStepCount()
    assert n >= 1
    _moved_and_clock(sim.context, frames[-1], n)
    top, system = create_cg_system(mapping, BOX)
    integ = LearnedIntegrator(bundle, history=frames, seed=2, device="cpu", refine=False)
    ctx = openmm.Context(system, integ, openmm.Platform.getPlatformByName("Reference"))
    integ.attach(ctx)
    ctx.setPositions(frames[-1])
    integ.step(3)
    _moved_and_clock(ctx, frames[-1], 3)
    np.testing.assert_array_equal(ctx.getState(getPositions=True).getPositions(asNumpy=True)._value, expected)


def test_attach_is_explicit_and_checked(bundle, mapping, frames):
    top, system = create_cg_system(mapping, BOX)
    integ = LearnedIntegrator(bundle, history=frames, device="cpu")
    sim = app.Simulation(top, system, integ, openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(frames[-1])
    with pytest.raises(RuntimeError, match=r"integrator\.attach\(simulation\)"):
        sim.step(1)  # no garbage-collector search: an unattached integrator says what to do
    assert sim.context.getStepCount() == 0
    other = app.Simulation(top, system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    with pytest.raises(ValueError, match="different integrator"):
        integ.attach(other)
    with pytest.raises(TypeError, match="Context or an app.Simulation"):
        integ.attach(object())
    with pytest.raises(TypeError, match="LearnedIntegrator"):
        create_simulation(top, system, openmm.VerletIntegrator(0.001))
    integ.attach(sim)
    sim.step(1)
    assert sim.currentStep == 1


def test_box_or_positions_changed_mid_run_are_checked_as_at_the_start(tmp_path, mapping, frames):
    """The bead-density and bond checks that refuse a box or positions in Angstrom at the start also run when
    the box or the positions change between steps (setPeriodicBoxVectors, setPositions), and refuse the step."""
    torch.manual_seed(0)
    meta = dict(model_time_step_ps=DT, history=K, cutoff_nm=0.6, velocity_std=0.01, acceleration_std=0.002,
                atom_type_vocabulary=["C", "Li", "O"], sigmas_nm=[0.01, 0.001], langevin_steps_per_level=2,
                langevin_step_size_nm2=1e-7, periodic=True, bead_density_per_nm3=[0.9, 1.0], max_cg_bond_nm=0.2)
    path = save_bundle(tmp_path / "model.mlcg", EmbeddingGNN(n_atom_types=3, hidden=8, layers=1),
                       DynamicsGNN(embedding_dim=8, history=K, hidden=8, layers=1),
                       ScoreGNN(latent_dim=8, hidden=8, layers=1), meta, mapping=mapping)
    frames = frames.copy()
    for i, j in np.asarray(mapping.cg_bonds).reshape(-1, 2):  # CG bonds of 0.15 nm (training's longest: 0.2)
        frames[:, j] = frames[:, i] + 0.15 / np.sqrt(3)
    for change, message in [(lambda ctx: ctx.setPeriodicBoxVectors(*(np.eye(3) * 30.0)), r"box: bead density"),
                            (lambda ctx: ctx.setPeriodicBoxVectors(*(np.eye(3) * 1.8)), r"box: bead density"),
                            (lambda ctx: ctx.setPositions(frames[-1] * 10.0), r"positions: bonded .*Angstrom")]:
        sim = make_sim(path, mapping, frames)
        sim.step(2)
        change(sim.context)
        with pytest.raises(ValueError, match=message):
            sim.step(1)
        assert sim.currentStep == 2
