"""Score GNN (noise-conditional score network) for refining the predicted next CG positions.

Source: Fu et al., TMLR 2023, section 3 ("Learning to refine CG MD predictions with Score GNN", eq. 2);
Song & Ermon, NeurIPS 2019 (NCSN, arXiv:1907.05600); appendix C (hidden 128, 7 layers, Algorithm 1).
"""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
from torch import nn

from .gnn import EncodeProcessDecode
from .mlp import MLP

__all__ = ["ScoreGNN"]


class ScoreGNN(nn.Module):
    """Rotation-equivariant residual score network on the graph of the noisy next positions.

    The full output used by the samplers is ``GNS = gaussian_prior_gns(x~, mean, std, sigma) + ScoreGNN(...)``
    (:func:`openmm_mlcg.generators.score_samplers.model_gns`): the exact GNS of the Dynamics GNN's independent Gaussian plus
    this network's correction, which carries the joint (interaction) structure.

    All GNN inputs are rotation invariant, and the output is a sum of vectors, so the correction rotates with
    the configuration: ``out_i = sum_j w_ij u_ij + c_i r_i`` with u_ij the unit vector from bead j to bead i
    on the noisy positions, r_i the normalised residual, and scalars w_ij (edge decoder) and c_i (node
    decoder). For a pair potential the exact small-sigma score has exactly this form (sigma beta F_i), which
    is why the pair term learns from a few minutes of CPU training where a plain 3-vector decoder (tried
    first) learned nothing (its output stayed at 2 % of the prior's).

    Node input: ``[Dynamics GNN latent, |r_i|, log(sigma / length_scale)]``, r_i = (x~ - mean) / sqrt(std^2 +
    sigma^2). Edge input: ``[|d~| / cutoff, RBF(|d~|), RBF(|d_t|), r_src . u, r_dst . u, type emb.]`` with d~
    the noisy edge vector, d_t the same pair at time t (``d~ - (disp_dst - disp_src)``) and n_rbf Gaussian
    radial basis functions on [0, cutoff].

    With ``symmetric_pairs`` the pair weights are symmetrised, ``w_ij <- (w_ij + w_ji) / 2``, and the pair term
    of bead i is ``sum_j w_ij sqrt(sigma_i / sigma_j) u_ij``, so the score's pair terms (the output over
    sigma_i) obey Newton's third law: they sum to zero over the beads, as the score of any translation-invariant
    density does, also with one noise level per bead (the node term ``c_i r_i`` is zero for the equilibrium
    score). The edge list must hold both directions of every edge, unique and sorted by (src, dst), as
    :func:`openmm_mlcg.nn.neighbors.build_edges` returns it.

    Args:
        latent_dim: Dynamics GNN hidden size (paper 128); hidden: latent size (paper 128); layers (paper 7).
        n_edge_types, edge_type_dim: edge-type embedding (1 CG bond, 0 radius). n_rbf: radial basis size.
        symmetric_pairs: symmetrise the pair weights (above; bundles without the key: False).

    forward(latent (n, latent_dim), residual (n, 3) dimensionless, displacement (n, 3) nm [x~ - x_t],
            edge_index (2, E), edge_vec (E, 3) nm on the noisy positions, edge_type (E,), sigma (n, 1) nm,
            cutoff: float nm, length_scale: float nm [bundle ``velocity_std``], edge_layers: optional DKMP*
            per-layer edge indices)
        -> (n, 3) correction to the GNS (dimensionless, sigma times a score).
    """

    def __init__(self, latent_dim: int = 128, hidden: int = 128, layers: int = 7, n_edge_types: int = 2,
                 edge_type_dim: int = 16, n_hidden_layers: int = 2, n_rbf: int = 16,
                 symmetric_pairs: bool = False):
        super().__init__()
        if n_rbf < 1:
            raise ValueError(f"n_rbf: expected >= 1, got {n_rbf}")
        self.n_rbf = int(n_rbf)
        self.symmetric_pairs = bool(symmetric_pairs)
        self.edge_type_embedding = nn.Embedding(n_edge_types, edge_type_dim)
        self.gnn = EncodeProcessDecode(latent_dim + 2, 3 + 2 * n_rbf + edge_type_dim, hidden, 1, layers,
                                       n_hidden_layers)
        self.edge_decoder = MLP(hidden, hidden, 1, n_hidden_layers, layer_norm=False)
        self._hparams = dict(latent_dim=latent_dim, hidden=hidden, layers=layers, n_edge_types=n_edge_types,
                             edge_type_dim=edge_type_dim, n_hidden_layers=n_hidden_layers, n_rbf=n_rbf,
                             symmetric_pairs=self.symmetric_pairs)

    @torch.jit.unused
    def hyperparameters(self) -> Dict[str, int]:
        """Constructor arguments (to rebuild the module; stored in bundle metadata)."""
        return dict(self._hparams)

    def _rbf(self, d: torch.Tensor) -> torch.Tensor:
        centres = torch.linspace(0.0, 1.0, self.n_rbf, dtype=d.dtype, device=d.device)
        return torch.exp(-0.5 * ((d - centres) * float(self.n_rbf)) ** 2)

    def forward(self, latent: torch.Tensor, residual: torch.Tensor, displacement: torch.Tensor,
                edge_index: torch.Tensor, edge_vec: torch.Tensor, edge_type: torch.Tensor, sigma: torch.Tensor,
                cutoff: float = 1.0, length_scale: float = 1.0,
                edge_layers: Optional[List[torch.Tensor]] = None) -> torch.Tensor:
        """The equivariant correction to sigma x score, (n, 3) (``out_i`` of the class docstring).

        Shapes: latent (n, latent_dim), residual (n, 3) normalised residual r_i, displacement (n, 3) nm,
        edge_index (2, E) long, edge_vec (E, 3) nm on the noisy positions, edge_type (E,) long, sigma (n,) or
        scalar nm; cutoff nm; length_scale nm (makes log sigma dimensionless); edge_layers None (radius graph)
        or the DKMP* per-layer message sets (one (E_l,) long index tensor per layer, :mod:`openmm_mlcg.nn.dkmp`):
        every edge is still encoded and decoded (pair term), only the layers' messages are restricted.
        """
        dtype = latent.dtype
        n = latent.shape[0]
        src = edge_index[0]
        dst = edge_index[1]
        sig = sigma.to(dtype).reshape(-1, 1).expand(n, 1)
        res = residual.to(dtype)
        node_x = torch.cat([latent, torch.linalg.vector_norm(res, dim=-1, keepdim=True),
                            torch.log(sig / length_scale)], dim=-1)
        vec = edge_vec.to(dtype)
        dist = torch.linalg.vector_norm(vec, dim=-1, keepdim=True).clamp_min(1e-6)
        unit = vec / dist
        disp = displacement.to(dtype)
        vec_t = vec - (disp.index_select(0, dst) - disp.index_select(0, src))
        dist_t = torch.linalg.vector_norm(vec_t, dim=-1, keepdim=True)
        edge_x = torch.cat([dist / cutoff, self._rbf(dist / cutoff), self._rbf(dist_t / cutoff),
                            (res.index_select(0, src) * unit).sum(-1, keepdim=True),
                            (res.index_select(0, dst) * unit).sum(-1, keepdim=True),
                            self.edge_type_embedding(edge_type)], dim=-1)
        h, e = self.gnn.process(node_x, edge_x, edge_index, None, edge_layers)
        w = self.edge_decoder(e)                                   # (E, 1), > 0 pushes dst away from src
        if self.symmetric_pairs and w.shape[0] > 0:                # w_ij = w_ji: the pair terms sum to zero
            key = src * n + dst                                    # ascending: edges sorted by (src, dst)
            rev = torch.searchsorted(key, dst * n + src).clamp_max(key.shape[0] - 1)
            w = 0.5 * (w + w.index_select(0, rev))
            # the output is sigma_i x the score: scaled by sqrt(sigma_dst / sigma_src), the SCORE's pair terms
            # w_ij / sqrt(sigma_i sigma_j) are symmetric when the beads have different noise levels
            w = w * torch.sqrt(sig.index_select(0, dst) / sig.index_select(0, src))
        pair = torch.zeros(n, 3, dtype=dtype, device=latent.device).index_add_(0, dst, w * unit)
        return pair + self.gnn.decoder(h) * res
