"""Score-based refinement samplers: turn the Dynamics GNN's per-bead Gaussian into a joint next state.

A per-bead factorised Gaussian cannot carry the joint structure of a liquid when beads move a sizeable fraction
of their spacing in one model step (measured on an LJ liquid at 2 ps: one independent sample collapses the
first g(r) peak, even with the exact per-bead mean and std). The Score GNN models the joint conditional
p(x_{t+1} | history) through its noisy scores; the samplers here draw from it.

All samplers take ``gns_fn(x, sigma) -> (n, 3)``, the noise-conditional output ``GNS = sigma * score`` at
noise level ``sigma`` (nm), and descending noise levels ``sigmas`` (nm). Cost = number of ``gns_fn`` calls
(one Score GNN pass each):

- ``"langevin"``: annealed Langevin dynamics (paper appendix C, Algorithm 1; Song & Ermon, NeurIPS 2019,
  arXiv:1907.05600, Algorithm 1). ``schedule="paper"`` uses the constant step eps of the paper's code;
  ``schedule="song_ermon"`` scales it per level, alpha_i = eps sigma_i^2 / sigma_L^2. Cost L * T.
- ``"ancestral"``: reverse diffusion of the variance-exploding SDE (Song et al., ICLR 2021,
  arXiv:2011.13456, eq. 47 / ancestral sampling), one pass per level, optionally followed by
  ``corrector_steps`` Langevin corrector steps per level (predictor-corrector, their Algorithm 2).
- ``"ode"``: probability-flow ODE dx/dsigma = -GNS(x, sigma) with Heun's 2nd-order method (Karras et al.,
  NeurIPS 2022, arXiv:2206.00364, Algorithm 1), then one final denoising step. Cost 2 L - 1. Deterministic
  apart from the initial draw.

:func:`gaussian_prior_gns` is the exact GNS of the per-bead Gaussian; the Score GNN is trained as a residual
on top of it (``score_parametrisation = "gaussian_residual"``), so an untrained residual reproduces the
independent Gaussian and the network only has to learn the joint (interaction) part.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch

__all__ = ["SAMPLERS", "SCHEDULES", "annealed_langevin", "ancestral", "probability_flow", "gaussian_prior_gns",
           "initial_state", "refine", "score_passes", "model_gns"]

#: "interpolant": openmm_mlcg.generators.interpolant; "cg_langevin": openmm_mlcg.generators.cg_langevin (not score samplers)
SAMPLERS = ("langevin", "ancestral", "ode", "interpolant", "cg_langevin")
SCHEDULES = ("paper", "song_ermon")

GNSFn = Callable[[torch.Tensor, float], torch.Tensor]


def _randn(x: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _levels(sigmas) -> list:
    levels = [float(s) for s in sigmas]
    if not levels or any(not (s > 0) for s in levels) or any(a < b for a, b in zip(levels, levels[1:])):
        raise ValueError(f"sigmas: expected positive descending noise levels (nm), got {levels}")
    return levels


def gaussian_prior_gns(noisy: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, sigma) -> torch.Tensor:
    """GNS of an independent Gaussian N(mean, std^2) smoothed by noise sigma: ``-sigma (x~ - mean)/(std^2 + sigma^2)``.

    Args:
        noisy: (n, 3) noisy next positions x~, nm. mean, std: (n, 3) the Gaussian's mean and std, nm.
        sigma: float or (n, 1) tensor, nm.

    Returns:
        (n, 3), dimensionless.
    """
    return -sigma * (noisy - mean) / (std * std + sigma * sigma)


def model_gns(score_module, latent: torch.Tensor, noisy: torch.Tensor, anchor: torch.Tensor,
              mean: torch.Tensor, std: torch.Tensor, sigma: torch.Tensor, edge_index: torch.Tensor,
              edge_vec: torch.Tensor, edge_type: torch.Tensor, cutoff: float, length_scale: float) -> torch.Tensor:
    """Full GNS of the model: the Gaussian prior's exact GNS plus the Score GNN's residual (trainer and runtime).

    Args:
        score_module: ScoreGNN (eager or scripted). latent: (n, D) Dynamics GNN node latents.
        noisy: (n, 3) noisy next positions, nm. anchor: (n, 3) current positions x_t, nm.
        mean, std: (n, 3) the Dynamics GNN's Gaussian over the next positions, nm.
        sigma: (n, 1) noise level per bead, nm. edge_*: graph on ``noisy``.
        cutoff: radius cutoff, nm. length_scale: nm (bundle ``velocity_std``).

    Returns:
        (n, 3) in the dtype of ``noisy``.
    """
    dtype = latent.dtype
    var = std * std + sigma * sigma
    residual = ((noisy - mean) / torch.sqrt(var)).to(dtype)
    out = score_module(latent, residual, (noisy - anchor).to(dtype), edge_index, edge_vec.to(dtype), edge_type,
                       sigma.to(dtype), cutoff, length_scale)
    return gaussian_prior_gns(noisy, mean, std, sigma) + out.to(noisy.dtype)


def initial_state(mean: torch.Tensor, std: torch.Tensor, sigma_max: float,
                  generator: Optional[torch.Generator] = None, noise: bool = True) -> torch.Tensor:
    """Start of the reverse process: the Gaussian proposal smoothed to level sigma_max, N(mean, std^2 + sigma_max^2).

    ``noise=False`` returns ``mean`` (deterministic mode).
    """
    if not noise:
        return mean.clone()
    return mean + torch.sqrt(std * std + sigma_max ** 2) * _randn(mean, generator)


def annealed_langevin(gns_fn: GNSFn, x0: torch.Tensor, sigmas, steps_per_level: int, step_size: float,
                      schedule: str = "paper", generator: Optional[torch.Generator] = None,
                      noise: bool = True) -> torch.Tensor:
    """Annealed Langevin dynamics (paper Algorithm 1; Song & Ermon 2019, Algorithm 1).

    For each level i (largest first), ``steps_per_level`` times:
    ``x <- x + alpha_i GNS(x, sigma_i) / sigma_i + sqrt(2 alpha_i) z``, with ``alpha_i = eps`` (``"paper"``)
    or ``alpha_i = eps sigma_i^2 / sigma_L^2`` (``"song_ermon"``).

    Args:
        gns_fn: ``gns_fn(x, sigma)`` -> (n, 3). x0: (n, 3) nm. sigmas: (L,) descending, nm.
        steps_per_level: T (paper 10). step_size: eps, nm^2. schedule: ``"paper"`` or ``"song_ermon"``.
        generator: torch RNG on x0's device. noise: False drops the Langevin noise (deterministic mode).

    Returns:
        (n, 3) refined positions.

    Raises:
        ValueError: negative steps or step size, unknown schedule, bad sigmas.
    """
    if steps_per_level < 0:
        raise ValueError(f"steps_per_level: expected >= 0, got {steps_per_level}")
    if step_size < 0:
        raise ValueError(f"step_size: expected >= 0, got {step_size}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule: expected one of {SCHEDULES}, got {schedule!r}")
    levels = _levels(sigmas)
    x = x0
    for sigma in levels:
        alpha = step_size if schedule == "paper" else step_size * sigma ** 2 / levels[-1] ** 2
        for _ in range(steps_per_level):
            x = x + alpha * gns_fn(x, sigma) / sigma
            if noise:
                x = x + math.sqrt(2.0 * alpha) * _randn(x, generator)
    return x


def ancestral(gns_fn: GNSFn, x0: torch.Tensor, sigmas, corrector_steps: int = 0, snr: float = 0.16,
              generator: Optional[torch.Generator] = None, noise: bool = True) -> torch.Tensor:
    """Reverse-diffusion (ancestral) sampler of the variance-exploding SDE, optional Langevin corrector.

    Predictor from sigma_i to sigma_{i+1} (sigma_{L+1} = 0):
    ``x <- x + (sigma_i^2 - sigma_{i+1}^2) GNS/sigma_i + sqrt(sigma_{i+1}^2 (sigma_i^2 - sigma_{i+1}^2)) / sigma_i z``.
    Corrector (Song et al. 2021, Algorithm 4): ``corrector_steps`` Langevin steps at sigma_{i+1} with the step
    set by the signal-to-noise ratio ``snr``: ``alpha = 2 (snr sigma_{i+1})^2`` per component.

    Args:
        gns_fn, x0, sigmas, generator, noise: as :func:`annealed_langevin`.
        corrector_steps: Langevin corrector steps per level (0: predictor only).
        snr: corrector signal-to-noise ratio.

    Returns:
        (n, 3). Cost: L + corrector_steps * (L - 1) passes.
    """
    if corrector_steps < 0:
        raise ValueError(f"corrector_steps: expected >= 0, got {corrector_steps}")
    levels = _levels(sigmas)
    x = x0
    for i, sigma in enumerate(levels):
        nxt = levels[i + 1] if i + 1 < len(levels) else 0.0
        var = sigma ** 2 - nxt ** 2
        x = x + var * gns_fn(x, sigma) / sigma
        if noise and nxt > 0:
            x = x + math.sqrt(nxt ** 2 * var) / sigma * _randn(x, generator)
        if nxt > 0:
            alpha = 2.0 * (snr * nxt) ** 2
            for _ in range(corrector_steps):
                x = x + alpha * gns_fn(x, nxt) / nxt
                if noise:
                    x = x + math.sqrt(2.0 * alpha) * _randn(x, generator)
    return x


def probability_flow(gns_fn: GNSFn, x0: torch.Tensor, sigmas) -> torch.Tensor:
    """Probability-flow ODE (variance exploding) with Heun steps between levels and a final denoising step.

    ``dx/dsigma = -GNS(x, sigma)``; from sigma_i to sigma_{i+1}: Euler predictor then trapezoidal corrector
    (Karras et al. 2022, Algorithm 1); from sigma_L to 0 the denoiser ``x + sigma_L GNS(x, sigma_L)``.

    Returns:
        (n, 3). Cost: 2 L - 1 passes.
    """
    levels = _levels(sigmas)
    x = x0
    for i, sigma in enumerate(levels):
        d = -gns_fn(x, sigma)
        if i + 1 == len(levels):
            return x - sigma * d
        nxt = levels[i + 1]
        x_e = x + (nxt - sigma) * d
        x = x + (nxt - sigma) * 0.5 * (d - gns_fn(x_e, nxt))
    return x


def score_passes(sampler: str, n_levels: int, steps_per_level: int = 1, corrector_steps: int = 0) -> int:
    """Score GNN passes one refinement costs (for reports and benchmarks)."""
    if sampler == "langevin":
        return n_levels * steps_per_level
    if sampler == "ancestral":
        return n_levels + corrector_steps * max(n_levels - 1, 0)
    if sampler == "ode":
        return 2 * n_levels - 1
    if sampler == "interpolant":  # n_levels Euler-Maruyama steps of the stochastic interpolant
        return n_levels
    if sampler == "cg_langevin":  # n_levels = Langevin sub-steps, one score each, plus the score at the start
        return n_levels + 1
    raise ValueError(f"sampler: expected one of {SAMPLERS}, got {sampler!r}")


def refine(gns_fn: GNSFn, x0: torch.Tensor, sigmas: Sequence[float], sampler: str, steps_per_level: int = 1,
           step_size: float = 0.0, schedule: str = "paper", corrector_steps: int = 0, snr: float = 0.16,
           generator: Optional[torch.Generator] = None, noise: bool = True) -> torch.Tensor:
    """Dispatch to the named sampler (see the module docstring); arguments as the samplers take them.

    Raises:
        ValueError: unknown ``sampler``.
    """
    if sampler == "langevin":
        return annealed_langevin(gns_fn, x0, sigmas, steps_per_level, step_size, schedule, generator, noise)
    if sampler == "ancestral":
        return ancestral(gns_fn, x0, sigmas, corrector_steps, snr, generator, noise)
    if sampler == "ode":
        return probability_flow(gns_fn, x0, sigmas)
    if sampler in ("interpolant", "cg_langevin"):
        raise ValueError(f"sampler: {sampler!r} is not a score sampler; use openmm_mlcg.{sampler}.sample")
    raise ValueError(f"sampler: expected one of {SAMPLERS}, got {sampler!r}")
