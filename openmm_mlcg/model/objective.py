"""The training objective of :class:`~openmm_mlcg.model.CGDynamicsModel`: Gaussian NLL + the score's loss.

Kept apart from the model object (``model/core.py``) so the runtime's step code and the trainer's loss stay
small; :meth:`CGDynamicsModel.loss` delegates here, and the trainer calls that method. Sources: Fu et al., TMLR
2023, eq. (1)-(2) (NLL of the Gaussian step and denoising score matching); input noise as Sanchez-Gonzalez et
al., ICML 2020.
"""
from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Sequence

import torch

from ..generators import interpolant as _itp
from ..priors import prior as _prior
from .losses import denoising_score_loss, gaussian_nll, perturb_next_positions
from .noise import log_uniform, noisy_history

__all__ = ["LossOptions", "training_loss", "equilibrium_score_loss", "interpolant_loss"]


class LossOptions(NamedTuple):
    """Trainer settings of :meth:`CGDynamicsModel.loss` (from ``TrainConfig.input_noise`` and ``score``).

    Attributes:
        input_noise: perturb the history positions in training (Sanchez-Gonzalez et al. 2020).
        noise_std_min, noise_std_max: per-window noise std range, units of ``velocity_std``.
        score_weight: weight of the score-matching loss in the total.
    """

    input_noise: bool = False
    noise_std_min: float = 0.01
    noise_std_max: float = 0.1
    score_weight: float = 1.0


def training_loss(model, batch, graphs: Sequence, generator: Optional[torch.Generator] = None,
                  train: bool = True, options: LossOptions = LossOptions(),
                  return_prediction: bool = False) -> Dict[str, torch.Tensor]:
    """L = Gaussian NLL + ``score_weight`` x denoising score matching on a collated mini-batch.

    Steps: (1) in training with ``options.input_noise``, per-window noise on the history positions with the
    target recomputed (:func:`openmm_mlcg.model.noise.noisy_history`); (2) bead embeddings per distinct
    system; (3) CG graph on the (noisy) positions; (4) :meth:`CGDynamicsModel.predict` -> NLL of the normalised
    target; (5) if ``metadata.score_enabled``: for the ``"interpolant"`` sampler the denoising regression of
    :func:`interpolant_loss`; otherwise one noise level per window, log-uniform between the smallest and the
    largest ``sigmas_nm``, x~ = x_{t+1} + sigma z, graph on x~, :meth:`CGDynamicsModel.gns` -> paper eq. (2).

    Args:
        batch: a collated batch (``openmm_mlcg.train.batching.Batch``: positions (N, 3) nm,
            history_velocities (N, k, 3), target_acceleration, next_positions, bead_masses, batch, system,
            boxes (G, 3, 3), cg_bonds) on the model's device. graphs: per-system
            :class:`~openmm_mlcg.model.SystemGraph`.
        generator: CPU RNG for every random draw. train: apply input noise. options: :class:`LossOptions`.
        model: the :class:`~openmm_mlcg.model.CGDynamicsModel`.
        return_prediction: also return the :class:`~openmm_mlcg.model.Prediction` under ``"prediction"``.

    Returns:
        dict loss (scalar, differentiable), nll, score_loss (0 when the score is disabled).
    """
    x, v, target = batch.positions, batch.history_velocities, batch.target_acceleration
    if train and options.input_noise:
        std = log_uniform(batch.n_graphs, options.noise_std_min, options.noise_std_max, generator)
        std = (std.double() * float(model.metadata.velocity_std)).to(x.device)[batch.batch]
        x, v, target = noisy_history(x, v, batch.next_positions, std, generator)
    per_system = {s: model.embed(graphs[s]) for s in torch.unique(batch.system).tolist()}
    h = torch.cat([per_system[int(s)] for s in batch.system.tolist()], dim=0)
    prediction = model.predict(x, v, h, batch.bead_masses, model.edges(x, None, batch.cg_bonds, batch=batch.batch,
                                                                      boxes=batch.boxes))
    nll = gaussian_nll(prediction.mean, prediction.std, model.normalise_acceleration(target))
    out = {"loss": nll, "nll": nll, "score_loss": torch.zeros((), device=x.device)}
    if model.metadata.score_enabled:
        detached = type(prediction)(*(t.detach() for t in prediction[:4]), prediction.latent)  # a residual
        if model.metadata.sampler == "interpolant":
            out["score_loss"] = interpolant_loss(model, detached, x, batch, generator)
        elif model.metadata.sampler == "cg_langevin":
            out["score_loss"] = equilibrium_score_loss(model, h, batch, generator)
        else:
            sig = model.metadata.sigmas_nm
            sigma = log_uniform(batch.n_graphs, sig[-1], sig[0], generator).to(x.device)[batch.batch]
            noisy, z = perturb_next_positions(batch.next_positions, sigma, generator)
            edges = model.edges(noisy, None, batch.cg_bonds, batch=batch.batch, boxes=batch.boxes)
            gns = model.gns(detached, x.to(noisy.dtype), noisy, sigma.to(noisy.dtype)[:, None], edges)
            out["score_loss"] = denoising_score_loss(gns, z)
        out["loss"] = nll + options.score_weight * out["score_loss"]
    if return_prediction:
        out["prediction"] = prediction
    return out

