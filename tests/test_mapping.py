import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from conftest import linear_chain_graph
from openmm_mlcg.cg.mapping import CGMapping, centre_of_mass, minimum_image, wrap_positions
from openmm_mlcg.cg.topology import FineGraph

TRICLINIC = np.array([[2.0, 0.0, 0.0], [0.6, 1.8, 0.0], [-0.5, 0.4, 1.6]])


def _beads_connected(m: CGMapping) -> bool:
    g = m.graph
    for b in range(m.n_beads):
        atoms = m.bead_atoms(b)
        inside = np.isin(g.bonds, atoms).all(axis=1)
        sub = g.bonds[inside]
        local = np.searchsorted(atoms, sub)
        adj = sp.coo_matrix((np.ones(len(local)), (local[:, 0], local[:, 1])), shape=(len(atoms),) * 2)
        if connected_components(adj, directed=False)[0] != 1:
            return False
    return True


def _branched_graph(seed=0):
    """Random tree + a few ring closures (200 atoms)."""
    rng = np.random.default_rng(seed)
    n = 200
    bonds = [(i, int(rng.integers(max(0, i - 4), i))) for i in range(1, n)]
    bonds += [(int(a), int(a) + 5) for a in rng.integers(0, n - 5, size=10)]
    return FineGraph.from_arrays(["C"] * n, [12.0] * n, bonds, residue_names=["BR"] * n)


@pytest.mark.parametrize("group_size", [5, 7, 20])
def test_metis_chain_beads_connected_and_sized(group_size):
    g = linear_chain_graph(301)
    m = CGMapping.from_graph(g, group_size, seed=1)
    assert m.n_beads == int(np.ceil(301 / group_size))
    sizes = np.bincount(m.atom_to_bead)
    assert abs(sizes.mean() - group_size) <= 0.3 * group_size
    assert sizes.min() >= 1 and sizes.max() <= 2 * group_size
    assert _beads_connected(m)
    # linear chain -> CG graph is a chain with n_beads - 1 bonds
    assert len(m.cg_bonds) == m.n_beads - 1
    np.testing.assert_allclose(m.bead_masses.sum(), g.masses.sum())


def test_metis_branched_connected_and_deterministic():
    g = _branched_graph()
    m1 = CGMapping.from_graph(g, 8, seed=3)
    m2 = CGMapping.from_graph(g, 8, seed=3)
    assert _beads_connected(m1)
    np.testing.assert_array_equal(m1.atom_to_bead, m2.atom_to_bead)
    assert m1.hash == m2.hash
    assert abs(np.bincount(m1.atom_to_bead).mean() - 8) <= 0.3 * 8


def test_identical_molecules_same_pattern_and_ions(liquid):
    g = FineGraph.from_openmm(liquid["topology"])
    m = CGMapping.from_graph(g, 4)
    # ethanol/DME (9 atoms) -> ceil(9/4) = 3 beads each; Li -> its own bead
    assert m.n_beads == 7 * 3 + 2
    assert m.bead_types[-2:] == ("Li", "Li")
    eth = [m.atom_to_bead[g.molecules == k] - m.atom_to_bead[g.molecules == k].min() for k in range(4)]
    for e in eth[1:]:
        np.testing.assert_array_equal(e, eth[0])
    assert m.bead_types[:3] == m.bead_types[3:6]                    # identical molecules: identical types
    assert all("_" in t for t in m.bead_types[:3])                 # fragments named by chemistry (C2H5O_xxxx)
    assert CGMapping.from_graph(g, 4, bead_types="residue").bead_types[:3] == ("ETH0", "ETH1", "ETH2")
    assert _beads_connected(m)
    np.testing.assert_array_equal(m.bead_molecules, np.repeat(np.arange(9), [3] * 7 + [1, 1]))
    whole = CGMapping.from_graph(g, 9)
    assert whole.bead_types[0] == "ETH" and whole.bead_types[-1] == "Li" and whole.n_beads == 9


