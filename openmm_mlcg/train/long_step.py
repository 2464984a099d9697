"""How far one model step moves a bead against the distance to its neighbours: the measure of a long step.

At a model step longer than the data's frame interval the default step can "jump and relax"
(``score.cg_langevin.relax_ps``, :mod:`openmm_mlcg.generators.cg_langevin`). Whether that keeps the structure was
measured to follow one number of the training data, ``d / r_nn``: one model step's rms bead displacement over the
median nearest-neighbour distance (each bead's nearest other bead within the cutoff). The SPE demo box at 10, 20
and 50 ps has 0.52, 0.61 and 0.77, and jump and relax keeps the 2-ps step's RDF error there (0.170, 0.165, 0.166
against 0.174); the LJ liquid at 10 ps has 1.26 (every atom leaves its cage within a step), where jump and relax is
worse than the plain step (g(r) error 0.29 against 0.17); ``docs/benchmarks.md``, "Long model steps". The trainer
records it in the bundle (``long_step_displacement``) at every model step longer than one frame; a rule that
switches jump and relax on from it is not the default yet (the LJ liquid's shipped 2-ps step is two 1-ps frames
with d / r_nn = 0.55, where the plain step is the validated one).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["step_displacement_ratio"]


def step_displacement_ratio(trajectories: Sequence, stride: int, cutoff_nm: float, max_frames: int = 50) -> dict:
    """One model step's rms bead displacement over the median nearest-neighbour distance of CG trajectories.

    Args:
        trajectories: CG trajectories (``positions`` (F, n, 3) nm, unwrapped; ``box`` (3, 3) or (F, 3, 3) nm or
            None). stride: frames per model step. cutoff_nm: radius searched for neighbours (nm); beads with none
            inside it are left out of the median. max_frames: frames per trajectory searched for neighbours.

    Returns:
        dict(rms_step_nm, nn_distance_nm, ratio); ratio is nan when no trajectory has stride + 1 frames or no
        bead has a neighbour within the cutoff.
    """
    from ..nn.neighbors import build_edges

    sq, nn = [], []
    for traj in trajectories:
        x = np.asarray(traj.positions, dtype=np.float64)
        if len(x) <= stride:
            continue
        sq.append(np.sum((x[stride:] - x[:-stride]) ** 2, axis=-1).ravel())
        box_all = None if traj.box is None else np.asarray(traj.box, dtype=np.float64)
        no_bonds = torch.zeros((2, 0), dtype=torch.long)
        for f in np.unique(np.linspace(0, len(x) - 1, min(len(x), max_frames)).round().astype(int)):
            box = None if box_all is None else torch.as_tensor(box_all[f] if box_all.ndim == 3 else box_all)
            ei, vec, _ = build_edges(torch.as_tensor(x[f]), box, float(cutoff_nm), no_bonds)
            near = torch.full((x.shape[1],), float("inf"), dtype=torch.float64).scatter_reduce(
                0, ei[0], vec.norm(dim=-1), reduce="amin")
            nn.append(near[torch.isfinite(near)].numpy())
    rms = float(np.sqrt(np.mean(np.concatenate(sq)))) if sq else float("nan")
    r_nn = float(np.median(np.concatenate(nn))) if nn and sum(len(v) for v in nn) else float("nan")
    return dict(rms_step_nm=rms, nn_distance_nm=r_nn, ratio=rms / r_nn if np.isfinite(r_nn) and r_nn > 0
                else float("nan"))
