"""Tests for openmm_mlcg.openmm.system: CG Topology/System construction."""
import numpy as np
import openmm
import pytest
from openmm import app, unit

from openmm_mlcg.cg.mapping import CGMapping
from openmm_mlcg.openmm import create_cg_system, pdb_atom_names
from openmm_mlcg.cg.topology import FineGraph

BOX = np.eye(3) * 3.0


def small_mapping():
    """20 Li ions + 3 four-atom chains (C-O-C-O) split into 2 beads each -> 26 beads, 3 CG bonds."""
    types = ["Li"] * 20 + ["C", "O", "C", "O"] * 3
    masses = [6.94] * 20 + [12.011, 15.999, 12.011, 15.999] * 3
    bonds = [(20 + 4 * m + i, 20 + 4 * m + i + 1) for m in range(3) for i in range(3)]
    graph = FineGraph.from_arrays(types, masses, bonds, residue_names=["LI"] * 20 + ["PEO"] * 12)
    return CGMapping.from_graph(graph, 2)


def test_topology_and_system_match_mapping():
    mapping = small_mapping()
    top, system = create_cg_system(mapping, BOX * unit.nanometer)
    assert top.getNumAtoms() == system.getNumParticles() == mapping.n_beads == 26
    assert top.getNumChains() == top.getNumResidues() == 23  # one per molecule
    assert top.getNumBonds() == len(mapping.cg_bonds) == 3
    masses = [system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(26)]
    np.testing.assert_allclose(masses, mapping.bead_masses)
    np.testing.assert_allclose(masses[20], 12.011 + 15.999)
    atoms = list(top.atoms())
    assert all(a.element is None and len(a.name) <= 4 for a in atoms)
    assert [top.bead_name_table[a.name] for a in atoms] == list(mapping.bead_types)
    assert [r.name for r in top.residues()][:21] == ["LI"] * 20 + ["PEO"]
    vecs = system.getDefaultPeriodicBoxVectors()
    np.testing.assert_allclose([v.value_in_unit(unit.nanometer) for v in vecs], BOX)
    np.testing.assert_allclose(top.getUnitCellDimensions().value_in_unit(unit.nanometer), [3, 3, 3])
    (force,) = system.getForces()
    assert isinstance(force, openmm.HarmonicBondForce) and force.getNumBonds() == 3
    assert all(force.getBondParameters(i)[3].value_in_unit(unit.kilojoule_per_mole / unit.nanometer**2) == 0
               for i in range(3))
    assert system.usesPeriodicBoundaryConditions()


def test_non_periodic_system():
    top, system = create_cg_system(small_mapping())
    assert top.getPeriodicBoxVectors() is None
    assert not system.usesPeriodicBoundaryConditions()


def test_wrapped_reporter_positions_keep_molecules_whole():
    """enforcePeriodicBox wraps whole molecules because the CG bonds are in the System."""
    mapping = small_mapping()
    top, system = create_cg_system(mapping, BOX)
    ctx = openmm.Context(system, openmm.VerletIntegrator(1.0), openmm.Platform.getPlatformByName("Reference"))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 3, (26, 3))
    x[20] = [2.95, 1.0, 1.0]
    x[21] = [3.15, 1.0, 1.0]  # bonded partner across the x boundary
    ctx.setPositions(x)
    wrapped = ctx.getState(getPositions=True, enforcePeriodicBox=True).getPositions(asNumpy=True)._value
    np.testing.assert_allclose(np.linalg.norm(wrapped[21] - wrapped[20]), 0.2, atol=1e-9)
    assert np.all(wrapped[:20] >= -1e-9) and np.all(wrapped[:20] <= 3 + 1e-9)


def test_pdb_names_unique_and_short():
    names, table = pdb_atom_names(["PEO12", "PEO13", "Li", "PEO12", "TFSI", "a-b_c"])
    assert names[0] == names[3] and len(set(names[:3])) == 3
    assert all(len(n) <= 4 and n.isalnum() for n in names)
    assert table[names[1]] == "PEO13" and table[names[5]] == "a-b_c"


def test_topology_written_as_pdb_round_trips(tmp_path):
    mapping = small_mapping()
    top, _ = create_cg_system(mapping, BOX)
    path = tmp_path / "cg.pdb"
    with open(path, "w") as fh:
        app.PDBFile.writeFile(top, np.zeros((26, 3)), fh)
    back = app.PDBFile(str(path)).topology
    assert back.getNumAtoms() == 26 and back.getNumBonds() == 3


@pytest.mark.parametrize("box, match", [
    (np.eye(2), "shape"),
    (np.diag([3.0, -3.0, 3.0]), "positive"),
    (np.array([[3.0, 0.5, 0], [0, 3, 0], [0, 0, 3]]), "reduced"),
    (np.array([[3.0, 0, 0], [2.0, 3, 0], [0, 0, 3]]), "reduced"),
    ([1.0, 2.0] * unit.picosecond, "compatible"),
])
def test_bad_box_raises(box, match):
    with pytest.raises(ValueError, match=match):
        create_cg_system(small_mapping(), box)


def test_not_a_mapping_raises():
    with pytest.raises(TypeError, match="CGMapping"):
        create_cg_system(object())


def test_atom_names_unique_within_each_residue_when_types_repeat():
    """Transferable bead types repeat inside a chain; the CG PDB must still have unique names per residue."""
    from openmm_mlcg.cg.topology import FineGraph

    types = ["C", "C", "O"] * 12
    graph = FineGraph.from_arrays(types, [12.0] * len(types), [(i, i + 1) for i in range(len(types) - 1)],
                                  residue_names=["PEO"] * len(types))
    mapping = CGMapping.from_graph(graph, 3)
    assert len(set(mapping.bead_types)) < mapping.n_beads                 # types repeat within the molecule
    top, _ = create_cg_system(mapping)
    names = [a.name for a in top.atoms()]
    assert len(set(names)) == len(names) and all(len(n) <= 4 for n in names)
    assert [top.bead_name_table[n] for n in names] == list(mapping.bead_types)
