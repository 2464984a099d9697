"""Radial distribution functions per bead-type pair, computed with mdtraj.compute_rdf (periodic).

Source: Fu et al., TMLR 2023, appendix B: RDF_{A,B}(r) = d n_{A,B}(r) / (4 pi r^2 dr), normalised by the ideal-gas
pair density so that g(r) -> 1 at large r (mdtraj / cpptraj / gromacs convention).
"""
from __future__ import annotations

import itertools

import mdtraj as md
import numpy as np
from openmm import unit

from openmm_mlcg.util.units import to_float

from ..util.geometry import wrap
from ._validate import box_array, half_box_height, positions_array, selection_array

__all__ = ["make_mdtraj", "radial_distribution", "rdf_by_type"]

_MAX_DISTANCES = 20_000_000  # distances held in memory at once (frames x pairs)


def make_mdtraj(positions, box, time_ps=None) -> md.Trajectory:
    """Build an mdtraj Trajectory with a minimal topology (one virtual-site atom per bead) from arrays.

    Positions are wrapped into the primary cell (the RDF only uses minimum-image distances).

    Args:
        positions: (F, n, 3) nm; box: (3,), (3, 3) or (F, 3, 3) nm row vectors; time_ps: (F,) or None.
    """
    x = positions_array(positions)
    b = box_array(box, x.shape[0])
    if b is None:
        raise ValueError("box: expected periodic box vectors for a periodic RDF, got None")
    x = wrap(x, b)
    top = md.Topology()
    chain = top.add_chain()
    for i in range(x.shape[1]):
        top.add_atom("B", md.element.virtual, top.add_residue("BEA", chain))
    traj = md.Trajectory(x.astype(np.float32), top, time=time_ps)
    traj.unitcell_vectors = b.astype(np.float32)
    return traj


def _r_range(b, r_max_nm, r_min_nm, n_bins) -> tuple[float, float]:
    """(r_min, r_max) nm, checked: r_max defaults to and may not exceed half the smallest box height."""
    half = half_box_height(b)
    r_max = half if r_max_nm is None else to_float(r_max_nm, unit.nanometer, "r_max_nm")
    r_min = to_float(r_min_nm, unit.nanometer, "r_min_nm")
    if not 0 <= r_min < r_max <= half * (1 + 1e-9):
        raise ValueError(f"r_max_nm: expected r_min_nm < r_max_nm <= half the smallest box height {half:.4g} nm, "
                         f"got r_min {r_min}, r_max {r_max}")
    if int(n_bins) < 1:
        raise ValueError(f"n_bins: expected >= 1, got {n_bins}")
    return r_min, r_max


