"""Stochastic-interpolant generator of the joint next state: from x_t to x_{t+1} along a noisy bridge.

The score samplers (:mod:`openmm_mlcg.generators.score_samplers`) start from the Dynamics GNN's independent Gaussian, an
ideal-gas-like smear of the liquid, and must carve the joint structure back out of it. The interpolant starts
from the current, structured state instead (probabilistic forecasting with stochastic interpolants: Chen,
Goldstein, Hua, Albergo, Boffi and Vanden-Eijnden, ICML 2024, arXiv:2403.13724; Albergo, Boffi and
Vanden-Eijnden, arXiv:2303.08797):

    x_s = (1 - s) x_0 + s x_1 + a (1 - s) W_s,   s in [0, 1],  x_0 = x_t, x_1 = x_{t+1}, W a Wiener process,

whose Markovian projection ``dX = b(X, s) ds + a (1 - s) dW`` has the same law at s = 1 as x_{t+1} given
x_t. Because ``a (1 - s) W_s = x_s - (1 - s) x_0 - s x_1``, the drift is a function of the denoiser
D(x, s) = E[x_1 | x_s = x] alone: ``b = (D - x) / (1 - s)``. The model's denoiser is the exact denoiser of
the Dynamics GNN's per-bead Gaussian N(mean, std^2) (:func:`gaussian_denoiser`) plus the Score GNN's
residual times the posterior std (:func:`model_denoiser`); training regresses D on x_{t+1} (the same
network, graph and features as the score path). Intermediate states are interpolations of two liquid
configurations plus a little noise, so they stay liquid-like, and the network corrects structure all along
the path instead of restoring it from an ideal gas.

Units: positions nm; ``a`` (``interpolant_noise_nm``) nm; s dimensionless.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch

from .base import Generator, StepInputs, register

__all__ = ["gaussian_denoiser", "model_denoiser", "interpolate", "sample", "DenoiseFn", "Interpolant",
           "InterpolantConfig"]

DenoiseFn = Callable[[torch.Tensor, float], torch.Tensor]


def _check(a: float) -> None:
    if not (a > 0 and math.isfinite(a)):
        raise ValueError(f"a: expected a positive finite interpolant noise in nm, got {a!r}")


def interpolate(x0: torch.Tensor, x1: torch.Tensor, s: torch.Tensor, z: torch.Tensor, a: float) -> torch.Tensor:
    """The interpolant x_s = (1 - s) x0 + s x1 + a (1 - s) sqrt(s) z (training inputs).

    Args:
        x0, x1: (n, 3) current and next positions, nm. s: (n, 1) in [0, 1). z: (n, 3) standard normal.
        a: noise amplitude, nm.

    Returns:
        (n, 3) nm.
    """
    _check(a)
    return (1.0 - s) * x0 + s * x1 + a * (1.0 - s) * torch.sqrt(s) * z


def gaussian_denoiser(x: torch.Tensor, s, x0: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                      a: float) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact E[x_1 | x_s = x] when x_1 ~ N(mean, std^2) independently per coordinate.

    With S = std^2 and k(s) = S / (s S + a^2 (1 - s)^2):
    ``D = mean + k (x - (1 - s) x0 - s mean)``, posterior variance ``S a^2 (1 - s)^2 / (s S + a^2 (1 - s)^2)``.

    Args:
        x: (n, 3) state at s, nm. s: float or (n, 1). x0: (n, 3) positions at s = 0 (x_t), nm.
        mean, std: (n, 3) the Dynamics GNN's Gaussian over x_{t+1}, nm. a: nm.

    Returns:
        (D (n, 3) nm, posterior std (n, 3) nm, standardised innovation (n, 3): the innovation
        x - (1 - s) x0 - s mean over its prior std).
    """
    _check(a)
    var = std * std
    den = s * var + a * a * (1.0 - s) ** 2
    innov = x - (1.0 - s) * x0 - s * mean
    d = mean + var / den * innov
    post = torch.sqrt(var * a * a * (1.0 - s) ** 2 / den)
    scale = torch.sqrt(torch.clamp(s * den, min=1e-30))
    return d, post, innov / scale


