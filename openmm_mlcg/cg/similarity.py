"""Bead types never seen in training borrow the tables of the nearest seen chemistry.

The default generator's fitted tables (friction per bead type, excluded-volume wall per bead-type pair, the
optional harmonic bonds) are keyed by the chemical bead type (:mod:`openmm_mlcg.cg.bead_types`). A polymer the
model never saw brings new types (on the unseen-polymer electrolyte benchmark 126 of 167 beads, on the unseen
polymer chains nearly all): without a rule they got the global friction and no wall at all, so unseen beads could
overlap. The rule here is derived from the training tables alone, with no setting: an unseen type takes the values
of the seen types whose composition is nearest.

**Composition** of a bead type: its atom types and their counts. For the system being run they are read from its
fine graph; for the types the bundle's tables list, from the label's Hill formula (``"C2H4O_3fa2"`` -> C 2, H 4,
O 1; a single-atom bead ``"Li"`` -> Li 1), tokenised with the bundle's atom-type vocabulary (longest symbol first,
so force-field types such as ``B1``, ``S2`` of the polymer benchmark read right: ``"B12S13_b270"`` -> B1 2, S1 3).
A label that does not tokenise (the per-residue types ``"MET0"``) has none and borrows nothing.

**Distance** between two compositions: the mass of atoms (amu) to add or remove to turn one into the other,
``sum_t |n_t - n'_t| m_t``, with each atom type's mass from the system's fine graph (OpenMM's element mass for an
element absent from it, else the mean of the known masses). A bead's size, closest approach and friction follow
its atoms; the mass weighting makes a missing oxygen count more than a missing hydrogen.

**Nearest**: the seen types at the smallest distance (all of them on a tie). A type pair (a, b) takes the table
pairs (a', b') of least ``d(a, a') + d(b, b')`` (either order). How ties are combined is the caller's: the wall
takes the smallest r0 (the wall acts only below it, so the smaller one biases least), the friction the geometric
mean, the bonds the mean.
"""
from __future__ import annotations

import math
from functools import cached_property, lru_cache
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = ["BeadTypeTransfer", "split_pair_key", "geometric_mean", "seen_bead_types"]

Composition = Tuple[Tuple[str, int], ...]


@lru_cache(maxsize=None)
def _element_mass(symbol: str) -> Optional[float]:
    from openmm import unit
    from openmm.app import element

    try:
        return float(element.Element.getBySymbol(symbol).mass.value_in_unit(unit.dalton))
    except KeyError:
        return None


def geometric_mean(values: Sequence[float]) -> float:
    """exp(mean(log v)) of positive values."""
    return float(math.exp(sum(math.log(v) for v in values) / len(values)))


def split_pair_key(key: str) -> Tuple[str, str]:
    """The two bead types of a table's pair key ``"A|B"`` (:func:`openmm_mlcg.priors.base.pair_key`)."""
    a, _, b = str(key).partition("|")
    return a, b


def seen_bead_types(metadata) -> set:
    """The bead types some fitted table of a bundle's metadata lists (friction, score-term pair or angle keys):
    the chemistry the bundle was fitted on."""
    seen = set(metadata.cg_langevin_friction_by_type)
    for table in (metadata.score_terms or {}).values():
        for v in table.values() if isinstance(table, Mapping) else ():
            seen.update(t for k in (v if isinstance(v, Mapping) else ()) for t in str(k).split("|"))
        seen.update(t for k in table if "|" in str(k) for t in str(k).split("|"))
    return seen


def _tokenise(formula: str, symbols: Sequence[str]) -> Optional[Dict[str, int]]:
    """Counts of a Hill formula written with ``symbols`` (longest first), or None when it does not tokenise."""
    counts: Dict[str, int] = {}
    i = 0
    while i < len(formula):
        sym = next((s for s in symbols if formula.startswith(s, i)), None)
        if sym is None:
            return None
        i += len(sym)
        j = i
        while j < len(formula) and formula[j].isdigit():
            j += 1
        counts[sym] = counts.get(sym, 0) + (int(formula[i:j]) if j > i else 1)
        i = j
    return counts or None


