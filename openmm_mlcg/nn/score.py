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
    """Residual noise-conditional score network on the graph of the noisy next positions.

    The full output used by the samplers is ``GNS = gaussian_prior_gns(x~, mean, std, sigma) + ScoreGNN(...)``
    (:func:`openmm_mlcg.samplers.gaussian_prior_gns`): the exact GNS of the Dynamics GNN's independent
    Gaussian plus this network's correction, which carries the joint (interaction) structure.

    Node input: ``[Dynamics GNN latent, (x~ - mean) / sqrt(std^2 + sigma^2), log(sigma / length_scale)]``.
    Edge input (graph built on the noisy positions x~): ``[edge_vec / cutoff, |edge_vec| / cutoff, n_rbf
    Gaussian radial basis functions of |edge_vec| on [0, cutoff], type emb.]``. Translation invariant.

    Args:
        latent_dim: Dynamics GNN hidden size (paper 128); hidden: latent size (paper 128); layers (paper 7).
        n_edge_types, edge_type_dim: edge-type embedding (1 CG bond, 0 radius). n_rbf: radial basis size.

    forward(latent (n, latent_dim), residual (n, 3) dimensionless, edge_index (2, E), edge_vec (E, 3) nm on the
            noisy positions, edge_type (E,), sigma (n, 1) nm, cutoff: float nm, length_scale: float nm
            [bundle ``velocity_std``]) -> (n, 3) correction to the GNS (dimensionless, sigma times a score).
    """

    def __init__(self, latent_dim: int = 128, hidden: int = 128, layers: int = 7, n_edge_types: int = 2,
                 edge_type_dim: int = 16, n_hidden_layers: int = 2, n_rbf: int = 16):
        super().__init__()
        if n_rbf < 0:
            raise ValueError(f"n_rbf: expected >= 0, got {n_rbf}")
        self.n_rbf = int(n_rbf)
        self.edge_type_embedding = nn.Embedding(n_edge_types, edge_type_dim)
        self.gnn = EncodeProcessDecode(latent_dim + 4, 4 + n_rbf + edge_type_dim, hidden, 3, layers,
                                       n_hidden_layers)
        self._hparams = dict(latent_dim=latent_dim, hidden=hidden, layers=layers, n_edge_types=n_edge_types,
                             edge_type_dim=edge_type_dim, n_hidden_layers=n_hidden_layers, n_rbf=n_rbf)

    @torch.jit.unused
    def hyperparameters(self) -> Dict[str, int]:
        """Constructor arguments (to rebuild the module; stored in bundle metadata)."""
        return dict(self._hparams)

    def forward(self, latent: torch.Tensor, residual: torch.Tensor, edge_index: torch.Tensor,
                edge_vec: torch.Tensor, edge_type: torch.Tensor, sigma: torch.Tensor, cutoff: float = 1.0,
                length_scale: float = 1.0) -> torch.Tensor:
        dtype = latent.dtype
        n = latent.shape[0]
        sig = sigma.to(dtype).reshape(-1, 1).expand(n, 1)
        node_x = torch.cat([latent, residual.to(dtype), torch.log(sig / length_scale)], dim=-1)
        rel = edge_vec.to(dtype) / cutoff
        dist = torch.linalg.vector_norm(rel, dim=-1, keepdim=True)
        centres = torch.linspace(0.0, 1.0, self.n_rbf, dtype=dtype, device=rel.device)
        width = 1.0 / max(self.n_rbf, 1)
        rbf = torch.exp(-0.5 * ((dist - centres) / width) ** 2)
        edge_x = torch.cat([rel, dist, rbf, self.edge_type_embedding(edge_type)], dim=-1)
        out, _ = self.gnn(node_x, edge_x, edge_index)
        return out
