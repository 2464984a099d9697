"""The harmonic-bond score term: CG bonds with the bond-length statistics of the training data.

**Harmonic bonds.** Per bead-type pair of CG-bonded beads, the mean r0 and variance v of the bond length in the
training data; the prior of a bond (i, j) at noise levels sigma_i, sigma_j is the Boltzmann inversion
``U / kT = -ln(p(r) / r^2)`` of the Gaussian p(r) = N(r0 + s^2 / r0, v + s^2), s^2 = sigma_i^2 + sigma_j^2, i.e.
``(r - r0')^2 / (2 v') + 2 ln r``: the bond-length law of the sigma-smoothed density the score describes (noise
of variance s^2 per axis on the bond vector adds s^2 to the radial variance and s^2 / r0 to the mean). Unlike
the wall it is part of the model: the Score GNN is trained as the residual on top of it
(denoising score matching of the sum, :meth:`openmm_mlcg.generators.cg_langevin.CGLangevin.loss`) and the sampler
adds it back. A bond of a type pair the table does not list takes the mean of the pairs of nearest composition
(:meth:`HarmonicBonds.transferred`). Without it the learned score holds a bond only near the training configurations: on the SPE demo, 10 model
steps from true states widen the PEO bonds from 0.015-0.025 nm to 0.025-0.031 nm and stretch their mean by up to
0.02 nm (noisy-data denoising of the same network restores them), and the TFSI bond pair dominates the RDF error.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from ..nn.neighbors import cg_bond_index, pair_vectors
from .base import ScoreTerm, data_frames, pair_key, register_term

__all__ = ["bond_statistics", "bond_parameters", "bond_score", "HarmonicBonds"]


def bond_statistics(trajectories: Sequence, mappings: Sequence, stride: int = 1,
                    max_frames: int = 400) -> Dict[str, List[float]]:
    """Mean (nm) and variance (nm^2) of the CG bond length per unordered bead-type pair in CG trajectories.

    Args:
        trajectories: CG trajectories (``positions`` (F, n, 3) nm, ``box`` (3, 3) or (F, 3, 3) nm or None);
            bond vectors are minimum images. mappings: their :class:`~openmm_mlcg.cg.mapping.CGMapping`.
        stride, max_frames: as :func:`closest_approach`.

    Returns:
        {``pair_key(a, b)``: [r0 nm, variance nm^2]} for every type pair with at least one CG bond; the variance
        is floored at (1e-4 r0)^2 so a rigid bond still has a finite stiffness.

    Raises:
        ValueError: trajectories and mappings of different lengths.
    """
    if len(trajectories) != len(mappings):
        raise ValueError(f"mappings: expected one per trajectory ({len(trajectories)}), got {len(mappings)}")
    lengths: Dict[str, list] = {}
    for traj, mp in zip(trajectories, mappings):
        bonds = cg_bond_index(mp)
        if bonds.shape[1] == 0:
            continue
        types = [str(t) for t in mp.bead_types]
        keys = [pair_key(types[i], types[j]) for i, j in bonds.t().tolist()]
        r = np.stack([pair_vectors(x, bonds[0], bonds[1], box).norm(dim=-1).numpy()
                      for x, box in data_frames(traj, stride, max_frames)])   # (frames, m)
        for k in set(keys):
            lengths.setdefault(k, []).append(r[:, [q == k for q in keys]].ravel())
    out = {}
    for k, parts in lengths.items():
        v = np.concatenate(parts)
        mean = float(v.mean())
        out[k] = [mean, max(float(v.var()), (1e-4 * mean) ** 2)]
    return out


def bond_parameters(bead_types, cg_bonds: torch.Tensor, table: Mapping[str, Sequence[float]]) -> torch.Tensor:
    """(m, 2) float64 [r0 nm, variance nm^2] of each CG bond (``cg_bonds`` (2, m) bead indices) from the
    metadata's ``bond_prior`` table; a bond whose type pair is not listed gets [1, inf] (no prior force)."""
    types = [str(t) for t in bead_types]
    rows = []
    for i, j in cg_bonds.t().tolist():
        r0, var = table.get(pair_key(types[i], types[j]), (1.0, float("inf")))
        rows.append((float(r0), float(var)))
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 2)