def radial_distribution(positions, box, indices_a, indices_b=None, r_max_nm=None, n_bins: int = 100,
                        r_min_nm=0.0) -> tuple[np.ndarray, np.ndarray]:
    """g(r) between particle sets A and B (periodic, minimum image), averaged over frames.

    Args:
        positions: (F, n, 3) nm (wrapped or unwrapped).
        box: (3,), (3, 3) or (F, 3, 3) nm row vectors.
        indices_a: (n_A,) particle indices; indices_b: (n_B,) or None (= A, unique pairs i < j).
        r_max_nm: upper edge (default: half the smallest box height, the largest radius valid under minimum image).
        n_bins: number of bins; r_min_nm: lower edge.

    Returns:
        (r (n_bins,) bin centres nm, g (n_bins,) dimensionless).

    Raises:
        ValueError: no box, empty selections, no pairs, r_max beyond half the box height.
    """
    x = positions_array(positions)
    b = box_array(box, x.shape[0])
    if b is None:
        raise ValueError("box: expected periodic box vectors for a periodic RDF, got None")
    a = np.unique(selection_array(indices_a, x.shape[1], "indices_a"))
    bb = a if indices_b is None else np.unique(selection_array(indices_b, x.shape[1], "indices_b"))
    if indices_b is None or np.array_equal(a, bb):
        i, j = np.triu_indices(a.size, k=1)
        pairs = np.stack([a[i], a[j]], 1)
    else:
        pa, pb = np.meshgrid(a, bb, indexing="ij")
        pairs = np.stack([pa.ravel(), pb.ravel()], 1)
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    if pairs.shape[0] == 0:
        raise ValueError("indices_a/indices_b: expected at least one distinct particle pair, got none")
    r_min, r_max = _r_range(b, r_max_nm, r_min_nm, n_bins)
    traj = make_mdtraj(x, b)
    chunk = max(1, _MAX_DISTANCES // pairs.shape[0])
    g = np.zeros(int(n_bins))
    for s in range(0, traj.n_frames, chunk):
        part = traj[s:s + chunk]
        r, gs = md.compute_rdf(part, pairs, r_range=(r_min, r_max), n_bins=int(n_bins), periodic=True)
        g += gs * part.n_frames  # mdtraj averages over the chunk's frames
    return r, g / traj.n_frames


def rdf_by_type(positions, box, bead_types, pairs=None, r_max_nm=None, n_bins: int = 100) -> dict:
    """RDF for every unordered bead-type pair (paper fig. 8b).

    Args:
        positions: (F, n, 3) nm; box as in :func:`radial_distribution`; bead_types: (n,) labels.
        pairs: list of (type_a, type_b) or None for all unordered pairs of types present.

    Returns:
        {"A-B": {"r_nm": (n_bins,), "g": (n_bins,)}} (pairs with fewer than 2 particles are skipped).
    """
    x = positions_array(positions)
    types = np.asarray(bead_types).astype(str)
    if types.shape != (x.shape[1],):
        raise ValueError(f"bead_types: expected shape ({x.shape[1]},), got {types.shape}")
    names = sorted(set(types.tolist()))
    if pairs is None:
        pairs = list(itertools.combinations_with_replacement(names, 2))
    counts = {t: int(np.count_nonzero(types == t)) for t in names}
    wanted = [(ta, tb) for ta, tb in pairs
              if counts.get(ta, 0) and counts.get(tb, 0) and not (ta == tb and counts[ta] < 2)]
    if not wanted:
        return {}
    if len(wanted) <= 4:  # few pairs: per-pair path (also validates the box and r range)
        out = {}
        for ta, tb in wanted:
            ia, ib = np.nonzero(types == ta)[0], np.nonzero(types == tb)[0]
            r, g = radial_distribution(x, box, ia, None if ta == tb else ib, r_max_nm=r_max_nm, n_bins=n_bins)
            out[f"{ta}-{tb}"] = {"r_nm": r, "g": g}
        return out
    return _rdf_many_pairs(x, box, types, names, wanted, r_max_nm, int(n_bins))


def _rdf_many_pairs(x, box, types, names, wanted, r_max_nm, n_bins) -> dict:
    """All requested type pairs from one pass over the particle pairs (hundreds of types, e.g. a protein, where
    one mdtraj call per pair takes minutes); same normalisation as :func:`radial_distribution`."""
    b = box_array(box, x.shape[0])
    if b is None:
        raise ValueError("box: expected periodic box vectors for a periodic RDF, got None")
    r_min, r_max = _r_range(b, r_max_nm, 0.0, n_bins)
    edges = np.linspace(r_min, r_max, n_bins + 1)
    index = {t: k for k, t in enumerate(names)}
    code = np.array([index[t] for t in types.tolist()], dtype=np.int64)
    nt = len(names)
    keys = [min(index[ta], index[tb]) * nt + max(index[ta], index[tb]) for ta, tb in wanted]
    slot = {key: k for k, key in enumerate(dict.fromkeys(keys))}
    lut = np.full(nt * nt, -1, dtype=np.int64)
    lut[list(slot)] = list(slot.values())
    i, j = np.triu_indices(x.shape[1], k=1)
    pid = lut[np.minimum(code[i], code[j]) * nt + np.maximum(code[i], code[j])]
    keep = pid >= 0
    pairs, pid = np.stack([i[keep], j[keep]], 1), pid[keep]
    n_slots = len(slot)
    n_pairs = np.bincount(pid, minlength=n_slots).astype(np.float64)
    traj = make_mdtraj(x, b)
    shell = (4 / 3) * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    g = np.zeros((n_slots, n_bins))
    chunk = max(1, _MAX_DISTANCES // pairs.shape[0])
    width = (r_max - r_min) / n_bins
    for s in range(0, traj.n_frames, chunk):
        part = traj[s:s + chunk]
        d = md.compute_distances(part, pairs, periodic=True)
        k = np.floor((d - r_min) / width).astype(np.int64)
        k[d == r_max] = n_bins - 1  # np.histogram (mdtraj) includes the upper edge
        ok = (k >= 0) & (k < n_bins)
        hist = np.bincount(np.broadcast_to(pid, d.shape)[ok] * n_bins + k[ok],
                           minlength=n_slots * n_bins).reshape(n_slots, n_bins)
        g += hist / (n_pairs[:, None] * np.sum(1.0 / part.unitcell_volumes) * shell[None]) * part.n_frames
    g /= traj.n_frames
    centres = 0.5 * (edges[1:] + edges[:-1])
    return {f"{ta}-{tb}": {"r_nm": centres.copy(), "g": g[slot[key]]} for (ta, tb), key in zip(wanted, keys)}
