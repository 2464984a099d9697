"""Tests for the SPE builder (openmm_mlcg.systems.spe / gaff / packing): GAFF2 typing, charges, packing, MD."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

pytest.importorskip("rdkit")
pytest.importorskip("openmmforcefields")

import openmm  # noqa: E402
from openmm import unit  # noqa: E402

from openmm_mlcg.systems import gaff, spe  # noqa: E402
from openmm_mlcg.systems.packing import DATA_DIR, pack_box  # noqa: E402

TINY = dict(n_chains=2, chain_length=5, n_salt=1, nonbonded_cutoff=0.5)


def _charges(system):
    nb = [f for f in system.getForces() if isinstance(f, openmm.NonbondedForce)][0]
    return np.array([nb.getParticleParameters(i)[0].value_in_unit(unit.elementary_charge)
                     for i in range(nb.getNumParticles())])


@pytest.fixture(scope="module")
def tiny():
    return spe.build_spe("PEO", seed=3, **TINY)


def test_monomer_space_and_parsing():
    known = spe.known_monomers()
    assert "PEO" in known and len(known) >= 4
    assert spe.parse_polymer("PEO") == {"PEO": 1.0}
    assert spe.parse_polymer("PEO/PPO") == {"PEO": 0.5, "PPO": 0.5}
    assert spe.parse_polymer("PEO:3,PEC:1") == pytest.approx({"PEO": 0.75, "PEC": 0.25})
    assert spe.parse_polymer(["PTMO", "PCL"]) == {"PTMO": 0.5, "PCL": 0.5}
    assert spe.chain_smiles(["PEO", "PEO"]) == "COCCOCCOC"  # CH3-O-(CH2CH2O)2-CH3


@pytest.mark.parametrize("name", spe.known_monomers() + ["TFSI"])
def test_gaff2_typing_covers_every_atom(name):
    from rdkit import Chem

    if name == "TFSI":
        smi = json.loads((DATA_DIR / "spe_ions.json").read_text())["tfsi"]["smiles"]
    else:
        smi = spe.chain_smiles([name] * 3)
    mol = Chem.AddHs(Chem.MolFromSmiles(smi))
    types = gaff.assign_gaff2_types(mol)
    assert len(types) == mol.GetNumAtoms()
    assert set(types) <= gaff.gaff2_type_names()
    for atom, t in zip(mol.GetAtoms(), types):
        assert t[0] == atom.GetSymbol().lower()[0]  # c*, h*, o*, s*, n*, f
    if name == "PEO":
        assert {"c3", "os", "h1"} == set(types)
    if name == "PCL":
        assert {"c", "o", "os", "hc", "h1"} <= set(types)
    if name == "TFSI":
        assert sorted(set(types)) == ["c3", "f", "n2", "o", "s6"]


def test_typing_rejects_unsupported_chemistry():
    from rdkit import Chem

    with pytest.raises(ValueError, match="mol: atom"):
        gaff.assign_gaff2_types(Chem.AddHs(Chem.MolFromSmiles("c1ccccc1")))  # aromatic C not covered


@pytest.mark.parametrize("polymer", spe.known_monomers() + ["PEO/PPO/PEC"])
def test_system_fully_parameterised_and_neutral(polymer):
    s = spe.build_spe(polymer, n_chains=2, chain_length=4, n_salt=2, seed=1, nonbonded_cutoff=0.5)
    counts = gaff.check_fully_parameterised(s.topology, s.system, s.atom_types)
    assert counts["angles"] > counts["bonds"] > 0
    q = _charges(s.system)
    assert abs(q.sum()) < 1e-6
    residues = {r.name for r in s.topology.residues()}
    assert residues == {"POL", "TFS", "LI"}
    li = [a.index for a in s.topology.atoms() if a.residue.name == "LI"]
    tf = [a.index for a in s.topology.atoms() if a.residue.name == "TFS"]
    assert len(li) == 2 and len(tf) == 30
    np.testing.assert_allclose(q[li], 0.8, atol=1e-8)  # 0.8-scaled Li+ (data/spe_ions.json)
    assert q[tf].sum() == pytest.approx(-1.6, abs=1e-6)
    assert s.composition["n_atoms"] == s.system.getNumParticles() == len(s.positions)


def test_li_parameters_match_openmmforcefields_joung_cheatham():
    import openmmforcefields
    from pathlib import Path

    root = ET.parse(Path(openmmforcefields.__file__).parent / "ffxml/amber/ions/ionsjc_tip3p.xml").getroot()
    ref = [a.attrib for a in root.iter("Atom") if a.get("type") == "ionsjc_tip3p-Li+" and "sigma" in a.attrib][0]
    s = spe.build_spe("PEO", seed=0, **TINY)
    nb = [f for f in s.system.getForces() if isinstance(f, openmm.NonbondedForce)][0]
    li = [a.index for a in s.topology.atoms() if a.residue.name == "LI"][0]
    _, sig, eps = nb.getParticleParameters(li)
    assert sig.value_in_unit(unit.nanometer) == pytest.approx(float(ref["sigma"]))
    assert eps.value_in_unit(unit.kilojoule_per_mole) == pytest.approx(float(ref["epsilon"]))


def test_salt_count_follows_molality():
    s = spe.build_spe("PEO", n_chains=4, chain_length=12, seed=0, nonbonded_cutoff=0.7)
    c = s.composition
    assert c["n_li"] == c["n_tfsi"] == round(1.5 * c["polymer_mass_g_mol"] / 1000.0)
    assert c["salt_molality_mol_kg"] == pytest.approx(1.5, rel=0.2)


def test_copolymer_chains_are_random_and_seeded():
    a = spe.build_spe("PEO/PPO", n_chains=3, chain_length=8, seed=5, n_salt=1, nonbonded_cutoff=0.6)
    b = spe.build_spe("PEO/PPO", n_chains=3, chain_length=8, seed=5, n_salt=1, nonbonded_cutoff=0.6)
    assert a.composition["sequences"] == b.composition["sequences"]
    np.testing.assert_allclose(a.positions, b.positions)
    words = " ".join(a.composition["sequences"]).split()
    assert set(words) == {"PEO", "PPO"} and len(words) == 24


def test_packmol_respects_tolerance_with_pbc():
    xyz = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]])
    pos = pack_box([(["O", "O"], xyz, 20)], box_nm=1.5, seed=2, tolerance_nm=0.2)
    mols = pos.reshape(20, 2, 3)
    d = mols[:, None, :, None, :] - mols[None, :, None, :, :]
    d -= 1.5 * np.round(d / 1.5)
    r = np.linalg.norm(d, axis=-1)
    r[np.arange(20), np.arange(20)] = np.inf
    assert r.min() > 0.17
    np.testing.assert_allclose(np.linalg.norm(mols[:, 0] - mols[:, 1], axis=-1), 0.1, atol=1e-3)


def test_tiny_system_minimises_and_runs(tiny):
    sim = tiny.make_simulation(platform="CPU", seed=0)
    e0 = sim.context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    sim.minimizeEnergy(maxIterations=300)
    e1 = sim.context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    assert e1 < e0
    sim.context.setVelocitiesToTemperature(353 * unit.kelvin, 1)
    sim.step(200)
    st = sim.context.getState(getEnergy=True, getPositions=True)
    assert np.all(np.isfinite(st.getPositions(asNumpy=True).value_in_unit(unit.nanometer)))
    assert np.isfinite(st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    n_dof = 3 * tiny.n_atoms - sim.system.getNumConstraints() - 3
    temp = 2 * st.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole) / (n_dof * 0.00831446)
    assert 200 < temp < 600


def test_simulate_writes_protocol_outputs(tiny, tmp_path):
    out = spe.simulate(tiny, tmp_path / "run", equilibration_ps=0.1, production_ps=0.2, frame_interval_ps=0.05,
                       platform="CPU", seed=2, progress_bar=False)
    for name in ("topology.pdb", "trajectory.dcd", "metadata.json", "state_data.csv", "forcefield.xml", "DONE"):
        assert (out / name).is_file(), name
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["frame_interval_ps"] == pytest.approx(0.05)
    assert meta["temperature_K"] == pytest.approx(353.0)
    assert meta["composition"]["n_li"] == 1 and meta["seed"] == 2
    assert "CONECT" in (out / "topology.pdb").read_text()
    import mdtraj

    traj = mdtraj.load(str(out / "trajectory.dcd"), top=str(out / "topology.pdb"))
    assert traj.n_frames == 4 and traj.n_atoms == tiny.n_atoms
    assert np.all(np.isfinite(traj.xyz))
    assert traj.topology.n_bonds == tiny.topology.getNumBonds()


def test_bad_arguments_raise_value_error_naming_argument(tmp_path):
    with pytest.raises(ValueError, match="polymer"):
        spe.build_spe("PXX", n_chains=2, chain_length=3)
    with pytest.raises(ValueError, match="n_chains"):
        spe.build_spe("PEO", n_chains=0, chain_length=3)
    with pytest.raises(ValueError, match="chain_length"):
        spe.build_spe("PEO", n_chains=2, chain_length=-1)
    with pytest.raises(ValueError, match="salt_molality"):
        spe.build_spe("PEO", n_chains=2, chain_length=3, salt_molality=-1.0)
    with pytest.raises(ValueError, match="nonbonded_cutoff"):
        spe.build_spe("PEO", n_chains=2, chain_length=3, n_salt=1)  # box far below 2 x 0.9 nm
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="out_dir"):
        spe.generate(1, blocker / "sub")
    with pytest.raises(ValueError, match="scale"):
        spe.generate(1, tmp_path, scale="huge")
    with pytest.raises(ValueError, match="n_systems"):
        spe.generate(0, tmp_path)
    with pytest.raises(ValueError, match="polymer"):
        spe.generate(1, tmp_path, polymers=["PEO", "nylon"])


def test_parameter_check_detects_missing_terms(tiny):
    system = openmm.XmlSerializer.clone(tiny.system)
    idx = [i for i, f in enumerate(system.getForces()) if isinstance(f, openmm.HarmonicAngleForce)][0]
    system.removeForce(idx)
    with pytest.raises(ValueError, match="angles"):
        gaff.check_fully_parameterised(tiny.topology, system, tiny.atom_types)


def test_hydrogen_mass_repartitioning_keeps_mass_and_runs_at_4_fs(tiny):
    """The best-practice classical baseline: every bonded H at 3 amu, each molecule's mass unchanged, and a 4 fs
    LangevinMiddle run with H-bond constraints holds the thermostat's temperature (353 K) on average."""
    from openmm import app

    sim = tiny.make_simulation(platform="CPU", seed=0, pressure=None, time_step=0.004, hydrogen_mass=3.0)
    m0 = np.array([tiny.system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(tiny.n_atoms)])
    m1 = np.array([sim.system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(tiny.n_atoms)])
    hydrogens = [a.index for a in tiny.topology.atoms() if a.element is app.element.hydrogen]
    assert hydrogens and np.allclose(m1[hydrogens], 3.0)
    assert m1.sum() == pytest.approx(m0.sum(), rel=1e-12) and (m1 > 0).all()
    sim.minimizeEnergy(maxIterations=300)
    sim.context.setVelocitiesToTemperature(353 * unit.kelvin, 1)
    sim.step(250)
    n_dof = 3 * tiny.n_atoms - sim.system.getNumConstraints() - 3
    temps = []
    for _ in range(25):
        sim.step(10)
        ke = sim.context.getState(getEnergy=True).getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
        temps.append(2 * ke / (n_dof * 0.00831446))
    assert np.all(np.isfinite(temps)) and 300 < np.mean(temps) < 410, np.mean(temps)
    with pytest.raises(ValueError, match="hydrogen_mass: expected more than the element mass"):
        tiny.make_simulation(platform="CPU", hydrogen_mass=0.5)
