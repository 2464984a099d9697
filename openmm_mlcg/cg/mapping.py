"""METIS coarse-grained mapping and periodic centre-of-mass mapping of trajectories.

Each molecule's bond graph is partitioned with METIS (pymetis) into ``ceil(n_atoms / group_size)`` connected
groups of about ``group_size`` atoms; a molecule with at most ``group_size`` atoms (e.g. an ion) is one bead.
Bead position = centre of mass of its atoms (molecules made whole across periodic boundaries first), bead
mass = sum. CG bonds join beads that contain bonded atoms. Source: Fu et al., TMLR 2023, section 3 and
appendix B (graph clustering with METIS, Karypis & Kumar 1998, doi:10.1137/S1064827595287997).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order, connected_components
from scipy.sparse.linalg import splu

from ..util.io_utils import atomic_write, sha256_arrays, write_npz
from ..util.geometry import as_box_frames, minimum_image, unwrap_in_time, wrap
from .topology import FineGraph

__all__ = ["CGMapping", "BEAD_TYPE_RULES", "centre_of_mass", "wrap_positions", "minimum_image", "as_box_frames", "unwrap_in_time"]


# box helpers live in geometry (one implementation each); re-exported here for existing imports
wrap_positions = wrap


def centre_of_mass(positions, masses, groups, n_groups: int) -> np.ndarray:
    """Mass-weighted centre of each group of already-whole positions.

    Args:
        positions: (..., n, 3) nm. masses: (n,) amu. groups: (n,) int group index in [0, n_groups).

    Returns:
        (..., n_groups, 3) float64, nm.
    """
    x = np.asarray(positions, dtype=np.float64)
    m = np.asarray(masses, dtype=np.float64)
    groups = np.asarray(groups, dtype=np.int64)
    total = np.bincount(groups, weights=m, minlength=n_groups)
    w = sp.csr_matrix((m / total[groups], (groups, np.arange(len(groups)))), shape=(n_groups, len(groups)))
    flat = np.moveaxis(x, -2, 0).reshape(x.shape[-2], -1)
    out = (w @ flat).reshape((n_groups,) + x.shape[:-2] + (3,))
    return np.moveaxis(out, 0, -2)


# ---------------------------------------------------------------------------------------------- METIS
def _partition_molecule(n: int, local_bonds: np.ndarray, group_size: int, seed: int) -> np.ndarray:
    """Connected METIS partition of one molecule's graph into ceil(n / group_size) parts; parts numbered by
    first atom. Disconnected parts are repaired: each stray component joins the smallest bonded bead."""
    if n <= group_size:
        return np.zeros(n, dtype=np.int64)
    import pymetis

    n_parts = math.ceil(n / group_size)
    adj = sp.coo_matrix((np.ones(2 * len(local_bonds)),
                         (np.r_[local_bonds[:, 0], local_bonds[:, 1]], np.r_[local_bonds[:, 1], local_bonds[:, 0]])),
                        shape=(n, n)).tocsr()
    adj.sort_indices()
    opts = pymetis.Options(seed=int(seed), contig=1)
    csr = pymetis.CSRAdjacency(adj.indptr.astype(np.int64), adj.indices.astype(np.int64))
    _, parts = pymetis.part_graph(n_parts, adjacency=csr, options=opts)
    parts = np.asarray(parts, dtype=np.int64)
    parts = _repair_connectivity(parts, local_bonds, n)
    _, first, inverse = np.unique(parts, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[inverse.reshape(-1)]


def _repair_connectivity(parts: np.ndarray, bonds: np.ndarray, n: int) -> np.ndarray:
    """Make every part a connected subgraph: keep each part's largest component (ties: lowest atom), move each
    other component into the smallest part it is bonded to (ties: lowest part label). Deterministic."""
    parts = parts.copy()
    for _ in range(n):
        intra = bonds[parts[bonds[:, 0]] == parts[bonds[:, 1]]]
        g = sp.coo_matrix((np.ones(len(intra)), (intra[:, 0], intra[:, 1])), shape=(n, n))
        n_comp, comp = connected_components(g, directed=False)
        if n_comp == len(np.unique(parts)):
            return parts
        comp_part = np.zeros(n_comp, dtype=np.int64)
        comp_part[comp] = parts
        sizes = np.bincount(comp, minlength=n_comp)
        for p in np.unique(parts):
            cs = np.flatnonzero(comp_part == p)
            if len(cs) < 2:
                continue
            keep = max(cs, key=lambda c: (sizes[c], -np.flatnonzero(comp == c)[0]))
            stray = min((c for c in cs if c != keep), key=lambda c: np.flatnonzero(comp == c)[0])
            atoms = comp == stray
            cross = bonds[atoms[bonds[:, 0]] ^ atoms[bonds[:, 1]]]
            neigh = np.unique(parts[np.where(atoms[cross[:, 0]], cross[:, 1], cross[:, 0])])
            neigh = neigh[neigh != p]
            part_sizes = np.bincount(parts)
            target = min(neigh, key=lambda q: (part_sizes[q], q))
            parts[atoms] = target
            break
    return parts


#: bead-type rules of :meth:`CGMapping.from_graph` (default first)
BEAD_TYPE_RULES = ("transferable", "residue", "chemistry")

@dataclass(frozen=True, eq=False)
class CGMapping:
    """Coarse-grained mapping of a :class:`FineGraph` (see module docstring).

    Attributes:
        graph: the fine graph it was built from.
        atom_to_bead: (n_atoms,) int64, beads numbered molecule by molecule, within a molecule by first atom.
        bead_masses: (n_beads,) float64 amu. bead_molecules: (n_beads,) int64.
        bead_types: per-bead label (rule of :meth:`from_graph`; default: single-atom bead -> atom type, whole
            molecule -> residue name, else the chemistry fingerprint; identical molecules get identical
            patterns because partitions are cached by molecule graph signature).
        cg_bonds: (n_cg_bonds, 2) int64 i<j unique, beads that contain bonded atoms.
        group_size: target atoms per bead. seed: METIS seed.
    """

    graph: FineGraph
    atom_to_bead: np.ndarray
    bead_masses: np.ndarray
    bead_molecules: np.ndarray
    bead_types: tuple
    cg_bonds: np.ndarray
    group_size: int
    seed: int
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_graph(cls, graph: FineGraph, group_size: int, seed: int = 0,
                   bead_types: str = "transferable") -> "CGMapping":
        """Partition each molecule of ``graph`` with METIS.

        ``bead_types`` (the types are part of the mapping hash; rules in :data:`BEAD_TYPE_RULES`):

        - "transferable" (default): a single-atom bead is its atom type ("Li"), a bead that is a whole molecule
          its residue name ("TFS"), and a fragment of a larger molecule the fingerprint of its chemistry
          (:func:`openmm_mlcg.cg.bead_types.chemical_bead_types`, e.g. "C2H4O_3fa2"), so identical chemistry
          gets one type across residues and molecules (a protein's 347 beads: 75 types, not 347);
        - "residue": fragments are residue name + bead index in the molecule ("ETH0", "MET12");
        - "chemistry": every bead by its chemistry fingerprint.

        Raises:
            TypeError: ``graph`` is not a FineGraph.
            ValueError: ``group_size`` < 1, or ``group_size`` > 1 while the graph has no bonds at all; unknown
                ``bead_types``.
        """
        if bead_types not in BEAD_TYPE_RULES:
            raise ValueError(f"bead_types: expected one of {BEAD_TYPE_RULES}, got {bead_types!r}")
        if not isinstance(graph, FineGraph):
            raise TypeError(f"graph: expected FineGraph, got {type(graph).__name__}")
        if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 1:
            raise ValueError(f"group_size: expected an integer >= 1 (atoms per bead), got {group_size!r}")
        group_size = int(group_size)
        if group_size > 1 and graph.n_bonds == 0 and graph.n_atoms > 1:
            raise ValueError(f"group_size: {group_size} > 1 needs bonds, but graph has no bonds (n_bonds=0); "
                             "read a topology with bonds (PDB CONECT, PSF) or use group_size=1")
        order = np.argsort(graph.molecules, kind="stable")
        starts = np.searchsorted(graph.molecules[order], np.arange(graph.n_molecules + 1))
        bond_mol = graph.molecules[graph.bonds[:, 0]]
        bond_order = np.argsort(bond_mol, kind="stable")
        bstarts = np.searchsorted(bond_mol[bond_order], np.arange(graph.n_molecules + 1))
        local_index = np.empty(graph.n_atoms, dtype=np.int64)
        local_index[order] = np.arange(graph.n_atoms) - np.repeat(starts[:-1], np.diff(starts))
        atom_to_bead = np.empty(graph.n_atoms, dtype=np.int64)
        bead_types_list, bead_molecules, memo, offset = [], [], {}, 0
        for mol in range(graph.n_molecules):
            atoms = order[starts[mol]:starts[mol + 1]]
            local = local_index[graph.bonds[bond_order[bstarts[mol]:bstarts[mol + 1]]]]
            key = (len(atoms), local.tobytes(), tuple(graph.atom_types[a] for a in atoms))
            if key not in memo:
                memo[key] = _partition_molecule(len(atoms), local, group_size, seed)
            parts = memo[key]
            atom_to_bead[atoms] = parts + offset
            n_parts = int(parts.max()) + 1
            resname = graph.residue_names[atoms[0]] or _formula([graph.atom_types[a] for a in atoms])
            for k in range(n_parts):
                members = atoms[parts == k]
                if len(members) == 1:
                    bead_types_list.append(graph.atom_types[members[0]])
                elif n_parts == 1:
                    bead_types_list.append(resname)
                else:
                    bead_types_list.append(f"{resname}{k}")
            bead_molecules.extend([mol] * n_parts)
            offset += n_parts
        bead_masses = np.bincount(atom_to_bead, weights=graph.masses, minlength=offset)
        if bead_types == "residue":
            types = tuple(bead_types_list)
        else:
            from .bead_types import chemical_bead_types

            chem = chemical_bead_types(graph.atom_types, graph.bonds, atom_to_bead)
            if bead_types == "chemistry":
                types = chem
            else:  # transferable: fragments of multi-bead molecules by chemistry, the rest readable names
                n_per_mol = np.bincount(np.asarray(bead_molecules, dtype=np.int64), minlength=graph.n_molecules)
                atoms_per_bead = np.bincount(atom_to_bead, minlength=offset)
                types = tuple(chem[b] if atoms_per_bead[b] > 1 and n_per_mol[bead_molecules[b]] > 1
                              else bead_types_list[b] for b in range(offset))
        cb = np.sort(atom_to_bead[graph.bonds], axis=1)
        cb = np.unique(cb[cb[:, 0] != cb[:, 1]], axis=0).reshape(-1, 2).astype(np.int64)
        return cls(graph, atom_to_bead, bead_masses.astype(np.float64),
                   np.asarray(bead_molecules, dtype=np.int64), types, cb, group_size, int(seed))

    # ------------------------------------------------------------------ properties
    def chemical_bead_types(self) -> tuple:
        """Bead types from each bead's chemistry (:mod:`openmm_mlcg.cg.bead_types`), whatever ``bead_types`` is."""
        from .bead_types import chemical_bead_types

        return chemical_bead_types(self.graph.atom_types, self.graph.bonds, self.atom_to_bead)

    @property
    def n_beads(self) -> int:
        """Number of beads."""
        return int(self.bead_masses.shape[0])

    @property
    def hash(self) -> str:
        """SHA-256 hex digest of the mapping content including ``graph.hash``."""
        if "hash" not in self._cache:
            extra = json.dumps([self.graph.hash, list(self.bead_types), self.group_size, self.seed])
            self._cache["hash"] = sha256_arrays(self.atom_to_bead, self.bead_masses, self.bead_molecules,
                                                self.cg_bonds, extra=extra)
        return self._cache["hash"]

    def bead_atoms(self, b: int) -> np.ndarray:
        """Atom indices (sorted) of bead ``b``."""
        return np.flatnonzero(self.atom_to_bead == b)

    def check_graph(self, graph: FineGraph, name: str = "graph") -> None:
        """Raise ValueError (naming argument ``name``) if ``graph`` is not the fine graph of this mapping."""
        if graph.hash != self.graph.hash:
            raise ValueError(f"{name}: topology hash {graph.hash[:12]} does not match the mapping's fine graph "
                             f"{self.graph.hash[:12]} (n_atoms {graph.n_atoms} vs {self.graph.n_atoms})")

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Write the mapping (and its fine graph) to an ``.npz`` file atomically."""
        arrays = self.graph.to_arrays("graph_")
        arrays.update(atom_to_bead=self.atom_to_bead, bead_masses=self.bead_masses,
                      bead_molecules=self.bead_molecules, bead_types=np.array(self.bead_types, dtype=str),
                      cg_bonds=self.cg_bonds, group_size=np.array(self.group_size), seed=np.array(self.seed),
                      hash=np.array(self.hash))
        with atomic_write(path) as fh:
            write_npz(fh, arrays)

    @classmethod
    def load(cls, path, graph: FineGraph | None = None) -> "CGMapping":
        """Read a mapping saved by :meth:`save`; if ``graph`` is given, check it matches.

        Raises:
            FileNotFoundError: missing file. ValueError: unreadable file, corrupted content (hash) or
            ``graph`` mismatch.
        """
        from ..io.readers import read_npz

        path = Path(path)
        d = read_npz(path, "CGMapping", required=("atom_to_bead", "bead_masses", "bead_molecules", "bead_types",
                                                   "cg_bonds", "group_size", "seed", "hash"))
        try:
            g = FineGraph.from_saved(d, "graph_", name="path")
            m = cls(g, d["atom_to_bead"].astype(np.int64), d["bead_masses"].astype(np.float64),
                    d["bead_molecules"].astype(np.int64), tuple(d["bead_types"].tolist()),
                    d["cg_bonds"].astype(np.int64).reshape(-1, 2), int(d["group_size"]), int(d["seed"]))
            stored = str(d["hash"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"path: {path} is not a valid CGMapping file: {exc}") from None
        if stored != m.hash:
            raise ValueError(f"path: stored mapping hash {stored[:12]} does not match its content {m.hash[:12]}")
        if graph is not None:
            m.check_graph(graph)
        return m

    # ------------------------------------------------------------------ positions
    def _tree(self):
        """BFS spanning forest of the bond graph as (child, parent) arrays and a sparse LU of the
        path-sum system ``x[c] - x[parent(c)] = d_c``, ``x[root] = x_root`` (lower triangular in BFS order)."""
        if "tree" not in self._cache:
            g = self.graph
            n = g.n_atoms
            adj = sp.coo_matrix((np.ones(len(g.bonds)), (g.bonds[:, 0], g.bonds[:, 1])), shape=(n, n)).tocsr()
            roots = np.unique(g.molecules, return_index=True)[1]
            parent = np.full(n, -1, dtype=np.int64)
            order = [np.flatnonzero(np.bincount(g.molecules)[g.molecules] == 1)]  # single atoms first
            for r in roots[np.bincount(g.molecules)[g.molecules[roots]] > 1]:
                nodes, pred = breadth_first_order(adj, r, directed=False, return_predecessors=True)
                parent[nodes[1:]] = pred[nodes[1:]]
                order.append(nodes)
            order = np.concatenate(order).astype(np.int64)
            rank = np.empty(n, dtype=np.int64)
            rank[order] = np.arange(n)
            child = np.flatnonzero(parent >= 0)
            a = sp.csc_matrix((np.r_[np.ones(n), -np.ones(len(child))],
                               (np.r_[np.arange(n), rank[child]], np.r_[np.arange(n), rank[parent[child]]])),
                              shape=(n, n))
            lu = splu(a, permc_spec="NATURAL", diag_pivot_thresh=0.0) if n else None
            self._cache["tree"] = (child, parent[child], order, lu)
        return self._cache["tree"]

    def make_whole(self, xyz: np.ndarray, box: np.ndarray) -> np.ndarray:
        """Make molecules whole: every bonded atom sits at the minimum image of its BFS parent, i.e. at the
        root atom plus the sum of minimum-image bond vectors along its tree path (one sparse solve, no loop
        over atoms or frames).

        Args: xyz (F, n_atoms, 3) nm; box (F, 3, 3) nm. Returns (F, n_atoms, 3) float64.
        """
        x = np.asarray(xyz, dtype=np.float64)
        child, par, order, lu = self._tree()
        if len(child) == 0:
            return x.copy()
        rhs = x.copy()
        rhs[:, child] = minimum_image(x[:, child] - x[:, par], box[:, None, :, :])
        f = x.shape[0]
        sol = lu.solve(np.ascontiguousarray(rhs[:, order].transpose(1, 0, 2).reshape(len(order), f * 3)))
        out = np.empty_like(x)
        out[:, order] = sol.reshape(len(order), f, 3).transpose(1, 0, 2)
        return out

    def map_positions(self, xyz, box=None, unwrap: bool = True, name: str = "xyz") -> np.ndarray:
        """Bead centres of mass for each frame.

        Args:
            xyz: (F, n_atoms, 3) or (n_atoms, 3) in nm: plain numbers are taken as nm, an ``openmm.unit``
                Quantity is converted; atoms may be wrapped into the box per atom.
            box: None (non-periodic) or box as accepted by :func:`as_box_frames` (nm).
            unwrap: if True (and periodic), bead paths are made continuous in time by accumulating the
                minimum-image displacement between successive frames (needs displacements < half box).
            name: how messages name ``xyz`` (e.g. the trajectory file it came from).

        Returns:
            (F, n_beads, 3) float64 nm. Molecules are made whole before the COM, so beads are never split.

        Raises:
            ValueError: wrong shape, NaN/inf coordinates, bad box, or chemically bonded atoms farther apart than
                any chemical bond (:func:`check_bonded_atoms`: positions in Angstrom passed as nm, or atoms in
                another order than the topology); the message names ``name`` and the distance found.
        """
        from openmm import unit
        from ..util.units import to_array
        x = to_array(xyz, unit.nanometer, name)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1:] != (self.graph.n_atoms, 3):
            raise ValueError(f"{name}: expected shape (n_frames, {self.graph.n_atoms}, 3), got {x.shape}")
        boxes = as_box_frames(box, x.shape[0])
        self.check_bonded_atoms(x, boxes, name)
        if boxes is not None:
            x = self.make_whole(x, boxes)
        beads = centre_of_mass(x, self.graph.masses, self.atom_to_bead, self.n_beads)
        if boxes is not None and unwrap and x.shape[0] > 1:
            beads = unwrap_in_time(beads, boxes)
        return beads


    def check_bonded_atoms(self, xyz, box, name: str = "xyz") -> float:
        """Refuse all-atom positions whose chemically bonded atoms are farther apart than any chemical bond
        (:data:`openmm_mlcg.util.sanity.MAX_CHEMICAL_BOND_NM`, minimum image when ``box`` is given); bonds between
        reduced-unit particles are not checked.

        Args:
            xyz: (F, n_atoms, 3) nm. box: None or (F, 3, 3) nm. name: the argument named in the message.

        Returns:
            the longest checked bond, nm.

        Raises:
            ValueError: naming ``name``, the two atoms, the distance found and the limit, with the likely causes
                (positions in Angstrom instead of nm, or atoms in another order than the topology).
        """
        from ..util import sanity

        if "chemical_bonds" not in self._cache:
            self._cache["chemical_bonds"] = sanity.chemical_bonds(self.graph.atom_types, self.graph.bonds)
        hint = "no chemical bond is that long: positions in Angstrom instead of nm, or atoms in another order than " \
               "the topology?"
        return sanity.check_bonded_distances(xyz, self._cache["chemical_bonds"], box, sanity.MAX_CHEMICAL_BOND_NM,
                                             name, hint)


def _formula(types) -> str:
    counts = {}
    for t in types:
        counts[t] = counts.get(t, 0) + 1
    return "".join(f"{t}{c if c > 1 else ''}" for t, c in sorted(counts.items()))