def bond_score(positions: torch.Tensor, cg_bonds: torch.Tensor, parameters: torch.Tensor, sigma: torch.Tensor,
               box: Optional[torch.Tensor] = None, batch: Optional[torch.Tensor] = None,
               boxes: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Bond prior score -grad U / kT (n, 3), 1/nm, at noise levels ``sigma`` (module docstring, "Harmonic bonds").

    Args:
        positions: (n, 3) nm. cg_bonds: (2, m) bead indices. parameters: (m, 2) [r0 nm, variance nm^2]
            (:func:`bond_parameters`). sigma: (n, 1) or (n,) nm per bead (0 for the unsmoothed bond).
        box, batch, boxes: minimum image (:func:`openmm_mlcg.nn.neighbors.pair_vectors`).
    """
    i, j = cg_bonds[0], cg_bonds[1]
    dtype = positions.dtype
    d = pair_vectors(positions, i, j, box, batch, boxes)         # x_j - x_i
    r = d.norm(dim=-1).clamp(min=1e-9)
    par = parameters.to(device=positions.device, dtype=dtype)
    s2 = sigma.reshape(-1).to(dtype) ** 2
    s2b = s2[i] + s2[j]
    var, r0 = par[:, 1] + s2b, par[:, 0] + s2b / par[:, 0]    # the bond of the sigma-smoothed density
    # U/kT = (r - r0)^2 / (2 var) + 2 ln r: p(r) (with its r^2 Jacobian) is the Gaussian N(r0, var)
    on = torch.isfinite(par[:, 1]).to(dtype)                  # unlisted type pairs: no prior force
    pull = (on * ((r - r0) / var + 2.0 / r) / r).unsqueeze(-1) * d   # on i: towards j when stretched
    out = torch.zeros_like(positions)
    return out.index_add_(0, i, pull).index_add_(0, j, -pull)


@register_term
class HarmonicBonds(ScoreTerm):
    """The harmonic-bond score term of one system (module docstring); table ``{pair_key: [r0 nm, variance nm^2]}``
    (``ModelMetadata.score_terms["bond_prior"]``). The Score GNN is trained as the residual on top of it."""

    key = "bond_prior"
    order = 1
    trained_with = True

    def __init__(self, cg_bonds: torch.Tensor, parameters: torch.Tensor):
        self.cg_bonds, self.parameters = cg_bonds, parameters

    @classmethod
    def validate(cls, table: Mapping) -> Dict[str, Any]:
        """``{pair_key: [r0 nm, variance nm^2]}``, both positive and finite; ValueError naming the bad entry."""
        if not isinstance(table, Mapping):
            raise ValueError(f"expected a mapping 'A|B' -> [r0 nm, variance nm^2], got {type(table).__name__}")
        for t, v in table.items():
            ok = isinstance(v, (list, tuple)) and len(v) == 2 and all(
                not isinstance(u, bool) and isinstance(u, (int, float)) and math.isfinite(u) and u > 0 for u in v)
            if not ok:
                raise ValueError(f"[{t!r}]: expected [r0 nm, variance nm^2], both positive and finite, got {v!r}")
        return {str(t): [float(v[0]), float(v[1])] for t, v in table.items()}

    @classmethod
    def transferred(cls, table: Mapping, bead_types, transfer) -> Mapping:
        """The table with [r0, variance] for every type pair of ``bead_types`` it does not list: the mean over the
        listed pairs of nearest composition (``transfer``: :class:`openmm_mlcg.cg.similarity.BeadTypeTransfer`)."""
        if not table:
            return table
        mean = lambda rows: [float(np.mean([r[0] for r in rows])), float(np.mean([r[1] for r in rows]))]  # noqa: E731
        return {**transfer.pair_values(table, bead_types, mean), **table}

    @classmethod
    def bind(cls, table: Mapping, bead_types, graph, device=None) -> Optional["HarmonicBonds"]:
        """The bonds of a system (``graph.cg_bonds``; the parameters ``graph.cg_bond_prior`` when the model set
        them, else from the table), or None for an empty table."""
        if not table:
            return None
        par = graph.cg_bond_prior
        if par is None:
            par = bond_parameters(bead_types, graph.cg_bonds, table)
        return cls(graph.cg_bonds.to(device), par.to(device))

    def score(self, positions, edges=None, sigma=None, box=None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """:func:`bond_score` at the noise levels ``sigma`` (n, 1) nm; ``edges`` are not needed."""
        return bond_score(positions.to(dtype), self.cg_bonds, self.parameters, sigma, box)
