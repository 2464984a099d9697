"""Solvation-shell occupancy and residence correlation (e.g. of the ether-oxygen beads around each Li+).

The occupancy h_ij(t) is 1 while ligand j is within ``cutoff_nm`` of centre i (minimum image, mdtraj
``compute_distances``), else 0. The intermittent residence correlation

    C(t) = < h_ij(t0) h_ij(t0 + t) > / < h_ij >,

averaged over all centre-ligand pairs and time origins, is 1 at t = 0 and decays to the mean occupancy <h>
once the shells have exchanged (Rapaport, Mol. Phys. 50, 1151 (1983), doi:10.1080/00268978300102931; the
residence-time analysis of Impey, Madden & McDonald, J. Phys. Chem. 87, 5071 (1983),
doi:10.1021/j100248a023). In polymer electrolytes it measures how long a Li+ keeps its coordinating
segments, the slow step of its transport (Borodin & Smith, Macromolecules 39, 1620 (2006),
doi:10.1021/ma052277v). Coarse-grained models that exchange shells too fast show it here first, long before
the Li+ MSD leaves its cage.
"""
from __future__ import annotations

import numpy as np
from openmm import unit

from openmm_mlcg.util.units import to_float

from ._validate import box_array, half_box_height, positions_array, selection_array

__all__ = ["shell_occupancy", "residence_correlation"]


def shell_occupancy(positions, box, centres, ligands, cutoff_nm) -> np.ndarray:
    """Which ligands sit in each centre's shell, frame by frame.

    Args:
        positions: (F, n, 3) nm (wrapped or not; distances are minimum-image).
        box: periodic box, (3,), (3, 3) or (F, 3, 3) nm row vectors (required).
        centres: (n_c,) bead indices of the shell centres (e.g. the Li+ beads).
        ligands: (n_l,) bead indices of the ligands (e.g. the beads holding an ether or sulfonyl oxygen); a
            bead in both lists is never its own ligand.
        cutoff_nm: shell radius, nm (float or ``openmm.unit`` length), typically the first minimum of the
            centre-ligand g(r).

    Returns:
        (F, n_c, n_l) bool occupancy h_ij(t).

    Raises:
        ValueError: bad shapes, no box, empty or out-of-range index lists, a cutoff that is not positive or
            exceeds half the smallest box height.
    """
    from .rdf import make_mdtraj

    x = positions_array(positions)
    n = x.shape[1]
    b = box_array(box, x.shape[0])
    if b is None:
        raise ValueError("box: expected periodic box vectors, got None")
    c, lig = selection_array(centres, n, "centres"), selection_array(ligands, n, "ligands")
    rc = to_float(cutoff_nm, unit.nanometer, "cutoff_nm")
    half = half_box_height(b)
    if not 0 < rc <= half:
        raise ValueError(f"cutoff_nm: expected 0 < cutoff <= half the smallest box height {half:.4g} nm, got {rc}")
    import mdtraj as md

    pairs = np.stack(np.meshgrid(c, lig, indexing="ij"), axis=-1).reshape(-1, 2)
    d = md.compute_distances(make_mdtraj(x, b), pairs, periodic=True).reshape(x.shape[0], c.size, lig.size)
    occ = d < rc
    occ[:, c[:, None] == lig[None, :]] = False
    return occ


def residence_correlation(occupancy, max_lag: int | None = None) -> np.ndarray:
    """Intermittent residence correlation C(k) = <h(t0) h(t0 + k)> / <h> at lags k = 0..max_lag frames.

    Every time origin is used for every lag; the average runs over all pairs (Rapaport 1983, module docstring).
    C(0) = 1; C(k) -> <h> (the mean occupancy) when the shells have exchanged, and stays near 1 while they
    persist. For a two-state Markov chain with switching probabilities k_on, k_off per frame it is
    p + (1 - p) (1 - k_on - k_off)^k, p = k_on / (k_on + k_off).

    Args:
        occupancy: (F, ...) bool or 0/1 occupancy, time first (e.g. :func:`shell_occupancy`'s output).
        max_lag: largest lag in frames (default F // 2).

    Returns:
        (max_lag + 1,) float64.

    Raises:
        ValueError: fewer than 2 frames, values other than 0/1, no occupied pair in any frame, max_lag outside
            [0, F - 1].
    """
    h = np.asarray(occupancy)
    if h.ndim < 1 or h.shape[0] < 2:
        raise ValueError(f"occupancy: expected shape (F, ...) with F >= 2, got {h.shape}")
    if h.dtype != bool and not np.all((h == 0) | (h == 1)):
        raise ValueError("occupancy: expected 0/1 values")
    h = h.reshape(h.shape[0], -1).astype(np.float64)
    F = h.shape[0]
    k_max = F // 2 if max_lag is None else int(max_lag)
    if not 0 <= k_max <= F - 1:
        raise ValueError(f"max_lag: expected 0..{F - 1} frames, got {max_lag}")
    mean = h.mean()
    if mean == 0:
        raise ValueError("occupancy: no ligand is in any shell in any frame (cutoff too small?)")
    return np.array([(h[:F - k] * h[k:]).mean() / mean for k in range(k_max + 1)])
