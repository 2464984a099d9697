"""Periodic geometry, one implementation each: box validation (OpenMM reduced form), minimum image, wrap, unwrap.

Boxes are (3, 3) row vectors a, b, c in nm (or (F, 3, 3), one per frame). OpenMM's reduced form is
a = (ax, 0, 0), b = (bx, by, 0), c = (cx, cy, cz) with ax, by, cz > 0 and |bx| <= ax/2, |cx| <= ax/2,
|cy| <= by/2. OpenMM requires a cutoff of at most half of each of ax, by and cz.

``minimum_image`` and ``wrap`` use OpenMM's algorithm (shift by c, then b, then a), and accept numpy arrays and
torch tensors alike (torch: differentiable w.r.t. the displacements, any device). Used by the mapping, the
neighbour list, the OpenMM layer and the analysis.
"""
from __future__ import annotations

import itertools

import numpy as np

__all__ = ["check_box", "as_box_frames", "is_reduced", "minimum_image", "wrap", "unwrap_in_time"]

_TILT_EPS = 1e-6   # nm; float32 boxes written by OpenMM / DCD round-trip to ~1e-7


def _to_numpy(box, name: str) -> np.ndarray:
    if hasattr(box, "detach"):          # torch tensor
        return box.detach().cpu().double().numpy()
    from openmm import unit

    from .units import to_array
    return to_array(box, unit.nanometer, name)


def is_reduced(box) -> np.ndarray:
    """Whether box(es) (..., 3, 3) satisfy the tilt limits of OpenMM's reduced form: bool (...,)."""
    b = np.asarray(box, dtype=np.float64)
    return ((np.abs(b[..., 1, 0]) <= 0.5 * b[..., 0, 0] + _TILT_EPS)
            & (np.abs(b[..., 2, 0]) <= 0.5 * b[..., 0, 0] + _TILT_EPS)
            & (np.abs(b[..., 2, 1]) <= 0.5 * b[..., 1, 1] + _TILT_EPS))


def _check_lower_triangular(b: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(b)):
        raise ValueError(f"{name}: expected finite box vectors (nm), got {b.reshape(-1, 3, 3)[0].tolist()}")
    if np.any(b[..., 0, 1:] != 0) or np.any(b[..., 1, 2] != 0):
        raise ValueError(f"{name}: expected OpenMM reduced (lower-triangular) box vectors a = (ax, 0, 0), "
                         f"b = (bx, by, 0), got {b.reshape(-1, 3, 3)[0].tolist()}")
    diag = np.diagonal(b, axis1=-2, axis2=-1)
    if np.any(diag <= 0):
        raise ValueError(f"{name}: expected positive box diagonal (ax, by, cz) in nm, got min {diag.min()}")


def check_box(box, name: str = "box", cutoff_nm: float | None = None) -> np.ndarray:
    """Validate one periodic box in OpenMM's reduced form (and, optionally, against a cutoff).

    Args:
        box: (3, 3) row vectors in nm: array, torch tensor, Quantity, or three ``Vec3`` Quantities.
        name: argument name used in error messages.
        cutoff_nm: if given, the cutoff must be at most half of each width ax, by, cz (OpenMM's rule, under
            which the minimum-image convention is exact).

    Returns:
        (3, 3) float64 numpy array, nm.

    Raises:
        ValueError: wrong shape, non-finite values, not lower triangular, non-positive diagonal, tilts beyond
            the reduced-form limits (|bx|, |cx| <= ax/2, |cy| <= by/2), or ``cutoff_nm`` above half a width.
    """
    arr = _to_numpy(box, name)
    if arr.shape != (3, 3):
        raise ValueError(f"{name}: expected (3, 3) box row vectors in nm, got shape {arr.shape}")
    _check_lower_triangular(arr, name)
    if not bool(is_reduced(arr)):
        raise ValueError(f"{name}: not a reduced triclinic box (need |bx|, |cx| <= ax/2, |cy| <= by/2), "
                         f"got {arr.tolist()}")
    if cutoff_nm is not None:
        half = 0.5 * float(min(arr[0, 0], arr[1, 1], arr[2, 2]))
        if cutoff_nm > half:
            raise ValueError(f"cutoff_nm: expected <= half the smallest width of {name} ({half:.4g} nm; the model "
                             f"cutoff needs a box at least twice as wide), got {cutoff_nm}")
    return arr


