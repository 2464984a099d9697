"""The score-term interface: everything summed onto the learned score, as one typed list.

A learned score is only constrained where the training data has density, so the default generator adds
physically motivated terms to it, as machine-learned coarse-grained force fields add a prior energy that the
network corrects (Wang et al., ACS Cent. Sci. 5, 755 (2019), doi:10.1021/acscentsci.8b00913; Charron et al.,
arXiv:2310.18278, the mlcg priors). Each term is a :class:`ScoreTerm` subclass registered under the key of its
table in the bundle (``ModelMetadata.score_terms[key]``, :func:`register_term`):

* ``validate(table)``: the table in its normalised JSON form, or ValueError naming what is wrong;
* ``bind(table, bead_types, graph, device)``: the term for one system (or None when it does not act there);
* ``score(positions, edges, sigma, box, dtype)``: its score ``-grad U / kT`` (n, 3), 1/nm, one call signature
  for every term;
* ``trained_with``: whether the Score GNN was trained as the residual on top of the term (the harmonic bonds),
  or the term is added at run time only (the wall, the fitted pair and angle tables).

Where each table comes from (a data statistic before training, a fit after it) is the trainer's business
(:mod:`openmm_mlcg.train.fits`); the runtime only binds and sums (:class:`ScoreTerms`), in the fixed order of
``order`` (the sum's floating-point order, kept from the first implementation).
"""
from __future__ import annotations

from typing import Any, ClassVar, Dict, List, Mapping, Optional, Tuple, Type

import numpy as np
import torch

from ..util.registry import add_to_registry, lookup

__all__ = ["ScoreTerm", "ScoreTerms", "register_term", "score_term_class", "SCORE_TERMS", "pair_key", "type_codes",
           "data_frames", "validate_score_terms"]

#: key -> ScoreTerm subclass, filled by :func:`register_term` when the term modules are imported
SCORE_TERMS: Dict[str, Type["ScoreTerm"]] = {}


def pair_key(type_a: str, type_b: str) -> str:
    """Key of an unordered bead-type pair in the score-term tables: ``"A|B"``, sorted."""
    a, b = sorted((str(type_a), str(type_b)))
    return f"{a}|{b}"


def type_codes(bead_types) -> Tuple[list, torch.Tensor]:
    """(sorted type names, (n,) long index of each bead's type among them)."""
    types = [str(t) for t in bead_types]
    names = sorted(set(types))
    index = {t: k for k, t in enumerate(names)}
    return names, torch.tensor([index[t] for t in types], dtype=torch.long)


def data_frames(traj, stride: int, max_frames: int):
    """(positions (n, 3) float64 tensor, box (3, 3) tensor or None) of at most ``max_frames`` evenly spaced frames
    of every ``stride``-th frame of a CG trajectory (the frames the data statistics of the terms read)."""
    step = max(1, int(stride))
    x = np.asarray(traj.positions)[::step]
    box_all = None if traj.box is None else np.asarray(traj.box)
    for f in np.unique(np.linspace(0, len(x) - 1, min(len(x), int(max_frames))).round().astype(int)):
        box = None if box_all is None else torch.as_tensor(box_all[f * step] if box_all.ndim == 3 else box_all,
                                                           dtype=torch.float64)
        yield torch.as_tensor(x[f], dtype=torch.float64), box


