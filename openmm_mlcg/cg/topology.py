"""Fine-grained (all-atom) bond graph of a system: atom types, masses, bonds, bond types, molecules.

A :class:`FineGraph` is built from an OpenMM ``app.Topology`` (optionally with its ``openmm.System`` for
masses of particles without an element), an mdtraj ``Topology``, or any file that ``mdtraj.load_topology``
reads (PDB with CONECT records, PSF, GRO, mol2, H5 ...). It is the input of the METIS coarse-graining in
:mod:`openmm_mlcg.cg.mapping` and of the Embedding GNN (paper section 3.1, "Embedding GNN").
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..util.io_utils import atomic_write, sha256_arrays, write_npz

__all__ = ["FineGraph", "BOND_TYPE_CODES"]

#: bond-order code used in ``FineGraph.bond_types`` (OpenMM / mdtraj bond type class names).
BOND_TYPE_CODES = {"Single": 1, "Double": 2, "Triple": 3, "Aromatic": 4, "Amide": 5}
_ORDER_CODES = {1: 1, 2: 2, 3: 3}


def _bond_code(bond_type, order) -> int:
    if bond_type is not None:
        return BOND_TYPE_CODES.get(type(bond_type).__name__, 0)
    if order is not None:
        return _ORDER_CODES.get(int(order), 0)
    return 0


def _canonical_bonds(bonds, bond_types, n_atoms: int):
    """Sort each bond as i<j, drop duplicates and self bonds, sort rows lexicographically."""
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    bond_types = np.asarray(bond_types, dtype=np.int64).reshape(-1)
    if bond_types.shape[0] != bonds.shape[0]:
        raise ValueError(f"bond_types: expected {bonds.shape[0]} entries (one per bond), got {bond_types.shape[0]}")
    if bonds.size and (bonds.min() < 0 or bonds.max() >= n_atoms):
        raise ValueError(f"bonds: expected atom indices in [0, {n_atoms}), got range [{bonds.min()}, {bonds.max()}]")
    keep = bonds[:, 0] != bonds[:, 1]
    bonds, bond_types = np.sort(bonds[keep], axis=1), bond_types[keep]
    order = np.lexsort((bonds[:, 1], bonds[:, 0]))
    bonds, bond_types = bonds[order], bond_types[order]
    if len(bonds):
        first = np.ones(len(bonds), dtype=bool)
        first[1:] = np.any(bonds[1:] != bonds[:-1], axis=1)
        bonds, bond_types = bonds[first], bond_types[first]
    return bonds.reshape(-1, 2), bond_types


def molecule_indices(n_atoms: int, bonds: np.ndarray) -> np.ndarray:
    """Connected components of the bond graph, numbered in order of their first atom. (n_atoms,) int64."""
    if n_atoms == 0:
        return np.zeros(0, dtype=np.int64)
    adj = coo_matrix(
        (np.ones(len(bonds)), (bonds[:, 0], bonds[:, 1])), shape=(n_atoms, n_atoms)
    ).tocsr()
    _, labels = connected_components(adj, directed=False)
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[inverse].astype(np.int64)


@dataclass(frozen=True, eq=False)
class FineGraph:
    """All-atom bond graph.

    Attributes:
        atom_types: (n_atoms,) labels: element symbol ("C", "Li") or explicit bead type ("B1") in reduced units.
        masses: (n_atoms,) float64, amu.
        bonds: (n_bonds, 2) int64, each row i<j, rows unique and sorted lexicographically.
        bond_types: (n_bonds,) int64 code: 0 unspecified, 1 single, 2 double, 3 triple, 4 aromatic, 5 amide.
        molecules: (n_atoms,) int64 connected-component index, numbered by first atom.
        residue_names: (n_atoms,) residue name per atom ("" if unknown); used to name beads.

    Use :meth:`from_arrays`, :meth:`from_openmm`, :meth:`from_mdtraj` or :meth:`from_file` to build one;
    they canonicalise bonds and compute molecules.
    """

    atom_types: tuple
    masses: np.ndarray
    bonds: np.ndarray
    bond_types: np.ndarray
    molecules: np.ndarray
    residue_names: tuple
    _hash: str = field(default="", repr=False, compare=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(cls, atom_types: Sequence[str], masses, bonds, bond_types=None,
                    residue_names: Optional[Sequence[str]] = None) -> "FineGraph":
        """Build from plain arrays (masses in amu, bonds (m, 2) atom indices, bond_types codes or None -> 0).

        Raises:
            ValueError: length mismatches, non-positive or non-finite masses, bond indices out of range.
        """
        atom_types = tuple(str(t) for t in atom_types)
        n = len(atom_types)
        masses = np.asarray(masses, dtype=np.float64).reshape(-1)
        if masses.shape != (n,):
            raise ValueError(f"masses: expected {n} entries (one per atom), got {masses.shape[0]}")
        if not np.all(np.isfinite(masses)) or np.any(masses <= 0):
            raise ValueError(f"masses: expected finite positive values in amu, got min {masses.min() if n else None}")
        bonds = np.asarray(bonds if bonds is not None else np.zeros((0, 2)), dtype=np.int64).reshape(-1, 2)
        if bond_types is None:
            bond_types = np.zeros(len(bonds), dtype=np.int64)
        bonds, bond_types = _canonical_bonds(bonds, bond_types, n)
        if residue_names is None:
            residue_names = ("",) * n
        residue_names = tuple(str(r) for r in residue_names)
        if len(residue_names) != n:
            raise ValueError(f"residue_names: expected {n} entries (one per atom), got {len(residue_names)}")
        masses.setflags(write=False)
        bonds.setflags(write=False)
        bond_types.setflags(write=False)
        molecules = molecule_indices(n, bonds)
        molecules.setflags(write=False)
        return cls(atom_types, masses, bonds, bond_types, molecules, residue_names)

    @classmethod
    def from_openmm(cls, topology, system=None, atom_types: Optional[Sequence[str]] = None,
                    masses=None) -> "FineGraph":
        """Build from an OpenMM ``app.Topology``.

        Args:
            topology: ``openmm.app.Topology`` (bonds from PDB CONECT / templates / force-field files).
            system: optional ``openmm.System``; particle masses are taken from it when given.
            atom_types: optional explicit per-atom labels (default: element symbol, else atom name).
            masses: optional explicit per-atom masses, amu (array or Quantity); overrides everything.

        Raises:
            ValueError: an atom has no element and no mass is available from ``system`` or ``masses``.
        """
        from openmm import unit

        atoms = list(topology.atoms())
        n = len(atoms)
        if system is not None and system.getNumParticles() != n:
            raise ValueError(f"system: expected {n} particles (the topology's atoms), got {system.getNumParticles()}")
        types = [a.element.symbol if a.element is not None else a.name for a in atoms]
        m = None
        if masses is not None:
            from ..util.units import to_array
            m = to_array(masses, unit.dalton, "masses")
        elif system is not None:
            m = np.array([system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(n)])
        else:
            missing = [a.index for a in atoms if a.element is None]
            if missing:
                raise ValueError(f"masses: atoms without element (e.g. index {missing[0]}) need `system` or "
                                 f"`masses`, got neither")
            m = np.array([a.element.mass.value_in_unit(unit.dalton) for a in atoms])
        bonds = [(b[0].index, b[1].index) for b in topology.bonds()]
        codes = [_bond_code(b.type, b.order) for b in topology.bonds()]
        return cls.from_arrays(atom_types if atom_types is not None else types, m, bonds, codes,
                               [a.residue.name for a in atoms])

    @classmethod
    def from_mdtraj(cls, topology, atom_types: Optional[Sequence[str]] = None, masses=None) -> "FineGraph":
        """Build from an ``mdtraj.Topology`` (element symbols and masses; explicit overrides as in
        :meth:`from_openmm`).

        Raises:
            ValueError: an atom has a virtual/unknown element and no explicit ``masses`` were given.
        """
        atoms = list(topology.atoms)
        types = [a.element.symbol if a.element is not None and a.element.symbol not in ("VS", "") else a.name
                 for a in atoms]
        if masses is None:
            bad = [a.index for a in atoms if a.element is None or not a.element.mass > 0]
            if bad:
                raise ValueError(f"masses: atom {bad[0]} has no element mass; pass explicit `masses`, got None")
            masses = [a.element.mass for a in atoms]
        else:
            from openmm import unit
            from ..util.units import to_array
            masses = to_array(masses, unit.dalton, "masses")
        bonds = [(b[0].index, b[1].index) for b in topology.bonds]
        codes = [_bond_code(b.type, b.order) for b in topology.bonds]
        return cls.from_arrays(atom_types if atom_types is not None else types, masses, bonds, codes,
                               [a.residue.name for a in atoms])

    @classmethod
    def from_file(cls, path, atom_types: Optional[Sequence[str]] = None, masses=None) -> "FineGraph":
        """Build from a topology file read by ``mdtraj.load_topology`` (PDB with CONECT records, PSF, mol2,
        H5, ...). Bonds come from the file (GRO has none: use PDB/PSF, or :meth:`from_openmm` with a
        force-field-built topology). A PSF's own masses are used (hydrogen mass repartitioning, united atoms),
        read with ``openmm.app.CharmmPsfFile``; other formats give element masses. ``masses`` overrides both.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: mdtraj cannot read ``path``.
        """
        import mdtraj

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"path: topology file {path} does not exist")
        try:
            top = mdtraj.load_topology(str(path))
        except Exception as exc:  # mdtraj raises many kinds of errors for bad files
            from ..io.readers import describe_file

            raise ValueError(f"path: could not read topology file {path} with mdtraj (expected a PDB with CONECT "
                             f"records, PSF or another mdtraj topology; found {describe_file(path)}): {exc}") from exc
        if top.n_atoms == 0:
            from ..io.readers import describe_file

            raise ValueError(f"path: topology file {path} holds no atoms (expected a PDB with CONECT records, PSF "
                             f"or another mdtraj topology; found {describe_file(path)})")
        if masses is None and path.suffix.lower() == ".psf":
            masses = _psf_masses(path, top.n_atoms)
        return cls.from_mdtraj(top, atom_types=atom_types, masses=masses)

    # ------------------------------------------------------------------ properties
    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return len(self.atom_types)

    @property
    def n_bonds(self) -> int:
        """Number of bonds."""
        return int(self.bonds.shape[0])

    @property
    def n_molecules(self) -> int:
        """Number of molecules (the bond graph's connected components)."""
        return int(self.molecules.max()) + 1 if self.n_atoms else 0

    @property
    def hash(self) -> str:
        """SHA-256 hex digest of all content (types, masses, bonds, bond types, residue names)."""
        if not self._hash:
            extra = json.dumps([list(self.atom_types), list(self.residue_names)])
            object.__setattr__(self, "_hash", sha256_arrays(
                self.masses, self.bonds, self.bond_types, self.molecules, extra=extra))
        return self._hash

    def type_indices(self, vocabulary: Sequence[str]) -> np.ndarray:
        """(n_atoms,) int64 index of each atom type in ``vocabulary``.

        Raises:
            ValueError: an atom type is not in ``vocabulary``.
        """
        lookup = {t: i for i, t in enumerate(vocabulary)}
        unknown = sorted(set(self.atom_types) - set(lookup))
        if unknown:
            raise ValueError(f"vocabulary: expected to contain all atom types, missing {unknown} "
                             f"(vocabulary {list(vocabulary)})")
        return np.array([lookup[t] for t in self.atom_types], dtype=np.int64)

    # ------------------------------------------------------------------ persistence
    def to_arrays(self, prefix: str = "") -> dict:
        """Arrays for ``np.savez`` (used by :meth:`save` and by ``CGMapping.save``)."""
        return {
            prefix + "atom_types": np.array(self.atom_types, dtype=str),
            prefix + "masses": self.masses,
            prefix + "bonds": self.bonds,
            prefix + "bond_types": self.bond_types,
            prefix + "residue_names": np.array(self.residue_names, dtype=str),
            prefix + "hash": np.array(self.hash),
        }

    @classmethod
    def from_saved(cls, data, prefix: str = "", name: str = "path") -> "FineGraph":
        """Inverse of :meth:`to_arrays`; checks the stored hash.

        Raises:
            ValueError: the stored hash does not match the content (corrupted or edited file).
        """
        g = cls.from_arrays(data[prefix + "atom_types"].tolist(), data[prefix + "masses"], data[prefix + "bonds"],
                            data[prefix + "bond_types"], data[prefix + "residue_names"].tolist())
        stored = str(data[prefix + "hash"])
        if stored != g.hash:
            raise ValueError(f"{name}: stored fine-graph hash {stored[:12]} does not match its content {g.hash[:12]}")
        return g

    def save(self, path) -> None:
        """Write an ``.npz`` file atomically."""
        with atomic_write(path) as fh:
            write_npz(fh, self.to_arrays())

    @classmethod
    def load(cls, path) -> "FineGraph":
        """Read a file written by :meth:`save`.

        Raises:
            FileNotFoundError: missing file. ValueError: unreadable file or hash mismatch.
        """
        from ..io.readers import read_npz

        path = Path(path)
        data = read_npz(path, "FineGraph")
        try:
            return cls.from_saved(data, name="path")
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ValueError) and str(exc).startswith("path:"):
                raise
            raise ValueError(f"path: {path} is not a valid FineGraph file: {exc}") from None


def _psf_masses(path: Path, n_atoms: int):
    """Per-atom masses (amu) stored in a PSF file, or None if OpenMM cannot read them."""
    from openmm import app, unit

    try:
        atoms = app.CharmmPsfFile(str(path)).atom_list
    except Exception:  # an unusual PSF flavour: fall back to element masses
        return None
    masses = [a.mass.value_in_unit(unit.dalton) if hasattr(a.mass, "value_in_unit") else float(a.mass)
              for a in atoms]
    return masses if len(masses) == n_atoms and all(m > 0 for m in masses) else None
