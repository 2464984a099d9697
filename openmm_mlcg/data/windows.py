"""Training windows: k history velocities, current positions, box and target acceleration.

Frames are sub-sampled with ``stride`` so one model step is ``stride * frame_interval_ps``. Targets are built
with :func:`openmm_mlcg.model.dynamics.inverse_update` so that ``dynamics.update(x_t, v_t, a_t)`` gives back
``x_{t+s}`` exactly as the runtime integrator will apply it. Source: Fu et al., TMLR 2023, section 3
("time-integrated" acceleration with semi-implicit Euler in model steps).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from ..model.dynamics import history_velocities, inverse_update
from ..cg.mapping import CGMapping
from .trajectory import CGTrajectory

__all__ = ["WindowDataset"]


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    return int(value)


class WindowDataset(torch.utils.data.Dataset):
    """Windows over one or more CG trajectories (possibly of different systems).

    Args:
        trajectories: list of CGTrajectory (unwrapped positions, nm); all with the same frame interval.
        mappings: one CGMapping per trajectory (checked against ``trajectory.mapping_hash``).
        history: k, number of history velocities.
        stride: s, saved frames per model step.
        every: spacing (in saved frames) between consecutive window start times.
        periodic: True -> every trajectory must have a box; None/False -> no requirement.

    Item ``i`` is a dict (float64 tensors, nm and model steps, the runtime's dtype), for a current frame t:
        system: int index into ``trajectories``;
        positions: (n, 3) x_t (unwrapped);
        history_velocities: (k, n, 3) oldest first, last = x_t - x_{t-s};
        target_acceleration: (n, 3) x_{t+s} - 2 x_t + x_{t-s};
        next_positions: (n, 3) x_{t+s};
        box: (3, 3) box at t, zeros if not periodic.

    Raises:
        ValueError: bad history/stride/every, length mismatch, mapping hash mismatch, different frame
        intervals, a trajectory with fewer than ``history * stride + stride + 1`` frames, missing box.
    """

    def __init__(self, trajectories: Sequence[CGTrajectory], mappings: Sequence[CGMapping], history: int,
                 stride: int, every: int = 1, periodic: Optional[bool] = None):
        self.history = _positive_int(history, "history")
        self.stride = _positive_int(stride, "stride")
        self.every = _positive_int(every, "every")
        trajectories, mappings = list(trajectories), list(mappings)
        if not trajectories:
            raise ValueError("trajectories: expected at least one CGTrajectory, got an empty list")
        if len(mappings) != len(trajectories):
            raise ValueError(f"mappings: expected {len(trajectories)} (one per trajectory), got {len(mappings)}")
        need = (self.history + 1) * self.stride + 1
        index = []
        for i, (traj, mapping) in enumerate(zip(trajectories, mappings)):
            if not isinstance(traj, CGTrajectory):
                raise TypeError(f"trajectories[{i}]: expected CGTrajectory, got {type(traj).__name__}")
            if mapping.hash != traj.mapping_hash:
                raise ValueError(f"mappings[{i}]: hash {mapping.hash[:12]} does not match trajectories[{i}]."
                                 f"mapping_hash {traj.mapping_hash[:12]}")
            if traj.frame_interval_ps != trajectories[0].frame_interval_ps:
                raise ValueError(f"trajectories[{i}]: expected frame_interval_ps "
                                 f"{trajectories[0].frame_interval_ps} like trajectories[0], got "
                                 f"{traj.frame_interval_ps}")
            if periodic and traj.box is None:
                raise ValueError(f"trajectories[{i}].box: periodic=True needs a box, got None")
            if traj.n_frames < need:
                raise ValueError(f"history/stride: history={self.history}, stride={self.stride} need at least "
                                 f"{need} frames, trajectories[{i}] has {traj.n_frames}")
            first, last = self.history * self.stride, traj.n_frames - 1 - self.stride
            t = np.arange(first, last + 1, self.every)
            index.append(np.stack([np.full_like(t, i), t], axis=1))
        self.trajectories = trajectories
        self.mappings = mappings
        self._index = np.concatenate(index)

    @property
    def frame_interval_ps(self) -> float:
        """Time between saved frames, ps (the first trajectory's)."""
        return self.trajectories[0].frame_interval_ps

    @property
    def model_time_step_ps(self) -> float:
        """stride x frame interval, ps."""
        return self.stride * self.frame_interval_ps

    def __len__(self) -> int:
        return int(self._index.shape[0])

    def window(self, system: int, t: int) -> dict:
        """The item for current frame ``t`` of ``trajectories[system]`` (float64 numpy arrays)."""
        traj = self.trajectories[system]
        s, k = self.stride, self.history
        frames = traj.positions[t - k * s: t + 1: s]  # (k+1, n, 3), x_{t-ks} .. x_t
        nxt = traj.positions[t + s]
        _, acc = inverse_update(frames[-2], frames[-1], nxt)
        box = traj.box[t] if traj.box is not None else np.zeros((3, 3))
        return dict(system=int(system), positions=frames[-1], history_velocities=history_velocities(frames),
                    target_acceleration=acc, next_positions=nxt, box=box)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"i: expected index in [0, {len(self)}), got {i}")
        system, t = self._index[i]
        item = self.window(int(system), int(t))
        return {key: (torch.as_tensor(v, dtype=torch.float64) if isinstance(v, np.ndarray) else v)
                for key, v in item.items()}

    def velocity_statistics(self) -> dict:
        """Pooled standard deviation over all components of the stride-s velocities and accelerations of all
        trajectories (nm per model step, nm per model step^2), used to normalise model inputs/outputs."""
        vel, acc = [], []
        s = self.stride
        for traj in self.trajectories:
            x = traj.positions
            vel.append((x[s:] - x[:-s]).reshape(-1))
            acc.append((x[2 * s:] - 2 * x[s:-s] + x[:-2 * s]).reshape(-1))
        return dict(velocity_std=float(np.std(np.concatenate(vel))),
                    acceleration_std=float(np.std(np.concatenate(acc))))
