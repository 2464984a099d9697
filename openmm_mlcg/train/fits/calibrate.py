"""Fit the friction of the ``"cg_langevin"`` sampler to the data's mean-squared displacement (after training).

The learned equilibrium score fixes the structure; the friction gamma fixes the dynamics. As in any Markovian
coarse-grained Langevin model, gamma is fitted to a dynamical observable of the reference data (e.g. Lyubimov
& Guenza, J. Chem. Phys. 138, 12A546 (2013), for friction from diffusion): here, per bead type, the increment of
the mean-squared displacement MSD(L) - MSD(L/2) over a calibration lag of L model steps (the MSD's slope there),
of the training trajectories (every time origin) against the model stepping from true states of them.

**Which lag (a rule on the training data, no per-system setting).** A Markovian model fitted at a short lag
inherits the data's short-time mobility; where the data are still subdiffusive at that lag (an ion rattling in
its cage), its long-time D comes out too high by the ratio of short-time to long-time mobility: on the SPE box
(Li+ log-log MSD slope ~0.5 at 100-400 ps) a 20-ps lag gave Li+ D 5-7x the 2-ns reference whatever the length
of the training data (issue 38). The lag is therefore the shortest one (from 10 model steps) at which the data's
MSD is diffusive for every bead type (log-log slope >= 0.9 over [L/2, L]), and where the data never get there,
the longest lag they hold (half the longest training trajectory): more data then give a better long-time D.
A liquid is diffusive within a few model steps and keeps the short lag. Units: gamma 1/ps, MSD nm^2.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from openmm_mlcg.analysis.diffusion import remove_centre_of_mass_drift
from openmm_mlcg.util.geometry import as_box_frames

from ...generators.cg_langevin import BOLTZMANN_KJ_PER_MOL_K

__all__ = ["calibrate_friction", "data_msd", "model_msd", "data_msd_curve", "automatic_lag", "model_msd_pair",
           "DIFFUSIVE_SLOPE", "FRICTION_BOUNDS", "AT_BOUND_FACTOR", "lag_room", "friction_quality"]

#: log-log slope of the MSD from which the automatic rule calls the data diffusive
DIFFUSIVE_SLOPE = 0.9
#: the friction search bracket of :func:`calibrate_friction`, 1/ps
FRICTION_BOUNDS = (1e-3, 1e5)
#: a fitted friction within this factor of an end of the bracket is at that bound (:func:`friction_quality`)
AT_BOUND_FACTOR = 1.1
#: the group of the bead types too rare for a friction of their own (:func:`calibrate_friction`)
POOLED = "(pooled rare types)"


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


def model_msd(model, trajectories: Sequence, mappings: Sequence, stride: int, lag: int, starts,
              seed: int = 0) -> Dict[str, float]:
    """Bead MSD (nm^2) per bead type of ``model`` (a CGDynamicsModel) over ``lag`` model steps from ``starts``."""
    return _rollout_msd(model, trajectories, mappings, stride, (lag,), starts, seed)[0]


def _total(per_type: Dict[str, float], counts: Dict[str, int]) -> float:
    n = sum(counts.values())
    return float(sum(per_type[t] * counts[t] for t in counts) / n) if n else float("nan")


def data_msd_curve(trajectories: Sequence, mappings: Sequence, stride: int, max_lag: int
                   ) -> Dict[str, np.ndarray]:
    """The data's MSD per bead type (nm^2) at lags 0 .. ``max_lag`` model steps, all time origins
    (:func:`openmm_mlcg.analysis.diffusion.mean_squared_displacement`), periodic systems in their centre-of-mass
    frame; a lag longer than a trajectory is averaged over the trajectories that hold it (NaN where none does).

    Returns:
        {bead type: (max_lag + 1,) MSD}.
    """
    from openmm_mlcg.analysis.diffusion import mean_squared_displacement

    sums: Dict[str, np.ndarray] = {}
    counts: Dict[str, np.ndarray] = {}
    for traj, mp in zip(trajectories, mappings):
        x = np.asarray(traj.positions[::stride], dtype=np.float64)
        if len(x) < 2:
            continue
        if traj.box is not None:
            x = remove_centre_of_mass_drift(x, np.asarray(mp.bead_masses, dtype=np.float64))
        lag_max = min(int(max_lag), len(x) - 1)
        _, msd = mean_squared_displacement(x, np.arange(len(x), dtype=np.float64), max_lag_ps=float(lag_max))
        types = np.asarray([str(t) for t in mp.bead_types])
        for bt in np.unique(types):
            s = sums.setdefault(str(bt), np.zeros(int(max_lag) + 1))
            c = counts.setdefault(str(bt), np.zeros(int(max_lag) + 1))
            sel = types == bt
            s[:lag_max + 1] += msd[:, sel].sum(1)
            c[:lag_max + 1] += sel.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        return {t: np.where(counts[t] > 0, sums[t] / np.maximum(counts[t], 1), np.nan) for t in sums}


def automatic_lag(curve: Dict[str, np.ndarray], minimum: int, maximum: int, slope: float = DIFFUSIVE_SLOPE
                  ) -> Tuple[int, Dict[str, float]]:
    """The calibration lag L (model steps) of the documented rule: the shortest L in [``minimum``, ``maximum``] at
    which every bead type's MSD is diffusive over [L/2, L] (log-log slope >= ``slope``), else ``maximum`` (the
    longest lag the data hold with room for several starts). ``curve``: :func:`data_msd_curve`.

    Returns:
        (L, {bead type: log-log slope of the data's MSD over [L/2, L]}).
    """
    maximum = max(1, int(maximum))
    lo = max(2, min(int(minimum), maximum))

    def slopes(L: int) -> Dict[str, float]:
        """{bead type: log-log slope of its MSD over [L/2, L]} (NaN where undefined)."""
        h = max(1, L // 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            return {t: float(np.log(c[L] / c[h]) / np.log(L / h)) if L > h else float("nan")
                    for t, c in curve.items()}

    for L in range(lo, maximum + 1):
        s = slopes(L)
        if all(np.isfinite(v) and v >= slope for v in s.values()):
            return L, s
    return maximum, slopes(maximum)


@torch.no_grad()
def _rollout_msd(model, trajectories: Sequence, mappings: Sequence, stride: int, checkpoints: Sequence[int], starts,
                 seed: int = 0) -> List[Dict[str, float]]:
    """Bead MSD (nm^2) per bead type of ``model`` after each of the increasing step counts ``checkpoints`` (one
    rollout per start, common random numbers for a given ``seed``)."""
    from openmm_mlcg.model.simulator import LearnedSimulator

    k = int(model.metadata.history)
    values: List[Dict[str, list]] = [{} for _ in checkpoints]
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
        masses = np.asarray(mp.bead_masses, dtype=np.float64)
        types = np.asarray([str(b) for b in mp.bead_types])
        done = 0
        for c, out in zip(checkpoints, values):
            pos, hist = sim.step(pos, hist, box, n_steps=int(c) - done, generator=gen)
            done = int(c)
            sq = _com_free_sq(x[t], pos.cpu().numpy(), masses, traj.box is not None)
            for bt in np.unique(types):
                out.setdefault(str(bt), []).append(sq[types == bt])
    return [_by_type(v) for v in values]


def model_msd_pair(model, trajectories: Sequence, mappings: Sequence, stride: int, half: int, lag: int, starts,
                   seed: int = 0) -> Tuple[Dict[str, float], Dict[str, float]]:
    """Bead MSD (nm^2) per bead type of ``model`` after ``half`` and after ``lag`` model steps from ``starts`` (one
    rollout each, common random numbers for a given ``seed``)."""
    at_half, at_lag = _rollout_msd(model, trajectories, mappings, stride, (half, lag), starts, seed)
    return at_half, at_lag


def _free_friction(inc: float, kt_m: float, steps: int, dt: float) -> float:
    """Friction (1/ps) at which an overdamped free bead (D = kT / (m gamma)) has the MSD increment ``inc`` over
    ``steps`` model steps of ``dt`` ps: the first guess of the search."""
    return 6.0 * kt_m * steps * dt / max(inc, 1e-12)


def lag_room(trajectories: Sequence, stride: int, history: int) -> int:
    """The longest calibration lag (model steps) that ``trajectories`` hold after a history of ``history`` model
    steps: the longest one's model steps (frames every ``stride``) less ``history + 1``."""
    return max(len(t.positions[::stride]) for t in trajectories) - 1 - int(history)


def calibrate_friction(model, trajectories: Sequence, mappings: Sequence, stride: int, lag: Optional[int] = None,
                       n_starts: int = 4, bounds=FRICTION_BOUNDS, iterations: int = 10, seed: int = 0,
                       min_lag: int = 10, tolerance: float = 0.05, min_samples: int = 32) -> dict:
    """Frictions (1/ps per bead type) of the ``"cg_langevin"`` sampler matching the data's MSD increment
    MSD(L) - MSD(L/2) over the calibration lag L (module docstring).

    Each bead type has its own friction, as in any coarse-grained Langevin model whose species differ in
    mobility (a light Li+ ion bound to ether oxygens is slower than its kT/m suggests). A Markovian model
    matched at a short lag inherits the data's short-time mobility: where the data are still subdiffusive there
    (a caged ion: SPE Li+ is at log-log slope ~0.5 over 100-400 ps), its long-time D comes out several times too
    high. So by default (``lag=None``) L is the shortest lag from ``min_lag`` on at which every type's MSD is
    diffusive (:func:`automatic_lag`), else the longest the data hold (half the longest trajectory after the
    history), and the target is the MSD's increment over [L/2, L] (its slope there, which is the long-time D
    where the data are diffusive and the closest the data come to it where they are not). The data's MSD uses
    every time origin; the model's runs ``n_starts`` rollouts per trajectory from true states. One rollout per
    trial gives every type's MSD, so all types are searched at once: a secant in (log gamma, log increment),
    bracketed, bisecting when the secant leaves the bracket, from the free overdamped guess
    ``gamma = 6 (kT/m) (L - L/2) dt / increment``; common random numbers make the increment monotone in gamma.

    Args:
        model: a trained CGDynamicsModel whose metadata says ``sampler="cg_langevin"``.
        trajectories, mappings: CG trajectories (unwrapped, nm) and their mappings (the training parts).
        stride: frames per model step. lag: model steps L (None: the automatic rule; an int is shortened to what
            the data hold). n_starts: true starting states per trajectory. bounds: (low, high) friction, 1/ps.
        iterations: at most this many trials. seed: the model's random numbers (common to all trials).
        min_lag: the automatic rule's shortest lag. tolerance: stop when every type's |log(model / data)| is
            below it (5 %: the model's MSD from a few starts has a sampling noise of that order or more).
        min_samples: a bead type with fewer bead rollouts (beads x starts) has no friction of its own: all such
            types share one, fitted to their pooled MSD (the MSD of a handful of beads is noise: on the polymer test
            set, 24 of 50 sequence-motif types fitted one by one ended > 10 % off their data).

    Returns:
        dict friction_per_ps (bead-count weighted geometric mean: the default for types not seen),
        friction_by_type, lag, half_lag, lag_rule, data_loglog_slope_by_type (over [L/2, L]),
        fitted_to_msd_at_lag (types whose data increment was not positive: fitted to MSD(L) instead), unreached
        (types whose best model increment is > 10 % off the data's: the learned structure holds them tighter or
        looser than any friction in the bracket can mend; theirs is the best trial), data_msd_nm2 and
        model_msd_nm2 (the increments, all beads), the same per fitted group (``..._by_type_nm2``: a type, or
        :data:`POOLED`), pooled_types, n_starts (total), trials, bounds; the metadata's friction unchanged (MSDs NaN)
        when no trajectory is long enough.
    """
    k = int(model.metadata.history)
    room = lag_room(trajectories, stride, k)
    if lag is None:
        curve = data_msd_curve(trajectories, mappings, stride, max(1, room // 2))
        lag, slopes = automatic_lag(curve, min_lag, room // 2)
        rule = f"automatic: first lag >= {min_lag} with every type's MSD slope >= {DIFFUSIVE_SLOPE} over [L/2, L], " \
               f"else half the longest trajectory"
    else:
        lag = max(1, min(int(lag), room))
        curve = data_msd_curve(trajectories, mappings, stride, lag)
        slopes = automatic_lag(curve, lag, lag)[1] if lag >= 2 else {}
        rule = "given"
    gamma0 = float(model.metadata.cg_langevin_friction_per_ps)
    starts = [(i, t) for i, traj in enumerate(trajectories)   # the data's own MSD comes from every origin (curve)
              for t in _starts(len(traj.positions[::stride]), k, lag, n_starts)]
    if not starts or room < 1:
        return dict(friction_per_ps=gamma0, friction_by_type={}, lag=lag, data_msd_nm2=float("nan"),
                    model_msd_nm2=float("nan"), n_starts=0)
    half = lag // 2
    counts: Dict[str, int] = {}
    kt_m: Dict[str, list] = {}
    meta = model.metadata
    for i, _ in starts:
        mp = mappings[i]
        inertial = meta.cg_langevin_masses(torch.as_tensor(np.asarray(mp.bead_masses, dtype=np.float64)))
        for bt, m in zip(mp.bead_types, inertial.reshape(-1).tolist()):
            counts[str(bt)] = counts.get(str(bt), 0) + 1
            kt_m.setdefault(str(bt), []).append(BOLTZMANN_KJ_PER_MOL_K * float(meta.temperature_K) / m)
    curve = {t: c for t, c in curve.items() if t in counts}   # types without a start: the default friction
    # a type with fewer than min_samples bead rollouts has no MSD of its own worth fitting (a few beads of a rare
    # type: polymers with one type per sequence motif); such types share one friction, fitted to their pooled MSD
    rare = sorted(t for t in curve if counts.get(t, 0) < int(min_samples))
    group = {t: (POOLED if t in rare and len(rare) > 1 else t) for t in curve}
    members: Dict[str, list] = {}
    for t, g in group.items():
        members.setdefault(g, []).append(t)

    def pooled(values: Dict[str, float], g: str) -> float:
        """Bead-count weighted mean of ``values`` over the types of group ``g``."""
        return sum(counts[t] * values[t] for t in members[g]) / sum(counts[t] for t in members[g])

    at_lag = {t: float(c[lag]) for t, c in curve.items()}
    at_half = {t: float(c[half]) if half else 0.0 for t, c in curve.items()}
    target = {g: pooled(at_lag, g) - pooled(at_half, g) for g in members}
    # a group with a noisy, non-positive increment is fitted to its MSD at the lag
    whole = {g for g, v in target.items() if not v > 0}
    target.update({g: pooled(at_lag, g) for g in whole})
    device = next(model.parameters()).device
    dt = float(meta.model_time_step_ps)

    def with_frictions(g: Dict[str, float]):
        """The model with frictions ``g`` (1/ps per bead type), in eval mode."""
        new = dataclasses.replace(model.metadata, cg_langevin_friction_by_type=dict(g))
        return type(model)(model.embedding, model.dynamics, model.score, new).to(device).eval()

    lo = {g: math.log(bounds[0]) for g in target}
    hi = {g: math.log(bounds[1]) for g in target}
    guess = {g: min(max(math.log(_free_friction(target[g], float(np.mean([v for t in members[g] for v in kt_m[t]])),
                                                lag - (0 if g in whole else half), dt)), lo[g]), hi[g])
             for g in target}
    prev: Dict[str, tuple] = {}
    best: Dict[str, tuple] = {}
    trials = 0
    for _ in range(int(iterations)):
        trials += 1
        trial = {g: math.exp(guess[g]) for g in target}
        trial_model = with_frictions({t: trial[group[t]] for t in group})
        if half:
            m_half, m_lag = model_msd_pair(trial_model, trajectories, mappings, stride, half, lag, starts, seed)
        else:
            m_half, m_lag = {}, model_msd(trial_model, trajectories, mappings, stride, lag, starts, seed)
        for g in target:
            inc = pooled(m_lag, g) - (pooled(m_half, g) if half and g not in whole else 0.0)
            r = math.log(max(inc, 1e-12) / target[g])
            if g not in best or abs(r) < best[g][2]:
                best[g] = (trial[g], inc, abs(r))
            if r > 0:      # too mobile: more friction
                lo[g] = guess[g]
            else:
                hi[g] = guess[g]
            g_new = guess[g] - r   # the free overdamped response: increment ~ 1 / gamma
            if g in prev and guess[g] != prev[g][0]:
                p = (r - prev[g][1]) / (guess[g] - prev[g][0])
                if p < 0:
                    g_new = guess[g] - r / p
            prev[g] = (guess[g], r)
            guess[g] = g_new if lo[g] < g_new < hi[g] else 0.5 * (lo[g] + hi[g])
        if all(best[g][2] < tolerance for g in target):
            break
    by_type = {t: float(best[group[t]][0]) for t in group}
    n = sum(counts.values())
    mean = math.exp(sum(counts[t] * math.log(by_type[t]) for t in counts) / n)
    model_best = {g: float(best[g][1]) for g in target}
    group_counts = {g: sum(counts[t] for t in members[g]) for g in members}
    return dict(friction_per_ps=float(mean), friction_by_type=by_type, lag=lag, half_lag=half, lag_rule=rule,
                pooled_types=members.get(POOLED, []), min_samples=int(min_samples),
                fitted_to_msd_at_lag=sorted(whole), unreached=sorted(g for g in target if best[g][2] > 0.1),
                data_loglog_slope_by_type=slopes, data_msd_nm2=_total(target, group_counts),
                model_msd_nm2=_total(model_best, group_counts), data_msd_by_type_nm2=target,
                model_msd_by_type_nm2=model_best, n_starts=len(starts), trials=trials,
                bounds=[float(bounds[0]), float(bounds[1])])


def friction_quality(record: Dict, meta=None) -> Dict:
    """The grade (:func:`openmm_mlcg.train.fits.quality.grade`) of a :func:`calibrate_friction` record: per fitted
    group (a bead type, or the pooled rare types) the miss factor max(m / d, d / m) of the model's and the data's
    MSD increments, and the groups whose friction is within :data:`AT_BOUND_FACTOR` of an end of the bracket.

    Args:
        record: the fit's result. meta: the bundle's :class:`openmm_mlcg.model.ModelMetadata` (names the mass floor
            in the advice), or None.
    """
    from .quality import grade, miss_factor, pooled_label

    data, model = record.get("data_msd_by_type_nm2") or {}, record.get("model_msd_by_type_nm2") or {}
    by_type = record.get("friction_by_type") or {}
    low, high = record.get("bounds") or FRICTION_BOUNDS
    entries, bound = {}, []
    for g, d in data.items():
        members = list(record.get("pooled_types") or []) if g == POOLED else [g]
        label = pooled_label(g, members)
        m = float(model.get(g, math.nan))
        entries[label] = (float(d), m, miss_factor(float(d), m))
        gamma = by_type.get(members[0]) if members else None
        if gamma is not None and (gamma <= low * AT_BOUND_FACTOR or gamma >= high / AT_BOUND_FACTOR):
            bound.append(f"{label} at {gamma:.3g} /ps")
    floor = getattr(meta, "cg_langevin_mass_floor_amu", None)
    slow = any(m < d for d, m, _ in entries.values() if np.isfinite(m))
    how = "slower than the data's even at the least" if slow else "faster than the data's even at the most"
    advice = (f"The friction per bead type is searched in [{low:g}, {high:g}] /ps; where none gives the data's MSD, "
              f"the sampler's inertia or learned structure is off (beads {how} friction): "
              f"a bead's inertial mass is at least score.cg_langevin.mass_floor_amu (here "
              f"{'none' if floor is None else f'{floor:g}'} amu; null: the median bead mass, 0: the bead masses), "
              f"its Langevin sub-steps are score.cg_langevin.steps, and a longer training (training.n_steps) "
              f"sharpens the structure. score.cg_langevin.calibration_lag and calibration_starts change the fit alone "
              f"(a resumed run refits without retraining).")
    return grade("MSD increment over the calibration lag, nm^2", ("data", "model"), entries, bound, advice)
