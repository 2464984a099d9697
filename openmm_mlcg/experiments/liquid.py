"""Liquid-structure benchmark: does the learned step keep the joint structure of a Lennard-Jones liquid?

Protocol (issue 9): reference MD of an LJ liquid (:mod:`openmm_mlcg.systems.lj`, one atom per bead) in two
independent runs, one to train on and one to judge on; train the three GNNs; then, for each variant,

- **one step** from true MD states of the judging run: g(r) of the predicted next frames vs the true next
  frames, and the fraction of nearest-neighbour distances below the reference's 0.1 % quantile;
- **a long rollout** with :class:`~openmm_mlcg.openmm.LearnedIntegrator` in an ``app.Simulation``: g(r) error,
  first-peak height, centre-of-mass-corrected diffusivity D / D_ref, nearest-neighbour distances;
- **cost**: GNN passes and seconds per model step.

Variants: the bundle's refinement sampler ("refined"), the sampler overridden (e.g. the paper's annealed
Langevin schedule), the independent Gaussian ("no refinement"), the mean ("deterministic"), and an oracle:
independent isotropic Gaussian displacements with the exact one-step MSD of the reference ("Gaussian oracle").
"""
from __future__ import annotations

import time
from typing import Dict, Optional

import numpy as np
import torch

__all__ = ["gr", "gr_error", "one_step", "structure_summary", "rollout_metrics", "reference_summary",
           "com_corrected_diffusivity", "override_sampler", "split_gr_error"]


def _subsample(frames: np.ndarray, max_frames: int) -> np.ndarray:
    """At most ``max_frames`` evenly spaced frames."""
    idx = np.unique(np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int))
    return frames[idx]


def gr(positions, box, n_bins: int = 80):
    """g(r) of all bead pairs, (r (n_bins,), g (n_bins,)), up to half the box edge."""
    from ..analysis.rdf import radial_distribution

    x = np.asarray(positions)
    return radial_distribution(x, box, np.arange(x.shape[1]), n_bins=n_bins)


def gr_error(g: np.ndarray, g_ref: np.ndarray) -> float:
    """Mean |g - g_ref| over all bins (the issue's metric)."""
    return float(np.mean(np.abs(np.asarray(g) - np.asarray(g_ref))))


def com_corrected_diffusivity(positions: np.ndarray, time_ps: np.ndarray, masses: np.ndarray,
                              fit_window_ps) -> float:
    """Self-diffusivity (nm^2/ps) from unwrapped positions with the system's centre-of-mass motion removed."""
    from ..analysis.diffusion import fit_diffusivity, mean_squared_displacement, remove_centre_of_mass_drift

    x = remove_centre_of_mass_drift(positions, masses)
    lag, msd = mean_squared_displacement(x, time_ps, max_lag_ps=fit_window_ps[1])
    return float(fit_diffusivity(lag, msd, fit_window_ps)["D_nm2_per_ps"])


def structure_summary(frames: np.ndarray, box: np.ndarray, n_bins: int = 80, max_frames: int = 400) -> dict:
    """g(r) (up to ``max_frames`` frames), first-peak height and nearest-neighbour distances (<= 50 frames).

    Returns:
        dict r, g (lists), peak_height, nn (flat array of nm; not JSON), nn_quantiles (0.1 %, 1 %, 50 %, nm).
    """
    from ..analysis.collisions import nearest_neighbour_distances

    sel = _subsample(np.asarray(frames), max_frames)
    r, g = gr(sel, box, n_bins)
    nn = nearest_neighbour_distances(_subsample(sel, 50), box).ravel()
    return dict(r=r.tolist(), g=g.tolist(), peak_height=float(np.max(g)), nn=nn,
                nn_quantiles=[float(q) for q in np.quantile(nn, [0.001, 0.01, 0.5])])


def override_sampler(bundle, **changes):
    """A copy of a loaded Bundle whose refinement settings are replaced (e.g. sampler, schedule, sigmas_nm).

    Raises:
        ValueError: the changed metadata is invalid (:meth:`openmm_mlcg.model.ModelMetadata.from_dict`).
    """
    import dataclasses

    from ..model import ModelMetadata

    return dataclasses.replace(bundle, metadata=ModelMetadata.from_dict({**bundle.metadata, **changes}, "changes"))


