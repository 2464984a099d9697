"""Prior scores of the ``"cg_langevin"`` sampler: a soft wall below the closest approach in the data, and
harmonic CG bonds.

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
wall. It is added at run time only.

**Harmonic bonds.** Per bead-type pair of CG-bonded beads, the mean r0 and variance v of the bond length in the
training data; the prior of a bond (i, j) at noise levels sigma_i, sigma_j is the Boltzmann inversion
``U / kT = -ln(p(r) / r^2)`` of the Gaussian p(r) = N(r0 + s^2 / r0, v + s^2), s^2 = sigma_i^2 + sigma_j^2, i.e.
``(r - r0')^2 / (2 v') + 2 ln r``: the bond-length law of the sigma-smoothed density the score describes (noise
of variance s^2 per axis on the bond vector adds s^2 to the radial variance and s^2 / r0 to the mean). Unlike
the wall it is part of the model: the Score GNN is trained as the residual on top of it
(denoising score matching of the sum, ``openmm_mlcg.model.objective.equilibrium_score_loss``) and the sampler
adds it back.
Without it the learned score holds a bond only near the training configurations: on the SPE demo, 10 model
steps from true states widen the PEO bonds from 0.015-0.025 nm to 0.025-0.031 nm and stretch their mean by up to
0.02 nm (noisy-data denoising of the same network restores them), and the TFSI bond pair dominates the RDF error.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from .angles import AngleCorrection

__all__ = ["pair_key", "closest_approach", "ExcludedVolume", "PairCorrection", "bond_statistics", "bond_parameters",
           "bond_score", "CGPrior"]


def pair_key(type_a: str, type_b: str) -> str:
    """Key of an unordered bead-type pair in ``ModelMetadata.excluded_volume_nm``: ``"A|B"``, sorted."""
    a, b = sorted((str(type_a), str(type_b)))
    return f"{a}|{b}"


def _type_codes(bead_types) -> Tuple[list, torch.Tensor]:
    """(sorted type names, (n,) long index of each bead's type among them)."""
    types = [str(t) for t in bead_types]
    names = sorted(set(types))
    index = {t: k for k, t in enumerate(names)}
    return names, torch.tensor([index[t] for t in types], dtype=torch.long)


def _frames(traj, stride: int, max_frames: int):
    """(positions (n, 3) float64 tensor, box (3, 3) tensor or None) of at most ``max_frames`` evenly spaced frames
    of every ``stride``-th frame of a CG trajectory (the frames both data statistics of this module read)."""
    step = max(1, int(stride))
    x = np.asarray(traj.positions)[::step]
    box_all = None if traj.box is None else np.asarray(traj.box)
    for f in np.unique(np.linspace(0, len(x) - 1, min(len(x), int(max_frames))).round().astype(int)):
        box = None if box_all is None else torch.as_tensor(box_all[f * step] if box_all.ndim == 3 else box_all,
                                                           dtype=torch.float64)
        yield torch.as_tensor(x[f], dtype=torch.float64), box


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
    from ..model.graph import cg_bond_index
    from ..nn.neighbors import build_edges

    if not (float(cutoff_nm) > 0):
        raise ValueError(f"cutoff_nm: expected a positive distance in nm, got {cutoff_nm!r}")
    if len(trajectories) != len(mappings):
        raise ValueError(f"mappings: expected one per trajectory ({len(trajectories)}), got {len(mappings)}")
    out: Dict[str, float] = {}
    for traj, mp in zip(trajectories, mappings):
        names, code = _type_codes(mp.bead_types)
        nt = len(names)
        counts = np.bincount(code.numpy(), minlength=nt)
        best = torch.full((nt * nt,), float(cutoff_nm), dtype=torch.float64)
        bonds = cg_bond_index(mp)
        for x, box in _frames(traj, stride, max_frames):
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


class ExcludedVolume:
    """The soft-wall prior score of one system, for the runtime sampler.

    Args:
        bead_types: (n,) bead-type labels of the system. table_nm: {``pair_key``: r0 nm} (the metadata's
            ``excluded_volume_nm``). width_nm: w, nm. device: torch device.

    Raises:
        ValueError: ``width_nm`` not positive, or a negative or non-finite r0.
    """

    def __init__(self, bead_types, table_nm: Mapping[str, float], width_nm: float, device=None):
        if not (float(width_nm) > 0 and np.isfinite(float(width_nm))):
            raise ValueError(f"width_nm: expected a positive finite width in nm, got {width_nm!r}")
        names, code = _type_codes(bead_types)
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

    @classmethod
    def from_metadata(cls, metadata, bead_types, device=None) -> Optional["ExcludedVolume"]:
        """The prior a bundle's metadata records (``excluded_volume_nm``, ``excluded_volume_width_nm``), or None
        when it records none (bundles of other samplers, or trained without the prior)."""
        if not metadata.excluded_volume_nm or metadata.excluded_volume_width_nm is None:
            return None
        return cls(bead_types, metadata.excluded_volume_nm, metadata.excluded_volume_width_nm, device)

    def score(self, edges, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Prior score -grad U / kT (n, 3), 1/nm, from the CG graph ``edges`` (edge_index, edge_vec nm, edge_type)
        of :func:`openmm_mlcg.nn.neighbors.build_edges` (both directions; only non-bonded edges count)."""
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


class PairCorrection:
    """A tabulated radial pair score added to the learned one: the metadata's ``pair_correction``.

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
        names, code = _type_codes(bead_types)
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

    @classmethod
    def from_metadata(cls, metadata, bead_types, device=None) -> Optional["PairCorrection"]:
        """The correction a bundle's metadata records (``pair_correction``), or None."""
        table = getattr(metadata, "pair_correction", None)
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

    def score(self, edges, n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """The correction's score (n, 3), 1/nm, from the CG graph ``edges`` of :func:`openmm_mlcg.nn.neighbors.
        build_edges` (both directions; only non-bonded edges count)."""
        src, rows, k0, w, unit = self.terms(edges)
        g = self.values[rows, k0] * (1 - w) + self.values[rows, k0 + 1] * w
        out = torch.zeros((n, 3), dtype=torch.float64, device=unit.device).index_add_(0, src, g.unsqueeze(-1) * unit)
        return out.to(dtype)


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
    from ..model.graph import cg_bond_index
    from ..nn.neighbors import pair_vectors

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
                      for x, box in _frames(traj, stride, max_frames)])   # (frames, m)
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
    from ..nn.neighbors import pair_vectors

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


class CGPrior:
    """The prior score of one system for the runtime sampler: excluded-volume wall, harmonic bonds and the fitted
    pair and bond-angle corrections.

    Args:
        excluded_volume: :class:`ExcludedVolume` or None. cg_bonds: (2, m) bead indices and bond_parameters
            (m, 2) (:func:`bond_parameters`), or None for no bond prior. pair_correction: :class:`PairCorrection`
            or None. angle_correction: :class:`openmm_mlcg.priors.angles.AngleCorrection` or None.
    """

    def __init__(self, excluded_volume: Optional[ExcludedVolume] = None, cg_bonds: Optional[torch.Tensor] = None,
                 bond_parameters: Optional[torch.Tensor] = None, pair_correction: Optional[PairCorrection] = None,
                 angle_correction=None):
        self.excluded_volume = excluded_volume
        self.cg_bonds = cg_bonds
        self.bond_parameters = bond_parameters
        self.pair_correction = pair_correction
        self.angle_correction = angle_correction

    @classmethod
    def from_metadata(cls, metadata, bead_types, graph, device=None) -> Optional["CGPrior"]:
        """The priors a bundle's metadata records for a system (``graph``: its SystemGraph, whose
        ``cg_bond_prior`` holds the bond parameters), or None when it records none."""
        wall = ExcludedVolume.from_metadata(metadata, bead_types, device)
        corr = PairCorrection.from_metadata(metadata, bead_types, device)
        angles = AngleCorrection.from_metadata(metadata, bead_types, graph, device)
        par = graph.cg_bond_prior
        if wall is None and par is None and corr is None and angles is None:
            return None
        return cls(wall, None if par is None else graph.cg_bonds.to(device), None if par is None else par.to(device),
                   corr, angles)

    def score(self, positions: torch.Tensor, edges, sigma: torch.Tensor, box: Optional[torch.Tensor] = None,
              dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Sum of the priors' scores (n, 3), 1/nm, at ``positions`` (n, 3) nm with the CG graph ``edges`` on them
        and the sampler's noise levels ``sigma`` (n, 1) nm."""
        out = torch.zeros(positions.shape, dtype=dtype, device=positions.device)
        if self.excluded_volume is not None:
            out = out + self.excluded_volume.score(edges, dtype)
        if self.bond_parameters is not None:
            out = out + bond_score(positions.to(dtype), self.cg_bonds, self.bond_parameters, sigma, box)
        if self.pair_correction is not None:
            out = out + self.pair_correction.score(edges, positions.shape[0], dtype)
        if self.angle_correction is not None:
            out = out + self.angle_correction.score(positions, box, dtype)
        return out
