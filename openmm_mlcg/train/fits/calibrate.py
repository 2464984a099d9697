"""Fit the friction of the ``"cg_langevin"`` sampler to the data's mean-squared displacement (after training).

The learned equilibrium score fixes the structure; the friction gamma fixes the dynamics. As in any Markovian
coarse-grained Langevin model, gamma is fitted to a dynamical observable of the reference data (e.g. Lyubimov
& Guenza, J. Chem. Phys. 138, 12A546 (2013), for friction from diffusion): here the mean-squared displacement
of each bead type over ``lag`` model steps, from true states of the training trajectories, with the model
stepping from the same states. The MSD falls monotonically with gamma, so a bisection in log gamma on common
random numbers finds it. Units: gamma 1/ps, MSD nm^2.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from openmm_mlcg.analysis.diffusion import remove_centre_of_mass_drift
from openmm_mlcg.util.geometry import as_box_frames

__all__ = ["calibrate_friction", "data_msd", "model_msd"]


def _starts(n_frames: int, history: int, lag: int, n_starts: int) -> List[int]:
    lo, hi = history, n_frames - 1 - lag
    if hi < lo:
        return []
    return sorted({int(round(t)) for t in np.linspace(lo, hi, n_starts)})


def _com_free_sq(x0: np.ndarray, x1: np.ndarray, masses: np.ndarray, periodic: bool) -> np.ndarray:
    """Squared displacement per bead (n,), nm^2; periodic systems in their centre-of-mass frame (the runtime
    removes the periodic system's drift, as :func:`openmm_mlcg.analysis.diffusion.remove_centre_of_mass_drift`)."""
    x = np.stack([x0, x1])
    if periodic:
        x = remove_centre_of_mass_drift(x, masses)
    return ((x[1] - x[0]) ** 2).sum(-1)


def _by_type(values: Dict[str, list]) -> Dict[str, float]:
    return {t: float(np.mean(np.concatenate(v))) for t, v in values.items()}


def data_msd(trajectories: Sequence, mappings: Sequence, stride: int, history: int, lag: int,
             n_starts: int) -> Tuple[Dict[str, float], list]:
    """Bead MSD (nm^2) of the data over ``lag`` model steps per bead type, over up to ``n_starts`` starts per
    trajectory.

    Returns:
        ({bead type: MSD}, [(trajectory index, start frame in model steps), ...]); empty when no trajectory is
        long enough.
    """
    values: Dict[str, list] = {}
    starts = []
    for i, (traj, mp) in enumerate(zip(trajectories, mappings)):
        x = np.asarray(traj.positions[::stride])
        masses = np.asarray(mp.bead_masses, dtype=np.float64)
        types = np.asarray([str(t) for t in mp.bead_types])
        for t in _starts(len(x), history, lag, n_starts):
            sq = _com_free_sq(x[t], x[t + lag], masses, traj.box is not None)
            for bt in np.unique(types):
                values.setdefault(str(bt), []).append(sq[types == bt])
            starts.append((i, t))
    return _by_type(values), starts


@torch.no_grad()
def model_msd(model, trajectories: Sequence, mappings: Sequence, stride: int, lag: int, starts,
              seed: int = 0) -> Dict[str, float]:
    """Bead MSD (nm^2) per bead type of ``model`` (a CGDynamicsModel) over ``lag`` model steps from ``starts``."""
    from openmm_mlcg.model.simulator import LearnedSimulator

    k = int(model.metadata.history)
    values: Dict[str, list] = {}
    sims = {}
    for n, (i, t) in enumerate(starts):
        traj, mp = trajectories[i], mappings[i]
        if i not in sims:
            sims[i] = LearnedSimulator(model, mp, device=next(model.parameters()).device)
        sim = sims[i]
        x = np.asarray(traj.positions[::stride])
        pos, hist = sim.history_from_positions(x[t - k:t + 1])
        box = None if traj.box is None else as_box_frames(traj.box, len(traj.positions))[t * stride]
        gen = torch.Generator(device=pos.device).manual_seed(int(seed) * 100003 + n)
        out, _ = sim.step(pos, hist, box, n_steps=lag, generator=gen)
        sq = _com_free_sq(x[t], out.cpu().numpy(), np.asarray(mp.bead_masses, dtype=np.float64),
                          traj.box is not None)
        types = np.asarray([str(b) for b in mp.bead_types])
        for bt in np.unique(types):
            values.setdefault(str(bt), []).append(sq[types == bt])
    return _by_type(values)


def _total(per_type: Dict[str, float], counts: Dict[str, int]) -> float:
    n = sum(counts.values())
    return float(sum(per_type[t] * counts[t] for t in counts) / n) if n else float("nan")


def calibrate_friction(model, trajectories: Sequence, mappings: Sequence, stride: int, lag: int = 10,
                       n_starts: int = 4, bounds=(1e-3, 1e5), iterations: int = 12, seed: int = 0) -> dict:
    """Frictions (1/ps per bead type) of the ``"cg_langevin"`` sampler matching the data's MSD over ``lag`` steps.

    Each bead type has its own friction, as in any coarse-grained Langevin model whose species differ in
    mobility (a light Li+ ion bound to ether oxygens is slower than its kT/m suggests). One rollout per trial
    gives the MSD of every type, so all types are bisected at once (in log gamma, common random numbers).

    Args:
        model: a trained CGDynamicsModel whose metadata says ``sampler="cg_langevin"``.
        trajectories, mappings: CG trajectories (unwrapped, nm) and their mappings (the training parts).
        stride: frames per model step. lag: model steps of the MSD (shortened to what the data holds).
        n_starts: true starting states per trajectory. bounds: (low, high) friction range, 1/ps.
        iterations: bisection steps (12 over 8 decades: 0.7 % in gamma). seed: the model's random numbers
            (common to all trials). The upper bound is high because a light ion bound in a polymer (Li+ in PEO)
            diffuses ~1e4 times slower than its free kT / (m gamma) at gamma = 1 / ps.

    Returns:
        dict friction_per_ps (bead-count weighted geometric mean: the default for types not seen),
        friction_by_type, lag, data_msd_nm2 and model_msd_nm2 (all beads), the same per type, n_starts (total);
        the metadata's friction unchanged (MSDs NaN) when no trajectory is long enough.
    """
    k = int(model.metadata.history)
    longest = max(len(t.positions[::stride]) for t in trajectories)
    lag = max(1, min(int(lag), longest - 1 - k))
    target, starts = data_msd(trajectories, mappings, stride, k, lag, n_starts)
    gamma0 = float(model.metadata.cg_langevin_friction_per_ps)
    if not starts:
        return dict(friction_per_ps=gamma0, friction_by_type={}, lag=lag, data_msd_nm2=float("nan"),
                    model_msd_nm2=float("nan"), n_starts=0)
    counts: Dict[str, int] = {}
    for i, _ in starts:
        for bt in mappings[i].bead_types:
            counts[str(bt)] = counts.get(str(bt), 0) + 1
    device = next(model.parameters()).device

    def with_frictions(g: Dict[str, float]):
        """The model with frictions ``g`` (1/ps per bead type), in eval mode."""
        meta = dataclasses.replace(model.metadata, cg_langevin_friction_by_type=dict(g))
        return type(model)(model.embedding, model.dynamics, model.score, meta).to(device).eval()

    lo = {t: math.log(bounds[0]) for t in target}
    hi = {t: math.log(bounds[1]) for t in target}
    best: Dict[str, tuple] = {}
    for _ in range(int(iterations)):
        trial = {t: math.exp(0.5 * (lo[t] + hi[t])) for t in target}
        msd = model_msd(with_frictions(trial), trajectories, mappings, stride, lag, starts, seed)
        for t in target:
            err = abs(math.log(msd[t] / target[t]))
            if t not in best or err < best[t][2]:
                best[t] = (trial[t], msd[t], err)
            if msd[t] > target[t]:  # too mobile: more friction
                lo[t] = math.log(trial[t])
            else:
                hi[t] = math.log(trial[t])
    by_type = {t: float(best[t][0]) for t in target}
    n = sum(counts.values())
    mean = math.exp(sum(counts[t] * math.log(by_type[t]) for t in counts) / n)
    model_best = {t: float(best[t][1]) for t in target}
    return dict(friction_per_ps=float(mean), friction_by_type=by_type, lag=lag,
                data_msd_nm2=_total(target, counts), model_msd_nm2=_total(model_best, counts),
                data_msd_by_type_nm2=target, model_msd_by_type_nm2=model_best, n_starts=len(starts))
