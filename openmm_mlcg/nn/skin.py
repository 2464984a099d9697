"""Neighbour list with a skin, reused across the Score GNN passes of one model step.

The default ``"cg_langevin"`` model step makes 16 Score GNN passes on positions that move a fraction of the
cutoff per Langevin sub-step. :class:`SkinNeighborList` searches the candidate pairs at ``cutoff + skin``
(Verlet, Phys. Rev. 159, 98 (1967)) with vesin-torch's cell list (its half list and periodic shifts; the
``"cell"`` backend of :mod:`openmm_mlcg.nn.neighbors` otherwise) and, at each pass, keeps the candidates closer
than the cutoff. It searches again only when the two largest bead displacements since the last search sum to
more than the skin (two beads approach each other by at most the sum of their displacements). The displacement
is the raw ``x - x_search``: positions unwrapped within a model step (the sampler never wraps) reuse the list,
and a bead wrapped into the box (a jump by a box vector) searches again.

Exactness: the edges of every pass are those of :func:`~openmm_mlcg.nn.neighbors.build_edges` on the same
positions, bit for bit: the same pairs in the same (src, dst) sorted order, the same CG-bond types, and
minimum-image vectors made by the same floating-point operations (:meth:`SkinNeighborList._filter`), so the GNN's
output and the trajectory are unchanged. Why: the skin is clipped to ``cutoff + skin <= 0.98 x half the smallest
box width``, where OpenMM's minimum image is the shortest image and a pair within ``cutoff + skin`` has one image;
a pair within the cutoff now was within ``cutoff + skin`` at the search; the search threshold is lowered by a few
rounding units of the positions' dtype (``64 eps (|x|max + cutoff + skin)``, vesin's margin in
``build_edges``). vesin-torch 0.6's own Verlet caching (``NeighborList(skin=...)``) also returns the exact pairs,
but only as an unsorted list that ``build_edges``' union, sort and minimum image must then process at every
pass, which is most of a search's cost at these sizes.

Skin rule (:func:`default_skin_nm`): ``skin = min(5 velocity_std, cutoff / 2)``, ``velocity_std`` being the
bundle's per-axis RMS displacement of a bead per model step (nm); 0.30 nm for the SPE demo (velocity_std 0.063
nm, cutoff 0.6 nm). Measured (``benchmarks/bench_step_cost.py``, ``benchmarks/results/current/step_cost_cpu.json``):
within a model step the fastest bead moves about 0.05 nm per sub-step and 2.5-4.5 velocity_std in all, so 5
velocity_std gives 2-4 searches per 16 passes; a wider skin saves few searches and pays per pass for candidates
that grow as ``(cutoff + skin)^3``.

Host synchronisations per pass: the rebuild decision (two scalars, one transfer) and the edge count (the graph's
size is data dependent, as in ``build_edges``); a search syncs as ``build_edges`` does.
Units: nm. Not TorchScript (runtime code, like ``build_edges``).
"""
from __future__ import annotations

import math

import torch

from ..util.geometry import minimum_image
from .neighbors import (
    BACKENDS,
    DEFAULT_BACKEND,
    _search,
    bond_keys,
    build_edges,
    pair_vectors,
)

__all__ = ["MAX_SKIN_FRACTION", "SKIN_PER_VELOCITY_STD", "SkinNeighborList", "default_skin_nm"]

Edges = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

#: skin / velocity_std of :func:`default_skin_nm` (see the module docstring and the benchmark)
SKIN_PER_VELOCITY_STD = 5.0
#: largest skin as a fraction of the cutoff (candidates grow as (1 + skin / cutoff)^3)
MAX_SKIN_FRACTION = 0.5


def default_skin_nm(cutoff_nm: float, velocity_std_nm: float) -> float:
    """The skin (nm) of the neighbour list of one model step: ``min(SKIN_PER_VELOCITY_STD x velocity_std,
    MAX_SKIN_FRACTION x cutoff)``.

    Args:
        cutoff_nm: radius cutoff of the CG graph, nm (> 0).
        velocity_std_nm: the bundle's ``velocity_std``, per-axis RMS displacement per model step, nm (> 0).

    Raises:
        ValueError: a non-positive or non-finite argument.
    """
    for name, v in (("cutoff_nm", cutoff_nm), ("velocity_std_nm", velocity_std_nm)):
        if not (v > 0 and math.isfinite(v)):
            raise ValueError(f"{name}: expected a positive finite length in nm, got {v!r}")
    return min(SKIN_PER_VELOCITY_STD * float(velocity_std_nm), MAX_SKIN_FRACTION * float(cutoff_nm))


