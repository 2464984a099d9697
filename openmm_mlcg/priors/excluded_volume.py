"""The excluded-volume score term: a soft wall below the closest non-bonded approach in the training data.

A learned score is only constrained where the training data has density. Two Li+ ions never come closer
than ~0.45 nm in PEO/LiTFSI, so nothing tells the Score GNN that they repel at 0.1 nm, and in a rollout two
ions bound to the same ether oxygens fall onto each other (SPE demo: Li-Li pairs at 0.005 nm, g(r) error 17).
Machine-learned coarse-grained force fields meet the same hole and add a fixed prior energy that the network
corrects: a repulsion below the distances seen in the data, and harmonic bonds (Wang et al., ACS Cent. Sci. 5,
755 (2019), doi:10.1021/acscentsci.8b00913, "prior energy"; Charron et al., arXiv:2310.18278, the mlcg priors).

**Excluded volume.** For every unordered pair of bead types (a, b), ``r0_ab`` is the smallest non-bonded
distance (pairs that are not CG-bonded) between beads of those types in the training frames (the cutoff when
none came closer), and the prior adds the score of ``U_ab(r) / kT = ((r0_ab - r) / w)^2`` for ``r < r0_ab``, 0
beyond: it is zero wherever the data has density, so it does not bias the learned equilibrium distribution
there. The width w is a multiple of the sampler's largest sigma (``3 sigma``: the wall's oscillation is resolved
at omega h ~ 1, stable below 2). Type pairs the table does not list (chemistry not in the training data) get no
wall of their own; they take the wall of the nearest seen chemistry (:meth:`ExcludedVolume.transferred`,
:mod:`openmm_mlcg.cg.similarity`). It is added at run time only.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from ..nn.neighbors import build_edges, cg_bond_index
from .base import ScoreTerm, data_frames, pair_key, register_term, type_codes

__all__ = ["closest_approach", "ExcludedVolume"]


def closest_approach(trajectories: Sequence, mappings: Sequence, cutoff_nm: float, stride: int = 1,
                     max_frames: int = 400) -> Dict[str, float]:
    """Smallest non-bonded distance (nm) per unordered bead-type pair in CG trajectories.

    Args:
        trajectories: CG trajectories (``positions`` (F, n, 3) nm, ``box`` (3, 3) or (F, 3, 3) nm or None).
        mappings: their :class:`~openmm_mlcg.cg.mapping.CGMapping` (``bead_types``, ``cg_bonds``).
        cutoff_nm: radius searched, nm; a pair of types never closer than this gets ``cutoff_nm``.
        stride: frames per model step (every ``stride``-th frame is used). max_frames: at most this many frames
            per trajectory, evenly spaced.

    Returns:
        {``pair_key(a, b)``: r0 nm} for every pair of bead types that has at least one non-bonded pair of beads.

    Raises:
        ValueError: ``cutoff_nm`` not positive, or trajectories and mappings of different lengths.
    """
    if not (float(cutoff_nm) > 0):
        raise ValueError(f"cutoff_nm: expected a positive distance in nm, got {cutoff_nm!r}")
    if len(trajectories) != len(mappings):
        raise ValueError(f"mappings: expected one per trajectory ({len(trajectories)}), got {len(mappings)}")
    out: Dict[str, float] = {}
    for traj, mp in zip(trajectories, mappings):
        names, code = type_codes(mp.bead_types)
        nt = len(names)
        counts = np.bincount(code.numpy(), minlength=nt)
        best = torch.full((nt * nt,), float(cutoff_nm), dtype=torch.float64)
        bonds = cg_bond_index(mp)
        for x, box in data_frames(traj, stride, max_frames):
            ei, vec, et = build_edges(x, box, float(cutoff_nm), bonds)
            keep = et == 0
            if not bool(keep.any()):
                continue
            a, b = code[ei[0, keep]], code[ei[1, keep]]
            slot = torch.minimum(a, b) * nt + torch.maximum(a, b)
            best = best.scatter_reduce(0, slot, vec[keep].norm(dim=-1), reduce="amin")
        bonded = _bonded_only_pairs(code, bonds, counts)
        for i in range(nt):
            for j in range(i, nt):
                if (i == j and counts[i] < 2) or (i, j) in bonded:
                    continue
                key = pair_key(names[i], names[j])
                out[key] = min(out.get(key, float("inf")), float(best[i * nt + j]))
    return out


def _bonded_only_pairs(code: torch.Tensor, bonds: torch.Tensor, counts) -> set:
    """Type pairs (i <= j, type codes) whose every bead pair is CG-bonded (no non-bonded pair exists, e.g. the
    two beads of one molecule type present once): they get no wall."""
    n_bonded: Dict[Tuple[int, int], int] = {}
    for u, v in {(min(u, v), max(u, v)) for u, v in bonds.t().tolist() if u != v}:
        a, b = sorted((int(code[u]), int(code[v])))
        n_bonded[(a, b)] = n_bonded.get((a, b), 0) + 1
    out = set()
    for (a, b), nb in n_bonded.items():
        total = counts[a] * (counts[a] - 1) // 2 if a == b else counts[a] * counts[b]
        if nb >= total:
            out.add((a, b))
    return out


@register_term
class ExcludedVolume(ScoreTerm):
    """The soft-wall score term of one system (module docstring); table ``{"r0_nm": {pair_key: r0 nm},
    "width_nm": w}`` (``ModelMetadata.score_terms["excluded_volume"]``).

    Args:
        bead_types: (n,) bead-type labels of the system. table_nm: {``pair_key``: r0 nm} (the metadata's
            ``excluded_volume_nm``). width_nm: w, nm. device: torch device.

    Raises:
        ValueError: ``width_nm`` not positive, or a negative or non-finite r0.
    """

    def __init__(self, bead_types, table_nm: Mapping[str, float], width_nm: float, device=None):
        if not (float(width_nm) > 0 and np.isfinite(float(width_nm))):
            raise ValueError(f"width_nm: expected a positive finite width in nm, got {width_nm!r}")
        names, code = type_codes(bead_types)
        r0 = torch.zeros(len(names), len(names), dtype=torch.float64)
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                v = float(table_nm.get(pair_key(a, b), 0.0))
                if not (np.isfinite(v) and v >= 0):
                    raise ValueError(f"table_nm[{pair_key(a, b)!r}]: expected a distance >= 0 nm, got {v!r}")
                r0[i, j] = v
        self.type_index = code.to(device)
        self.r0_nm = r0.to(device)
        self.width_nm = float(width_nm)

    key = "excluded_volume"
    order = 0

    @classmethod
    def validate(cls, table: Mapping) -> Dict[str, Any]:
        """``{"r0_nm": {pair_key: r0 >= 0 nm}, "width_nm": w > 0}``; ValueError naming the bad entry."""
        if not isinstance(table, Mapping):
            raise ValueError(f"expected a mapping with 'r0_nm' and 'width_nm', got {type(table).__name__}")
        walls, w = table.get("r0_nm"), table.get("width_nm")
        if not isinstance(walls, Mapping):
            raise ValueError(f"['r0_nm']: expected a mapping 'A|B' -> nm, got {type(walls).__name__}")
        for t, v in walls.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v >= 0):
                raise ValueError(f"['r0_nm'][{t!r}]: expected a distance >= 0 nm, got {v!r}")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not (math.isfinite(w) and w > 0):
            raise ValueError(f"['width_nm']: expected a positive finite width (nm), got {w!r}")
        return {"r0_nm": {str(t): float(v) for t, v in walls.items()}, "width_nm": float(w)}

    @classmethod
    def transferred(cls, table: Mapping, bead_types, transfer) -> Mapping:
        """The table with a wall for every type pair of ``bead_types`` it does not list: the smallest r0 of the
        listed pairs of nearest composition (``transfer``: :class:`openmm_mlcg.cg.similarity.BeadTypeTransfer`)."""
        walls = (table or {}).get("r0_nm") or {}
        if not walls:
            return table
        return {**table, "r0_nm": {**transfer.pair_values(walls, bead_types, min), **walls}}

    @classmethod
    def bind(cls, table: Mapping, bead_types, graph=None, device=None) -> Optional["ExcludedVolume"]:
        """The wall of a system, or None when the table lists no pair."""
        if not table or not table.get("r0_nm"):
            return None
        return cls(bead_types, table["r0_nm"], table["width_nm"], device)

    def score(self, positions, edges, sigma=None, box=None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """The wall's score -grad U / kT (n, 3), 1/nm, from the CG graph ``edges`` (edge_index, edge_vec nm,
        edge_type) of :func:`openmm_mlcg.nn.neighbors.build_edges` (both directions; only non-bonded edges count);
        ``positions``, ``sigma`` and ``box`` are not needed."""
        edge_index, edge_vec, edge_type = edges
        n = self.type_index.shape[0]
        src, dst = edge_index[0], edge_index[1]
        vec = edge_vec.to(dtype)
        r = vec.norm(dim=-1).clamp(min=1e-9)
        r0 = self.r0_nm.to(dtype)[self.type_index[src], self.type_index[dst]]
        depth = torch.relu(r0 - r) * (edge_type == 0).to(dtype)
        # U/kT = (depth / w)^2 per pair; vec = x_dst - x_src, so the force on src points along -vec
        push = (-2.0 * depth / (self.width_nm ** 2) / r).unsqueeze(-1) * vec
        return torch.zeros((n, 3), dtype=dtype, device=vec.device).index_add_(0, src, push)
