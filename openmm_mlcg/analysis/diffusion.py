"""Mean squared displacement and self-diffusivity from unwrapped positions.

Sources: Einstein relation MSD(t) ~ 6 D t in 3-D; FFT MSD algorithm of Calandrini et al., "nMoldyn",
J. Neutron Res. 2011 (also Kneller et al., Comput. Phys. Commun. 1995); the single-interval estimate
D = |x_T - x_0|^2 / (6 T) is Fu et al., TMLR 2023, appendix B ("Calculation of SPE properties").
Units: nm, ps; 1 nm^2/ps = 1e-14 cm^2 / 1e-12 s = 1e-2 cm^2/s.
"""
from __future__ import annotations

import math

import numpy as np
from openmm import unit

from openmm_mlcg.util.units import to_float

from ..util.geometry import unwrap_in_time
from ._validate import box_array, index_array, masses_array, positions_array, time_array, uniform_spacing

__all__ = ["NM2_PER_PS_TO_CM2_PER_S", "nm2_per_ps_to_cm2_per_s", "unwrap_positions", "centre_of_mass_positions",
           "mean_squared_displacement", "fit_diffusivity", "single_interval_diffusivity", "block_diffusivity",
           "loglog_slope"]

NM2_PER_PS_TO_CM2_PER_S = 1.0e-2


def nm2_per_ps_to_cm2_per_s(value):
    """Convert a diffusivity from nm^2/ps to cm^2/s (multiply by 1e-2); float in -> float out, array -> array."""
    if np.ndim(value):
        return np.asarray(value, dtype=np.float64) * NM2_PER_PS_TO_CM2_PER_S
    return float(value) * NM2_PER_PS_TO_CM2_PER_S


def unwrap_positions(positions, box) -> np.ndarray:
    """Make wrapped trajectories continuous: x'_{t+1} = x'_t + minimum_image(x_{t+1} - x_t).

    Valid when no particle moves more than half a box length between frames.

    Args:
        positions: (F, n, 3) nm (possibly wrapped into the box).
        box: (3,), (3, 3) or (F, 3, 3) nm row vectors; None returns the positions unchanged.

    Returns:
        (F, n, 3) nm unwrapped, starting at positions[0].
    """
    x = positions_array(positions)
    b = box_array(box, x.shape[0])
    if b is None or x.shape[0] < 2:
        return x.copy()
    return unwrap_in_time(x, b)


def centre_of_mass_positions(positions, masses, molecules) -> tuple[np.ndarray, np.ndarray]:
    """Mass-weighted centre of each molecule per frame (molecules must be whole, e.g. unwrapped).

    Args:
        positions: (F, n, 3) nm; masses: (n,) amu; molecules: (n,) int molecule index per particle.

    Returns:
        (com (F, n_molecules, 3) nm, molecule ids (n_molecules,) = np.unique(molecules)).
    """
    x = positions_array(positions)
    n = x.shape[1]
    m = masses_array(masses, n)
    mol = index_array(molecules, n, "molecules")
    ids, inv = np.unique(mol, return_inverse=True)
    w = np.zeros((n, ids.size))
    w[np.arange(n), inv] = m
    w /= w.sum(0)
    return np.einsum("im,fik->fmk", w, x), ids


def remove_centre_of_mass_drift(positions, masses) -> np.ndarray:
    """Subtract the whole system's centre of mass from every frame: (F, n, 3) nm, masses (n,) amu -> (F, n, 3).

    The MSD of a periodic system is measured relative to its centre of mass (a drifting or thermostat-driven
    centre of mass would add its own displacement to every particle and inflate D).

    Raises:
        ValueError: shape mismatch or non-positive total mass.
    """
    x = np.asarray(positions, dtype=np.float64)
    w = np.asarray(masses, dtype=np.float64)
    if x.ndim != 3 or w.shape != (x.shape[1],):
        raise ValueError(f"masses: expected shape ({x.shape[1] if x.ndim == 3 else '?'},) for positions of shape "
                         f"{x.shape}, got {w.shape}")
    if not w.sum() > 0:
        raise ValueError(f"masses: expected a positive total mass, got {w.sum()}")
    return x - (w[None, :, None] * x).sum(1, keepdims=True) / w.sum()


