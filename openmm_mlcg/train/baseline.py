"""The linear-in-history baseline the Dynamics GNN must beat (issue 9: report it beside the NLL).

Per bead type, the next acceleration is modelled as a linear function of that bead's own k history velocities,
shared across the three Cartesian components (rotation invariant), with one Gaussian std per bead type:
``a / a_std ~ N(sum_j w_{type, j} v_j / a_std, s_type^2)``. It sees no neighbours, so an NLL no better than
this baseline means the networks have not learned to use the configuration.

Fitted by least squares on the training windows; the NLL is evaluated on the validation windows in the same
normalised units and formula as :func:`openmm_mlcg.nn.losses.gaussian_nll` (nats per component).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["linear_history_nll"]


def _windows(dataset, max_windows: int, type_ids: Sequence[np.ndarray]):
    n = len(dataset)
    idx = np.unique(np.linspace(0, n - 1, min(n, max_windows)).round().astype(int))
    feats, targets, types = [], [], []
    for i in idx:
        w = dataset[int(i)]
        v = np.asarray(w["history_velocities"], dtype=np.float64)       # (k, n, 3)
        feats.append(np.moveaxis(v, 0, -1).reshape(-1, v.shape[0]))    # (n * 3, k)
        targets.append(np.asarray(w["target_acceleration"], dtype=np.float64).reshape(-1))
        types.append(np.repeat(type_ids[int(w["system"])], 3))
    return np.concatenate(feats), np.concatenate(targets), np.concatenate(types)


def linear_history_nll(train_ds, val_ds, train_bead_types: Sequence[Sequence[str]],
                       val_bead_types: Sequence[Sequence[str]], acceleration_std: float,
                       max_windows: int = 400) -> float:
    """Validation NLL (nats per component) of the per-bead-type linear-in-history Gaussian baseline.

    Args:
        train_ds, val_ds: :class:`openmm_mlcg.data.WindowDataset` (``val_ds`` may be empty: NaN is returned).
        train_bead_types, val_bead_types: per system of each dataset's ``system`` index, the bead type name of
            each bead (``CGMapping.bead_types``).
        acceleration_std: nm per model step^2, the trainer's normalisation.
        max_windows: windows used from each dataset (evenly spaced).

    Returns:
        float NLL, comparable with the trainer's validation NLL; NaN without validation windows.

    Raises:
        ValueError: ``acceleration_std`` not positive.
    """
    if not (acceleration_std > 0 and math.isfinite(acceleration_std)):
        raise ValueError(f"acceleration_std: expected a positive finite number, got {acceleration_std!r}")
    if len(val_ds) == 0 or len(train_ds) == 0:
        return float("nan")
    names = sorted({t for types in list(train_bead_types) + list(val_bead_types) for t in types})
    code = {t: i for i, t in enumerate(names)}

    def ids(bead_types):
        """Per system, (n,) int64 index of each bead's type among ``names``."""
        return [np.array([code[t] for t in types], dtype=np.int64) for types in bead_types]

    xf, yf, tf = _windows(train_ds, max_windows, ids(train_bead_types))
    xv, yv, tv = _windows(val_ds, max_windows, ids(val_bead_types))
    xf, yf, xv, yv = xf / acceleration_std, yf / acceleration_std, xv / acceleration_std, yv / acceleration_std
    total, count = 0.0, 0
    for c in range(len(names)):
        m, mv = tf == c, tv == c
        if not mv.any():
            continue
        if m.sum() < 10 * xf.shape[1]:        # too few training samples of this type: pooled fit
            m = np.ones_like(tf, dtype=bool)
        w, *_ = np.linalg.lstsq(xf[m], yf[m], rcond=None)
        std = max(float(np.std(yf[m] - xf[m] @ w)), 1e-12)
        z = (yv[mv] - xv[mv] @ w) / std
        total += float(np.sum(0.5 * z * z + math.log(std) + 0.5 * math.log(2 * math.pi)))
        count += int(mv.sum())
    return total / count
