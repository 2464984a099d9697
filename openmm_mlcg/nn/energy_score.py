"""Conservative Score GNN: the equilibrium score as the negative gradient of a learned energy.

Source: the score of a density is the gradient of its log, ``s = grad log p_sigma = -grad E_sigma``, so a score
network that is a gradient by construction is the energy-based form of denoising score matching (Song & Ermon,
NeurIPS 2019, section 2; Arts et al., J. Chem. Theory Comput. 19, 6151 (2023), doi:10.1021/acs.jctc.3c00702,
who train a coarse-grained force field exactly so and integrate it with Langevin dynamics). The energy is a
sum of per-bead terms of a message-passing network on interatomic distances with a smooth cosine cutoff, as
in SchNet (Schuett et al., J. Chem. Phys. 148, 241722 (2018), doi:10.1063/1.5019779) and CGSchNet (Husic et
al., J. Chem. Phys. 153, 194101 (2020), doi:10.1063/5.0026133).

Why (issue 9, SPE demo): the pair-vector :class:`openmm_mlcg.nn.ScoreGNN` is not a gradient; Langevin dynamics
on a non-conservative field does not sample the density it was fitted to (measured: ten steps from true states
without denoising shift the bond lengths by up to 0.02 nm from the noisy data's). Langevin dynamics on
``-grad E`` has ``exp(-E)`` as its stationary law, so what the network learns is what the sampler samples.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional

import torch
from torch import nn

from .gnn import EncodeProcessDecode

__all__ = ["EnergyScoreGNN"]


class EnergyScoreGNN(nn.Module):
    """Score GNN whose output is ``-sigma grad E``: translation, rotation and permutation invariant energy.

    Only for the ``"cg_langevin"`` sampler (an equilibrium score of the configuration); it reads no residual and
    no displacement (the conditional samplers' inputs) and ignores them.

    Energy (dimensionless, log p_sigma up to a constant): ``E = sum_i psi(h_i) l / sigma_i``, h_i the node latents
    of an encode-process-decode GNN (:class:`openmm_mlcg.nn.EncodeProcessDecode`) whose aggregations are weighted
    by the cosine envelope ``0.5 (cos(pi d / cutoff) + 1)`` on radius edges (1 on CG bonds, which are always in the
    graph), so E and its gradient are continuous when a pair crosses the cutoff; ``l = cutoff / n_rbf`` (the
    width of the radial basis) and the 1 / sigma_i make ``sigma grad E`` of order one at every noise level (the
    sigmas are constants of E, so it stays a gradient also with one sigma per bead). Node input:
    ``[bead embedding, log(sigma / length_scale)]``; edge input: ``[d / cutoff, RBF(d), edge-type embedding]``.

    The gradient is taken with ``torch.autograd.grad`` inside ``forward`` with gradient mode switched on (also
    under the runtime's ``torch.no_grad``); the graph for a double backward is kept when the caller has
    gradients enabled (training), not otherwise. torch.export cannot trace this, so bundles with this module
    use the TorchScript format.

    Args: as :class:`openmm_mlcg.nn.ScoreGNN` (latent_dim: bead embedding size).

    forward(latent (n, latent_dim), residual (n, 3) ignored, displacement (n, 3) ignored, edge_index (2, E) with
            edge_vec (E, 3) nm = x[dst] - x[src], edge_type (E,), sigma (n, 1) nm, cutoff: float nm,
            length_scale: float nm) -> (n, 3) ``sigma_i x score_i`` (dimensionless), score = -grad E in 1/nm.

    Raises:
        ValueError: ``n_rbf`` < 1.
    """

    def __init__(self, latent_dim: int = 128, hidden: int = 128, layers: int = 7, n_edge_types: int = 2,
                 edge_type_dim: int = 16, n_hidden_layers: int = 2, n_rbf: int = 16):
        super().__init__()
        if n_rbf < 1:
            raise ValueError(f"n_rbf: expected >= 1, got {n_rbf}")
        self.n_rbf = int(n_rbf)
        self.conservative = True
        self.edge_type_embedding = nn.Embedding(n_edge_types, edge_type_dim)
        self.gnn = EncodeProcessDecode(latent_dim + 1, 1 + n_rbf + edge_type_dim, hidden, 1, layers,
                                       n_hidden_layers)
        self._hparams = dict(latent_dim=latent_dim, hidden=hidden, layers=layers, n_edge_types=n_edge_types,
                             edge_type_dim=edge_type_dim, n_hidden_layers=n_hidden_layers, n_rbf=n_rbf,
                             conservative=True)

    @torch.jit.unused
    def hyperparameters(self) -> Dict[str, int]:
        """Constructor arguments (to rebuild the module; stored in bundle metadata) and ``conservative``."""
        return dict(self._hparams)

    def energy(self, latent: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
               edge_type: torch.Tensor, sigma: torch.Tensor, cutoff: float, length_scale: float) -> torch.Tensor:
        """Per-bead energies (n,) (dimensionless; their sum is E, see the class docstring)."""
        dtype = latent.dtype
        n = latent.shape[0]
        sig = sigma.to(dtype).reshape(-1, 1).expand(n, 1)
        node_x = torch.cat([latent, torch.log(sig / length_scale)], dim=-1)
        d = torch.sqrt((edge_vec * edge_vec).sum(-1, keepdim=True) + 1e-12) / cutoff
        centres = torch.linspace(0.0, 1.0, self.n_rbf, dtype=dtype, device=latent.device)
        rbf = torch.exp(-0.5 * ((d - centres) * float(self.n_rbf)) ** 2)
        edge_x = torch.cat([d, rbf, self.edge_type_embedding(edge_type)], dim=-1)
        envelope = 0.5 * (torch.cos(math.pi * d.clamp_max(1.0)) + 1.0)
        weight = torch.where((edge_type == 1).unsqueeze(-1), torch.ones_like(envelope), envelope)
        h, _ = self.gnn.process(node_x, edge_x, edge_index, weight)
        return self.gnn.decoder(h).reshape(-1) * ((cutoff / self.n_rbf) / sig.reshape(-1))

    def forward(self, latent: torch.Tensor, residual: torch.Tensor, displacement: torch.Tensor,
                edge_index: torch.Tensor, edge_vec: torch.Tensor, edge_type: torch.Tensor, sigma: torch.Tensor,
                cutoff: float = 1.0, length_scale: float = 1.0) -> torch.Tensor:
        """sigma x score, (n, 3): ``-sigma_i dE/dx_i`` of :meth:`energy` on ``edge_vec`` (autograd).

        The arguments are :class:`~openmm_mlcg.nn.ScoreGNN`'s (``residual`` and ``displacement`` are accepted
        for the same call signature and not used: the energy depends on the configuration only). Shapes:
        latent (n, latent_dim), edge_index (2, E), edge_vec (E, 3) nm, edge_type (E,), sigma (n,) or scalar nm.
        """
        dtype = latent.dtype
        n = latent.shape[0]
        create_graph = torch.is_grad_enabled()
        torch.set_grad_enabled(True)
        vec = edge_vec.to(dtype).detach().requires_grad_(True)
        e = self.energy(latent, edge_index, vec, edge_type, sigma, cutoff, length_scale).sum()
        grads: List[Optional[torch.Tensor]] = torch.autograd.grad([e], [vec], create_graph=create_graph,
                                                                  allow_unused=True)
        torch.set_grad_enabled(create_graph)
        g = grads[0]
        if g is None:
            g = torch.zeros_like(vec)
        # vec = x[dst] - x[src]: dE/dx_i = sum over edges into i of g - sum over edges out of i of g
        grad_x = torch.zeros(n, 3, dtype=dtype, device=latent.device).index_add_(0, edge_index[1], g)
        grad_x = grad_x.index_add_(0, edge_index[0], -g)
        return -sigma.to(dtype).reshape(-1, 1) * grad_x
