"""Dynamics GNN: history-augmented CG graph -> diagonal Gaussian over the time-integrated acceleration.

Source: Fu et al., TMLR 2023, section 3 ("Learning CG MD with Dynamics GNN"); appendix C (hidden 128, 7 layers).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .gnn import EncodeProcessDecode

__all__ = ["DynamicsGNN"]


class DynamicsGNN(nn.Module):
    """Predict mean and std of the per-bead acceleration (normalised units) and return the node latents.

    Node input: ``[bead embedding, log(bead mass / amu), k history velocities / velocity_std (flattened)]``.
    Edge input: ``[edge_vec / cutoff, |edge_vec| / cutoff, edge-type embedding]`` (type 1 CG bond, 0 radius).
    Only displacements and velocities enter, so the output is exactly invariant to translations.

    Args:
        embedding_dim: bead embedding size (EmbeddingGNN out_dim, paper 64).
        history: k, number of history velocities.
        hidden: latent size (paper 128); layers: message-passing layers (paper 7).
        min_std: lower bound of the predicted std, normalised acceleration units.
        n_edge_types: 2 (radius, CG bond); edge_type_dim: size of the edge-type embedding.

    forward(bead_embedding (n, embedding_dim), bead_masses (n,) amu, history_velocities (n, k, 3) normalised
            [oldest first], edge_index (2, E), edge_vec (E, 3) nm, edge_type (E,) long, cutoff: float nm,
            edge_layers: optional DKMP* per-layer edge indices)
        -> (mean (n, 3), std (n, 3)) in units of ``acceleration_std`` (nm per model step^2), latent (n, hidden).
    """

    def __init__(self, embedding_dim: int = 64, history: int = 20, hidden: int = 128, layers: int = 7,
                 min_std: float = 1e-3, n_edge_types: int = 2, edge_type_dim: int = 16, n_hidden_layers: int = 2):
        super().__init__()
        if history < 1:
            raise ValueError(f"history: expected >= 1, got {history}")
        if not min_std >= 0:
            raise ValueError(f"min_std: expected >= 0, got {min_std}")
        self.history = history
        self.min_std = float(min_std)
        self.hidden = hidden
        self.edge_type_embedding = nn.Embedding(n_edge_types, edge_type_dim)
        self.gnn = EncodeProcessDecode(embedding_dim + 1 + 3 * history, 4 + edge_type_dim, hidden, 6, layers,
                                       n_hidden_layers)
        self._hparams = dict(embedding_dim=embedding_dim, history=history, hidden=hidden, layers=layers,
                             min_std=float(min_std), n_edge_types=n_edge_types, edge_type_dim=edge_type_dim,
                             n_hidden_layers=n_hidden_layers)

    @torch.jit.unused
    def hyperparameters(self) -> Dict[str, float]:
        """Constructor arguments (to rebuild the module; stored in bundle metadata)."""
        return dict(self._hparams)

    def forward(self, bead_embedding: torch.Tensor, bead_masses: torch.Tensor, history_velocities: torch.Tensor,
                edge_index: torch.Tensor, edge_vec: torch.Tensor, edge_type: torch.Tensor,
                cutoff: float, edge_layers: Optional[List[torch.Tensor]] = None
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gaussian next-step acceleration of every bead and the node latents (shapes in the class docstring).

        history_velocities (n, k, 3) are normalised by ``velocity_std``, oldest first; edge_vec (E, 3) and
        cutoff are in nm. Returns (mean (n, 3), std (n, 3) >= ``min_std``) in units of ``acceleration_std``
        and the latent (n, hidden). ``edge_layers``: None (radius graph, every edge in every layer) or the DKMP*
        per-layer message sets, one (E_l,) long index tensor per layer (:mod:`openmm_mlcg.nn.dkmp`).
        """
        n = bead_embedding.shape[0]
        dtype = bead_embedding.dtype
        node_x = torch.cat([bead_embedding, torch.log(bead_masses.to(dtype)).unsqueeze(-1),
                            history_velocities.to(dtype).reshape(n, -1)], dim=-1)
        rel = edge_vec.to(dtype) / cutoff
        edge_x = torch.cat([rel, torch.linalg.vector_norm(rel, dim=-1, keepdim=True),
                            self.edge_type_embedding(edge_type)], dim=-1)
        out, latent = self.gnn(node_x, edge_x, edge_index, edge_layers)
        mean = out[:, :3]
        std = self.min_std + F.softplus(out[:, 3:])
        return mean, std, latent
