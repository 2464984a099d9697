"""Bead collisions: number of non-bonded bead pairs closer than a cut-off radius, per frame.

Source: Fu et al., TMLR 2023, section 4.2 and fig. 8a ("a bead collision happens when two beads have a distance
below a cut-off radius"; cut-offs 0.05, 0.1, 0.2 nm). Distances use the minimum image when a box is given.
"""
from __future__ import annotations

import numpy as np
from openmm import unit
from scipy.spatial import cKDTree

from openmm_mlcg.util.units import to_float

from ._validate import bonds_array, box_array, positions_array
from ..util.geometry import minimum_image

__all__ = ["count_collisions", "nearest_neighbour_distances"]


def _frame_points(x_f: np.ndarray, b_f):
    """(points, boxsize) for scipy's periodic cKDTree: wrapped into an orthorhombic box, or as they are."""
    if b_f is None:
        return x_f, None
    size = np.diag(b_f).copy()
    pts = np.mod(x_f, size)
    pts[pts >= size] = 0.0  # guard against rounding to exactly L
    return pts, size


def nearest_neighbour_distances(positions, box=None) -> np.ndarray:
    """Distance from every bead to its nearest other bead, in each frame.

    Orthorhombic boxes and no box use scipy's (periodic) cKDTree; triclinic boxes all pairs with the minimum
    image (valid for distances below half the box height).

    Args:
        positions: (F, n, 3) or (n, 3) nm, n >= 2. box: None, (3,), (3, 3) or (F, 3, 3) nm row vectors.

    Returns:
        (F, n) nm.

    Raises:
        ValueError: bad shapes, NaN, fewer than 2 beads.
    """
    x = positions_array(positions)
    F, n = x.shape[:2]
    if n < 2:
        raise ValueError(f"positions: expected at least 2 beads, got {n}")
    b = box_array(box, F)
    orthorhombic = b is not None and np.allclose(b - b * np.eye(3), 0.0)
    out = np.empty((F, n))
    for f in range(F):
        if b is None or orthorhombic:
            pts, size = _frame_points(x[f], None if b is None else b[f])
            out[f] = cKDTree(pts, boxsize=size).query(pts, k=2)[0][:, 1]
        else:
            d = minimum_image(x[f][None, :, :] - x[f][:, None, :], b[f])
            r = np.linalg.norm(d, axis=-1)
            np.fill_diagonal(r, np.inf)
            out[f] = r.min(1)
    return out


def count_collisions(positions, cutoff_nm, box=None, exclude_bonds=None) -> np.ndarray:
    """Count bead pairs i < j with distance < ``cutoff_nm`` in each frame, excluding listed bonded pairs.

    Orthorhombic boxes use a periodic k-d tree (scipy cKDTree, O(n log n)); triclinic boxes and no box use
    all pairs with the minimum image over the 27 neighbouring cells (valid for cutoff < half the box height).

    Args:
        positions: (F, n, 3) or (n, 3) nm (wrapped or unwrapped).
        cutoff_nm: collision radius r_c, nm (float or Quantity), > 0.
        box: None (non-periodic), (3,), (3, 3) or (F, 3, 3) nm row vectors.
        exclude_bonds: (m, 2) int bead pairs never counted (e.g. CG bonds), or None.

    Returns:
        (F,) int64 number of colliding pairs per frame.

    Raises:
        ValueError: bad shapes, NaN, non-positive cutoff, bond indices out of range.
    """
    x = positions_array(positions)
    F, n = x.shape[:2]
    rc = to_float(cutoff_nm, unit.nanometer, "cutoff_nm")
    if rc <= 0:
        raise ValueError(f"cutoff_nm: expected > 0 nm, got {rc}")
    b = box_array(box, F)
    bonds = bonds_array(exclude_bonds, n, "exclude_bonds")
    excluded = np.unique(np.sort(bonds, axis=1) @ np.array([n, 1], dtype=np.int64)) if bonds.size else None
    counts = np.zeros(F, dtype=np.int64)
    orthorhombic = b is not None and np.allclose(b - b * np.eye(3), 0.0)
    for f in range(F):
        if b is None or orthorhombic:
            pts, size = _frame_points(x[f], None if b is None else b[f])
            pairs = cKDTree(pts, boxsize=size).query_pairs(rc, output_type="ndarray")
            if pairs.size:  # query_pairs is <= rc; keep strictly < rc
                d = pts[pairs[:, 1]] - pts[pairs[:, 0]]
                if size is not None:
                    d -= size * np.round(d / size)
                pairs = pairs[(d ** 2).sum(-1) < rc * rc]
        else:
            i, j = np.triu_indices(n, k=1)
            d = minimum_image(x[f, j] - x[f, i], b[f])
            pairs = np.stack([i, j], 1)[(d ** 2).sum(-1) < rc * rc]
        if excluded is not None and pairs.size:
            keys = np.sort(pairs, axis=1) @ np.array([n, 1], dtype=np.int64)
            pairs = pairs[~np.isin(keys, excluded)]
        counts[f] = pairs.shape[0]
    return counts
