"""Score GNN (noise-conditional score network) for refining the predicted next CG positions.

Source: Fu et al., TMLR 2023, section 3 ("Learning to refine CG MD predictions with Score GNN", eq. 2);
Song & Ermon, NeurIPS 2019 (NCSN, arXiv:1907.05600); appendix C (hidden 128, 7 layers, Algorithm 1).
"""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn

from .gnn import EncodeProcessDecode

__all__ = ["ScoreGNN"]


class ScoreGNN(nn.Module):
    """GNS(x~, sigma) = sigma * grad_x~ log p_sigma(x~ | history), per bead (dimensionless, ~ (x - x~)/sigma).

    Node input: ``[Dynamics GNN latent, (x~ - x_t) / displacement_scale, log(sigma / displacement_scale)]``.
    Edge input (graph built on the noisy positions x~): ``[edge_vec / cutoff, |edge_vec| / cutoff, type emb.]``.
    Translation invariant by construction.

    Args:
        latent_dim: Dynamics GNN hidden size (paper 128); hidden: latent size (paper 128); layers (paper 7).
        n_edge_types, edge_type_dim: edge-type embedding (1 CG bond, 0 radius).

    forward(latent (n, latent_dim), displacement (n, 3) nm [noisy next - current], edge_index (2, E),
            edge_vec (E, 3) nm on the noisy positions, edge_type (E,), sigma (n, 1) nm,
            cutoff: float = 1.0 nm, displacement_scale: float = 1.0 nm [bundle ``velocity_std``])
        -> GNS output (n, 3). Denoising score matching (eq. 2) trains it toward (x - x~) / sigma; annealed
        Langevin uses ``x~ += eps * GNS / sigma + sqrt(2 eps) z`` (openmm_mlcg.dynamics.annealed_langevin).
    """

    def __init__(self, latent_dim: int = 128, hidden: int = 128, layers: int = 7, n_edge_types: int = 2,
                 edge_type_dim: int = 16, n_hidden_layers: int = 2):
        super().__init__()
        self.edge_type_embedding = nn.Embedding(n_edge_types, edge_type_dim)
        self.gnn = EncodeProcessDecode(latent_dim + 4, 4 + edge_type_dim, hidden, 3, layers, n_hidden_layers)
        self._hparams = dict(latent_dim=latent_dim, hidden=hidden, layers=layers, n_edge_types=n_edge_types,
                             edge_type_dim=edge_type_dim, n_hidden_layers=n_hidden_layers)

    @torch.jit.unused
    def hyperparameters(self) -> Dict[str, int]:
        """Constructor arguments (to rebuild the module; stored in bundle metadata)."""
        return dict(self._hparams)

    def forward(self, latent: torch.Tensor, displacement: torch.Tensor, edge_index: torch.Tensor,
                edge_vec: torch.Tensor, edge_type: torch.Tensor, sigma: torch.Tensor, cutoff: float = 1.0,
                displacement_scale: float = 1.0) -> torch.Tensor:
        dtype = latent.dtype
        n = latent.shape[0]
        sig = sigma.to(dtype).reshape(-1, 1).expand(n, 1)
        node_x = torch.cat([latent, displacement.to(dtype) / displacement_scale,
                            torch.log(sig / displacement_scale)], dim=-1)
        rel = edge_vec.to(dtype) / cutoff
        edge_x = torch.cat([rel, torch.linalg.vector_norm(rel, dim=-1, keepdim=True),
                            self.edge_type_embedding(edge_type)], dim=-1)
        out, _ = self.gnn(node_x, edge_x, edge_index)
        return out