def one_step(bundle, mapping, frames: np.ndarray, box: np.ndarray, starts, variant: dict, seed: int = 0,
             device=None) -> Dict[str, np.ndarray]:
    """Predict one model step from true states.

    Args:
        bundle: loaded Bundle. mapping: CGMapping. frames: (F, n, 3) nm unwrapped judging trajectory, one model
            step apart. box: (3, 3) nm. starts: frame indices t (>= k) to step from (to t + 1).
        variant: dict(refine=bool, deterministic=bool, oracle_msd=None or nm^2 per bead per step).

    Returns:
        dict predicted (len(starts), n, 3) nm, truth (len(starts), n, 3) nm, seconds_per_step, and
        gnn_passes_per_step (``CGDynamicsModel.gnn_passes_per_step``; 0 for the oracle).
    """
    from ..model.simulator import LearnedSimulator

    sim = LearnedSimulator(bundle, mapping, device=device)
    k = sim.history_length
    gen = torch.Generator(device=sim.device).manual_seed(int(seed))
    pred, truth, wall = [], [], 0.0
    for t in starts:
        window = frames[t - k:t + 1]
        if variant.get("oracle_msd") is not None:
            s = np.sqrt(variant["oracle_msd"] / 3.0)
            z = torch.randn(window.shape[1:], generator=gen, dtype=torch.float64).numpy()
            pred.append(window[-1] + s * z)
        else:
            x, h = sim.history_from_positions(window)
            t0 = time.perf_counter()
            xn, _ = sim.step(x, h, box, 1, refine=variant["refine"], generator=gen,
                             deterministic=variant["deterministic"])
            wall += time.perf_counter() - t0
            pred.append(xn.cpu().numpy())
        truth.append(frames[t + 1])
    oracle = variant.get("oracle_msd") is not None
    passes = 0 if oracle else sim.model.gnn_passes_per_step(variant["refine"])
    return dict(predicted=np.stack(pred), truth=np.stack(truth), seconds_per_step=wall / max(len(starts), 1),
                gnn_passes_per_step=passes)


def rollout_metrics(positions: np.ndarray, time_ps: np.ndarray, box: np.ndarray, masses: np.ndarray,
                    ref: dict, fit_window_ps, burn_in: int = 0, max_frames: int = 400) -> dict:
    """Structure and diffusion of a rollout against the reference (``ref`` from :func:`reference_summary`).

    Returns:
        dict gr_error, peak_height, r, g, D_nm2_per_ps (NaN if the rollout is shorter than the fit window),
        D_ratio, nn_below_ref_q001 (fraction), nn_quantiles (0.1 %, 1 %, 50 % in nm).
    """
    x = np.asarray(positions)
    out = structure_summary(x[burn_in:], box, len(ref["g"]), max_frames)
    nn = out.pop("nn")
    try:
        d = com_corrected_diffusivity(x, time_ps, masses, fit_window_ps)
    except ValueError:
        d = float("nan")
    return dict(out, gr_error=gr_error(out["g"], ref["g"]), D_nm2_per_ps=d, D_ratio=d / ref["D_nm2_per_ps"],
                nn_below_ref_q001=float(np.mean(nn < ref["nn_q001"])))


def reference_summary(frames: np.ndarray, time_ps: np.ndarray, box: np.ndarray, masses: np.ndarray,
                      fit_window_ps, n_bins: int = 80, max_frames: int = 400) -> dict:
    """g(r), first-peak height, D (COM corrected) and nearest-neighbour quantiles of the reference run."""
    out = structure_summary(frames, box, n_bins, max_frames)
    nn = out.pop("nn")
    return dict(out, D_nm2_per_ps=com_corrected_diffusivity(frames, time_ps, masses, fit_window_ps),
                nn_q001=float(np.quantile(nn, 0.001)))


def split_gr_error(frames: np.ndarray, box: np.ndarray, n_frames: int, n_bins: int = 80,
                   max_frames: int = 400) -> Optional[float]:
    """g(r) error of the first ``n_frames`` of a run against the rest (the statistical floor of the metric)."""
    if n_frames >= len(frames) - 1:
        return None
    a, b = _subsample(frames[:n_frames], max_frames), _subsample(frames[n_frames:], max_frames)
    return gr_error(gr(a, box, n_bins)[1], gr(b, box, n_bins)[1])

