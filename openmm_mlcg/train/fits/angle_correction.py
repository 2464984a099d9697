"""Bond-angle correction of the ``"cg_langevin"`` sampler, fitted by iterative Boltzmann inversion.

Why: the Score GNN sees bead pairs; the distribution of a CG bond angle is a three-body property it can miss. On
the SPE demo the TFSI- CF3-NO4S2-CF3 angle of the learned rollouts is one hump at 130 deg where the data have
two conformers (near 85 and 165 deg) and almost nothing at 130 (docs/history.md, ablation 12).

What: starting from U = 0, each iteration rolls the sampler out (the trained network, its priors and the current
table, :class:`openmm_mlcg.model.simulator.LearnedSimulator`) from evenly spaced training frames, histograms every
angle type with a Gaussian kernel on the table's knots, and updates
``U(theta) += alpha ln(p_model(theta) / p_data(theta))`` (kT), each density floored at ``min_counts`` samples
(so an angle the data avoid is pushed up only until the model visits it as rarely), clipped to
``max_change_kT`` per iteration (iterative Boltzmann inversion: Reith, Puetz &
Mueller-Plathe, J. Comput. Chem. 24, 1624 (2003), doi:10.1002/jcc.10307). The sin(theta) Jacobian cancels in the
ratio. The first and last intervals are kept flat, so the score stays finite at 0 and 180 deg. One more round of
rollouts measures the final table. The runtime never imports this module: the table travels in the bundle
metadata (``angle_correction``, :class:`openmm_mlcg.priors.angles.AngleCorrection`).
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import torch

from openmm_mlcg.priors.angles import angle_keys, angle_triplets, bond_angles
from openmm_mlcg.util.geometry import as_box_frames
from .pair_correction import require_equilibrium_score

__all__ = ["fit_angle_correction", "angle_histograms", "angle_types", "angle_correction_quality"]


def angle_types(mappings: Sequence) -> list:
    """The sorted angle-type keys (:func:`openmm_mlcg.priors.angles.angle_keys`) of the CG bond angles of
    ``mappings`` (two CG bonds sharing a bead); empty when the beads form no angle."""
    return sorted({k for m in mappings for k in angle_keys(m.bead_types, angle_triplets(m.cg_bonds))})


def angle_correction_quality(record: Dict, meta=None) -> Dict:
    """The grade (:func:`openmm_mlcg.train.fits.quality.grade`) of a :func:`fit_angle_correction` record: per angle
    type the miss factor 1 / overlap of the final table's rollout histogram and the data's, overlap = 1 - L1 / 2
    (the share of probability the two distributions have in common: 1 equal, 0 disjoint; a factor 1.5 is a third
    of the probability misplaced, a factor 100 all but 1 %); the overlap before the first update is reported beside
    it. No parameter of the fit has a bound. ``meta`` is unused (the signature of every fit's grade).
    """
    from .quality import grade

    rounds = record.get("deviation") or []
    first, last = (rounds[0], rounds[-1]) if rounds else ({}, {})
    entries = {}
    for key, dev in last.items():
        overlap, before = 1.0 - 0.5 * float(dev), 1.0 - 0.5 * float(first.get(key, dev))
        entries[key] = (before, overlap, 1.0 / overlap if overlap > 0 else np.inf)
    advice = ("The iterative Boltzmann inversion did not bring the sampler's bond angles to the data's: give more "
              "score.terms.angle_correction_iterations or score.terms.angle_correction_steps (longer rollouts), or "
              "train longer (training.n_steps); set score.terms.angle_correction_iterations to 0 to export without "
              "the correction.")
    return grade("overlap of the model's and the data's angle histograms, 1 = equal",
                 ("before the fit", "after the fit"), entries, (), advice)


def angle_histograms(angles_deg: Dict[str, list], knots_deg: np.ndarray, width_deg: float) -> Dict[str, tuple]:
    """{key: (kernel counts on the knots (K,), number of samples)} of angle samples in degrees per angle type."""
    out = {}
    for key, chunks in angles_deg.items():
        x = np.concatenate(chunks) if chunks else np.zeros(0)
        counts = np.exp(-0.5 * ((x[:, None] - knots_deg[None, :]) / width_deg) ** 2).sum(0) if x.size else \
            np.zeros(knots_deg.size)
        out[key] = (counts, int(x.size))
    return out


@torch.no_grad()
# 108 lines, 23 of them the docstring: one iterative Boltzmann inversion whose loop shares the histograms,
# the table and the rollout state of every iteration.
def fit_angle_correction(model, trajectories: Sequence, mappings: Sequence, stride: int = 1, iterations: int = 8,
                         steps: int = 200, starts: int = 2, alpha: float = 0.5, knot_deg: float = 5.0,
                         width_deg: float = 6.0, min_counts: float = 5.0, max_change_kT: float = 1.0,
                         burn_in: int = 5, seed: int = 0) -> Dict:
    """Fit the bond-angle correction of a trained ``"cg_langevin"`` model (module docstring).

    Args:
        model: :class:`openmm_mlcg.model.CGDynamicsModel` (metadata complete: sigma, frictions, priors); its
            metadata is restored on return.
        trajectories, mappings: the training CG trajectories (positions (F, n, 3) nm, box (F, 3, 3) nm or None)
            and their :class:`openmm_mlcg.cg.mapping.CGMapping`; ``stride``: frames per model step.
        iterations: IBI updates (>= 1). steps: model steps per rollout; starts: rollouts per trajectory, from
            evenly spaced training frames; burn_in: steps left out of each rollout's histogram.
        alpha: damping of the update; knot_deg, width_deg: knot spacing and kernel width, degrees;
            min_counts: kernel counts per knot below which a density counts as that floor (no update where
            both histograms are below it); max_change_kT: clip of the update per iteration, kT.
        seed: rollout RNG seed.

    Returns:
        dict ``table`` (the metadata's ``angle_correction``: knots_deg, U {key: [K values kT]}), ``deviation``
        (one {key: L1 distance of the normalised model and data histograms, 0 = equal, 2 = disjoint} per rollout
        round, ``iterations + 1`` rounds: before each update and for the final table), ``keys``, ``n_samples``
        (data angles per key), ``steps``, ``rollouts`` (per round, over all trajectories).

    Raises:
        ValueError: the model is not a trained ``"cg_langevin"`` one, the mappings have no CG angle, a
            trajectory is too short for one start, or an argument is out of range (named).
    """
    from openmm_mlcg.model.simulator import LearnedSimulator

    meta = model.metadata
    require_equilibrium_score(meta)
    for name, v, ok in (("iterations", iterations, iterations >= 1), ("steps", steps, steps > burn_in >= 0),
                        ("starts", starts, starts >= 1), ("alpha", alpha, 0 < alpha <= 1),
                        ("knot_deg", knot_deg, 0 < knot_deg <= 45), ("width_deg", width_deg, width_deg > 0)):
        if not ok:
            raise ValueError(f"{name}: out of range, got {v!r} (see fit_angle_correction's docstring)")
    knots = np.arange(0.0, 180.0 + 1e-9, float(knot_deg))
    if knots[-1] < 180.0:
        knots = np.append(knots, 180.0)
    names = angle_types(mappings)
    if not names:
        raise ValueError("mappings: expected CG bonds that form at least one angle (two bonds sharing a bead), "
                         "got none")
    trips = [angle_triplets(m.cg_bonds) for m in mappings]
    keys = [np.array(angle_keys(m.bead_types, t), dtype=object) for m, t in zip(mappings, trips)]
    k_hist = int(meta.history)
    device = next(model.parameters()).device
    data: Dict[str, list] = {n: [] for n in names}
    plans, systems = [], []
    for i, (traj, trip, ks) in enumerate(zip(trajectories, trips, keys)):
        x = np.asarray(traj.positions)
        boxes = as_box_frames(traj.box, len(x), f"trajectories[{i}].box")
        th = _angles_np(x, trip, boxes)
        masks = {n: ks == n for n in names}
        for n in names:
            data[n].append(th[:, masks[n]].ravel())
        n_steps = len(x[::stride])
        if n_steps <= k_hist:
            raise ValueError(f"trajectories[{i}]: expected more than {k_hist} model steps of frames "
                             f"(history {k_hist}), got {n_steps}")
        plans += [(i, int(t)) for t in sorted({int(round(t)) for t in np.linspace(k_hist, n_steps - 1, starts)})]
        systems.append((x[::stride], boxes, torch.as_tensor(trip, dtype=torch.long, device=device), masks))
    hd = angle_histograms(data, knots, width_deg)
    U = {n: np.zeros(knots.size) for n in names}
    deviation = []
    try:
        for it in range(iterations + 1):
            table = {"knots_deg": knots.tolist(), "U": {n: U[n].tolist() for n in names}}
            model.metadata = meta.with_score_term("angle_correction", table)
            sims = {}                      # a simulator builds its prior (with the table) from the metadata once
            got: Dict[str, list] = {n: [] for n in names}
            for r, (i, t) in enumerate(plans):
                x, boxes, trip, masks = systems[i]
                if i not in sims:
                    sims[i] = LearnedSimulator(model, mappings[i], device=device)
                sim = sims[i]
                pos, hist = sim.history_from_positions(x[t - k_hist:t + 1])
                box = None if boxes is None else boxes[t * stride]
                tb = None if box is None else torch.as_tensor(box, dtype=torch.float64, device=device)
                gen = torch.Generator(device=pos.device).manual_seed(int(seed) * 100003 + 1009 * it + r)
                for s in range(steps):
                    pos, hist = sim.step(pos, hist, box, n_steps=1, generator=gen)
                    if s >= burn_in:
                        th = np.degrees(bond_angles(pos.to(torch.float64), trip, tb).cpu().numpy())
                        for n in names:
                            got[n].append(th[masks[n]])
            hm = angle_histograms(got, knots, width_deg)
            dev = {}
            for n in names:
                a, b = hd[n][0], hm[n][0]
                pd, pm = a / max(a.sum(), 1e-300), b / max(b.sum(), 1e-300)
                dev[n] = float(np.abs(pm - pd).sum())
                if it == iterations:
                    continue
                # densities below min_counts samples count as that floor: bounded where one histogram is empty
                floor_d, floor_m = min_counts / max(a.sum(), 1e-300), min_counts / max(b.sum(), 1e-300)
                dU = alpha * np.log(np.maximum(pm, floor_m) / np.maximum(pd, floor_d))
                dU = np.where((a >= min_counts) | (b >= min_counts), dU, 0.0)
                U[n] = U[n] + np.clip(dU, -max_change_kT, max_change_kT)
                U[n][0], U[n][-1] = U[n][1], U[n][-2]          # flat ends: finite score at 0 and 180 deg
                U[n] = U[n] - U[n].min()
            deviation.append(dev)
    finally:
        model.metadata = meta
    return dict(table={"knots_deg": knots.tolist(), "U": {n: [float(u) for u in U[n]] for n in names}},
                deviation=deviation, keys=names, n_samples={n: hd[n][1] for n in names}, steps=int(steps),
                rollouts=len(plans))


def _angles_np(x: np.ndarray, trip: np.ndarray, boxes) -> np.ndarray:
    """(F, m) angles in degrees of frames ``x`` (F, n, 3) nm; ``boxes`` (F, 3, 3) nm or None (minimum image)."""
    out = np.empty((x.shape[0], len(trip)))
    t = torch.as_tensor(trip, dtype=torch.long)
    for f in range(x.shape[0]):
        b = None if boxes is None else torch.as_tensor(boxes[f])
        out[f] = np.degrees(bond_angles(torch.as_tensor(x[f], dtype=torch.float64), t, b).numpy())
    return out
