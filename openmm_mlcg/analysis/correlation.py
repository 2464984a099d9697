"""Time autocorrelation functions and relaxation times (e.g. of R_g^2).

Source: Fu et al., TMLR 2023, section 4.1 ("Relaxation time scale") and appendix B:
ACF(y) = (<R(t) R(t+y)>_t - <R>^2) / (<R^2>_t - <R>^2) for the series R = R_g^2, and the relaxation time
t_{R_g^2} is the lag at which the ACF decays to 1/e.
"""
from __future__ import annotations

import math

import numpy as np
from openmm import unit

from openmm_mlcg.util.units import to_array, to_float

__all__ = ["autocorrelation", "relaxation_time"]


def autocorrelation(series, max_lag: int | None = None) -> np.ndarray:
    """Normalised autocorrelation function of a scalar time series (FFT, O(F log F)).

    ACF(k) = [ sum_{t=0}^{F-1-k} (y_t - <y>)(y_{t+k} - <y>) / (F - k) ] / var(y), so ACF(0) = 1 and every
    available time origin is used for every lag (paper appendix B).

    Args:
        series: (F,) values at evenly spaced times, or (F, c) for c independent series (computed column-wise).
        max_lag: largest lag in frames (default F // 2, the usual limit for a reliable estimate).

    Returns:
        (max_lag + 1,) or (max_lag + 1, c) ACF at lags 0..max_lag frames.

    Raises:
        ValueError: fewer than 3 values, NaN, constant series, max_lag outside [1, F-1].
    """
    y = np.asarray(series, dtype=np.float64)
    if y.ndim not in (1, 2) or y.shape[0] < 3:
        raise ValueError(f"series: expected shape (F,) or (F, c) with F >= 3, got {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("series: expected finite values, found NaN/inf")
    F = y.shape[0]
    max_lag = F // 2 if max_lag is None else int(max_lag)
    if not 1 <= max_lag <= F - 1:
        raise ValueError(f"max_lag: expected an integer in [1, {F - 1}], got {max_lag}")
    col = y.reshape(F, -1) - y.reshape(F, -1).mean(0)
    var = (col ** 2).mean(0)
    if np.any(var <= 0):
        raise ValueError("series: expected a non-constant series (zero variance)")
    nfft = 1 << int(math.ceil(math.log2(2 * F)))
    f = np.fft.rfft(col, n=nfft, axis=0)
    acov = np.fft.irfft(f * np.conj(f), n=nfft, axis=0)[: max_lag + 1]
    acf = acov / (F - np.arange(max_lag + 1))[:, None] / var
    return acf[:, 0] if y.ndim == 1 else acf


def relaxation_time(acf, dt_ps, threshold: float = 1.0 / math.e, method: str = "crossing",
                    fit_floor: float = 0.1) -> float:
    """Relaxation time of a normalised ACF, ps.

    method="crossing" (default): first lag at which the ACF drops below ``threshold`` (1/e), linearly interpolated
        between the two bracketing lags.
    method="fit": least-squares fit of exp(-t / tau) (through ACF(0) = 1) to the ACF up to its first value below
        ``fit_floor``; the 1/e time of the fit is tau (the paper's description, appendix B).

    Args:
        acf: (L,) ACF at lags 0, dt, 2 dt, ... with acf[0] = 1.
        dt_ps: lag spacing, ps (float or Quantity), > 0.
        threshold: level defining the crossing (default 1/e).
        method: "crossing" or "fit".
        fit_floor: lower ACF limit of the fitted range (method="fit").

    Returns:
        tau in ps; NaN if the ACF never drops below the threshold within the given lags (trajectory too short).

    Raises:
        ValueError: bad shapes, non-positive dt_ps, unknown method.
    """
    a = to_array(acf, unit.dimensionless, "acf")
    if a.ndim != 1 or a.size < 2:
        raise ValueError(f"acf: expected shape (L,) with L >= 2, got {a.shape}")
    dt = to_float(dt_ps, unit.picosecond, "dt_ps")
    if dt <= 0:
        raise ValueError(f"dt_ps: expected > 0 ps, got {dt}")
    if method not in ("crossing", "fit"):
        raise ValueError(f"method: expected 'crossing' or 'fit', got {method!r}")
    below = np.nonzero(a < threshold)[0]
    if below.size == 0:
        return float("nan")
    if method == "crossing":
        k = int(below[0])
        if k == 0:
            return 0.0
        a0, a1 = a[k - 1], a[k]
        return float(dt * (k - 1 + (a0 - threshold) / (a0 - a1)))
    stop = np.nonzero(a < fit_floor)[0]
    end = int(stop[0]) if stop.size else a.size
    t = np.arange(end) * dt
    keep = a[:end] > 0
    t, la = t[keep], np.log(a[:end][keep])
    if t.size < 2 or np.sum(t * la) >= 0:
        return float("nan")
    return float(-np.sum(t * t) / np.sum(t * la))
