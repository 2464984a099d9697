"""The one update rule of the learned simulator, its inverse, and the noise levels of the refinement.

Both the trainer (to build targets) and the runtime (to integrate) use these functions, so the target the
model learns is exactly the quantity the integrator consumes.

Conventions: time is measured in *model steps* (one step = ``model_time_step_ps``). A velocity is the
displacement over one model step (nm per step); an acceleration is the change of that velocity over one
step (nm per step^2). Works on numpy arrays and torch tensors alike.

Source: Fu et al., TMLR 2023, section 3 ("semi-implicit Euler integration"). The refinement samplers live in
:mod:`openmm_mlcg.generators.score_samplers`.
"""
from __future__ import annotations

import math

import torch

__all__ = ["update", "inverse_update", "history_velocities", "geometric_sigmas", "gaussian_mean"]


def update(positions, velocity, acceleration):
    """Semi-implicit Euler step in model-step units: ``v' = v + a``, ``x' = x + v'``.

    Args:
        positions: (..., n, 3) nm.
        velocity: (..., n, 3) nm per model step (displacement over the last step).
        acceleration: (..., n, 3) nm per model step^2.

    Returns:
        (new_positions, new_velocity), same shapes.
    """
    new_velocity = velocity + acceleration
    return positions + new_velocity, new_velocity


def inverse_update(previous, current, next_):
    """Inverse of :func:`update`: the velocity and acceleration that take ``current`` to ``next_``.

    Args:
        previous, current, next_: positions at steps t-1, t, t+1, (..., n, 3) nm, unwrapped.

    Returns:
        (velocity, acceleration): ``v = current - previous`` and ``a = next_ - 2 current + previous``, so that
        ``update(current, v, a)`` returns ``next_`` (up to round-off).
    """
    velocity = current - previous
    acceleration = next_ - 2 * current + previous
    return velocity, acceleration


def history_velocities(positions):
    """Successive displacements of a trajectory: (T, n, 3) -> (T-1, n, 3), entry t = x[t+1] - x[t]."""
    return positions[1:] - positions[:-1]


def geometric_sigmas(sigma_max: float, sigma_min: float, n_levels: int) -> torch.Tensor:
    """Geometric noise levels sigma_1 > ... > sigma_L (Song & Ermon 2019), float64 tensor of shape (L,).

    Raises:
        ValueError: non-positive sigmas, sigma_max < sigma_min, or n_levels < 1.
    """
    if n_levels < 1:
        raise ValueError(f"n_levels: expected >= 1, got {n_levels}")
    if not (sigma_max > 0 and sigma_min > 0):
        raise ValueError(f"sigma_max/sigma_min: expected positive values, got {sigma_max}, {sigma_min}")
    if sigma_max < sigma_min:
        raise ValueError(f"sigma_max: expected >= sigma_min={sigma_min}, got {sigma_max}")
    if n_levels == 1:
        return torch.tensor([float(sigma_max)], dtype=torch.float64)
    return torch.logspace(math.log10(sigma_max), math.log10(sigma_min), n_levels, dtype=torch.float64)


def gaussian_mean(residual, last_velocity, acceleration_std: float):
    """Mean of the normalised acceleration: ``residual - v_last / acceleration_std``.

    The Dynamics GNN predicts the residual on top of ``-v_last``, so that with a zero residual the bead does
    not move (``v' = v + a = 0``): the network learns the next displacement directly, instead of having to
    learn to cancel the last velocity (measured before: a/v of -0.87 to -0.92 for large |v| instead of -1).

    Args:
        residual: (n, 3) network output, units of ``acceleration_std``.
        last_velocity: (n, 3) last history velocity ``x_t - x_{t-1}``, nm per model step.
        acceleration_std: nm per model step^2 (dataset statistic stored in the bundle).

    Returns:
        (n, 3) mean acceleration in units of ``acceleration_std``.
    """
    return residual - last_velocity.to(residual.dtype) / acceleration_std
