"""Which panels a figure shows, and in what order, so figures stay readable for hundreds of bead types.

Full results always stay in ``analysis.json``; these choose a readable overview (at most ``max_panels``):

* RDF pairs: up to half of the panels for pairs with an ion type (a bead type whose beads are whole
  molecules, e.g. Li+), then the most populated pairs (number of particle pairs);
* MSD groups: molecule species (centres of mass) first, then bead types with the most particles.

Panels are ordered naturally ("POL2" before "POL10").
"""
from __future__ import annotations

import re

import numpy as np

__all__ = ["natural_key", "select_rdf_pairs", "select_msd_groups", "split_pair", "MAX_PANELS"]

MAX_PANELS = 12


def natural_key(text: str) -> list:
    """Sort key that orders digit runs numerically: natural_key("POL10") > natural_key("POL2")."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(text))]


def _pair_count(types: np.ndarray, a: str, b: str) -> int:
    na, nb = int(np.count_nonzero(types == a)), int(np.count_nonzero(types == b))
    return na * (na - 1) // 2 if a == b else na * nb


def select_rdf_pairs(pairs, bead_types, bead_molecules, max_panels: int = MAX_PANELS) -> list:
    """Up to ``max_panels`` of ``pairs`` ("A-B" keys of ``rdf_by_type``), naturally ordered."""
    types = np.asarray(bead_types).astype(str)
    mol = np.asarray(bead_molecules)
    sizes = np.bincount(mol)
    ion_types = {t for t in set(types.tolist()) if np.all(sizes[mol[types == t]] == 1)}
    pairs = list(dict.fromkeys(pairs))
    names = set(types.tolist())
    split = {p: split_pair(p, names) for p in pairs}
    weight = {p: _pair_count(types, *split[p]) for p in pairs}
    order = sorted(pairs, key=lambda p: (-weight[p], natural_key(p)))
    ions = [p for p in order if set(split[p]) & ion_types]
    others = [p for p in order if p not in set(ions)]
    chosen = ions[: max_panels // 2]
    chosen += others[: max_panels - len(chosen)]
    chosen += ions[len(ions[: max_panels // 2]):][: max_panels - len(chosen)]  # few other pairs: more ion pairs
    return sorted(chosen, key=natural_key)


def split_pair(pair: str, names) -> list:
    """The two bead types [A, B] of an RDF pair name 'A-B'; with '-' inside type names, the split whose both halves
    are in ``names`` ([pair, pair] when none is)."""
    if pair.count("-") == 1:
        return pair.split("-", 1)
    for i in [m.start() for m in re.finditer("-", pair)]:
        a, b = pair[:i], pair[i + 1:]
        if a in names and b in names:
            return [a, b]
    return [pair, pair]


def select_msd_groups(groups: dict, max_panels: int = MAX_PANELS) -> list:
    """Up to ``max_panels`` MSD group names ({name: n_particles}): molecule species first, then bead types
    by particle count; each block naturally ordered."""
    mols = sorted((g for g in groups if g.startswith("mol:")), key=lambda g: (-groups[g], natural_key(g)))
    types = sorted((g for g in groups if not g.startswith("mol:")), key=lambda g: (-groups[g], natural_key(g)))
    mols = mols[:max_panels]
    types = types[: max_panels - len(mols)]
    return sorted(mols, key=natural_key) + sorted(types, key=natural_key)
