"""Tests for openmm_mlcg.systems.polymer: Webb-style single-chain CG polymers (paper appendix B eq. (3))."""
import json
import math

import numpy as np
import pytest
from openmm import unit

from openmm_mlcg.systems import polymer as P
from openmm_mlcg.systems.md import dcd_frame_count, is_done

PAR = P.load_params()
R_KJ = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)


def _group_energy(sim, group):
    return sim.context.getState(getEnergy=True, groups={group}).getPotentialEnergy().value_in_unit(
        unit.kilojoule_per_mole)


def test_reduced_units():
    assert P.reduced_temperature_K() == pytest.approx(120.272, abs=1e-3)  # kT = 1 kJ/mol
    # tau = sqrt(m sigma^2 / epsilon) = 1 ps  <=>  1 amu nm^2 / ps^2 = 1 kJ/mol (molar)
    energy = 1 * unit.amu * unit.nanometer**2 / unit.picosecond**2  # OpenMM: Da = g/mol
    assert energy.value_in_unit(unit.kilojoule_per_mole) == pytest.approx(1.0, rel=1e-9)


def test_tiny_chain_builds_and_runs():
    seq = ["CU2", "CU6", "CU9"]
    top, system, pos = P.build_polymer_system(seq, seed=0)
    assert [a.name for a in top.atoms()] == ["B1", "S1", "B1", "S1", "S1", "B2", "S2", "S1"]
    assert [r.name for r in top.residues()] == seq
    assert all(a.element is None for a in top.atoms())
    assert top.getNumBonds() == 7 and pos.shape == (8, 3)
    assert [system.getParticleMass(i).value_in_unit(unit.amu) for i in range(8)] == [1.0] * 8
    assert not system.usesPeriodicBoundaryConditions()
    sim = P.make_simulation(top, system, pos, "Reference", seed=5)
    sim.minimizeEnergy()
    sim.step(200)
    e = sim.context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    assert np.isfinite(e)
    assert sim.integrator.getStepSize().value_in_unit(unit.picosecond) == pytest.approx(0.01)
    assert sim.integrator.getFriction().value_in_unit(unit.picosecond**-1) == pytest.approx(1.0)


def _fene(r):
    return -0.5 * 30.0 * 1.5**2 * math.log(1 - (r / 1.5) ** 2)


def _wca(r):
    return 4 * (r**-12 - r**-6) + 1.0 if r < 2 ** (1 / 6) else 0.0


def _lj96(r, eps, rc=2.5):
    return 4 * eps * (r**-9 - r**-6 - rc**-9 + rc**-6) if r < rc else 0.0


@pytest.mark.parametrize(
    "seq, eps, r12, r23, theta_deg",
    [
        (["CU0", "CU0", "CU0"], 1.0, 0.95, 1.05, 100.0),  # B1-B1: solvophobic pair
        (["CU0", "CU0", "CU1"], 0.4, 0.90, 1.10, 125.0),  # B1-B2: mixed pair
        (["CU1", "CU0", "CU1"], 0.2, 1.00, 0.98, 70.0),  # B2-B2: solvophilic pair
        (["CU0", "CU0", "CU0"], 1.0, 1.40, 1.40, 179.0),  # 1-3 distance 2.8 > cutoff: no LJ
    ],
)
def test_energy_terms_match_hand_computation(seq, eps, r12, r23, theta_deg):
    top, system, _ = P.build_polymer_system(seq)
    th = math.radians(theta_deg)
    pos = np.array([[0, 0, 0], [r12, 0, 0], [r12 - r23 * math.cos(th), r23 * math.sin(th), 0]])
    sim = P.make_simulation(top, system, pos, "Reference")
    r13 = np.linalg.norm(pos[2] - pos[0])
    assert _group_energy(sim, 0) == pytest.approx(_fene(r12) + _fene(r23), rel=1e-6)
    assert _group_energy(sim, 1) == pytest.approx(_wca(r12) + _wca(r23), rel=1e-6, abs=1e-9)
    assert _group_energy(sim, 2) == pytest.approx(2.5 * (th - math.radians(120)) ** 2, rel=1e-5)
    assert _group_energy(sim, 4) == pytest.approx(_lj96(r13, eps), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("restricted", [True, False])
def test_dihedral_energy(restricted):
    params = P.load_params()
    params["dihedral"]["backbone"]["restricted"] = restricted
    top, system, _ = P.build_polymer_system(["CU0"] * 4, params=params)
    pos = np.array([[1.0, 0, 0], [0, 0, 0], [-0.3, 0, 1.0], [0.2, 0.8, 1.5]])
    sim = P.make_simulation(top, system, pos, "Reference")
    import mdtraj

    traj = mdtraj.Trajectory(pos[None], mdtraj.Topology.from_openmm(top))
    t1, t2 = mdtraj.compute_angles(traj, [[0, 1, 2], [1, 2, 3]])[0]
    dih = mdtraj.compute_dihedrals(traj, [[0, 1, 2, 3]])[0, 0]
    expected = 1.0 * (1 + math.cos(dih))
    if restricted:
        expected *= math.sin(t1) ** 2 * math.sin(t2) ** 2 / math.sin(math.radians(120)) ** 4
    assert _group_energy(sim, 3) == pytest.approx(expected, rel=1e-4)


def test_restricted_dihedral_finite_when_collinear():
    top, system, _ = P.build_polymer_system(["CU0"] * 4)
    pos = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 1e-7], [2.5, 0.8, 0.3]])  # angle p1-p2-p3 ~ 180 degrees
    sim = P.make_simulation(top, system, pos, "Reference")
    f = sim.context.getState(getForces=True, groups={3}).getForces(asNumpy=True)._value
    assert np.all(np.isfinite(f)) and np.abs(f).max() < 10.0