class BeadTypeTransfer:
    """Compositions, distances and nearest seen types of bead types (module docstring).

    Args:
        vocabulary: the bundle's atom types (``ModelMetadata.atom_type_vocabulary``).
        bead_types: (n_beads,) bead types of the system being run, or None.
        graph: its :class:`~openmm_mlcg.model.graph.SystemGraph` (``atom_types`` indices into ``vocabulary``,
            ``masses``, ``atom_to_bead``), or None: then compositions come from the labels alone.

    Raises:
        ValueError: ``graph`` given without ``bead_types`` of its bead count.
    """

    def __init__(self, vocabulary: Sequence[str], bead_types=None, graph=None):
        self.vocabulary = [str(v) for v in vocabulary]
        self.symbols = sorted(set(self.vocabulary), key=lambda s: (-len(s), s))
        self._distances: Dict[Tuple[str, str], float] = {}
        self._types = None if graph is None else [str(t) for t in (bead_types if bead_types is not None else [])]
        if graph is not None and len(self._types) != int(graph.n_beads):
            raise ValueError(f"bead_types: expected {int(graph.n_beads)} types (one per bead of graph), got "
                             f"{len(self._types)}")
        self._graph = graph

    @cached_property
    def masses(self) -> Dict[str, float]:
        """Mean mass (amu) of each atom type of the system's fine graph ({} without a graph)."""
        if self._graph is None:
            return {}
        index = np.asarray(self._graph.atom_types.tolist(), dtype=np.int64)
        n = np.bincount(index, minlength=len(self.vocabulary))
        total = np.bincount(index, weights=np.asarray(self._graph.masses.tolist(), dtype=np.float64),
                            minlength=len(self.vocabulary))
        return {self.vocabulary[t]: float(total[t] / n[t]) for t in np.flatnonzero(n)}

    @cached_property
    def system(self) -> Dict[str, Composition]:
        """{bead type: composition} of the system's beads, from its fine graph (the first bead of each type)."""
        if self._graph is None:
            return {}
        index = np.asarray(self._graph.atom_types.tolist(), dtype=np.int64)
        bead = np.asarray(self._graph.atom_to_bead.tolist(), dtype=np.int64)
        counts = np.zeros((len(self._types), len(self.vocabulary)), dtype=np.int64)
        np.add.at(counts, (bead, index), 1)
        first = {t: b for b, t in reversed(list(enumerate(self._types)))}
        return {t: tuple(sorted((self.vocabulary[a], int(counts[b, a])) for a in np.flatnonzero(counts[b])))
                for t, b in first.items()}

    def composition(self, label: str) -> Optional[Composition]:
        """((atom type, count), ...) of a bead type: from the system's graph when it has the type, else from the
        label (module docstring); None when neither gives one."""
        label = str(label)
        if label in self.system:
            return self.system[label]
        head, sep, tail = label.rpartition("_")
        if sep and len(tail) == 4 and all(ch in "0123456789abcdef" for ch in tail):
            counts = _tokenise(head, self.symbols)
        else:
            counts = {label: 1} if label in self.symbols else None
        return None if counts is None else tuple(sorted(counts.items()))

    def mass(self, atom_type: str) -> float:
        """Mass (amu) of an atom type: the system's, an element's, else the mean of the system's."""
        if atom_type in self.masses:
            return self.masses[atom_type]
        m = _element_mass(atom_type)
        if m is not None:
            return m
        return sum(self.masses.values()) / len(self.masses) if self.masses else 1.0

    def distance(self, a: str, b: str) -> float:
        """Composition distance (amu) of two bead types; 0 for equal labels, inf when one has no composition."""
        a, b = sorted((str(a), str(b)))
        if a == b:
            return 0.0
        d = self._distances.get((a, b))
        if d is None:
            ca, cb = self.composition(a), self.composition(b)
            if ca is None or cb is None:
                d = math.inf
            else:
                da, db = dict(ca), dict(cb)
                d = float(sum(abs(da.get(t, 0) - db.get(t, 0)) * self.mass(t) for t in set(da) | set(db)))
            self._distances[(a, b)] = d
        return d

    def nearest(self, label: str, known: Iterable[str]) -> Tuple[str, ...]:
        """The types of ``known`` nearest to ``label`` (all on a tie, sorted); ``(label,)`` when known; () when no
        distance is finite."""
        known = sorted({str(k) for k in known})
        if str(label) in known:
            return (str(label),)
        dist = {k: self.distance(label, k) for k in known}
        dist = {k: d for k, d in dist.items() if math.isfinite(d)}
        if not dist:
            return ()
        best = min(dist.values())
        return tuple(k for k, d in sorted(dist.items()) if d <= best + 1e-6)

    def type_values(self, values: Mapping[str, Any], types: Iterable[str],
                    combine: Callable[[Sequence[Any]], Any] = geometric_mean) -> Dict[str, Any]:
        """{unseen type: value} for the types of ``types`` that ``values`` does not list, combined (default: the
        geometric mean) over their nearest listed types; types with none are left out."""
        out = {}
        for t in sorted({str(t) for t in types} - set(values)):
            near = self.nearest(t, values)
            if near:
                out[t] = combine([values[k] for k in near])
        return out

    def pair_values(self, table: Mapping[str, Any], types: Iterable[str],
                    combine: Callable[[Sequence[Any]], Any] = min) -> Dict[str, Any]:
        """{``"A|B"``: value} for the type pairs of ``types`` that ``table`` (``{"A|B"`` sorted: value}) does not
        list, from the listed pairs (a', b') of least ``d(a, a') + d(b, b')`` over both orders, combined by
        ``combine`` (default: the smallest); pairs with no finite distance are left out."""
        names = sorted({str(t) for t in types})
        listed = [(split_pair_key(k), v) for k, v in table.items()]
        out = {}
        for i, a in enumerate(names):
            for b in names[i:]:
                key = f"{a}|{b}"
                if key in table:
                    continue
                costs = [(min(self.distance(a, p) + self.distance(b, q), self.distance(a, q) + self.distance(b, p)), v)
                         for (p, q), v in listed]
                costs = [(c, v) for c, v in costs if math.isfinite(c)]
                if costs:
                    best = min(c for c, _ in costs)
                    out[key] = combine([v for c, v in costs if c <= best + 1e-6])
        return out
