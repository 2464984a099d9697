"""OpenMM ``Topology`` and ``System`` for a coarse-grained (CG) mapping.

The CG system has one particle per bead, the bead masses, and no physical forces: the learned integrator
(:class:`openmm_mlcg.openmm.LearnedIntegrator`) moves the beads. A zero-strength ``HarmonicBondForce`` over the
CG bonds tells OpenMM which beads form a molecule, so reporters that wrap positions into the periodic box
(``enforcePeriodicBox``) keep molecules whole. Pass ``enforcePeriodicBox=False`` to ``DCDReporter`` to write the
unwrapped (continuous) trajectory needed for mean-squared displacements.

Source of the CG representation: Fu et al., TMLR 2023, section 3 (METIS beads at centres of mass).
"""
from __future__ import annotations

import re

import numpy as np
import openmm
from openmm import app, unit

from ..util.geometry import check_box

__all__ = ["create_cg_system", "pdb_atom_names", "check_box"]

#: PDB atom names are at most 4 characters.
MAX_NAME_LENGTH = 4
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def pdb_atom_names(bead_types) -> tuple[list[str], dict[str, str]]:
    """Short, PDB-safe atom names (<= 4 characters, ``[A-Za-z0-9]``) for bead types, unique per type.

    A type that already fits is kept ("Li", "TFSI"); longer or unusual ones are sanitised and truncated,
    and collisions (e.g. "PEO12" and "PEO13") get a base-36 suffix ("PEO1" and "PE01").

    Args:
        bead_types: sequence of str, one per bead.

    Returns:
        (names, table): ``names[i]`` is the atom name of bead ``i``; ``table`` maps atom name -> bead type.
    """
    table: dict[str, str] = {}
    by_type: dict[str, str] = {}
    for t in dict.fromkeys(str(b) for b in bead_types):
        base = re.sub(r"[^A-Za-z0-9]", "", t)[:MAX_NAME_LENGTH] or "B"
        name, k = base, 0
        while name in table:
            suffix = ""
            n = k
            while True:
                suffix = _ALPHABET[n % 36] + suffix
                n //= 36
                if n == 0:
                    break
            name = (base[: MAX_NAME_LENGTH - len(suffix)] + suffix)[:MAX_NAME_LENGTH]
            k += 1
        table[name] = t
        by_type[t] = name
    return [by_type[str(b)] for b in bead_types], table


def _molecule_residue_names(mapping) -> list[str]:
    """Residue name per molecule: the fine residue name of its first atom, else 'MOL'."""
    graph = mapping.graph
    n_mol = int(mapping.bead_molecules.max()) + 1 if mapping.n_beads else 0
    names = ["MOL"] * n_mol
    first_atom = {}
    for atom, bead in enumerate(np.asarray(mapping.atom_to_bead)):
        first_atom.setdefault(int(mapping.bead_molecules[bead]), atom)
    for mol, atom in first_atom.items():
        rn = re.sub(r"[^A-Za-z0-9]", "", str(graph.residue_names[atom]))[:MAX_NAME_LENGTH]
        names[mol] = rn or "MOL"
    return names


def create_cg_system(mapping, box=None) -> tuple[app.Topology, openmm.System]:
    """Build the CG ``app.Topology`` and ``openmm.System`` of a mapping.

    Topology: one chain and one residue per molecule (residue name = the molecule's fine residue name,
    or "MOL"), one atom per bead named by :func:`pdb_atom_names`, unique within its residue (bead types kept in
    ``topology.bead_types`` (tuple, per bead) and ``topology.bead_name_table`` (atom name -> bead type)),
    no element, CG bonds as topology bonds, and the periodic box if given.

    System: one particle per bead with the bead mass (amu), a zero-strength ``HarmonicBondForce`` over the
    CG bonds (periodic when a box is given, so reporters keep molecules whole), default periodic box vectors.

    Args:
        mapping: :class:`openmm_mlcg.cg.mapping.CGMapping`.
        box: None (non-periodic) or (3, 3) box row vectors in nm / Quantity (see :func:`check_box`).

    Returns:
        (topology, system).

    Raises:
        TypeError: ``mapping`` lacks the CGMapping fields.
        ValueError: invalid box, or a mapping with no beads / invalid bead masses.
    """
    for attr in ("bead_masses", "bead_molecules", "bead_types", "cg_bonds", "atom_to_bead", "graph"):
        if not hasattr(mapping, attr):
            raise TypeError(f"mapping: expected a CGMapping (missing '{attr}'), got {type(mapping).__name__}")
    masses = np.asarray(mapping.bead_masses, dtype=np.float64)
    n = masses.shape[0]
    if n == 0:
        raise ValueError("mapping: expected at least one bead, got 0")
    if not np.all(np.isfinite(masses)) or np.any(masses <= 0):
        raise ValueError(f"mapping.bead_masses: expected finite positive masses in amu, got min {masses.min()}")
    box_nm = None if box is None else check_box(box)

    # atom names unique within each residue (= molecule), so PDB readers see no duplicate atoms when one
    # molecule holds several beads of one type; ``table`` maps every name back to its bead type
    seen: dict = {}
    keys = []
    for b, t in enumerate(str(x) for x in mapping.bead_types):
        c = seen.get((int(mapping.bead_molecules[b]), t), 0)
        seen[(int(mapping.bead_molecules[b]), t)] = c + 1
        keys.append(t if c == 0 else f"{t}\x00{c}")
    names, key_table = pdb_atom_names(keys)
    table = {name: key.split("\x00")[0] for name, key in key_table.items()}
    resnames = _molecule_residue_names(mapping)
    topology = app.Topology()
    atoms = []
    current_mol, residue = None, None
    for b in range(n):
        mol = int(mapping.bead_molecules[b])
        if mol != current_mol:
            chain = topology.addChain(id=str(mol))
            residue = topology.addResidue(resnames[mol], chain, id=str(mol + 1))
            current_mol = mol
        atoms.append(topology.addAtom(names[b], None, residue, id=str(b + 1)))
    bonds = np.asarray(mapping.cg_bonds, dtype=np.int64).reshape(-1, 2)
    for i, j in bonds:
        topology.addBond(atoms[int(i)], atoms[int(j)])
    topology.bead_types = tuple(str(t) for t in mapping.bead_types)
    topology.bead_name_table = table

    system = openmm.System()
    for m in masses:
        system.addParticle(float(m))
    force = openmm.HarmonicBondForce()
    force.setName("CGBondTopology")
    for i, j in bonds:
        force.addBond(int(i), int(j), 0.0, 0.0)
    if box_nm is not None:
        vecs = [openmm.Vec3(*row) for row in box_nm]
        system.setDefaultPeriodicBoxVectors(*vecs)
        topology.setPeriodicBoxVectors(vecs * unit.nanometer)
        force.setUsesPeriodicBoundaryConditions(True)
    system.addForce(force)
    return topology, system
