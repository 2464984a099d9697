"""Training losses: Gaussian NLL of the time-integrated acceleration and denoising score matching.

Source: Fu et al., TMLR 2023, section 3: L = L_dyn + L_score, with L_dyn the negative log-likelihood of the
ground-truth acceleration under the Dynamics GNN's Gaussian and L_score paper eq. (2) (Song & Ermon 2019).
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Optional, Sequence

import torch

__all__ = ["gaussian_nll", "perturb_next_positions", "denoising_score_loss", "type_balanced_weights"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def gaussian_nll(mean: torch.Tensor, std: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of ``target`` under independent Gaussians, averaged over all components.

    ``0.5 ((target - mean) / std)^2 + log std + 0.5 log(2 pi)``, mean over beads and the 3 components.

    Args:
        mean, std, target: (n, 3), normalised acceleration units (acceleration / acceleration_std).

    Returns:
        scalar tensor (nats per component).

    Raises:
        ValueError: shape mismatch.
    """
    if mean.shape != std.shape or mean.shape != target.shape:
        raise ValueError(f"mean/std/target: expected equal shapes, got {tuple(mean.shape)}, "
                         f"{tuple(std.shape)}, {tuple(target.shape)}")
    z = (target - mean) / std
    return (0.5 * z * z + torch.log(std)).mean() + _HALF_LOG_2PI


def perturb_next_positions(next_positions: torch.Tensor, sigma: torch.Tensor,
                           generator: Optional[torch.Generator] = None):
    """Noisy next positions for denoising score matching: x~ = x + sigma z, z ~ N(0, I).

    Args:
        next_positions: (n, 3) true next positions x_{t+1}, nm.
        sigma: (n,) noise level per bead, nm (one level per window broadcast to its beads).
        generator: CPU torch RNG (noise drawn on CPU, then moved to the positions' device).

    Returns:
        (noisy_positions (n, 3) nm, z (n, 3) the standard-normal draw).
    """
    z = torch.randn(next_positions.shape, generator=generator, dtype=next_positions.dtype).to(next_positions.device)
    return next_positions + sigma.to(next_positions)[:, None] * z, z


def denoising_score_loss(gns: torch.Tensor, z: torch.Tensor, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Paper eq. (2) with lambda(sigma) = sigma^2, for noisy positions x~ = x + sigma z.

    ``lambda(sigma) || GNS / sigma - (x - x~) / sigma^2 ||^2 = || GNS + z ||^2``; we return
    ``0.5 * mean over beads of sum over xyz of (GNS + z)^2``. Averaging over randomly drawn noise levels (one per
    window) gives the 1/L sum of eq. (2) in expectation. The optimum is GNS = -E[z | x~] = sigma * score.

    Args:
        gns: (n, 3) Score GNN output (sigma times the score, dimensionless).
        z: (n, 3) the standard-normal draw used to make x~.
        weight: (n,) per-bead weights of mean 1, or None (all 1). Each bead's score is its own regression
            target, so a positive weight moves no optimum; it only shares the capacity and the gradient between
            beads differently (:func:`type_balanced_weights`).

    Returns:
        scalar tensor.

    Raises:
        ValueError: shape mismatch.
    """
    if gns.shape != z.shape:
        raise ValueError(f"gns/z: expected equal shapes, got {tuple(gns.shape)} and {tuple(z.shape)}")
    per_bead = 0.5 * (gns + z).pow(2).sum(dim=-1)
    if weight is None:
        return per_bead.mean()
    if weight.shape != per_bead.shape:
        raise ValueError(f"weight: expected shape {tuple(per_bead.shape)}, got {tuple(weight.shape)}")
    return (weight.to(per_bead.dtype) * per_bead).mean()


def type_balanced_weights(bead_types: Sequence) -> torch.Tensor:
    """(n,) float32 weights, mean 1, that give every bead type of a system the same total weight:
    ``n / (n_types count(type_i))``. In the SPE demo the 8 Li+ of 158 beads get 2.8 each instead of 1.

    Raises:
        ValueError: empty ``bead_types``.
    """
    types = [str(t) for t in bead_types]
    if not types:
        raise ValueError("bead_types: expected at least one bead, got none")
    counts = Counter(types)
    n, k = len(types), len(counts)
    return torch.tensor([n / (k * counts[t]) for t in types], dtype=torch.float32)