def test_save_load_and_hash_check(tmp_path, liquid):
    g = FineGraph.from_openmm(liquid["topology"])
    m = CGMapping.from_graph(g, 4)
    m.save(tmp_path / "map.npz")
    m2 = CGMapping.load(tmp_path / "map.npz", graph=g)
    assert m2.hash == m.hash and m2.bead_types == m.bead_types
    np.testing.assert_array_equal(m2.cg_bonds, m.cg_bonds)
    other = linear_chain_graph(g.n_atoms)
    with pytest.raises(ValueError, match="graph"):
        CGMapping.load(tmp_path / "map.npz", graph=other)
    with pytest.raises(ValueError, match="graph"):
        m.check_graph(other)
    with pytest.raises(FileNotFoundError, match="path"):
        CGMapping.load(tmp_path / "nope.npz")


def _split_molecule_case(box, rng):
    """A 12-atom chain molecule placed across a periodic face, plus its whole-molecule reference COM."""
    g = FineGraph.from_arrays(["C", "O", "H"] * 4, [12.0, 16.0, 1.0] * 4, [(i, i + 1) for i in range(11)])
    steps = rng.normal(size=(11, 3))
    steps = 0.12 * steps / np.linalg.norm(steps, axis=1, keepdims=True)
    whole = np.concatenate([np.zeros((1, 3)), np.cumsum(steps, axis=0)])
    whole = whole - whole.mean(axis=0) + box[0] * 0.999 + box[1] * 0.5 + box[2] * 0.01  # straddles faces
    return g, whole


@pytest.mark.parametrize("box", [np.diag([2.0, 1.8, 1.6]), TRICLINIC], ids=["orthorhombic", "triclinic"])
def test_com_of_split_molecule_equals_whole(box):
    rng = np.random.default_rng(0)
    g, whole = _split_molecule_case(box, rng)
    wrapped = wrap_positions(whole, box)
    assert np.abs(wrapped - whole).max() > 0.5  # really split across the box
    for group_size in (1, 3, 12):
        m = CGMapping.from_graph(g, group_size)
        ref = centre_of_mass(whole[None], g.masses, m.atom_to_bead, m.n_beads)[0]
        got = m.map_positions(wrapped[None], box)[0]
        # equal up to one lattice vector for the whole molecule
        shift = minimum_image(got - ref, box)
        np.testing.assert_allclose(shift, 0.0, atol=1e-12)
        d = got - ref
        np.testing.assert_allclose(d - d[0], 0.0, atol=1e-12)


@pytest.mark.parametrize("box", [np.diag([2.0, 1.8, 1.6]), TRICLINIC], ids=["orthorhombic", "triclinic"])
def test_unwrapped_paths_continuous_across_box(box):
    rng = np.random.default_rng(1)
    g, whole = _split_molecule_case(box, rng)
    m = CGMapping.from_graph(g, 4)
    n_frames = 60
    drift = np.array([0.07, -0.05, 0.04])  # crosses every face several times
    true = whole[None] + drift * np.arange(n_frames)[:, None, None] + 0.01 * rng.normal(size=(n_frames, 12, 3))
    wrapped = wrap_positions(true, box)
    beads = m.map_positions(wrapped, box, unwrap=True)
    ref = centre_of_mass(true, g.masses, m.atom_to_bead, m.n_beads)
    # continuous: steps equal the true steps, and the path differs from the truth by one constant lattice shift
    np.testing.assert_allclose(np.diff(beads, axis=0), np.diff(ref, axis=0), atol=1e-10)
    assert np.linalg.norm(beads[-1] - beads[0], axis=-1).min() > 3.0
    wrapped_beads = wrap_positions(beads, box)
    # wrapped into OpenMM's brick [0, a_x) x [0, b_y) x [0, c_z), and equal to the path modulo the lattice
    assert np.all(wrapped_beads >= 0) and np.all(wrapped_beads < np.diag(box))
    np.testing.assert_allclose(minimum_image(wrapped_beads - beads, box), 0.0, atol=1e-10)
    # no box: plain centres of mass
    np.testing.assert_allclose(m.map_positions(true, None), ref, atol=1e-12)


