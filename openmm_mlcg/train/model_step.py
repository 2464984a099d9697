"""The trainer's side of the model: build the three GNNs from a :class:`ModelConfig` and the loss options.

The forward pass and the losses (L = L_dyn + L_score) are :meth:`openmm_mlcg.model.CGDynamicsModel.loss`,
which goes through the same ``predict`` as the runtime's ``step``.
Source: Fu et al., TMLR 2023, section 3.
"""
from __future__ import annotations

from typing import Dict

import torch

from openmm_mlcg.generators import get_generator
from openmm_mlcg.model import LossOptions
from openmm_mlcg.nn import DynamicsGNN, EmbeddingGNN, EnergyScoreGNN, ScoreGNN

__all__ = ["build_modules", "loss_options", "N_BOND_TYPES"]

N_BOND_TYPES = 6  # FineGraph bond codes 0..5


def build_modules(model_cfg, n_atom_types: int, history: int, sampler: str = "cg_langevin"
                  ) -> Dict[str, torch.nn.Module]:
    """Instantiate the Embedding, Dynamics and Score GNNs from a :class:`ModelConfig` (eager modules).

    ``sampler`` is ``TrainConfig.score.sampler`` (default: the config's default). For ``"cg_langevin"`` the Score GNN reads the bead embeddings (an equilibrium score of the
    configuration); otherwise the Dynamics GNN's latents (a score of the next step given the history).
    """
    emb = EmbeddingGNN(n_atom_types, N_BOND_TYPES, hidden=model_cfg.embedding_hidden,
                       layers=model_cfg.embedding_layers)
    dyn = DynamicsGNN(embedding_dim=emb.out_dim, history=history, hidden=model_cfg.dynamics_hidden,
                      layers=model_cfg.dynamics_layers, min_std=model_cfg.min_std)
    latent_dim = emb.out_dim if get_generator(sampler, "score.sampler").equilibrium_score else model_cfg.dynamics_hidden
    if model_cfg.score_energy:
        score = EnergyScoreGNN(latent_dim=latent_dim, hidden=model_cfg.score_hidden, layers=model_cfg.score_layers,
                               n_rbf=model_cfg.score_rbf)
    else:
        score = ScoreGNN(latent_dim=latent_dim, hidden=model_cfg.score_hidden, layers=model_cfg.score_layers,
                         n_rbf=model_cfg.score_rbf, symmetric_pairs=model_cfg.score_symmetric_pairs)
    return {"embedding": emb, "dynamics": dyn, "score": score}


def loss_options(cfg) -> LossOptions:
    """:class:`LossOptions` of a :class:`TrainConfig` (input noise range in units of velocity_std, score weight)."""
    return LossOptions(input_noise=bool(cfg.input_noise.enabled), noise_std_min=float(cfg.input_noise.std_min),
                       noise_std_max=float(cfg.input_noise.std_max), score_weight=float(cfg.score.weight))
