"""Static structure of chains: squared radius of gyration, mean internal distance, contact map.

Source: Fu et al., TMLR 2023, section 4.1 and appendix B ("Calculation of single-chain polymer properties").
Positions must be unwrapped (molecules whole); the contact map optionally applies the minimum image.
"""
from __future__ import annotations

import numpy as np
from openmm import unit

from openmm_mlcg.util.units import to_float

from ..util.geometry import minimum_image
from ._validate import box_array, index_array, masses_array, positions_array

__all__ = ["radius_of_gyration_squared", "distribution", "mean_internal_distance", "contact_map"]


def radius_of_gyration_squared(positions, masses=None, molecules=None) -> np.ndarray:
    """Mass-weighted squared radius of gyration per frame (and per molecule).

    R_g^2 = sum_i m_i |x_i - x_com|^2 / sum_i m_i   (paper appendix B).

    Args:
        positions: (F, n, 3) or (n, 3) nm, unwrapped (each molecule whole).
        masses: (n,) amu; None -> equal masses.
        molecules: (n,) int molecule index per particle; None -> all particles form one molecule.

    Returns:
        (F,) nm^2 if ``molecules`` is None, else (F, n_molecules) nm^2 with columns ordered by
        ``np.unique(molecules)``.

    Raises:
        ValueError: wrong shapes, NaN, non-positive masses.
    """
    x = positions_array(positions)
    n = x.shape[1]
    m = masses_array(masses, n)
    if molecules is None:
        com = np.einsum("i,fik->fk", m, x) / m.sum()
        return np.einsum("i,fi->f", m, ((x - com[:, None]) ** 2).sum(-1)) / m.sum()
    mol = index_array(molecules, n, "molecules")
    _, inv = np.unique(mol, return_inverse=True)
    n_mol = int(inv.max()) + 1
    mtot = np.bincount(inv, weights=m, minlength=n_mol)
    onehot = np.zeros((n, n_mol))
    onehot[np.arange(n), inv] = m
    com = np.einsum("im,fik->fmk", onehot, x) / mtot[None, :, None]
    d2 = ((x - com[:, inv]) ** 2).sum(-1)  # (F, n)
    return (d2 * m) @ (onehot > 0) / mtot


def distribution(values, bins: int = 50, value_range=None) -> tuple[np.ndarray, np.ndarray]:
    """Normalised histogram (probability density) of a sample, e.g. R_g^2 over frames (paper fig. 4 row 1).

    Args:
        values: any shape; flattened.
        bins: number of bins (>= 1).
        value_range: (lo, hi) or None for (min, max).

    Returns:
        (centres (bins,), density (bins,)) where density integrates to 1 over the bins.

    Raises:
        ValueError: empty or non-finite data, bins < 1.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0 or not np.all(np.isfinite(v)):
        raise ValueError(f"values: expected a non-empty finite sample, got size {v.size}")
    if int(bins) < 1:
        raise ValueError(f"bins: expected >= 1, got {bins}")
    density, edges = np.histogram(v, bins=int(bins), range=value_range, density=True)
    return 0.5 * (edges[1:] + edges[:-1]), density


def mean_internal_distance(positions, chain=None, kind: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """Mean internal distance R(s) between beads s apart along one chain, averaged over i and frames.

    kind="mean": <R(s)> = < sum_{i=1}^{M-s} |x_i - x_{i+s}| / (M - s) >_frames   (paper appendix B, default)
    kind="rms":  sqrt(< |x_i - x_{i+s}|^2 >_{i, frames})  (the usual polymer-physics R(s)).

    Args:
        positions: (F, n, 3) or (n, 3) nm, unwrapped.
        chain: (M,) particle indices in chain order; None -> all n particles in index order.
        kind: "mean" or "rms".

    Returns:
        (s (M-1,) int = 1..M-1, R (M-1,) nm).

    Raises:
        ValueError: wrong shapes, fewer than 2 chain beads, unknown kind.
    """
    x = positions_array(positions)
    if kind not in ("mean", "rms"):
        raise ValueError(f"kind: expected 'mean' or 'rms', got {kind!r}")
    if chain is not None:
        idx = np.asarray(chain)
        if idx.ndim != 1 or idx.dtype.kind not in "iu" or idx.size and (idx.min() < 0 or idx.max() >= x.shape[1]):
            raise ValueError(f"chain: expected 1-D integer indices in [0, {x.shape[1]}), got {idx!r}")
        x = x[:, idx]
    M = x.shape[1]
    if M < 2:
        raise ValueError(f"chain: expected at least 2 beads, got {M}")
    s = np.arange(1, M)
    out = np.empty(M - 1)
    for k in s:
        d2 = ((x[:, k:] - x[:, :-k]) ** 2).sum(-1)
        out[k - 1] = np.sqrt(d2).mean() if kind == "mean" else np.sqrt(d2.mean())
    return s, out


def contact_map(positions, cutoff_nm, box=None, indices=None, chunk_frames: int | None = None) -> np.ndarray:
    """Fraction of frames in which each bead pair is closer than ``cutoff_nm`` (paper fig. 5b).

    Args:
        positions: (F, n, 3) or (n, 3) nm.
        cutoff_nm: contact distance, nm (float or Quantity), > 0.
        box: None (no periodicity) or box as accepted by the analysis functions ((3,3)/(F,3,3) nm); minimum image
            is applied for orthorhombic and triclinic boxes (reduced over the 27 neighbouring images).
        indices: (M,) subset of particles; None -> all.
        chunk_frames: frames processed together (default: keeps ~1e6 pair vectors in memory).

    Returns:
        (M, M) float in [0, 1]; the diagonal is 1 (a bead is in contact with itself).

    Raises:
        ValueError: bad shapes or a non-positive cutoff.
    """
    x = positions_array(positions)
    rc = to_float(cutoff_nm, unit.nanometer, "cutoff_nm")
    if rc <= 0:
        raise ValueError(f"cutoff_nm: expected > 0 nm, got {rc}")
    b = box_array(box, x.shape[0])
    if indices is not None:
        x = x[:, np.asarray(indices, dtype=np.int64)]
    M = x.shape[1]
    chunk_frames = max(1, 1_000_000 // (M * M)) if chunk_frames is None else int(chunk_frames)
    counts = np.zeros((M, M))
    for start in range(0, x.shape[0], int(chunk_frames)):
        xs = x[start:start + int(chunk_frames)]
        d = xs[:, None, :, :] - xs[:, :, None, :]  # (c, M, M, 3)
        if b is not None:
            d = minimum_image(d, b[start:start + int(chunk_frames), None, None])
        counts += ((d ** 2).sum(-1) < rc * rc).sum(0)
    return counts / x.shape[0]