def test_liquid_mapping_matches_reference(liquid):
    g = FineGraph.from_openmm(liquid["topology"])
    m = CGMapping.from_graph(g, 4)
    ref = centre_of_mass(liquid["xyz"], g.masses, m.atom_to_bead, m.n_beads)
    got = m.map_positions(liquid["xyz_wrapped"], liquid["box"])
    d = got - ref
    np.testing.assert_allclose(d - d[:1], 0.0, atol=1e-9)  # one constant lattice shift per bead
    np.testing.assert_allclose(minimum_image(d, liquid["box"]), 0.0, atol=1e-9)


def test_mapping_errors(liquid):
    g = FineGraph.from_openmm(liquid["topology"])
    with pytest.raises(ValueError, match="group_size"):
        CGMapping.from_graph(g, 0)
    with pytest.raises(ValueError, match="group_size"):
        CGMapping.from_graph(g, 2.5)
    nobonds = FineGraph.from_arrays(["C"] * 4, [12.0] * 4, [])
    with pytest.raises(ValueError, match="group_size"):
        CGMapping.from_graph(nobonds, 3)
    assert CGMapping.from_graph(nobonds, 1).n_beads == 4
    with pytest.raises(TypeError, match="graph"):
        CGMapping.from_graph("not a graph", 3)
    m = CGMapping.from_graph(g, 4)
    bad = liquid["xyz_wrapped"][:2].copy()
    bad[1, 3, 0] = np.nan
    with pytest.raises(ValueError, match="xyz"):
        m.map_positions(bad, liquid["box"])
    with pytest.raises(ValueError, match="xyz"):
        m.map_positions(liquid["xyz_wrapped"][:2, :5], liquid["box"])
    with pytest.raises(ValueError, match="box"):
        m.map_positions(liquid["xyz_wrapped"][:2], np.zeros((3, 3)))
    with pytest.raises(ValueError, match="box"):
        m.map_positions(liquid["xyz_wrapped"][:2], np.ones((3, 3)))


def test_repair_of_disconnected_part():
    from openmm_mlcg.cg.mapping import _repair_connectivity

    bonds = np.array([[i, i + 1] for i in range(5)])
    parts = _repair_connectivity(np.array([0, 0, 1, 1, 0, 0]), bonds, 6)
    np.testing.assert_array_equal(parts, [0, 0, 1, 1, 1, 1])


def test_chemical_bead_types_are_shared_across_residues_and_molecules():
    from openmm_mlcg.cg.bead_types import chemical_bead_types, hill_formula

    def chain(resname, n_units=30):
        types = ["C", "C", "O"] * n_units
        return types, [(i, i + 1) for i in range(len(types) - 1)], [resname] * len(types)

    ta, ba, ra = chain("PEO")
    tb, bb, rb = chain("XYZ")
    n = len(ta)
    graph = FineGraph.from_arrays(ta + tb + ["Li"], [12.0] * (2 * n + 1), ba + [(i + n, j + n) for i, j in bb],
                                  residue_names=ra + rb + ["LI"])
    by_residue = CGMapping.from_graph(graph, 3, bead_types="residue")
    chem = CGMapping.from_graph(graph, 3, bead_types="chemistry")
    default = CGMapping.from_graph(graph, 3)                        # transferable: chemistry for fragments
    assert default.bead_types[:-1] == chem.bead_types[:-1] and default.bead_types[-1] == "Li"
    nb = by_residue.n_beads // 2
    assert len(set(by_residue.bead_types)) == 2 * nb + 1            # a type per bead and residue: PEO0..., XYZ0...
    assert chem.bead_types[:nb] == chem.bead_types[nb:2 * nb]         # same chemistry, other residue: same types
    assert len(set(chem.bead_types)) <= 8 and chem.bead_types[-1] == "Li"
    assert chem.bead_types == by_residue.chemical_bead_types() and chem.hash != by_residue.hash
    assert hill_formula(["O", "H", "C", "H"]) == "CH2O" and hill_formula(["S", "F", "Li"]) == "FLiS"
    # equal formula, different bonding -> different types
    assert len(set(chemical_bead_types(["C", "C", "O", "C", "O", "C"], [(0, 1), (1, 2), (3, 4), (4, 5)],
                                       [0, 0, 0, 1, 1, 1]))) == 2
    with pytest.raises(ValueError, match="bead_types"):
        CGMapping.from_graph(graph, 3, bead_types="bogus")
