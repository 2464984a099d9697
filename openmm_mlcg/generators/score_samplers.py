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
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..nn.losses import denoising_score_loss, perturb_next_positions
from ..nn.noise import log_uniform
from .base import Generator, StepInputs, register

__all__ = ["SCHEDULES", "annealed_langevin", "ancestral", "probability_flow", "gaussian_prior_gns",
           "initial_state", "model_gns", "AnnealedLangevin", "Ancestral", "ProbabilityFlow", "LangevinConfig",
           "AncestralConfig"]

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


class _ConditionalScoreSampler(Generator):
    """A score sampler of the conditional next state: the Score GNN is the residual of the Gaussian's exact GNS
    (:func:`model_gns`), trained by denoising score matching of x_{t+1} (paper eq. (2)); the step starts from the
    Dynamics GNN's Gaussian smoothed to the largest level (:func:`initial_state`)."""

    metadata_keys = ("sigmas_nm",)

    @classmethod
    def loss(cls, model, prediction, positions, bead_embedding, batch, generator):
        """Denoising score matching of x_{t+1}: one level per window, log-uniform between the smallest and the
        largest ``sigmas_nm``, x~ = x_{t+1} + sigma z, graph on x~, loss 0.5 mean |GNS + z|^2."""
        sig = model.metadata.sigmas_nm
        sigma = log_uniform(batch.n_graphs, sig[-1], sig[0], generator).to(positions.device)[batch.batch]
        noisy, z = perturb_next_positions(batch.next_positions, sigma, generator)
        edges = model.edges(noisy, None, batch.cg_bonds, batch=batch.batch, boxes=batch.boxes)
        gns = model.gns(prediction, positions.to(noisy.dtype), noisy, sigma.to(noisy.dtype)[:, None], edges)
        return denoising_score_loss(gns, z)

    @classmethod
    def gns_fn(cls, model, positions, prediction, inputs: StepInputs) -> GNSFn:
        """The model's GNS at a noise level, on a graph rebuilt on the noisy positions."""
        n = positions.shape[0]

        def gns_fn(xn: torch.Tensor, sigma: float) -> torch.Tensor:
            """Model GNS at noise level ``sigma`` on a graph rebuilt on ``xn``."""
            sig = torch.full((n, 1), float(sigma), dtype=xn.dtype, device=xn.device)
            return model.gns(prediction, positions, xn, sig, model.edges(xn, inputs.box, inputs.cg_bonds,
                                                                         validate=False))

        return gns_fn

    @classmethod
    def start(cls, model, prediction, inputs: StepInputs) -> torch.Tensor:
        """The reverse process's start: the Gaussian smoothed to the largest level."""
        return initial_state(prediction.mean_pos, prediction.std_pos, float(model.metadata.sigmas_nm[0]),
                             inputs.generator, not inputs.deterministic)


@dataclass
class LangevinConfig:
    """``score.langevin`` (annealed Langevin, paper Algorithm 1): ``steps_per_level`` steps of size
    ``step_size_nm2`` (nm^2) per level with ``schedule`` ``"song_ermon"`` (eps sigma_i^2 / sigma_L^2) or
    ``"paper"`` (constant eps)."""

    schedule: str = "song_ermon"
    steps_per_level: int = 1
    step_size_nm2: float = 5e-7

    def check(self, where: str) -> None:
        """Raise ValueError naming ``where.key`` for a value out of range."""
        if self.schedule not in SCHEDULES:
            raise ValueError(f"{where}.schedule: expected one of {SCHEDULES}, got {self.schedule!r}")
        if self.steps_per_level < 0:
            raise ValueError(f"{where}.steps_per_level: expected >= 0, got {self.steps_per_level!r}")
        if self.step_size_nm2 < 0:
            raise ValueError(f"{where}.step_size_nm2: expected >= 0, got {self.step_size_nm2!r}")


@register
class AnnealedLangevin(_ConditionalScoreSampler):
    """Annealed Langevin dynamics from the Dynamics GNN's sample (paper appendix C, Algorithm 1):
    ``len(sigmas_nm) x langevin_steps_per_level`` Score passes."""

    name = "langevin"
    config_class = LangevinConfig
    metadata_keys = ("sigmas_nm", "schedule", "langevin_steps_per_level", "langevin_step_size_nm2")

    @classmethod
    def refines(cls, metadata) -> bool:
        """Trained Score GNN and at least one step per level."""
        return bool(metadata.score_enabled) and metadata.langevin_steps_per_level != 0

    @classmethod
    def score_passes(cls, metadata) -> int:
        """L levels x T steps."""
        return len(metadata.sigmas_nm) * int(metadata.langevin_steps_per_level)

    @classmethod
    def step(cls, model, positions, prediction, inputs: StepInputs):
        """Algorithm 1 starts from the Dynamics GNN's sample (not from the smoothed Gaussian)."""
        m = model.metadata
        x0 = model.sample(prediction, inputs.generator, inputs.deterministic)
        return annealed_langevin(cls.gns_fn(model, positions, prediction, inputs), x0,
                                 [float(s) for s in m.sigmas_nm], m.langevin_steps_per_level,
                                 m.langevin_step_size_nm2, m.schedule, inputs.generator, not inputs.deterministic)


@dataclass
class AncestralConfig:
    """``score.ancestral``: ``corrector_steps`` Langevin corrector steps per level at signal-to-noise ``snr``."""

    corrector_steps: int = 0
    snr: float = 0.16

    def check(self, where: str) -> None:
        """Raise ValueError naming ``where.key`` for a value out of range."""
        if self.corrector_steps < 0:
            raise ValueError(f"{where}.corrector_steps: expected >= 0, got {self.corrector_steps!r}")
        if not self.snr > 0:
            raise ValueError(f"{where}.snr: expected > 0, got {self.snr!r}")


@register
class Ancestral(_ConditionalScoreSampler):
    """Reverse diffusion of the variance-exploding SDE with an optional Langevin corrector (:func:`ancestral`):
    ``L + corrector_steps (L - 1)`` Score passes."""

    name = "ancestral"
    config_class = AncestralConfig
    metadata_keys = ("sigmas_nm", "corrector_steps", "snr")

    @classmethod
    def score_passes(cls, metadata) -> int:
        """L predictor passes + the corrector's."""
        n = len(metadata.sigmas_nm)
        return n + int(metadata.corrector_steps) * max(n - 1, 0)

    @classmethod
    def step(cls, model, positions, prediction, inputs: StepInputs):
        """Predictor(-corrector) from the smoothed Gaussian."""
        m = model.metadata
        return ancestral(cls.gns_fn(model, positions, prediction, inputs), cls.start(model, prediction, inputs),
                         [float(s) for s in m.sigmas_nm], m.corrector_steps, m.snr, inputs.generator,
                         not inputs.deterministic)


@register
class ProbabilityFlow(_ConditionalScoreSampler):
    """Probability-flow ODE with Heun steps (:func:`probability_flow`): ``2 L - 1`` Score passes."""

    name = "ode"

    @classmethod
    def score_passes(cls, metadata) -> int:
        """Two passes per Heun step, one for the final denoising step."""
        return 2 * len(metadata.sigmas_nm) - 1

    @classmethod
    def step(cls, model, positions, prediction, inputs: StepInputs):
        """Deterministic apart from the initial draw."""
        return probability_flow(cls.gns_fn(model, positions, prediction, inputs),
                                cls.start(model, prediction, inputs), [float(s) for s in model.metadata.sigmas_nm])
