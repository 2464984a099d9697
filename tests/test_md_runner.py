"""Tests for openmm_mlcg.systems.md: resumable protocol runner (checkpoint, DCD truncation, DONE, barostat)."""
import json

import numpy as np
import openmm
import pytest
from openmm import app, unit

from openmm_mlcg.systems import md
from openmm_mlcg.systems.md import Stage, dcd_frame_count, is_done, make_platform, run_protocol

N = 12
INTERVAL = 50
STAGES = [Stage("minimize", 0, minimize=True), Stage("equilibrate", 130), Stage("production", 1000, reporters=True)]


def _chain_simulation(seed=7, n=None):
    """Harmonic bead chain with soft repulsion, Langevin at 300 K, Reference platform (deterministic)."""
    N = n or globals()["N"]
    top = app.Topology()
    res = top.addResidue("CHN", top.addChain())
    atoms = [top.addAtom(f"B{i % 2}", None, res) for i in range(N)]
    system = openmm.System()
    bonds = openmm.HarmonicBondForce()
    for i in range(N):
        system.addParticle(12.0)
    for i in range(N - 1):
        bonds.addBond(i, i + 1, 0.3, 2000.0)
        top.addBond(atoms[i], atoms[i + 1])
    system.addForce(bonds)
    rep = openmm.CustomNonbondedForce("eps*(sig/r)^12; eps=1; sig=0.3")
    for i in range(N):
        rep.addParticle([])
    rep.createExclusionsFromBonds([(i, i + 1) for i in range(N - 1)], 1)
    system.addForce(rep)
    integ = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1.0 / unit.picosecond, 0.002 * unit.picosecond)
    integ.setRandomNumberSeed(seed)
    sim = app.Simulation(top, system, integ, make_platform("Reference"))
    sim.context.setPositions([openmm.Vec3(0.31 * i, 0.05 * (i % 2), 0.0) for i in range(N)] * unit.nanometer)
    return sim


class _Kill:
    """Reporter that raises at an absolute step, simulating a killed process."""

    def __init__(self, at):
        self.at = at

    def describeNextReport(self, sim):
        steps = self.at - sim.currentStep
        return {"steps": steps if steps > 0 else 10**9, "periodic": False, "include": []}

    def report(self, sim, state):
        raise KeyboardInterrupt("simulated kill")


def _load_xyz(out):
    import mdtraj

    return mdtraj.load_dcd(str(out / "trajectory.dcd"), top=str(out / "topology.pdb")).xyz


def _csv_time(out):
    rows = [l for l in (out / "state_data.csv").read_text().splitlines() if not l.startswith("#")]
    return np.array([float(r.split(",")[1]) for r in rows])


def test_full_run_and_resume_after_kill_are_identical(tmp_path):
    ref = run_protocol(_chain_simulation(), tmp_path / "ref", STAGES, INTERVAL, {"seed": 3}, progress_bar=False,
                       checkpoint_interval_steps=200)
    assert is_done(ref) and dcd_frame_count(ref / "trajectory.dcd") == 1000 // INTERVAL

    sim = _chain_simulation()
    sim.reporters.append(_Kill(at=150 + 730))  # mid-chunk: frames after the last checkpoint must be dropped
    with pytest.raises(KeyboardInterrupt):
        run_protocol(sim, tmp_path / "run", STAGES, INTERVAL, {"seed": 3}, progress_bar=False,
                     checkpoint_interval_steps=200)
    out = tmp_path / "run"
    assert not is_done(out)
    prog = json.loads((out / "progress.json").read_text())
    assert prog["stage"] == "production" and prog["frames"] == 13  # checkpoint at step 800 = 650 prod steps
    assert dcd_frame_count(out / "trajectory.dcd") > prog["frames"]  # torn state the resume must fix

    run_protocol(_chain_simulation(), out, STAGES, INTERVAL, {"seed": 3}, progress_bar=False,
                 checkpoint_interval_steps=200)
    assert is_done(out)
    xyz, xyz_ref = _load_xyz(out), _load_xyz(ref)
    assert xyz.shape == (20, N, 3)
    np.testing.assert_allclose(xyz, xyz_ref, atol=1e-5)  # checkpoint restores RNG: same trajectory
    t = _csv_time(out)
    assert len(t) == 20 and np.allclose(np.diff(t), INTERVAL * 0.002)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["frame_interval_ps"] == pytest.approx(0.1) and meta["temperature_K"] == pytest.approx(300)
    assert meta["seed"] == 3 and meta["box_nm"] is None
    assert "CONECT" in (out / "topology.pdb").read_text()