class SkinNeighborList:
    """CG graph edges (CG bonds union radius edges at ``cutoff_nm``) of a moving configuration, searched at
    ``cutoff_nm + skin_nm`` and searched again when the two largest bead displacements since the last search sum
    to more than ``skin_nm`` (module docstring).

    Args:
        cutoff_nm: radius cutoff, nm (> 0), at most half the smallest box width (the box is validated by the
            caller, as for ``build_edges(validate=False)``).
        skin_nm: skin, nm (>= 0); clipped so that cutoff + skin <= 0.98 x half the smallest box width. Below 1%
            of the cutoff (0 included) every call is a full search (``build_edges``).
        box: (3, 3) nm OpenMM reduced box (rows a, b, c) or None (non-periodic); fixed for the list's lifetime.
        cg_bonds: (2, m) long bead indices, any direction.
        backend: radius search of :func:`openmm_mlcg.nn.neighbors.radius_pairs` (None: ``DEFAULT_BACKEND``).

    Calling it on positions (n, 3) nm (wrapped or not, float32 or float64; n fixed) returns
    ``(edge_index (2, E) long, edge_vec (E, 3) nm, edge_type (E,) long)`` equal to
    ``build_edges(positions, box, cutoff_nm, cg_bonds, backend=backend)``; ``edge_vec`` is differentiable
    w.r.t. ``positions``. ``n_builds`` and ``n_calls`` count the searches and the calls.

    Raises:
        ValueError: a non-positive cutoff, a negative skin, an unknown backend; at a call, positions not (n, 3) or
        ``cg_bonds`` not (2, m).
    """

    def __init__(self, cutoff_nm: float, skin_nm: float, box: torch.Tensor | None, cg_bonds: torch.Tensor,
                 backend: str | None = None):
        if not (cutoff_nm > 0 and math.isfinite(cutoff_nm)):
            raise ValueError(f"cutoff_nm: expected a positive finite cutoff in nm, got {cutoff_nm!r}")
        if not (skin_nm >= 0 and math.isfinite(skin_nm)):
            raise ValueError(f"skin_nm: expected a finite skin >= 0 in nm, got {skin_nm!r}")
        self.backend = DEFAULT_BACKEND if backend is None else backend
        if self.backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS} or None, got {backend!r}")
        self.cutoff_nm, self.skin_nm = float(cutoff_nm), float(skin_nm)
        self.box = box
        self.cg_bonds = cg_bonds
        self.n_builds = self.n_calls = 0
        self._ref: torch.Tensor | None = None    # positions at the last search (n, 3), detached
        self._threshold = 0.0                    # sum of the two largest displacements that searches, nm
        self._skin: float | None = None          # the skin in use, nm (set at the first call)
        self._half_width = math.inf              # 0.98 x half the smallest box width, nm

    def __call__(self, positions: torch.Tensor) -> Edges:
        """Edges on ``positions`` (n, 3) nm (class docstring); searches first when needed."""
        if positions.dim() != 2 or positions.shape[1] != 3:
            raise ValueError(f"positions: expected shape (n, 3) nm, got {tuple(positions.shape)}")
        self.n_calls += 1
        if self._skin is None:                          # first call: the box on the positions' device, the skin
            if self.box is not None:
                self.box = torch.as_tensor(self.box, device=positions.device)
                self._half_width = 0.98 * 0.5 * float(torch.diagonal(self.box).min())
            self._skin = self._effective_skin(self.box)
        if self._skin == 0.0 or positions.shape[0] < 2:  # no room for a skin: a full search, as build_edges
            self.n_builds += 1
            return build_edges(positions, self.box, self.cutoff_nm, self.cg_bonds, backend=self.backend,
                               validate=False)
        if self._needs_search(positions):
            self._build(positions)
        return self._filter(positions)

    def _needs_search(self, positions: torch.Tensor) -> bool:
        """Whether the two largest displacements since the last search sum to more than the threshold (two beads
        approach each other by at most the sum of their displacements); one host sync. The raw displacement
        counts, so a bead wrapped into the box (a jump by a box vector) also searches again, as do non-finite
        displacements."""
        ref = self._ref
        if ref is None or ref.shape != positions.shape or ref.device != positions.device \
                or ref.dtype != positions.dtype:
            return True
        d = positions.detach() - ref
        top = torch.topk((d * d).sum(-1), 2).values.tolist()             # squared, largest first (NaN first)
        return not math.sqrt(top[0]) + math.sqrt(top[1]) <= self._threshold   # NaN: search

    def _effective_skin(self, box: torch.Tensor | None) -> float:
        """The skin, clipped so that cutoff + skin <= 0.98 x half the smallest box width (one periodic image of
        a pair within cutoff + skin, with room for rounding), nm; 0 when less than 1% of the cutoff is left."""
        skin = self.skin_nm
        if box is not None:
            skin = min(skin, self._half_width - self.cutoff_nm)
        return skin if skin >= 0.01 * self.cutoff_nm else 0.0

    def _build(self, positions: torch.Tensor) -> None:
        """Search the candidate pairs at cutoff + skin and lay out the per-call work of :meth:`_filter`.

        Half table (one row per unordered pair i < j): the radius-only candidates and the CG bonds that stay
        short enough for their search-time box-vector counts to be those of :func:`minimum_image` at every
        call (length at the search + skin <= 0.98 x half the smallest width), with those counts; then the other
        CG bonds ("far", vectors by :func:`minimum_image` at each call; usually none). Full table: both
        directions of every row, sorted by (src, dst) as ``build_edges`` sorts its keys, with the row and the
        sign of the vector.
        """
        pos = positions.detach()
        n, device, dtype = pos.shape[0], pos.device, pos.dtype
        box, skin = self.box, self._skin
        keys_b = bond_keys(self.cg_bonds, n, device)
        keys_b = keys_b[keys_b // n < keys_b % n]                                   # CG bonds, i < j
        ib, jb = keys_b // n, keys_b % n
        ir, jr, counts_r = _half_candidates(pos, box, self.cutoff_nm + skin, self.backend)
        radius_only = torch.nonzero(~torch.isin(ir * n + jr, keys_b), as_tuple=True)[0]
        ir, jr = ir.index_select(0, radius_only), jr.index_select(0, radius_only)
        if box is None:
            near = torch.ones_like(ib, dtype=torch.bool)
        else:
            db = pos.index_select(0, jb) - pos.index_select(0, ib)
            counts_b = _image_counts(db, box)
            length = minimum_image(db, box).norm(dim=-1)
            near = length <= self._half_width - skin                                # NaN: far
            counts = torch.cat([counts_r.index_select(0, radius_only), counts_b[near]]).to(dtype)
            self._counts = [counts[:, k:k + 1].contiguous() for k in (2, 1, 0)]
            self._box_rows = [box.to(dtype)[k] for k in (2, 1, 0)]
        self._i, self._j = torch.cat([ir, ib[near]]), torch.cat([jr, jb[near]])
        self._far = (ib[~near], jb[~near]) if bool((~near).any()) else None
        n_rows = ir.numel() + ib.numel()
        self._is_bond_half = torch.arange(n_rows, device=device) >= ir.numel()
        i = torch.cat([self._i, ib[~near]])
        j = torch.cat([self._j, jb[~near]])
        row = torch.arange(n_rows, device=device)
        keys = torch.cat([i * n + j, j * n + i])
        order = torch.argsort(keys)
        is_bond = torch.cat([self._is_bond_half, self._is_bond_half]).long()
        sign = torch.cat([torch.ones_like(row), -torch.ones_like(row)])
        self._row = torch.cat([row, row])[order]
        self._table = torch.stack([keys // n, keys % n, torch.cat([row, row]), is_bond, sign])[:, order]
        self._ref = pos.clone()
        scale = float(torch.nan_to_num(pos, nan=0.0, posinf=0.0, neginf=0.0).abs().max())
        margin = 64.0 * torch.finfo(dtype).eps * (scale + self.cutoff_nm + skin)
        self._threshold = max(0.0, skin - 2.0 * margin)
        self.n_builds += 1

    def _filter(self, positions: torch.Tensor) -> Edges:
        """The candidates within the cutoff, plus the CG bonds, with their minimum-image vectors.

        One vector per row of the half table (i < j): by subtracting the search-time box-vector counts with the
        same operations in the same order as :func:`minimum_image`. For a radius-only pair now closer than
        cutoff + skin, and for a bond of the table, those are the counts :func:`minimum_image` would use, so the
        vector and the cutoff test are bit for bit those of ``build_edges``; a pair farther than that is beyond
        the cutoff under both. Far bonds by :func:`minimum_image` itself. The reverse direction is the negated
        vector, exact in floating point (``x_i - x_j = -(x_j - x_i)``; rounding to the nearest integer is
        symmetric).
        """
        d = positions.index_select(0, self._j) - positions.index_select(0, self._i)
        if self.box is not None:
            for c, row in zip(self._counts, self._box_rows):
                d = d - c * row
        if self._far is not None:
            d = torch.cat([d, pair_vectors(positions, self._far[0], self._far[1], self.box)])
        dd = d.detach()
        keep = self._is_bond_half | ((dd * dd).sum(-1) < self.cutoff_nm * self.cutoff_nm)
        idx = torch.nonzero(keep.index_select(0, self._row), as_tuple=True)[0]     # ascending: (src, dst) order
        t = self._table.index_select(1, idx)                                        # (5, E)
        edge_vec = d.index_select(0, t[2]) * t[4].to(d.dtype).unsqueeze(1)
        return t[:2], edge_vec, t[3]


def _half_candidates(pos: torch.Tensor, box: torch.Tensor | None, cutoff_nm: float, backend: str
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Pairs i < j within ``cutoff_nm`` (minimum image; a superset by a few rounding units), each once, with the box
    vectors :func:`minimum_image` subtracts from ``pos[j] - pos[i]``: (i (P,), j (P,), counts (P, 3) or None).

    The cutoff must be below half the smallest box width (one image per pair). vesin's half list with its
    periodic shifts (counts = -shift) when the backend is "vesin" and every position is finite; otherwise
    ``radius_pairs``' search and the counts recomputed with :func:`_image_counts`.
    """
    n, device = pos.shape[0], pos.device
    if backend == "vesin" and n >= 2 and bool(torch.isfinite(pos).all()):
        from vesin_torch import NeighborList

        periodic = box is not None
        b = box.to(torch.float64) if periodic else torch.zeros(3, 3, dtype=torch.float64, device=device)
        scale = float(pos.abs().max()) + (3.0 * float(b.abs().max()) if periodic else 0.0)
        margin = 64.0 * torch.finfo(pos.dtype).eps * (scale + cutoff_nm)
        nl = NeighborList(cutoff=float(cutoff_nm) + margin, full_list=False, n_threads=max(1, torch.get_num_threads()))
        i, j, shift = nl.compute(pos.double(), b, periodic, "ijS")
        i, j = i.long(), j.long()
        # vesin's vector is pos[j] - pos[i] + S @ box: the counts of the pair (min, max) are -S, or S when i > j
        sign = (i > j).to(torch.float64).mul_(2.0).sub_(1.0)
        counts = shift.to(torch.float64) * sign[:, None] if periodic else None
        return torch.minimum(i, j), torch.maximum(i, j), counts    # no self pairs: cutoff < half a width
    pairs = _search(pos, box, cutoff_nm, backend)
    keys = torch.unique(pairs[0] * n + pairs[1])
    keys = keys[keys // n < keys % n]
    i, j = keys // n, keys % n
    return i, j, _image_counts(pos[j] - pos[i], box)


def _image_counts(d: torch.Tensor, box: torch.Tensor | None) -> torch.Tensor | None:
    """Box vectors (m, 3), in units of the rows c, b, a, that :func:`minimum_image` subtracts from ``d`` (m, 3) nm
    (its rounded counts, applied in the order c, b, a); None without a box."""
    if box is None:
        return None
    box = box.to(d.dtype)
    counts = torch.zeros_like(d)
    for k in (2, 1, 0):
        c = torch.round(d[:, k:k + 1] / box[k, k:k + 1])
        counts[:, k:k + 1] = c
        d = d - c * box[k, :]
    return counts
