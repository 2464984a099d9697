"""CG bond angles and the tabulated bond-angle correction of the ``"cg_langevin"`` sampler's score.

Why: on the SPE demo the Score GNN (pair distances in, pair-vector sums out) misses the TFSI- conformers. The
CF3-NO4S2-CF3 angle of the reference is bimodal (cis near 85 deg, trans near 165 deg, a dip of 1/20 of the peaks
in between), the learned rollouts' is one broad hump at 130 deg, where the data have almost nothing (docs/history.md,
ablation 12). A pair term cannot put a barrier in an angle; a bonded three-body term can, as the angle
potentials of coarse-grained force fields do.

What: for every CG angle (beads a - b - c with b bonded to both a and c) of a listed angle type, bead positions
get the score ``-grad U_abc(theta) / kT``, U linearly interpolated on knots in theta (degrees). The table is fitted
after training by iterative Boltzmann inversion against the training frames' angle distributions
(:mod:`openmm_mlcg.train.fits.angle_correction`; Reith, Puetz & Mueller-Plathe, J. Comput. Chem. 24, 1624 (2003),
doi:10.1002/jcc.10307). It travels in the bundle metadata (``angle_correction``) and is used as is at every
noise level the sampler evaluates, like :class:`openmm_mlcg.priors.pair_correction.PairCorrection`.

Units: positions nm, angles rad inside, knots degrees in the table, U in kT, score 1/nm.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from ..nn.neighbors import pair_vectors
from .base import ScoreTerm, register_term

__all__ = ["angle_key", "angle_keys", "angle_triplets", "bond_angles", "AngleCorrection"]


def angle_key(type_a: str, type_b: str, type_c: str) -> str:
    """Key of the angle type a - b - c (b the centre): ``"A|B|C"`` with the two ends sorted."""
    a, c = sorted((str(type_a), str(type_c)))
    return f"{a}|{type_b}|{c}"


def angle_keys(bead_types, triplets) -> List[str]:
    """:func:`angle_key` of every angle (m,) of ``triplets`` (m, 3) [a, b, c], from the bead types (n,)."""
    t = [str(x) for x in bead_types]
    return [angle_key(t[a], t[b], t[c]) for a, b, c in np.asarray(triplets, dtype=np.int64).reshape(-1, 3)]


def angle_triplets(cg_bonds) -> np.ndarray:
    """(m, 3) int64 bead indices [a, b, c] of every pair of CG bonds that share bead b (a < c).

    Args:
        cg_bonds: (n_bonds, 2) bead index pairs (``CGMapping.cg_bonds``).

    Raises:
        ValueError: ``cg_bonds`` is not of shape (n_bonds, 2).
    """
    bonds = np.asarray(cg_bonds, dtype=np.int64)
    if bonds.size == 0:
        return np.zeros((0, 3), dtype=np.int64)
    if bonds.ndim != 2 or bonds.shape[1] != 2:
        raise ValueError(f"cg_bonds: expected shape (n_bonds, 2), got {bonds.shape}")
    neighbours: dict = {}
    for i, j in bonds:
        neighbours.setdefault(int(i), set()).add(int(j))
        neighbours.setdefault(int(j), set()).add(int(i))
    out = [(a, b, c) for b, ns in sorted(neighbours.items()) for a in sorted(ns) for c in sorted(ns) if a < c]
    return np.array(out, dtype=np.int64).reshape(-1, 3)


def bond_angles(positions: torch.Tensor, triplets: torch.Tensor, box: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Angles a-b-c (m,) in rad, in [0, pi], of ``positions`` (n, 3) nm; ``box`` (3, 3) nm for the minimum image."""
    u = pair_vectors(positions, triplets[:, 1], triplets[:, 0], box)      # b -> a
    v = pair_vectors(positions, triplets[:, 1], triplets[:, 2], box)      # b -> c
    return torch.atan2(torch.linalg.cross(u, v).norm(dim=-1), (u * v).sum(-1))


