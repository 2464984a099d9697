"""Multi-scale input noise on history positions, with targets corrected for the noise.

Following Sanchez-Gonzalez et al. 2020 (ICML, "Learning to simulate complex physics with graph networks",
section 3 "Training noise"), the model is trained on corrupted inputs so that at rollout time it is robust to
its own accumulated errors: the history positions are perturbed, the velocities are recomputed from the noisy
positions, and the target acceleration is recomputed so that the update from the noisy current state still
lands on the *true* next position. Multi-scale: every window gets its own noise std, drawn log-uniformly.

Units: positions nm, velocities nm per model step, accelerations nm per model step^2 (see
:mod:`openmm_mlcg.model.dynamics`).
"""
from __future__ import annotations

import math
from typing import Optional

import torch

__all__ = ["log_uniform", "history_positions", "noisy_history"]


def log_uniform(n: int, low: float, high: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Draw ``n`` values log-uniformly in ``[low, high]`` (float32, CPU).

    Raises:
        ValueError: ``low`` <= 0 or ``high`` < ``low``.
    """
    if not low > 0:
        raise ValueError(f"low: expected > 0, got {low}")
    if high < low:
        raise ValueError(f"high: expected >= low={low}, got {high}")
    u = torch.rand(n, generator=generator)
    return torch.exp(math.log(low) + u * (math.log(high) - math.log(low))).float()


def history_positions(positions: torch.Tensor, velocities: torch.Tensor) -> torch.Tensor:
    """Reconstruct the k+1 history positions from the current position and the k history velocities.

    Args:
        positions: (n, 3) current positions x_t, nm.
        velocities: (n, k, 3) history velocities, oldest first; entry j = x_{t-k+j+1} - x_{t-k+j}.

    Returns:
        (n, k+1, 3) positions x_{t-k}, ..., x_t (oldest first).
    """
    # x_{t-m} = x_t - sum of the last m velocities
    rev_cum = torch.flip(torch.cumsum(torch.flip(velocities, dims=[1]), dim=1), dims=[1])  # (n, k, 3)
    return torch.cat([positions.unsqueeze(1) - rev_cum, positions.unsqueeze(1)], dim=1)


def noisy_history(
    positions: torch.Tensor,
    velocities: torch.Tensor,
    next_positions: torch.Tensor,
    std: torch.Tensor,
    generator: Optional[torch.Generator] = None,
):
    """Perturb history positions with i.i.d. Gaussian noise and recompute velocities and target.

    Args:
        positions: (n, 3) current positions x_t, nm.
        velocities: (n, k, 3) history velocities (oldest first), nm per model step.
        next_positions: (n, 3) true next positions x_{t+1}, nm.
        std: (n,) noise std per bead, nm (typically one value per window broadcast to its beads).
        generator: CPU torch RNG (noise is drawn on CPU, then moved, so results do not depend on device).

    Returns:
        (noisy_positions (n, 3), noisy_velocities (n, k, 3), target_acceleration (n, 3)) such that
        ``dynamics.update(noisy_positions, noisy_velocities[:, -1], target_acceleration)`` gives
        ``next_positions`` (up to round-off).

    Raises:
        ValueError: shape mismatch.
    """
    n, k = velocities.shape[0], velocities.shape[1]
    if positions.shape != (n, 3) or next_positions.shape != (n, 3) or velocities.shape != (n, k, 3):
        raise ValueError(f"positions/velocities/next_positions: expected shapes (n,3)/(n,k,3)/(n,3), got "
                         f"{tuple(positions.shape)}/{tuple(velocities.shape)}/{tuple(next_positions.shape)}")
    if std.shape != (n,):
        raise ValueError(f"std: expected shape ({n},), got {tuple(std.shape)}")
    hist = history_positions(positions, velocities)
    eps = torch.randn(hist.shape, generator=generator, dtype=hist.dtype).to(hist.device)
    hist = hist + eps * std.to(hist.device, hist.dtype)[:, None, None]
    noisy_v = hist[:, 1:] - hist[:, :-1]
    noisy_x = hist[:, -1]
    # update rule: x' = x + v + a  ->  a = x_{t+1} - x~_t - v~_t
    target = next_positions - noisy_x - noisy_v[:, -1]
    return noisy_x, noisy_v, target