def equilibrium_score_loss(model, bead_embedding: torch.Tensor, batch, generator) -> torch.Tensor:
    """Denoising score matching of the equilibrium configurations (``"cg_langevin"``, paper eq. (2) form).

    One level lambda per window, log-uniform between the smallest and the largest ``sigmas_nm``; bead i gets
    ``sigma_i = lambda sqrt(m / m_i)`` (``ModelMetadata.cg_langevin_sigmas``, the sampler's mass scaling);
    x~ = x_{t+1} + sigma z; graph on x~; loss = 0.5 mean |GNS + z|^2 (:func:`denoising_score_loss`), with GNS
    = sigma (learned score + harmonic-bond prior score) when the batch carries ``cg_bond_prior``: the network
    learns the residual on top of the prior (:mod:`openmm_mlcg.priors.prior`); beads weighted by
    ``batch.score_weight`` when it is set (``score.type_balance``).
    """
    m = model.metadata
    sig = m.sigmas_nm
    x1 = batch.next_positions
    lam = log_uniform(batch.n_graphs, sig[-1], sig[0], generator).to(x1.device)[batch.batch]
    scale = m.cg_langevin_sigmas(batch.bead_masses.to(x1.dtype)).reshape(-1) / float(m.cg_langevin_sigma_nm)
    sigma = lam.to(x1.dtype) * scale
    noisy, z = perturb_next_positions(x1, sigma, generator)
    edges = model.edges(noisy, None, batch.cg_bonds, batch=batch.batch, boxes=batch.boxes)
    sig = sigma.to(noisy.dtype)[:, None]
    gns = model.equilibrium_gns(bead_embedding, noisy, sig, edges)
    if batch.cg_bond_prior is not None:
        gns = gns + sig * _prior.bond_score(noisy, batch.cg_bonds, batch.cg_bond_prior, sig, batch=batch.batch,
                                            boxes=batch.boxes)
    return denoising_score_loss(gns, z, batch.score_weight)

def interpolant_loss(model, prediction, x: torch.Tensor, batch, generator) -> torch.Tensor:
    """Denoising regression of the stochastic interpolant (:mod:`openmm_mlcg.generators.interpolant`).

    One s ~ U(0, 0.999) per window, x_s = (1 - s) x_t + s x_{t+1} + a (1 - s) sqrt(s) z, graph on x_s;
    loss = mean of ((D(x_s, s) - x_{t+1}) / post_std)^2: 1 for the Gaussian's own exact denoiser when the
    Gaussian is right, below 1 when the network has learned the joint structure.
    """
    x1 = batch.next_positions
    dt = x1.dtype
    s = (torch.rand(batch.n_graphs, generator=generator, dtype=dt) * 0.999).to(x.device)[batch.batch][:, None]
    z = torch.randn(x1.shape, generator=generator, dtype=dt).to(x.device)
    x0 = x.to(dt)
    xs = _itp.interpolate(x0, x1, s, z, model.metadata.interpolant_a_nm)
    d, post = model.denoise(prediction, x0, xs, s,
                           model.edges(xs, None, batch.cg_bonds, batch=batch.batch, boxes=batch.boxes))
    return (((d - x1) / post) ** 2).mean()