def model_denoiser(score_module, latent: torch.Tensor, x: torch.Tensor, s: torch.Tensor, x0: torch.Tensor,
                   mean: torch.Tensor, std: torch.Tensor, a: float, edge_index: torch.Tensor,
                   edge_vec: torch.Tensor, edge_type: torch.Tensor, cutoff: float, length_scale: float,
                   floor_nm: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """The model's denoiser: the Gaussian's exact denoiser plus the Score GNN's residual (trainer and runtime).

    ``D = gaussian_denoiser(...) + post_std * ScoreGNN(latent, innovation, x - x0, graph on x, noise level)``,
    the noise level passed to the network being the mean posterior std (floored at ``floor_nm``).

    Args:
        score_module: ScoreGNN (eager or scripted). latent: (n, D) Dynamics GNN latents. x: (n, 3) nm.
        s: (n, 1) in [0, 1). x0, mean, std: (n, 3) nm. a: nm. edge_*: graph on ``x``. cutoff: nm.
        length_scale: nm (bundle ``velocity_std``). floor_nm: smallest noise level given to the network.

    Returns:
        (D (n, 3) nm, post_std (n, 3) nm) in the dtype of ``x``.
    """
    dtype = latent.dtype
    d, post, innov = gaussian_denoiser(x, s, x0, mean, std, a)
    level = torch.clamp(post.mean(-1, keepdim=True), min=floor_nm)
    out = score_module(latent, innov.to(dtype), (x - x0).to(dtype), edge_index, edge_vec.to(dtype), edge_type,
                       level.to(dtype), cutoff, length_scale)
    return d + post * out.to(x.dtype), post


def sample(denoise_fn: DenoiseFn, x0: torch.Tensor, n_steps: int, a: float,
           generator: Optional[torch.Generator] = None, noise: bool = True) -> torch.Tensor:
    """Euler-Maruyama integration of ``dX = (D(X, s) - X) / (1 - s) ds + a (1 - s) dW`` from s = 0 to 1.

    The last step lands on the denoiser output (``X + (D - X) = D``) and adds no noise. Cost: ``n_steps``
    denoiser (Score GNN) passes.

    Args:
        denoise_fn: ``denoise_fn(x, s) -> (n, 3)`` nm. x0: (n, 3) current positions x_t, nm.
        n_steps: Euler-Maruyama steps (>= 1). a: nm. generator: torch RNG on x0's device.
        noise: False drops the Wiener increments (deterministic mode; then X stays a deterministic function
            of x_t).

    Returns:
        (n, 3) next positions, nm.

    Raises:
        ValueError: ``n_steps`` < 1 or ``a`` not positive.
    """
    if isinstance(n_steps, bool) or int(n_steps) != n_steps or n_steps < 1:
        raise ValueError(f"n_steps: expected an integer >= 1, got {n_steps!r}")
    _check(a)
    h = 1.0 / int(n_steps)
    x = x0
    for i in range(int(n_steps)):
        s = i * h
        d = denoise_fn(x, s)
        x = x + h * (d - x) / (1.0 - s)
        if noise and i + 1 < n_steps:
            z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + a * (1.0 - s) * math.sqrt(h) * z
    return x


@dataclass
class InterpolantConfig:
    """``score.interpolant``: noise: the interpolant's noise amplitude a in units of the data's ``velocity_std``
    (the bundle records ``interpolant_noise_nm`` = noise x velocity_std). Steps = ``score.n_levels``."""

    noise: float = 1.0

    def check(self, where: str) -> None:
        """Raise ValueError naming ``where.key`` for a value out of range."""
        if not self.noise > 0:
            raise ValueError(f"{where}.noise: expected > 0, got {self.noise!r}")


@register
class Interpolant(Generator):
    """Stochastic interpolant from x_t to x_{t+1} (module docstring): ``n_levels`` Euler-Maruyama steps, each one
    Score GNN pass (the denoiser's residual), after one Dynamics GNN pass."""

    name = "interpolant"
    config_class = InterpolantConfig
    metadata_keys = ("sigmas_nm", "interpolant_noise_nm")

    @classmethod
    def score_passes(cls, metadata) -> int:
        """One pass per Euler-Maruyama step (``len(sigmas_nm)``)."""
        return len(metadata.sigmas_nm)

    @classmethod
    def loss(cls, model, prediction, positions, bead_embedding, batch, generator):
        """Denoising regression of the interpolant: one s ~ U(0, 0.999) per window,
        x_s = (1 - s) x_t + s x_{t+1} + a (1 - s) sqrt(s) z, graph on x_s; loss = mean of
        ((D(x_s, s) - x_{t+1}) / post_std)^2: 1 for the Gaussian's own exact denoiser when the Gaussian is right,
        below 1 when the network has learned the joint structure."""
        x1 = batch.next_positions
        dt = x1.dtype
        s = (torch.rand(batch.n_graphs, generator=generator, dtype=dt) * 0.999).to(positions.device)
        s = s[batch.batch][:, None]
        z = torch.randn(x1.shape, generator=generator, dtype=dt).to(positions.device)
        x0 = positions.to(dt)
        xs = interpolate(x0, x1, s, z, model.metadata.interpolant_a_nm)
        d, post = model.denoise(prediction, x0, xs, s,
                                model.edges(xs, None, batch.cg_bonds, batch=batch.batch, boxes=batch.boxes))
        return (((d - x1) / post) ** 2).mean()

    @classmethod
    def step(cls, model, positions, prediction, inputs: StepInputs):
        """Euler-Maruyama along the bridge from ``positions``, the graph rebuilt on every intermediate state."""
        n = positions.shape[0]

        def denoise_fn(xs: torch.Tensor, s: float) -> torch.Tensor:
            """Model denoiser at interpolant time ``s`` on a graph rebuilt on ``xs``."""
            sv = torch.full((n, 1), float(s), dtype=xs.dtype, device=xs.device)
            edges = model.edges(xs, inputs.box, inputs.cg_bonds, validate=False)
            return model.denoise(prediction, positions, xs, sv, edges)[0]

        return sample(denoise_fn, positions, len(model.metadata.sigmas_nm), model.metadata.interpolant_a_nm,
                      inputs.generator, not inputs.deterministic)