@pytest.fixture(scope="module")
def langevin_run():
    """~66-bead class-I chain: 1000 steps of equilibration, then 4000 steps sampled every 20."""
    seq = P.class_one_sequence(30, pattern=["CU0", "CU2", "CU5", "CU8"])
    top, system, pos = P.build_polymer_system(seq, seed=2)
    sim = P.make_simulation(top, system, pos, "CPU", seed=11, threads=1)
    sim.minimizeEnergy()
    sim.context.setVelocitiesToTemperature(P.reduced_temperature_K() * unit.kelvin, 4)
    sim.step(1000)
    mass = np.array([system.getParticleMass(i).value_in_unit(unit.amu) for i in range(system.getNumParticles())])
    bonds = np.array([(a.index, b.index) for a, b in top.bonds()])
    temps, max_bond = [], []
    for _ in range(200):
        sim.step(20)
        st = sim.context.getState(getPositions=True, getVelocities=True)
        v = st.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond)
        x = st.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        temps.append((mass[:, None] * v**2).sum() / (3 * len(mass) * R_KJ))
        max_bond.append(np.linalg.norm(x[bonds[:, 0]] - x[bonds[:, 1]], axis=1).max())
    return np.array(temps), np.array(max_bond)


def test_thermostat_kinetic_temperature(langevin_run):
    temps, _ = langevin_run
    target = P.reduced_temperature_K()
    blocks = temps.reshape(10, -1).mean(axis=1)
    sem = blocks.std(ddof=1) / math.sqrt(len(blocks))
    assert abs(temps.mean() - target) < max(3 * sem, 0.005 * target)
    assert abs(temps.mean() - target) < 0.05 * target


def test_fene_bonds_never_exceed_r0(langevin_run):
    _, max_bond = langevin_run
    assert np.all(np.isfinite(max_bond))
    assert max_bond.max() < PAR["bond"]["R0"]
    assert max_bond.max() > 1.0  # the chain does move (thermal bond stretching)


def test_sequences():
    s1 = P.class_one_sequence(10, pattern=["CU1", "CU3", "CU3", "CU7"])
    assert s1 == ["CU1", "CU3", "CU3", "CU7"] * 2 + ["CU1", "CU3"]
    assert P.class_one_sequence(12, rng=3) == P.class_one_sequence(12, rng=3)
    s2 = P.class_two_sequence(np.random.default_rng(0), 200)
    assert len(s2) == 200 and len(set(s2)) == 4
    assert s2 != P.class_two_sequence(np.random.default_rng(1), 200)
    assert set(P.class_two_sequence(5, 50, units=["CU0", "CU1", "CU2", "CU3"])) <= {"CU0", "CU1", "CU2", "CU3"}
    assert len(PAR["constitutional_units"]) == 10 and sorted(PAR["bead_types"]) == ["B1", "B2", "S1", "S2"]


def _gen(tmp_path, **kw):
    args = dict(n_systems=2, out_dir=tmp_path, kind="class2", length=5, n_steps=200, frame_interval=0.5,
                equilibration_steps=100, platform="CPU", progress_bar=False, threads=1)
    args.update(kw)
    return P.generate(**args)


