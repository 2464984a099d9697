"""Bead types from chemistry: beads with the same atoms and bonds get one type, across residues and molecules.

Per residue and bead index ("MET0" ... "MET477", ``bead_types="residue"`` of ``CGMapping.from_graph``), nearly
every bead of a protein has its own type. :func:`chemical_bead_types` instead labels a bead by a canonical
fingerprint of its chemistry (the default rule, "transferable", uses it for fragments of multi-bead molecules):

* the multiset of its atom types (elements),
* the multiset of its internal bonds, each as the sorted pair of atom types,
* the multiset of its bonds to other beads, each as (atom type inside, atom type outside),

written as ``<Hill formula>_<4 hex digits of the fingerprint's SHA-1>`` (e.g. ``C2H4O_3fa2``); the formula
keeps it readable, the digits tell apart beads of equal formula but different bonding. A single-atom bead
(an ion) keeps its atom type ("Li"). The label depends only on the chemistry, so it is the same in every
system (it transfers). METIS cuts are not aligned with residues, so equal residues can still give different
beads; repeated units that METIS cuts alike share a type.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence

import numpy as np

__all__ = ["chemical_bead_types", "hill_formula", "bead_type_table", "describe_bead_types"]


def hill_formula(types) -> str:
    """Hill-order formula of atom types: C first, then H, then the rest alphabetically ("C2H6O", "F6LiNO4S2")."""
    counts = Counter(str(t) for t in types)
    order = (["C", "H"] if "C" in counts else []) + sorted(t for t in counts if not ("C" in counts and t in "CH"))
    return "".join(f"{t}{counts[t] if counts[t] > 1 else ''}" for t in order if t in counts)


def chemical_bead_types(atom_types, bonds, atom_to_bead) -> tuple:
    """One chemistry label per bead (see module docstring).

    Args:
        atom_types: (n_atoms,) str (elements or force-field types).  bonds: (m, 2) int atom pairs.
        atom_to_bead: (n_atoms,) int bead index of each atom, beads 0..n_beads-1.

    Returns:
        tuple of str, one per bead.

    Raises:
        ValueError: inconsistent lengths or bead indices.
    """
    types = np.asarray(atom_types).astype(str)
    a2b = np.asarray(atom_to_bead, dtype=np.int64)
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    if a2b.shape != types.shape:
        raise ValueError(f"atom_to_bead: expected shape {types.shape} (one bead per atom), got {a2b.shape}")
    n_beads = int(a2b.max()) + 1 if a2b.size else 0
    atoms = [[] for _ in range(n_beads)]
    internal = [[] for _ in range(n_beads)]
    external = [[] for _ in range(n_beads)]
    for i, b in enumerate(a2b):
        atoms[b].append(types[i])
    for i, j in bonds:
        bi, bj = a2b[i], a2b[j]
        if bi == bj:
            internal[bi].append("-".join(sorted((types[i], types[j]))))
        else:
            external[bi].append(f"{types[i]}>{types[j]}")
            external[bj].append(f"{types[j]}>{types[i]}")
    out = []
    for b in range(n_beads):
        if len(atoms[b]) == 1:
            out.append(atoms[b][0])
            continue
        canon = "|".join(",".join(sorted(x)) for x in (atoms[b], internal[b], external[b]))
        out.append(f"{hill_formula(atoms[b])}_{hashlib.sha1(canon.encode()).hexdigest()[:4]}")
    return tuple(out)


def bead_type_table(mappings: Sequence) -> dict[str, dict]:
    """The bead types of ``mappings`` (each distinct mapping once) with what they are made of.

    Returns:
        {bead type: dict(beads (count), atoms (sorted Hill formulas of its beads' atoms), residues (sorted residue
        names of its atoms))}, sorted by type.
    """
    table: dict[str, dict] = {}
    seen = set()
    for m in mappings:
        if m.hash in seen:
            continue
        seen.add(m.hash)
        a2b = np.asarray(m.atom_to_bead)
        order = np.argsort(a2b, kind="stable")
        edges = np.searchsorted(a2b[order], np.arange(len(m.bead_types) + 1))
        for b, t in enumerate(m.bead_types):
            atoms = order[edges[b]:edges[b + 1]]
            row = table.setdefault(str(t), dict(beads=0, atoms=set(), residues=set()))
            row["beads"] += 1
            row["atoms"].add(hill_formula(m.graph.atom_types[a] for a in atoms))
            row["residues"].update(r for r in (m.graph.residue_names[a] for a in atoms) if r)
    return {t: dict(beads=r["beads"], atoms=sorted(r["atoms"]), residues=sorted(r["residues"]))
            for t, r in sorted(table.items())}


def describe_bead_types(mappings: Sequence) -> str:
    """The bead types of ``mappings`` as one line: ``type (N beads of ATOMS, residues RES); ...``
    (:func:`bead_type_table`), the names ``score.terms.pair_correction_types`` takes."""
    parts = []
    for t, r in bead_type_table(mappings).items():
        res = f", residues {'/'.join(r['residues'])}" if r["residues"] else ""
        parts.append(f"{t} ({r['beads']} bead{'s' if r['beads'] != 1 else ''} of {'/'.join(r['atoms'])}{res})")
    return "; ".join(parts)