class ScoreTerm:
    """Base class of a score term (module docstring). Subclasses set ``key`` and ``order`` and implement
    ``validate``, ``bind`` and ``score``."""

    key: ClassVar[str] = ""
    order: ClassVar[int] = 0
    trained_with: ClassVar[bool] = False

    @classmethod
    def validate(cls, table: Mapping) -> Dict[str, Any]:
        """The table in normalised JSON form. Raises ValueError naming the bad entry."""
        raise NotImplementedError

    @classmethod
    def transferred(cls, table: Mapping, bead_types, transfer) -> Mapping:
        """The table with entries added for the bead types of a system (``bead_types`` (n,)) that it does not
        list, from the nearest seen chemistry (``transfer``: :class:`openmm_mlcg.cg.similarity.BeadTypeTransfer`);
        the base class adds none (a fitted correction of one chemistry is not carried to another)."""
        return table

    @classmethod
    def bind(cls, table: Mapping, bead_types, graph, device=None) -> Optional["ScoreTerm"]:
        """The term for one system (``bead_types`` (n,), ``graph`` its SystemGraph), or None where it does
        not act."""
        raise NotImplementedError

    def score(self, positions: torch.Tensor, edges, sigma: Optional[torch.Tensor] = None,
              box: Optional[torch.Tensor] = None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``-grad U / kT`` (n, 3), 1/nm, at ``positions`` (n, 3) nm, with the CG graph ``edges`` (edge_index,
        edge_vec nm, edge_type; both directions) on them, the noise levels ``sigma`` (n, 1) nm of the learned score
        they are added to, and the box (3, 3) nm or None."""
        raise NotImplementedError


def register_term(cls: Type[ScoreTerm]) -> Type[ScoreTerm]:
    """Class decorator: add a :class:`ScoreTerm` subclass to the registry under its ``key``.

    Raises:
        ValueError: no key, or the key is taken by another class.
    """
    return add_to_registry(SCORE_TERMS, cls.key, cls, "score term")


def score_term_class(key: str, what: str = "score_terms") -> Type[ScoreTerm]:
    """The term registered under ``key``; ValueError naming ``what``, the known keys and the given one."""
    return lookup(SCORE_TERMS, key, what, "score terms", sorted(SCORE_TERMS))


def validate_score_terms(tables: Mapping, name: str) -> Dict[str, Dict[str, Any]]:
    """Every table of a metadata ``score_terms`` mapping, validated and normalised, in the terms' order.

    Raises:
        ValueError: naming ``name[key]`` for an unknown term or a malformed table.
    """
    if not isinstance(tables, Mapping):
        raise ValueError(f"{name}: expected a mapping term -> table, got {type(tables).__name__}")
    out = {}
    for key in sorted(tables, key=lambda k: (score_term_class(k, name).order, k)):
        try:
            out[key] = SCORE_TERMS[key].validate(tables[key])
        except ValueError as err:
            raise ValueError(f"{name}[{key!r}]: {err}") from None
    return out


class ScoreTerms:
    """The score terms of one system, summed in their fixed order.

    Args:
        terms: bound :class:`ScoreTerm` instances.
    """

    def __init__(self, terms: List[ScoreTerm]):
        self.terms = sorted(terms, key=lambda t: t.order)

    @classmethod
    def from_metadata(cls, metadata, bead_types, graph, device=None) -> Optional["ScoreTerms"]:
        """The terms a bundle's metadata records (``metadata.score_terms``), bound to a system (``bead_types``
        (n,), ``graph`` its SystemGraph), or None when none acts on it. Bead types no table lists take the
        entries of the nearest seen chemistry (:meth:`ScoreTerm.transferred`) unless the metadata's
        ``unseen_bead_types`` is ``"none"``."""
        transfer = metadata.bead_type_transfer(bead_types, graph)
        bound = [SCORE_TERMS[key].bind(table if transfer is None else
                                       SCORE_TERMS[key].transferred(table, bead_types, transfer),
                                       bead_types, graph, device)
                 for key, table in (metadata.score_terms or {}).items()]
        bound = [t for t in bound if t is not None]
        return cls(bound) if bound else None

    def get(self, key: str) -> Optional[ScoreTerm]:
        """The bound term of a key, or None."""
        return next((t for t in self.terms if t.key == key), None)

    def __len__(self) -> int:
        return len(self.terms)

    def score(self, positions: torch.Tensor, edges, sigma: torch.Tensor, box: Optional[torch.Tensor] = None,
              dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Sum of the terms' scores (n, 3), 1/nm (:meth:`ScoreTerm.score`)."""
        out = torch.zeros(positions.shape, dtype=dtype, device=positions.device)
        for term in self.terms:
            out = out + term.score(positions, edges, sigma, box, dtype)
        return out