def as_box_frames(box, n_frames: int, name: str = "box"):
    """Return ``box`` as (n_frames, 3, 3) float64 row vectors (nm), or None for None.

    Accepts (3,) or (n_frames, 3) orthorhombic edge lengths, (3, 3) or (n_frames, 3, 3) box vectors, arrays or
    Quantities. Box vectors must be lower triangular (OpenMM / mdtraj convention) with positive diagonal; the
    tilt limits of the reduced form are not required (``minimum_image`` handles any such box).

    Raises:
        ValueError: wrong shape, NaN/inf, non-positive diagonal or not lower triangular.
    """
    if box is None:
        return None
    b = _to_numpy(box, name)
    if b.shape == (3,) or (b.shape == (n_frames, 3) and n_frames != 3):
        b = np.einsum("...i,ij->...ij", b, np.eye(3))
    if b.shape == (3, 3):
        b = np.broadcast_to(b, (n_frames, 3, 3))
    if b.shape != (n_frames, 3, 3):
        raise ValueError(f"{name}: expected shape (3,), (3, 3), ({n_frames}, 3) or ({n_frames}, 3, 3) nm, "
                         f"got {b.shape}")
    _check_lower_triangular(b, name)
    return np.ascontiguousarray(b, dtype=np.float64)


def minimum_image(d, box):
    """Minimum-image displacement(s) for lower-triangular box(es) (OpenMM's algorithm: c, then b, then a).

    Args:
        d: (..., 3) displacements in nm, numpy array or torch tensor.
        box: (3, 3) row vectors, or broadcastable per-frame boxes (..., 3, 3), same library as ``d``; None
            returns ``d`` unchanged.

    Returns:
        Same type and shape as ``d`` (numpy: new float64 array). For a reduced box it is the exact minimum
        image of every displacement shorter than half the smallest width. numpy boxes beyond the reduced-form
        tilt limits are completed by a search over the 27 neighbouring images, so the result is the shortest
        image there too; torch boxes must be reduced (validate with :func:`check_box`; not checked here, which
        would cost a host synchronisation).
    """
    if box is None:
        return d
    if hasattr(d, "detach"):   # torch
        import torch
        box = torch.as_tensor(box, dtype=d.dtype, device=d.device)
        for k in (2, 1, 0):
            d = d - torch.round(d[..., k:k + 1] / box[..., k, k:k + 1]) * box[..., k, :]
        return d
    box = np.asarray(box, dtype=np.float64)
    d = np.array(d, dtype=np.float64, copy=True)
    for k in (2, 1, 0):
        d -= np.round(d[..., k] / box[..., k, k])[..., None] * box[..., k, :]
    if not np.all(is_reduced(box)):
        shifts = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=np.float64)   # (27, 3)
        imgs = np.einsum("sj,...jk->...sk", shifts, box)                                     # (..., 27, 3)
        cand = d[..., None, :] + imgs
        best = np.argmin((cand ** 2).sum(-1), axis=-1)
        d = np.take_along_axis(cand, best[..., None, None], axis=-2)[..., 0, :]
    return d


def wrap(x, box):
    """Wrap positions into the brick [0, ax) x [0, by) x [0, cz), which tiles space for a lower-triangular box.

    Args:
        x: (..., n, 3) nm, numpy array or torch tensor.
        box: (3, 3) row vectors, or (..., 3, 3) one per frame.

    Returns:
        Same type and shape as ``x`` (numpy: new float64 array), each position replaced by its periodic image
        in the brick (shifts by c, then b, then a, as OpenMM does).
    """
    if hasattr(x, "detach"):
        import torch
        b = torch.as_tensor(box, dtype=x.dtype, device=x.device).unsqueeze(-3)
        for k in (2, 1, 0):
            x = x - torch.floor(x[..., k:k + 1] / b[..., k, k:k + 1]) * b[..., k, :]
        return x
    x = np.array(x, dtype=np.float64, copy=True)
    b = np.asarray(box, dtype=np.float64)[..., None, :, :]
    for k in (2, 1, 0):
        x -= np.floor(x[..., k] / b[..., k, k])[..., None] * b[..., k, :]
    return x


def unwrap_in_time(positions: np.ndarray, boxes: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
    """Continuous paths from wrapped frames: x'_0 = x_0 (or the image of x_0 nearest ``previous``),
    x'_t = x'_{t-1} + minimum_image(x_t - x_{t-1}).

    Valid when no particle moves more than half a box width between frames.

    Args:
        positions: (F, n, 3) nm. boxes: (F, 3, 3) nm row vectors (see :func:`as_box_frames`).
        previous: (n, 3) nm, the last unwrapped frame of a preceding chunk, or None.

    Returns:
        (F, n, 3) float64 nm.
    """
    x = np.asarray(positions, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.float64)
    start = x[0] if previous is None else previous + minimum_image(x[0] - previous, boxes[0])
    if x.shape[0] < 2:
        return start[None].copy()
    d = minimum_image(np.diff(x, axis=0), boxes[1:, None])
    return np.concatenate([start[None], start[None] + np.cumsum(d, axis=0)], axis=0)
