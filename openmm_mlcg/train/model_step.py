"""One forward pass of the three GNNs on a mini-batch and the training losses (L = L_dyn + L_score).

Source: Fu et al., TMLR 2023, section 3 (Embedding GNN -> bead embeddings, Dynamics GNN -> Gaussian
acceleration, Score GNN conditioned on the Dynamics GNN latents, trained end to end with L = L_dyn + L_score).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch

from openmm_mlcg.dynamics import gaussian_mean
from openmm_mlcg.nn import DynamicsGNN, EmbeddingGNN, ScoreGNN, build_edges
from openmm_mlcg.interpolant import interpolate, model_denoiser
from openmm_mlcg.samplers import model_gns

from .batching import Batch, SystemGraph, gather_bead_embeddings
from .losses import denoising_score_loss, gaussian_nll
from .noise import log_uniform, noisy_history

__all__ = ["build_modules", "compute_losses"]

N_BOND_TYPES = 6  # FineGraph bond codes 0..5


def build_modules(model_cfg, n_atom_types: int, history: int) -> Dict[str, torch.nn.Module]:
    """Instantiate the Embedding, Dynamics and Score GNNs from a :class:`ModelConfig` (eager modules)."""
    emb = EmbeddingGNN(n_atom_types, N_BOND_TYPES, hidden=model_cfg.embedding_hidden,
                       layers=model_cfg.embedding_layers)
    dyn = DynamicsGNN(embedding_dim=emb.out_dim, history=history, hidden=model_cfg.dynamics_hidden,
                      layers=model_cfg.dynamics_layers, min_std=model_cfg.min_std)
    score = ScoreGNN(latent_dim=model_cfg.dynamics_hidden, hidden=model_cfg.score_hidden,
                     layers=model_cfg.score_layers, n_rbf=model_cfg.score_rbf)
    return {"embedding": emb, "dynamics": dyn, "score": score}


def compute_losses(
    modules: Dict[str, torch.nn.Module],
    graphs: Sequence[SystemGraph],
    batch: Batch,
    stats: Dict[str, float],
    cfg,
    sigma_range,
    generator: Optional[torch.Generator],
    train: bool = True,
) -> Dict[str, torch.Tensor]:
    """Losses of one mini-batch.

    Steps: (1) in training, multi-scale input noise on the history positions (std per window drawn
    log-uniformly in [input_noise.std_min, std_max] * velocity_std, nm) with the target recomputed
    (:func:`openmm_mlcg.train.noise.noisy_history`); (2) bead embeddings per distinct system;
    (3) CG graph on the (noisy) current positions; (4) Dynamics GNN -> Gaussian NLL on accelerations
    normalised by acceleration_std, velocities normalised by velocity_std; (5) if the score is enabled: one
    noise level per window drawn log-uniformly in ``sigma_range``, x~ = x_{t+1} + sigma z, graph rebuilt on x~,
    GNS = Gaussian prior GNS + Score GNN residual (:func:`openmm_mlcg.samplers.model_gns`) -> eq. (2) loss.
    The Gaussian mean is ``-v_last`` plus the network's residual (:func:`openmm_mlcg.dynamics.gaussian_mean`).

    Args:
        modules: dict with embedding, dynamics, score. graphs: per-system static graphs on the batch device.
        batch: collated :class:`Batch` on the model device. stats: velocity_std, acceleration_std (nm/step, nm/step^2).
        cfg: :class:`TrainConfig`. sigma_range: (sigma_max, sigma_min) nm. generator: CPU RNG for all noise.
        train: apply input noise (validation uses clean inputs).

    Returns:
        dict loss (scalar, differentiable), nll, score_loss (scalars; score_loss 0 when disabled).
    """
    vstd, astd = float(stats["velocity_std"]), float(stats["acceleration_std"])
    cutoff = float(cfg.model.cutoff_nm)
    x, v, target = batch.positions, batch.history_velocities, batch.target_acceleration
    if train and cfg.input_noise.enabled:
        per_window = log_uniform(batch.n_graphs, cfg.input_noise.std_min, cfg.input_noise.std_max, generator) * vstd
        std = per_window.to(x.device)[batch.batch]
        x, v, target = noisy_history(x, v, batch.next_positions, std, generator)

    per_system = {}
    for s in torch.unique(batch.system).tolist():
        g = graphs[s]
        per_system[s] = modules["embedding"](g.atom_types, g.masses, g.bond_index, g.bond_types,
                                             g.atom_to_bead, g.n_beads)
    h = gather_bead_embeddings(per_system, batch)
    edge_index, edge_vec, edge_type = build_edges(x, None, cutoff, batch.cg_bonds, batch=batch.batch,
                                                  boxes=batch.boxes)
    out_mean, std_pred, latent = modules["dynamics"](h, batch.bead_masses, v / vstd, edge_index, edge_vec,
                                                     edge_type, cutoff)
    mean = gaussian_mean(out_mean, v[:, -1], astd)
    nll = gaussian_nll(mean, std_pred, target / astd)
    if not cfg.score.enabled:
        zero = torch.zeros((), device=x.device)
        return {"loss": nll, "nll": nll, "score_loss": zero}

    # Gaussian over the next positions (nm), detached: the score is a residual on top of it
    mean_pos = (x + out_mean.detach() * astd).to(batch.next_positions.dtype)
    std_pos = (std_pred.detach() * astd).to(batch.next_positions.dtype)
    if cfg.score.sampler == "interpolant":
        score_loss = _interpolant_loss(modules["score"], latent, x, mean_pos, std_pos, batch, stats, cfg,
                                       sigma_range, generator)
        return {"loss": nll + cfg.score.weight * score_loss, "nll": nll, "score_loss": score_loss}
    sigma = log_uniform(batch.n_graphs, sigma_range[1], sigma_range[0], generator).to(x.device)[batch.batch]
    sigma = sigma.to(batch.next_positions.dtype)[:, None]                              # (N, 1) nm
    z = torch.randn(batch.next_positions.shape, generator=generator,
                    dtype=batch.next_positions.dtype).to(x.device)
    noisy = batch.next_positions + sigma * z
    s_index, s_vec, s_type = build_edges(noisy, None, cutoff, batch.cg_bonds, batch=batch.batch, boxes=batch.boxes)
    gns = model_gns(modules["score"], latent, noisy, x.to(noisy.dtype), mean_pos, std_pos, sigma, s_index, s_vec,
                    s_type, cutoff, vstd)
    score_loss = denoising_score_loss(gns, z)
    return {"loss": nll + cfg.score.weight * score_loss, "nll": nll, "score_loss": score_loss}


def _interpolant_loss(score, latent, x, mean_pos, std_pos, batch: Batch, stats, cfg, sigma_range, generator):
    """Denoising regression of the stochastic interpolant (:mod:`openmm_mlcg.interpolant`).

    One s ~ U(0, 0.999) per window, x_s = (1 - s) x_t + s x_{t+1} + a (1 - s) sqrt(s) z, graph rebuilt on x_s;
    loss = mean over coordinates of ((D(x_s, s) - x_{t+1}) / post_std)^2, which is 1 for the Gaussian's own
    exact denoiser when the Gaussian is right and below 1 when the network has learned the joint structure.
    """
    x1 = batch.next_positions
    dt = x1.dtype
    a = cfg.score.interpolant_noise_nm(stats["velocity_std"])
    s = (torch.rand(batch.n_graphs, generator=generator, dtype=dt) * 0.999).to(x.device)[batch.batch][:, None]
    z = torch.randn(x1.shape, generator=generator, dtype=dt).to(x.device)
    x0 = x.to(dt)
    xs = interpolate(x0, x1, s, z, a)
    index, vec, etype = build_edges(xs, None, float(cfg.model.cutoff_nm), batch.cg_bonds, batch=batch.batch,
                                    boxes=batch.boxes)
    d, post = model_denoiser(score, latent, xs, s, x0, mean_pos, std_pos, a, index, vec, etype,
                             float(cfg.model.cutoff_nm), float(stats["velocity_std"]), float(sigma_range[1]))
    return (((d - x1) / post) ** 2).mean()
