"""Fit the friction of the ``"cg_langevin"`` sampler to the data's mean-squared displacement (after training).

The learned equilibrium score fixes the structure; the friction gamma fixes the dynamics. As in any Markovian
coarse-grained Langevin model, gamma is fitted to a dynamical observable of the reference data (e.g. Lyubimov
& Guenza, J. Chem. Phys. 138, 12A546 (2013), for friction from diffusion): here the mean-squared displacement
of the beads over ``lag`` model steps, from true states of the training trajectories, with the model stepping
from the same states. The MSD falls monotonically with gamma, so a bisection in log gamma on common random
numbers finds it. Units: gamma 1/ps, MSD nm^2.
"""
from __future__ import annotations

import dataclasses
import math
from typing import List, Sequence, Tuple

import numpy as np
import torch

__all__ = ["calibrate_friction", "data_msd", "model_msd"]


def _starts(n_frames: int, history: int, lag: int, n_starts: int) -> List[int]:
    lo, hi = history, n_frames - 1 - lag
    if hi < lo:
        return []
    return sorted({int(round(t)) for t in np.linspace(lo, hi, n_starts)})


def _com_free_msd(x0: np.ndarray, x1: np.ndarray, masses: np.ndarray, periodic: bool) -> float:
    d = x1 - x0
    if periodic:  # the periodic system's centre of mass is not an observable (the runtime removes its drift)
        w = masses / masses.sum()
        d = d - (w[:, None] * d).sum(0, keepdims=True)
    return float((d ** 2).sum(-1).mean())


def data_msd(trajectories: Sequence, mappings: Sequence, stride: int, history: int, lag: int,
             n_starts: int) -> Tuple[float, list]:
    """Bead MSD (nm^2) of the data over ``lag`` model steps, averaged over up to ``n_starts`` starts per trajectory.

    Returns:
        (MSD, [(trajectory index, start frame in model steps), ...]); MSD is NaN when no trajectory is long enough.
    """
    values, starts = [], []
    for i, (traj, mp) in enumerate(zip(trajectories, mappings)):
        x = np.asarray(traj.positions[::stride])
        masses = np.asarray(mp.bead_masses, dtype=np.float64)
        for t in _starts(len(x), history, lag, n_starts):
            values.append(_com_free_msd(x[t], x[t + lag], masses, traj.box is not None))
            starts.append((i, t))
    return (float(np.mean(values)) if values else float("nan")), starts


@torch.no_grad()
def model_msd(model, trajectories: Sequence, mappings: Sequence, stride: int, lag: int, starts, seed: int = 0) -> float:
    """Bead MSD (nm^2) of ``model`` (a CGDynamicsModel) over ``lag`` model steps from the true states ``starts``."""
    from openmm_mlcg.simulator import LearnedSimulator

    k = int(model.metadata.history)
    values = []
    sims = {}
    for n, (i, t) in enumerate(starts):
        traj, mp = trajectories[i], mappings[i]
        if i not in sims:
            sims[i] = LearnedSimulator(model, mp, device=next(model.parameters()).device)
        sim = sims[i]
        x = np.asarray(traj.positions[::stride])
        pos, hist = sim.history_from_positions(x[t - k:t + 1])
        box = None if traj.box is None else np.asarray(traj.box[t * stride] if np.ndim(traj.box) == 3 else traj.box)
        gen = torch.Generator(device=pos.device).manual_seed(int(seed) * 100003 + n)
        out, _ = sim.step(pos, hist, box, n_steps=lag, generator=gen)
        values.append(_com_free_msd(x[t], out.cpu().numpy(), np.asarray(mp.bead_masses, dtype=np.float64),
                                    traj.box is not None))
    return float(np.mean(values))


def calibrate_friction(model, trajectories: Sequence, mappings: Sequence, stride: int, lag: int = 10,
                       n_starts: int = 4, bounds=(1e-2, 1e2), iterations: int = 10, seed: int = 0):
    """Friction (1/ps) of the ``"cg_langevin"`` sampler that matches the data's MSD over ``lag`` model steps.

    Args:
        model: a trained CGDynamicsModel whose metadata says ``sampler="cg_langevin"``.
        trajectories, mappings: CG trajectories (unwrapped, nm) and their mappings (the training parts).
        stride: frames per model step. lag: model steps of the MSD (shortened to what the data holds).
        n_starts: true starting states per trajectory. bounds: (low, high) friction range, 1/ps.
        iterations: bisection steps in log gamma. seed: the model's random numbers (common to all trials).

    Returns:
        dict friction_per_ps, lag, data_msd_nm2, model_msd_nm2, n_starts (the total used); friction is the
        metadata's value unchanged (and the MSDs NaN) when no trajectory is long enough.
    """
    k = int(model.metadata.history)
    longest = max(len(t.positions[::stride]) for t in trajectories)
    lag = max(1, min(int(lag), longest - 1 - k))
    target, starts = data_msd(trajectories, mappings, stride, k, lag, n_starts)
    gamma0 = float(model.metadata.cg_langevin_friction_per_ps)
    if not starts:
        return dict(friction_per_ps=gamma0, lag=lag, data_msd_nm2=float("nan"), model_msd_nm2=float("nan"),
                    n_starts=0)

    def with_friction(g: float):
        meta = dataclasses.replace(model.metadata, cg_langevin_friction_per_ps=float(g))
        return type(model)(model.embedding, model.dynamics, model.score, meta).to(next(model.parameters()).device)

    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    best = None
    for _ in range(int(iterations)):
        mid = 0.5 * (lo + hi)
        msd = model_msd(with_friction(math.exp(mid)).eval(), trajectories, mappings, stride, lag, starts, seed)
        if best is None or abs(math.log(msd / target)) < abs(math.log(best[1] / target)):
            best = (math.exp(mid), msd)
        if msd > target:  # too mobile: more friction
            lo = mid
        else:
            hi = mid
    return dict(friction_per_ps=float(best[0]), lag=lag, data_msd_nm2=target, model_msd_nm2=float(best[1]),
                n_starts=len(starts))
