"""The one update rule of the learned simulator, its inverse, and annealed Langevin refinement.

Both the trainer (to build targets) and the runtime (to integrate) use these functions, so the target the
model learns is exactly the quantity the integrator consumes.

Conventions: time is measured in *model steps* (one step = ``model_time_step_ps``). A velocity is the
displacement over one model step (nm per step); an acceleration is the change of that velocity over one
step (nm per step^2). Works on numpy arrays and torch tensors alike.

Source: Fu et al., TMLR 2023, section 3 ("semi-implicit Euler integration") and appendix C, Algorithm 1.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

__all__ = ["update", "inverse_update", "history_velocities", "annealed_langevin", "geometric_sigmas"]


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


def annealed_langevin(
    score_fn: Callable[[torch.Tensor, int], torch.Tensor],
    x0: torch.Tensor,
    sigmas,
    steps_per_level: int,
    step_size: float,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Annealed Langevin refinement, paper appendix C, Algorithm 1.

    For each noise level i (largest first) and ``steps_per_level`` times:
    ``x <- x + eps * GNS(x, i) / sigma_i + sqrt(2 eps) z``, z ~ N(0, I), where ``GNS = sigma_i * score``.

    Args:
        score_fn: ``score_fn(x, i)`` -> (n, 3), the Score GNN output at level index ``i`` (sigma times the score).
        x0: (n, 3) starting positions (the Dynamics GNN prediction), nm.
        sigmas: (L,) descending noise levels, nm.
        steps_per_level: T_sigma (paper: 10).
        step_size: eps in nm^2 (paper: 5e-5 in Angstrom^2 = 5e-7 nm^2).
        generator: torch RNG for reproducible noise (on ``x0``'s device).

    Returns:
        refined positions (n, 3).

    Raises:
        ValueError: ``steps_per_level`` < 0 or ``step_size`` < 0.
    """
    if steps_per_level < 0:
        raise ValueError(f"steps_per_level: expected >= 0, got {steps_per_level}")
    if step_size < 0:
        raise ValueError(f"step_size: expected >= 0, got {step_size}")
    x = x0
    noise_scale = math.sqrt(2.0 * step_size)
    for i, sigma in enumerate([float(s) for s in sigmas]):
        for _ in range(steps_per_level):
            z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + step_size * score_fn(x, i) / sigma + noise_scale * z
    return x
