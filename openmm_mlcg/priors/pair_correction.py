"""The pair-correction score term: a tabulated radial pair score fitted after training.

Where the Score GNN under-fits a rare contact at its own training frames (Li+ on the PEO chain ends, docs/history.md
ablation 10), the trainer fits, with the network frozen, a radial pair score per listed bead-type pair by
denoising score matching at the sampler's noise level (:mod:`openmm_mlcg.train.fits.pair_correction`); the bundle
records the table and the runtime adds it to the learned score.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import numpy as np
import torch

from .base import ScoreTerm, pair_key, register_term, type_codes

__all__ = ["PairCorrection"]


@register_term
class PairCorrection(ScoreTerm):
    """A tabulated radial pair score added to the learned one: ``ModelMetadata.score_terms["pair_correction"]``.

    For every non-bonded edge (i, j) of a listed bead-type pair with r_min <= r < r_min + (K - 1) dr, bead i gets
    ``g_ab(r) (x_i - x_j) / r``, g linearly interpolated between the K knots r_min + k dr (1/nm; > 0 pushes the
    beads apart). Both directions of every edge are in the graph, so the correction obeys Newton's third law.
    ``openmm_mlcg.train.fits.pair_correction`` fits g by denoising score matching at the sampler's noise level with
    the network frozen (a linear least-squares problem), where the Score GNN under-fits a rare contact. It is
    fitted at the sampler's noise level sigma_b and used as is at every level the sampler evaluates.

    Args:
        bead_types: (n,) bead-type labels of the system. table: ``{"r_min_nm": float, "dr_nm": float,
            "scores": {pair_key: [K values, 1/nm]}}``. device: torch device.

    Attributes:
        keys: the pair keys of the table's rows for this system (pairs whose two types both occur in it).

    Raises:
        ValueError: a malformed table (names the key, expected and actual value).
    """

    def __init__(self, bead_types, table: Mapping, device=None):
        r_min, dr, scores = table.get("r_min_nm"), table.get("dr_nm"), table.get("scores")
        for key, v in (("r_min_nm", r_min), ("dr_nm", dr)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (np.isfinite(v) and v > 0):
                raise ValueError(f"table[{key!r}]: expected a positive finite distance in nm, got {v!r}")
        if not isinstance(scores, Mapping) or not scores:
            raise ValueError(f"table['scores']: expected a non-empty mapping 'A|B' -> [values 1/nm], got {scores!r}")
        lengths = {len(v) if isinstance(v, (list, tuple)) else -1 for v in scores.values()}
        if len(lengths) != 1 or min(lengths) < 2:
            raise ValueError(f"table['scores']: expected lists of one length >= 2 (the knots), got lengths {lengths}")
        for key, v in scores.items():
            if not all(not isinstance(u, bool) and isinstance(u, (int, float)) and np.isfinite(u) for u in v):
                raise ValueError(f"table['scores'][{key!r}]: expected finite numbers (1/nm), got {list(v)}")
        names, code = type_codes(bead_types)
        n_knots = lengths.pop()
        row = torch.full((len(names), len(names)), -1, dtype=torch.long)
        values, self.keys = [], []
        for i, a in enumerate(names):
            for j, b in enumerate(names[i:], start=i):
                v = scores.get(pair_key(a, b))
                if v is None:
                    continue
                row[i, j] = row[j, i] = len(values)
                values.append(np.asarray(v, dtype=float))
                self.keys.append(pair_key(a, b))
        self.type_index = code.to(device)
        self.row = row.to(device)
        self.values = torch.tensor(np.array(values).reshape(-1, n_knots), dtype=torch.float64, device=device)
        self.r_min_nm, self.dr_nm, self.n_knots = float(r_min), float(dr), int(n_knots)

    key = "pair_correction"
    order = 2

    @classmethod
    def validate(cls, table: Mapping) -> Dict[str, Any]:
        """The table checked by the constructor (on no system) and returned as plain JSON."""
        if not isinstance(table, Mapping):
            raise ValueError(f"expected a mapping, got {type(table).__name__}")
        cls([], table)
        return {"r_min_nm": float(table["r_min_nm"]), "dr_nm": float(table["dr_nm"]),
                "scores": {str(k): [float(u) for u in v] for k, v in table["scores"].items()}}

    @classmethod
    def bind(cls, table: Mapping, bead_types, graph=None, device=None) -> Optional["PairCorrection"]:
        """The correction for a system, or None for an empty table."""
        return cls(bead_types, table, device) if table else None

    def terms(self, edges):
        """The edges the correction acts on: (src (e,), table row (e,), left knot (e,), weight of the right knot
        (e,), unit vector pushing src away from dst (e, 3)), float64."""
        edge_index, edge_vec, edge_type = edges
        src, dst = edge_index[0], edge_index[1]
        vec = edge_vec.to(torch.float64)
        r = vec.norm(dim=-1).clamp(min=1e-9)
        rows = self.row[self.type_index[src], self.type_index[dst]]
        t = (r - self.r_min_nm) / self.dr_nm
        keep = (edge_type == 0) & (rows >= 0) & (t >= 0) & (t < self.n_knots - 1)
        t = t[keep]
        k0 = t.floor().long().clamp(max=self.n_knots - 2)
        return src[keep], rows[keep], k0, t - k0, -vec[keep] / r[keep].unsqueeze(-1)

    def score(self, positions, edges, sigma=None, box=None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """The correction's score (n, 3), 1/nm, from the CG graph ``edges`` of :func:`openmm_mlcg.nn.neighbors.
        build_edges` (both directions; only non-bonded edges count) on ``positions`` (n, 3)."""
        n = positions.shape[0]
        src, rows, k0, w, unit = self.terms(edges)
        g = self.values[rows, k0] * (1 - w) + self.values[rows, k0 + 1] * w
        out = torch.zeros((n, 3), dtype=torch.float64, device=unit.device).index_add_(0, src, g.unsqueeze(-1) * unit)
        return out.to(dtype)
