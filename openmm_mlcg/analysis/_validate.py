"""Input checks shared by the analysis modules (private).

Every checker converts ``openmm.unit`` Quantities with :mod:`openmm_mlcg.util.units` and raises ``ValueError`` naming
the argument, the expected and the actual value.
"""
from __future__ import annotations

import numpy as np
from openmm import unit

from openmm_mlcg.util.geometry import as_box_frames
from openmm_mlcg.util.units import to_array

__all__ = ["positions_array", "time_array", "box_array", "index_array", "selection_array", "half_box_height",
           "bonds_array", "masses_array", "uniform_spacing"]


def positions_array(positions, name: str = "positions", min_frames: int = 1) -> np.ndarray:
    """Return positions as float64 ``(F, n, 3)`` nm; a single frame ``(n, 3)`` is promoted to ``(1, n, 3)``."""
    x = to_array(positions, unit.nanometer, name)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"{name}: expected shape (n_frames, n_particles, 3), got {x.shape}")
    if x.shape[0] < min_frames:
        raise ValueError(f"{name}: expected at least {min_frames} frames, got {x.shape[0]}")
    if x.shape[1] < 1:
        raise ValueError(f"{name}: expected at least one particle, got shape {x.shape}")
    return x


def time_array(time_ps, n_frames: int, name: str = "time_ps") -> np.ndarray:
    """Return times as float64 ``(F,)`` ps, strictly increasing."""
    t = to_array(time_ps, unit.picosecond, name)
    if t.shape != (n_frames,):
        raise ValueError(f"{name}: expected shape ({n_frames},) (one time per frame), got {t.shape}")
    if n_frames > 1 and np.any(np.diff(t) <= 0):
        raise ValueError(f"{name}: expected strictly increasing times, got steps min {np.diff(t).min()}")
    return t


def uniform_spacing(t: np.ndarray, name: str = "time_ps") -> float:
    """Frame interval of evenly spaced times (relative tolerance 1e-6), ps."""
    if t.shape[0] < 2:
        raise ValueError(f"{name}: expected at least 2 frames to define a time step, got {t.shape[0]}")
    dt = np.diff(t)
    if not np.allclose(dt, dt[0], rtol=1e-6, atol=0.0):
        raise ValueError(f"{name}: expected evenly spaced frames, got steps from {dt.min()} to {dt.max()} ps")
    return float(dt[0])


def box_array(box, n_frames: int, name: str = "box") -> np.ndarray | None:
    """Return the periodic box as ``(F, 3, 3)`` row vectors nm, or None.

    Accepts ``(3,)`` edge lengths (orthorhombic), ``(3, 3)`` (same for all frames), ``(F, 3)`` or ``(F, 3, 3)``;
    lower-triangular (OpenMM / mdtraj) box vectors with positive diagonal (:func:`openmm_mlcg.util.geometry.as_box_frames`).
    """
    return as_box_frames(box, n_frames, name)


def index_array(values, n: int, name: str) -> np.ndarray:
    """Return a per-particle integer array ``(n,)`` (e.g. molecule indices)."""
    a = np.asarray(values)
    if a.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},) (one entry per particle), got {a.shape}")
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected integer indices, got dtype {a.dtype}")
    return a.astype(np.int64)


def selection_array(values, n: int, name: str) -> np.ndarray:
    """Return a non-empty 1-D selection of particle indices ``(k,)`` int64, each in ``[0, n)``."""
    a = np.asarray(values)
    if a.ndim != 1 or a.size == 0 or a.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected a non-empty 1-D list of integer indices, got shape {a.shape}, "
                         f"dtype {a.dtype}")
    if a.min() < 0 or a.max() >= n:
        raise ValueError(f"{name}: expected non-empty indices in [0, {n}), got range [{a.min()}, {a.max()}]")
    return a.astype(np.int64)


def half_box_height(box: np.ndarray) -> float:
    """Half the smallest box height (nm) over frames of a ``(F, 3, 3)`` box: the largest minimum-image radius."""
    vol = np.abs(np.linalg.det(box))
    heights = vol[:, None] / np.linalg.norm(np.cross(box[:, [1, 2, 0]], box[:, [2, 0, 1]]), axis=-1)
    return float(heights.min() / 2)


def masses_array(masses, n: int, name: str = "masses") -> np.ndarray:
    """Return per-particle masses ``(n,)`` amu, all positive; None gives unit masses."""
    if masses is None:
        return np.ones(n)
    m = to_array(masses, unit.dalton, name)
    if m.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},) amu, got {m.shape}")
    if np.any(m <= 0):
        raise ValueError(f"{name}: expected positive masses, got min {m.min()}")
    return m


def bonds_array(bonds, n: int, name: str = "cg_bonds") -> np.ndarray:
    """Return a bond list as ``(m, 2)`` int64 with 0 <= index < n; None gives an empty list."""
    if bonds is None:
        return np.zeros((0, 2), dtype=np.int64)
    b = np.asarray(bonds)
    if b.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if b.ndim != 2 or b.shape[1] != 2:
        raise ValueError(f"{name}: expected shape (n_bonds, 2), got {b.shape}")
    if b.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected integer particle indices, got dtype {b.dtype}")
    if b.min() < 0 or b.max() >= n:
        raise ValueError(f"{name}: expected indices in [0, {n}), got range [{b.min()}, {b.max()}]")
    return b.astype(np.int64)