def mean_squared_displacement(positions, time_ps, max_lag_ps=None) -> tuple[np.ndarray, np.ndarray]:
    """MSD per particle averaged over all time origins, via FFT (O(n F log F)).

    MSD_i(k) = 1/(F-k) sum_{t=0}^{F-1-k} |x_i(t+k) - x_i(t)|^2.

    Args:
        positions: (F, n, 3) nm, UNWRAPPED (see :func:`unwrap_positions`).
        time_ps: (F,) ps, evenly spaced.
        max_lag_ps: largest lag, ps (default: half the trajectory length).

    Returns:
        (lag_ps (L,), msd (L, n) nm^2) with lag 0 first.

    Raises:
        ValueError: shape mismatch, NaN, fewer than 2 frames, uneven spacing, max_lag_ps out of range.
    """
    x = positions_array(positions, min_frames=2)
    t = time_array(time_ps, x.shape[0])
    dt = uniform_spacing(t)
    F = x.shape[0]
    if max_lag_ps is None:
        L = max(F // 2, 1)
    else:
        lag = to_float(max_lag_ps, unit.picosecond, "max_lag_ps")
        L = int(math.floor(lag / dt * (1 + 1e-6)))   # DCD headers store the step as float32 (2 -> 2.0000000657 ps)
        if not 1 <= L <= F - 1:
            raise ValueError(f"max_lag_ps: expected in [{dt}, {(F - 1) * dt}] ps for this trajectory, got {lag}")
    nfft = 1 << int(math.ceil(math.log2(2 * F)))
    k = np.arange(L + 1)
    msd = np.empty((L + 1, x.shape[1]))
    chunk = max(1, 4_000_000 // (nfft * 3))  # particles per FFT batch (bounded memory)
    for p0 in range(0, x.shape[1], chunk):
        xc = x[:, p0:p0 + chunk]
        xc = xc - xc.mean(0)  # translation invariance; better FFT conditioning
        fx = np.fft.rfft(xc, n=nfft, axis=0)
        s2 = np.fft.irfft((fx * np.conj(fx)).sum(-1), n=nfft, axis=0)[: L + 1]  # sum_t x(t).x(t+k)
        csum = np.concatenate([np.zeros((1, xc.shape[1])), np.cumsum((xc ** 2).sum(-1), axis=0)])
        tail = csum[F] - csum[k]  # sum_{t=k}^{F-1} x(t)^2
        head = csum[F - k]        # sum_{t=0}^{F-1-k} x(t)^2
        msd[:, p0:p0 + chunk] = (tail + head - 2.0 * s2) / (F - k)[:, None]
    msd[0] = 0.0
    return k * dt, np.maximum(msd, 0.0)


def fit_diffusivity(lag_ps, msd, fit_window_ps) -> dict:
    """Self-diffusivity from a linear least-squares fit MSD(t) = 6 D t + c over a time window.

    Args:
        lag_ps: (L,) ps; msd: (L,) or (L, n) nm^2 (columns are averaged first).
        fit_window_ps: (t_start, t_end) ps; t_end must not exceed the largest lag; needs >= 2 lags inside.

    Returns:
        dict(D_nm2_per_ps, D_cm2_per_s, slope_nm2_per_ps, intercept_nm2, fit_window_ps, n_points).

    Raises:
        ValueError: shape mismatch, bad window, window beyond the largest lag (trajectory too short),
            fewer than 2 lags in the window.
    """
    t = np.asarray(lag_ps, dtype=np.float64)
    y = np.asarray(msd, dtype=np.float64)
    if y.ndim == 2:
        y = y.mean(1)
    if t.ndim != 1 or y.shape != t.shape:
        raise ValueError(f"msd: expected shape ({t.size},) or ({t.size}, n) matching lag_ps, got {np.shape(msd)}")
    if fit_window_ps is None or len(fit_window_ps) != 2:
        raise ValueError(f"fit_window_ps: expected (t_start, t_end) in ps, got {fit_window_ps!r}")
    t0 = to_float(fit_window_ps[0], unit.picosecond, "fit_window_ps[0]")
    t1 = to_float(fit_window_ps[1], unit.picosecond, "fit_window_ps[1]")
    if not t1 > t0 >= 0:
        raise ValueError(f"fit_window_ps: expected 0 <= t_start < t_end, got ({t0}, {t1})")
    # lags from DCD times carry the float32 rounding of the header's step (10 ps -> 9.99999996 ps): a lag within a
    # relative 1e-6 of a window end counts as that end (as mean_squared_displacement's max_lag_ps)
    tol = 1e-6 * max(abs(t1), 1e-9)
    if t.size == 0 or t1 > t.max() + tol:
        raise ValueError(f"fit_window_ps: expected t_end <= the largest MSD lag {t.max() if t.size else 0} ps "
                         f"(trajectory too short for this window), got ({t0}, {t1})")
    sel = (t >= t0 - tol) & (t <= t1 + tol)
    if sel.sum() < 2:
        raise ValueError(f"fit_window_ps: expected at least 2 MSD lags in [{t0}, {t1}] ps, got {int(sel.sum())} "
                         f"(available lags up to {t.max() if t.size else 0} ps; use a longer trajectory or window)")
    slope, intercept = np.polyfit(t[sel], y[sel], 1)
    D = slope / 6.0
    return {"D_nm2_per_ps": float(D), "D_cm2_per_s": float(D * NM2_PER_PS_TO_CM2_PER_S),
            "slope_nm2_per_ps": float(slope), "intercept_nm2": float(intercept),
            "fit_window_ps": [t0, t1], "n_points": int(sel.sum())}


def single_interval_diffusivity(positions, time_ps) -> np.ndarray:
    """Per-particle D = |x_T - x_0|^2 / (6 T) from the first and last frame (paper appendix B), nm^2/ps.

    Average over particles of one type to get the paper's D of that type.

    Args:
        positions: (F, n, 3) nm unwrapped; time_ps: (F,) ps.

    Returns:
        (n,) nm^2/ps.
    """
    x = positions_array(positions, min_frames=2)
    t = time_array(time_ps, x.shape[0])
    T = t[-1] - t[0]
    return ((x[-1] - x[0]) ** 2).sum(-1) / (6.0 * T)


def block_diffusivity(segments, time_ps, fit_window_ps) -> dict:
    """D with a block-average uncertainty: D fitted over the same lag window in each of several independent
    segments (blocks of one trajectory, or independent replicas), mean and standard error over them.

    Source: the block-averaging estimate of the error of a time-correlated mean (Flyvbjerg & Petersen, J. Chem.
    Phys. 91, 461 (1989), doi:10.1063/1.457480), here with D as the block statistic.

    Args:
        segments: sequence of (F_b, n, 3) nm unwrapped positions (each at least as long as the window's end).
        time_ps: (F,) ps evenly spaced, the time axis of the longest segment (each segment uses its own length).
        fit_window_ps: (t_start, t_end) ps lag window of :func:`fit_diffusivity`, the same for every segment.

    Returns:
        dict D_nm2_per_ps (mean over segments), D_cm2_per_s, standard_error_nm2_per_ps (0 for one segment),
        relative_uncertainty, D_segments_nm2_per_ps, fit_window_ps, n_segments.

    Raises:
        ValueError: no segment, or a segment too short for the window (see :func:`fit_diffusivity`).
    """
    segs = list(segments)
    if not segs:
        raise ValueError("segments: expected at least one segment, got none")
    t = np.asarray(time_ps, dtype=np.float64)
    dt = float(f"{uniform_spacing(t):.6g}")   # times read from float32 files (DCD) carry ~1e-7 relative noise
    d = []
    for i, x in enumerate(segs):
        ti = np.arange(np.asarray(x).shape[0]) * dt
        try:
            lag, msd = mean_squared_displacement(x, ti, max_lag_ps=float(fit_window_ps[1]))
        except ValueError as err:
            raise ValueError(f"segments[{i}]: {err}") from None
        d.append(fit_diffusivity(lag, msd, fit_window_ps)["D_nm2_per_ps"])
    d = np.asarray(d, dtype=np.float64)
    se = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else 0.0
    mean = float(d.mean())
    return {"D_nm2_per_ps": mean, "D_cm2_per_s": mean * NM2_PER_PS_TO_CM2_PER_S, "standard_error_nm2_per_ps": se,
            "relative_uncertainty": se / abs(mean) if mean else float("inf"), "D_segments_nm2_per_ps": d.tolist(),
            "fit_window_ps": [float(v) for v in fit_window_ps], "n_segments": int(d.size)}


def loglog_slope(lag_ps, msd, window_ps) -> float:
    """d ln MSD / d ln t over a lag window (1: diffusive; below 1: subdiffusive, where D fitted is an apparent D).

    Args:
        lag_ps: (L,) ps; msd: (L,) or (L, n) nm^2 (columns averaged); window_ps: (t_start, t_end) ps.

    Returns:
        the least-squares slope of ln MSD on ln t over the window's lags with MSD > 0; NaN with fewer than 2.
    """
    t = np.asarray(lag_ps, dtype=np.float64)
    y = np.asarray(msd, dtype=np.float64)
    y = y.mean(1) if y.ndim == 2 else y
    sel = (t >= float(window_ps[0]) - 1e-9) & (t <= float(window_ps[1]) + 1e-9) & (y > 0) & (t > 0)
    return float(np.polyfit(np.log(t[sel]), np.log(y[sel]), 1)[0]) if sel.sum() >= 2 else float("nan")