def test_done_directory_is_skipped(tmp_path):
    stages = [Stage("production", 100, reporters=True)]
    out = run_protocol(_chain_simulation(), tmp_path, stages, INTERVAL, {}, progress_bar=False)
    before = (out / "trajectory.dcd").read_bytes()
    sim = _chain_simulation()
    sim.reporters.append(_Kill(at=1))  # would raise if any step were run
    run_protocol(sim, out, stages, INTERVAL, {}, progress_bar=False)
    assert (out / "trajectory.dcd").read_bytes() == before


def test_barostat_toggled_per_stage(tmp_path):
    n = 64
    system = openmm.System()
    nb = openmm.NonbondedForce()
    nb.setNonbondedMethod(openmm.NonbondedForce.CutoffPeriodic)
    nb.setCutoffDistance(0.9)
    for _ in range(n):
        system.addParticle(40.0)
        nb.addParticle(0.0, 0.34, 0.9)
    system.addForce(nb)
    box = 2.2
    system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*(box * (i == j) for j in range(3))) for i in range(3)))
    baro = openmm.MonteCarloBarostat(50 * unit.bar, 120 * unit.kelvin, 5)
    system.addForce(baro)
    top = app.Topology()
    res = top.addResidue("AR", top.addChain())
    for _ in range(n):
        top.addAtom("Ar", app.element.argon, res)
    top.setUnitCellDimensions(openmm.Vec3(box, box, box) * unit.nanometer)
    g = np.stack(np.meshgrid(*[np.arange(4)] * 3), -1).reshape(-1, 3) * box / 4
    integ = openmm.LangevinMiddleIntegrator(120 * unit.kelvin, 5 / unit.picosecond, 0.004 * unit.picosecond)
    sim = app.Simulation(top, system, integ, make_platform("Reference"))
    sim.context.setPositions(g * unit.nanometer)
    stages = [Stage("nvt", 100, reporters=True, barostat=False), Stage("npt", 300, reporters=True, barostat=True),
              Stage("nvt2", 200, reporters=True, barostat=False)]
    out = run_protocol(sim, tmp_path, stages, 20, {}, progress_bar=False)
    rows = [l for l in (out / "state_data.csv").read_text().splitlines() if not l.startswith("#")]
    vol = np.array([float(r.split(",")[5]) for r in rows])
    assert len(vol) == 30
    assert np.allclose(vol[:5], box**3)  # barostat off in the first stage
    assert np.ptp(vol[5:20]) > 1e-3  # on in the second
    assert np.ptp(vol[20:]) == 0 and vol[20] != box**3  # off again in the third, at the new box
    assert baro.getFrequency() == 0
    assert json.loads((out / "metadata.json").read_text())["box_nm"][0][0] == pytest.approx(box)


def test_make_platform():
    assert make_platform("reference").getName() == "Reference"
    assert isinstance(make_platform(None), openmm.Platform)
    with pytest.raises(ValueError, match="platform"):
        make_platform("Warp9")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(report_interval_steps=0), "report_interval_steps"),
        (dict(stages=[]), "stages"),
        (dict(stages=[Stage("p", 75, reporters=True)]), "multiple"),
        (dict(stages=[Stage("p", -5)]), "n_steps"),
        (dict(checkpoint_interval_steps=30), "checkpoint_interval_steps"),
        (dict(metadata=[1]), "metadata"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    args = dict(stages=[Stage("p", 100, reporters=True)], report_interval_steps=INTERVAL, metadata={})
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        run_protocol(_chain_simulation(), tmp_path, progress_bar=False, **args)


def test_unwritable_out_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="out_dir"):
        run_protocol(_chain_simulation(), blocker / "sub", [Stage("p", 50, reporters=True)], INTERVAL, {},
                     progress_bar=False)


def test_truncate_dcd_refuses_to_grow(tmp_path):
    out = run_protocol(_chain_simulation(), tmp_path, [Stage("p", 100, reporters=True)], INTERVAL, {},
                       progress_bar=False)
    md.truncate_dcd(out / "trajectory.dcd", 1)
    assert dcd_frame_count(out / "trajectory.dcd") == 1
    with pytest.raises(ValueError, match="n_frames"):
        md.truncate_dcd(out / "trajectory.dcd", 5)


def test_resume_with_other_system_is_refused(tmp_path):
    sim = _chain_simulation()
    sim.reporters.append(_Kill(at=450))
    with pytest.raises(KeyboardInterrupt):
        run_protocol(sim, tmp_path, [Stage("p", 1000, reporters=True)], INTERVAL, {}, progress_bar=False,
                     checkpoint_interval_steps=200)
    with pytest.raises(ValueError, match="out_dir"):
        run_protocol(_chain_simulation(n=N + 3), tmp_path, [Stage("p", 1000, reporters=True)], INTERVAL, {},
                     progress_bar=False, checkpoint_interval_steps=200)