@register_term
class AngleCorrection(ScoreTerm):
    """A tabulated bond-angle potential U_abc(theta) / kT per angle type, as a score (module docstring):
    ``ModelMetadata.score_terms["angle_correction"]``.

    Args:
        bead_types: (n,) bead-type labels. cg_bonds: (n_bonds, 2) bead index pairs of the system.
        table: ``{"knots_deg": [K increasing angles in [0, 180]], "U": {angle_key: [K values, kT]}}``.
        device: torch device.

    Attributes:
        keys: the table's angle types that occur in this system; triplets: (m, 3) long, the angles it acts on.

    Raises:
        ValueError: a malformed table (names the key, expected and actual value).
    """

    key = "angle_correction"
    order = 3

    def __init__(self, bead_types, cg_bonds, table: Mapping, device=None):
        knots, values = self.knots_and_values(table)
        trip = angle_triplets(cg_bonds)
        names = sorted(values)
        rows = np.array([names.index(k) if k in values else -1 for k in angle_keys(bead_types, trip)],
                        dtype=np.int64)
        keep = rows >= 0
        self.keys = sorted({names[r] for r in rows[keep]})
        self.triplets = torch.as_tensor(trip[keep], dtype=torch.long, device=device)
        self.rows = torch.as_tensor(rows[keep], dtype=torch.long, device=device)
        self.values = torch.tensor(np.array([values[k] for k in names]), dtype=torch.float64, device=device)
        self.knots_rad = torch.tensor(np.radians(knots), dtype=torch.float64, device=device)

    @classmethod
    def validate(cls, table: Mapping) -> Dict[str, Any]:
        """The table as plain JSON (``knots_deg``, ``U``); ValueError naming the bad entry."""
        knots, values = cls.knots_and_values(table)
        return {"knots_deg": [float(k) for k in knots], "U": {k: [float(u) for u in v] for k, v in values.items()}}

    @staticmethod
    def knots_and_values(table: Mapping) -> Tuple[np.ndarray, dict]:
        """(knots in degrees (K,), {key: (K,) kT}) of a table; ValueError naming the key if malformed."""
        if not isinstance(table, Mapping):
            raise ValueError(f"table: expected a mapping with 'knots_deg' and 'U', got {type(table).__name__}")
        knots = np.asarray(table.get("knots_deg", []), dtype=float)
        if knots.ndim != 1 or knots.size < 2 or not np.all(np.diff(knots) > 0) or knots[0] < 0 or knots[-1] > 180:
            raise ValueError(f"table['knots_deg']: expected >= 2 increasing angles in [0, 180] deg, got "
                             f"{table.get('knots_deg')!r}")
        values = table.get("U")
        if not isinstance(values, Mapping) or not values:
            raise ValueError(f"table['U']: expected a non-empty mapping 'A|B|C' -> [values kT], got {values!r}")
        out = {}
        for key, v in values.items():
            arr = np.asarray(v, dtype=float) if isinstance(v, (list, tuple)) else np.array([np.nan])
            if not isinstance(key, str) or key.count("|") != 2 or arr.shape != knots.shape or \
                    not np.all(np.isfinite(arr)):
                raise ValueError(f"table['U'][{key!r}]: expected {knots.size} finite values (kT) under a key "
                                 f"'A|B|C', got {v!r}")
            out[key] = arr
        return knots, out

    @classmethod
    def bind(cls, table: Mapping, bead_types, graph, device=None) -> Optional["AngleCorrection"]:
        """The correction for a system (``graph``: its SystemGraph, whose ``cg_bonds`` (2, m) give the angles),
        or None for an empty table."""
        return cls(bead_types, graph.cg_bonds.t().cpu().numpy(), table, device) if table else None

    def _interp(self, theta: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(U (m,) kT, dU/dtheta (m,) kT/rad), piecewise linear; constant outside the knots."""
        k = self.knots_rad
        t = torch.bucketize(theta, k).clamp(1, k.numel() - 1)
        lo, hi = k[t - 1], k[t]
        v0, v1 = self.values[self.rows, t - 1], self.values[self.rows, t]
        inside = (theta >= k[0]) & (theta <= k[-1])
        slope = torch.where(inside, (v1 - v0) / (hi - lo), torch.zeros_like(theta))
        w = ((theta - lo) / (hi - lo)).clamp(0, 1)
        return v0 + w * (v1 - v0), slope

    def energy(self, positions: torch.Tensor, box: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Total U / kT (scalar, float64) at ``positions`` (n, 3) nm."""
        theta = bond_angles(positions.to(torch.float64), self.triplets, None if box is None else box.to(torch.float64))
        return self._interp(theta)[0].sum()

    def score(self, positions: torch.Tensor, edges=None, sigma=None, box: Optional[torch.Tensor] = None,
              dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``-grad U / kT`` (n, 3), 1/nm, at ``positions`` (n, 3) nm (analytic; zero net force and torque);
        ``edges`` and ``sigma`` are not needed.

        Near theta = 0 or 180 deg the gradient of theta grows as 1 / sin(theta); the fit keeps the table flat in
        its first and last interval, and sin(theta) is bounded below by 1e-6 here.
        """
        from ..nn.neighbors import pair_vectors

        out = torch.zeros(positions.shape, dtype=torch.float64, device=positions.device)
        if self.triplets.numel() == 0:
            return out.to(dtype)
        x = positions.to(torch.float64)
        b = None if box is None else box.to(torch.float64)
        a_, b_, c_ = self.triplets[:, 0], self.triplets[:, 1], self.triplets[:, 2]
        u, v = pair_vectors(x, b_, a_, b), pair_vectors(x, b_, c_, b)
        ru, rv = u.norm(dim=-1, keepdim=True).clamp(min=1e-12), v.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        uh, vh = u / ru, v / rv
        cos = (uh * vh).sum(-1, keepdim=True).clamp(-1.0, 1.0)
        theta = torch.atan2(torch.linalg.cross(u, v).norm(dim=-1), (u * v).sum(-1))
        _, slope = self._interp(theta)
        sin = torch.sqrt((1.0 - cos * cos).clamp(min=1e-12)).clamp(min=1e-6)
        ga = -(vh - cos * uh) / (ru * sin)             # d theta / d x_a
        gc = -(uh - cos * vh) / (rv * sin)             # d theta / d x_c
        f = -slope.unsqueeze(-1)                       # -dU/dtheta
        out.index_add_(0, a_, f * ga).index_add_(0, c_, f * gc).index_add_(0, b_, -f * (ga + gc))
        return out.to(dtype)
