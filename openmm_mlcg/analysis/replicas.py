"""Independent replicas of one labelled trajectory: the views :func:`openmm_mlcg.analysis.analyze` pools them with.

A learned simulator is cheap enough to run several replicas from the same start state (same positions, other
random seeds); an observable's estimate then averages over them, as for independent MD runs. ``analyze`` takes
replicas as positions of shape ``(R, F, n, 3)`` sharing one time axis, and pools them so that every observable is
the average over replicas of what one replica gives:

* frame averages (RDF, R_g^2 distribution) pool the ``R F`` frames (:func:`frames_view`);
* particle averages (MSD, diffusivity, R_g^2 autocorrelation) see the replicas as ``R n`` particles of one
  system whose molecules are renumbered per replica (:func:`particles_view`), so a molecule never spans replicas;
* per-frame counts (collisions) and per-chain maps are averaged over replicas by the caller.

Pooling ``R`` replicas of ``F`` frames is not the same as one run of ``R F`` frames: each replica keeps the
memory of the common start, which a long run forgets (measured on the demo SPE: docs/history.md).
"""
from __future__ import annotations

import numpy as np
from openmm import unit

from openmm_mlcg.util.units import to_array

from ._validate import positions_array

__all__ = ["replica_positions", "frames_view", "particles_view"]


def replica_positions(positions, name: str = "positions", min_frames: int = 1) -> np.ndarray:
    """Positions as float64 ``(R, F, n, 3)`` nm: ``(F, n, 3)`` is one replica, ``(R, F, n, 3)`` R replicas.

    Raises:
        ValueError: naming ``name``, for another shape, fewer than ``min_frames`` frames, no particle or no replica.
    """
    x = to_array(positions, unit.nanometer, name)
    if x.ndim == 4:
        if x.shape[0] < 1:
            raise ValueError(f"{name}: expected at least one replica, got shape {x.shape}")
        return np.stack([positions_array(v, f"{name}[{i}]", min_frames) for i, v in enumerate(x)])
    return positions_array(x, name, min_frames)[None]


def frames_view(x: np.ndarray, box: np.ndarray | None):
    """The ``R F`` frames of ``x`` (R, F, n, 3) as one trajectory (R F, n, 3), with the box repeated per replica.

    ``box``: None or (F, 3, 3) nm. Returns (positions, box or None).
    """
    r, f = x.shape[:2]
    return x.reshape(r * f, *x.shape[2:]), (None if box is None else np.tile(box, (r, 1, 1)))


def particles_view(x: np.ndarray, types: np.ndarray, masses: np.ndarray, molecules: np.ndarray):
    """The replicas of ``x`` (R, F, n, 3) as ``R n`` particles of one trajectory (F, R n, 3), replica-major.

    Returns (positions (F, R n, 3), types (R n,), masses (R n,), molecules (R n,)): the per-bead arrays repeated
    per replica, the molecule indices of replica ``i`` offset by ``i (max + 1)`` so that each replica's molecules
    stay distinct. One replica returns its own arrays unchanged.
    """
    r, f, n = x.shape[:3]
    if r == 1:
        return x[0], types, masses, molecules
    offset = int(molecules.max()) + 1 if molecules.size else 0
    mol = np.concatenate([molecules + i * offset for i in range(r)])
    return (x.transpose(1, 0, 2, 3).reshape(f, r * n, 3), np.tile(types, r), np.tile(masses, r), mol)