def test_generate_writes_resumable_systems(tmp_path):
    import mdtraj

    dirs = _gen(tmp_path)
    assert [d.name for d in dirs] == ["class2_0000", "class2_0001"]
    seqs = []
    for d in dirs:
        assert is_done(d) and dcd_frame_count(d / "trajectory.dcd") == 4
        meta = json.loads((d / "metadata.json").read_text())
        assert meta["frame_interval_ps"] == pytest.approx(0.5)
        assert meta["temperature_K"] == pytest.approx(120.272, abs=1e-3)
        traj = mdtraj.load(str(d / "trajectory.dcd"), top=str(d / "topology.pdb"))
        assert traj.n_atoms == meta["n_beads"] == len(meta["atom_types"]) == len(meta["masses"])
        assert [a.name for a in traj.topology.atoms] == meta["atom_types"]
        assert (d / "system.xml").exists()
        seqs.append(meta["sequence"])
    assert seqs[0] != seqs[1]
    before = (dirs[0] / "trajectory.dcd").read_bytes()
    assert _gen(tmp_path) == dirs and (dirs[0] / "trajectory.dcd").read_bytes() == before  # DONE: skipped


def test_generate_parallel_matches_sequences(tmp_path):
    serial = _gen(tmp_path / "a", n_systems=2, kind="class1")
    parallel = _gen(tmp_path / "b", n_systems=2, kind="class1", n_workers=2)
    for a, b in zip(serial, parallel):
        ma, mb = (json.loads((d / "metadata.json").read_text()) for d in (a, b))
        assert ma["sequence"] == mb["sequence"] and is_done(b)
        assert ma["sequence"][4] == ma["sequence"][0]  # class I: the 4-CU pattern repeats


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(n_systems=0), "n_systems"),
        (dict(length=-3), "length"),
        (dict(kind="class3"), "kind"),
        (dict(scale="huge"), "scale"),
        (dict(n_steps=210), "n_steps"),
        (dict(frame_interval=0.005), "frame_interval"),
        (dict(equilibration_steps=-1), "equilibration_steps"),
        (dict(platform="Warp9"), "platform"),
        (dict(n_workers=0), "n_workers"),
        (dict(production_tau=2.0), "production_tau"),  # together with n_steps
    ],
)
def test_generate_bad_arguments(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        _gen(tmp_path, **kw)


def test_generate_production_tau(tmp_path):
    (d,) = _gen(tmp_path, n_systems=1, n_steps=None, production_tau=1.5 * unit.picosecond)
    assert dcd_frame_count(d / "trajectory.dcd") == 3  # 150 steps, frames every 50


def test_generate_unwritable_out_dir(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="out_dir"):
        _gen(tmp_path / "f" / "sub")


def test_build_bad_arguments():
    with pytest.raises(ValueError, match="sequence"):
        P.build_polymer_system(["CU0", "CU42"])
    with pytest.raises(ValueError, match="sequence"):
        P.build_polymer_system([])
    with pytest.raises(ValueError, match="pattern"):
        P.class_one_sequence(8, pattern=["CU0", "CU1"])
    with pytest.raises(ValueError, match="n_units"):
        P.class_two_sequence(0, -4)


class _Kill:
    def describeNextReport(self, sim):
        return {"steps": 1234 - sim.currentStep if sim.currentStep < 1234 else 10**9, "periodic": False, "include": []}

    def report(self, sim, state):
        raise KeyboardInterrupt("simulated kill")


def test_generate_resumes_after_kill(tmp_path, monkeypatch):
    real = P.make_simulation

    def killing(*args, **kwargs):
        sim = real(*args, **kwargs)
        sim.reporters.append(_Kill())
        return sim

    monkeypatch.setattr(P, "make_simulation", killing)
    with pytest.raises(KeyboardInterrupt):
        _gen(tmp_path, n_systems=1, n_steps=2000)
    d = tmp_path / "class2_0000"  # checkpoint every 1000 steps: last one at step 1000 = 900 production steps
    assert not is_done(d) and json.loads((d / "progress.json").read_text())["frames"] == 18
    with pytest.raises(ValueError, match="out_dir"):  # different settings must not silently mix
        _gen(tmp_path, n_systems=1, n_steps=2500)
    monkeypatch.setattr(P, "make_simulation", real)
    (d,) = _gen(tmp_path, n_systems=1, n_steps=2000)
    assert is_done(d) and dcd_frame_count(d / "trajectory.dcd") == 40
    rows = [l for l in (d / "state_data.csv").read_text().splitlines() if not l.startswith("#")]
    steps = [int(r.split(",")[0]) for r in rows]
    assert steps == list(range(150, 2101, 50))  # production starts at step 100, after 100 equilibration steps


def test_default_platform_by_chain_length():
    from openmm_mlcg.systems.md import make_platform
    from openmm_mlcg.systems.polymer import REFERENCE_PLATFORM_MAX_UNITS, default_platform

    fastest = make_platform(None).getName()
    assert default_platform(REFERENCE_PLATFORM_MAX_UNITS) == fastest
    # a single short chain runs faster on the single-threaded Reference platform than on CPU
    assert default_platform(REFERENCE_PLATFORM_MAX_UNITS - 1) == ("Reference" if fastest == "CPU" else fastest)
