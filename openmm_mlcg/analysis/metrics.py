"""Agreement metrics between predicted and reference observables (paper Table 2).

Sources: coefficient of determination as in scikit-learn ``r2_score``; mean absolute error; earth mover's
(1-Wasserstein) distance via ``scipy.stats.wasserstein_distance``; Fu et al., TMLR 2023, section 4.1.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy.stats import wasserstein_distance

__all__ = ["r2_score", "mean_absolute_error", "earth_movers_distance", "finite_rdf_errors", "mean_rdf_errors",
           "worst_rdf_pairs"]


def _pair(y_true, y_pred):
    a = np.asarray(y_true, dtype=np.float64).ravel()
    b = np.asarray(y_pred, dtype=np.float64).ravel()
    if a.size == 0 or a.shape != b.shape:
        raise ValueError(f"y_pred: expected the same non-empty size as y_true ({a.size}), got {b.size}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("y_true/y_pred: expected finite values, found NaN/inf")
    return a, b


def r2_score(y_true, y_pred) -> float:
    """Coefficient of determination 1 - sum (y - f)^2 / sum (y - mean y)^2 (scikit-learn definition).

    Returns 1.0 for a perfect prediction; if y_true is constant, 1.0 when perfect else 0.0 (as scikit-learn).
    Can be negative.
    """
    a, b = _pair(y_true, y_pred)
    ss_res = float(((a - b) ** 2).sum())
    ss_tot = float(((a - a.mean()) ** 2).sum())
    if ss_tot == 0.0:
        return 1.0 if ss_res == 0.0 else 0.0
    return 1.0 - ss_res / ss_tot


def mean_absolute_error(y_true, y_pred) -> float:
    """Mean of |y_true - y_pred| (same units as the inputs)."""
    a, b = _pair(y_true, y_pred)
    return float(np.abs(a - b).mean())


def earth_movers_distance(u_values, v_values, u_weights=None, v_weights=None) -> float:
    """1-Wasserstein (earth mover's) distance between two 1-D samples or weighted histograms.

    Args:
        u_values, v_values: samples (any size >= 1) or histogram bin centres; weights optional (e.g. densities).

    Returns:
        distance in the units of the values (e.g. nm^2 for R_g^2).
    """
    u = np.asarray(u_values, dtype=np.float64).ravel()
    v = np.asarray(v_values, dtype=np.float64).ravel()
    if u.size == 0 or v.size == 0 or not (np.all(np.isfinite(u)) and np.all(np.isfinite(v))):
        raise ValueError(f"u_values/v_values: expected non-empty finite samples, got sizes {u.size}, {v.size}")
    return float(wasserstein_distance(u, v, u_weights, v_weights))


def finite_rdf_errors(metrics: Mapping) -> dict:
    """{label: {pair: mean |g - g_ref|}} of ``analyze(...)["metrics"]``, only finite values, labels without any
    left out."""
    out = {}
    for label, m in metrics.items():
        vals = {p: float(e) for p, e in ((m or {}).get("rdf_mae") or {}).items()
                if e is not None and math.isfinite(float(e))}
        if vals:
            out[label] = vals
    return out


def mean_rdf_errors(metrics: Mapping, labels=None) -> tuple:
    """({label: mean RDF error}, number of pairs): each of ``labels`` (default: every label with an RDF error)
    averaged over the bead-type pairs that all of them have (:func:`finite_rdf_errors`); labels without any
    error are left out, and do not restrict the pairs."""
    errors = finite_rdf_errors(metrics)
    labels = [k for k in (errors if labels is None else labels) if k in errors]
    common = set.intersection(*(set(errors[k]) for k in labels)) if labels else set()
    if not common:
        return {}, 0
    return {k: float(np.mean([errors[k][p] for p in common])) for k in labels}, len(common)


def worst_rdf_pairs(metrics: Mapping) -> dict:
    """{pair: [labels]}: the bead-type pair of largest RDF error of each compared label (:func:`finite_rdf_errors`)."""
    out: dict = {}
    for label, per in finite_rdf_errors(metrics).items():
        out.setdefault(max(per, key=per.get), []).append(label)
    return out
