import numpy as np
import pytest

from openmm_mlcg.cg.topology import FineGraph
from conftest import MOLECULES


def test_from_openmm_liquid(liquid):
    g = FineGraph.from_openmm(liquid["topology"])
    n_atoms = liquid["topology"].getNumAtoms()
    assert g.n_atoms == n_atoms
    assert g.n_molecules == len(MOLECULES)
    # ethanol and dimethyl ether: C2H6O, 9 atoms, 8 bonds; Li alone
    assert np.bincount(g.molecules).tolist() == [9] * 7 + [1, 1]
    assert g.n_bonds == 7 * 8
    assert np.all(g.bonds[:, 0] < g.bonds[:, 1])
    assert np.all(g.bond_types == 1)
    # molecules numbered by first atom: non-decreasing along the atom order here
    assert np.all(np.diff(g.molecules) >= 0)
    eth_mass = 2 * 12.011 + 6 * 1.008 + 15.999
    assert g.masses[:9].sum() == pytest.approx(eth_mass, abs=0.01)
    assert g.atom_types[-1] == "Li" and g.residue_names[-1] == "LI"
    # the same topology through mdtraj gives the same graph
    import mdtraj
    g2 = FineGraph.from_mdtraj(mdtraj.Topology.from_openmm(liquid["topology"]))
    assert g2.hash == g.hash


def test_pdb_conect_roundtrip_and_save_load(liquid, tmp_path):
    from openmm import app

    pdb = tmp_path / "liquid.pdb"
    with open(pdb, "w") as fh:
        app.PDBFile.writeFile(liquid["topology"], liquid["xyz"][0] * 10.0, fh)
    g_file = FineGraph.from_file(pdb)
    g = FineGraph.from_openmm(liquid["topology"])
    assert g_file.n_bonds == g.n_bonds
    np.testing.assert_array_equal(g_file.bonds, g.bonds)
    np.testing.assert_array_equal(g_file.molecules, g.molecules)
    path = tmp_path / "graph.npz"
    g.save(path)
    g3 = FineGraph.load(path)
    assert g3.hash == g.hash and g3.atom_types == g.atom_types


def test_explicit_types_and_masses_reduced_units():
    import openmm
    from openmm import app

    top = app.Topology()
    res = top.addResidue("POL", top.addChain())
    atoms = [top.addAtom(f"B{i}", None, res) for i in range(4)]
    for i in range(3):
        top.addBond(atoms[i], atoms[i + 1])
    with pytest.raises(ValueError, match="masses"):
        FineGraph.from_openmm(top)
    system = openmm.System()
    for _ in range(4):
        system.addParticle(1.0)
    g = FineGraph.from_openmm(top, system=system, atom_types=["A", "B", "B", "A"])
    assert g.atom_types == ("A", "B", "B", "A")
    np.testing.assert_allclose(g.masses, 1.0)
    g2 = FineGraph.from_openmm(top, masses=[2.0, 1.0, 1.0, 2.0])
    assert g2.masses.sum() == 6.0 and g2.atom_types == ("B0", "B1", "B2", "B3")
    np.testing.assert_array_equal(g.type_indices(["A", "B"]), [0, 1, 1, 0])
    with pytest.raises(ValueError, match="vocabulary"):
        g.type_indices(["A"])


def test_canonical_bonds_and_components():
    g = FineGraph.from_arrays(["C"] * 5, [12.0] * 5, [(3, 2), (1, 0), (0, 1), (2, 2)], bond_types=[2, 1, 1, 0])
    np.testing.assert_array_equal(g.bonds, [[0, 1], [2, 3]])
    np.testing.assert_array_equal(g.bond_types, [1, 2])
    np.testing.assert_array_equal(g.molecules, [0, 0, 1, 1, 2])
    # component numbering follows the first atom even when atoms of molecules interleave
    g2 = FineGraph.from_arrays(["C"] * 4, [12.0] * 4, [(1, 3), (0, 2)])
    np.testing.assert_array_equal(g2.molecules, [0, 1, 0, 1])


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="masses"):
        FineGraph.from_arrays(["C", "C"], [12.0], [])
    with pytest.raises(ValueError, match="masses"):
        FineGraph.from_arrays(["C", "C"], [12.0, -1.0], [])
    with pytest.raises(ValueError, match="bonds"):
        FineGraph.from_arrays(["C", "C"], [12.0, 12.0], [(0, 2)])
    with pytest.raises(FileNotFoundError, match="path"):
        FineGraph.from_file(tmp_path / "missing.pdb")
    bad = tmp_path / "bad.pdb"
    bad.write_text("this is not a pdb\n")
    with pytest.raises(ValueError, match="path"):
        FineGraph.from_file(bad)
    with pytest.raises(FileNotFoundError, match="path"):
        FineGraph.load(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="path"):
        FineGraph.load(junk)


PSF = """PSF

       1 !NTITLE
 REMARKS water and a lithium ion

       4 !NATOM
       1 W    1    TIP3 OH2  OT    -0.834000       15.9994           0
       2 W    1    TIP3 H1   HT     0.417000        1.0080           0
       3 W    1    TIP3 H2   HT     0.417000        1.0080           0
       4 I    2    LIT  LI   LI     1.000000        6.9410           0

       2 !NBOND: bonds
       1       2       1       3

       0 !NTHETA: angles

"""


def test_from_psf(tmp_path):
    path = tmp_path / "w.psf"
    path.write_text(PSF)
    g = FineGraph.from_file(path)
    assert g.atom_types == ("O", "H", "H", "Li")
    np.testing.assert_array_equal(g.bonds, [[0, 1], [0, 2]])
    np.testing.assert_array_equal(g.molecules, [0, 0, 0, 1])
    assert g.masses.sum() == pytest.approx(15.9994 + 2 * 1.008 + 6.941, abs=0.01)


def test_psf_masses_are_used(tmp_path):
    """A PSF carries its own masses (here hydrogen mass repartitioning: 3.024 amu); they win over elements."""
    from openmm_mlcg.cg.topology import FineGraph

    psf = tmp_path / "water.psf"
    psf.write_text("PSF\n\n       1 !NTITLE\n REMARKS test\n\n       3 !NATOM\n"
                   "       1 W    1    HOH  OH2  OT    -0.834000       15.9994           0\n"
                   "       2 W    1    HOH  H1   HT     0.417000        3.0240           0\n"
                   "       3 W    1    HOH  H2   HT     0.417000        1.0080           0\n\n"
                   "       2 !NBOND: bonds\n       1       2       1       3\n\n")
    g = FineGraph.from_file(psf)
    np.testing.assert_allclose(g.masses, [15.9994, 3.024, 1.008])
    assert g.n_bonds == 2
