"""Embedding GNN on the static fine (atom) graph -> CG bead type embeddings.

Source: Fu et al., TMLR 2023, section 3 ("Learning CG bead type embeddings with Embedding GNN", eq. 1:
bead embedding = mean of its atoms' embeddings); appendix C (hidden 64, 7 layers).
"""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn

from .gnn import EncodeProcessDecode

__all__ = ["EmbeddingGNN"]


class EmbeddingGNN(nn.Module):
    """Atom-type embedding + mass -> encode-process-decode on the bond graph -> mean over each bead's atoms.

    Node input: ``[a_i, log(m_i / amu)]`` with ``a_i`` a learnable embedding of the atom type.
    Edge input: ``a_i + a_j + b_ij`` with ``b_ij`` a learnable bond-type embedding (paper section 3).

    Args:
        n_atom_types: size of the atom-type vocabulary (bundle metadata ``atom_type_vocabulary``).
        n_bond_types: number of bond-type codes (FineGraph: 0 unspecified ... 5 amide -> 6).
        hidden: latent size (paper 64); out_dim: bead embedding size (default = hidden).
        layers: message-passing layers (paper 7); n_hidden_layers: hidden layers per MLP (paper 2).

    forward(atom_types (N,) long, masses (N,) amu, bond_index (2, B) long both directions, bond_types (B,) long,
            atom_to_bead (N,) long, n_beads: int) -> bead embeddings (n_beads, out_dim).
    Beads without atoms get zeros.
    """

    def __init__(self, n_atom_types: int, n_bond_types: int = 6, hidden: int = 64, layers: int = 7,
                 out_dim: int = -1, n_hidden_layers: int = 2):
        super().__init__()
        if n_atom_types < 1:
            raise ValueError(f"n_atom_types: expected >= 1, got {n_atom_types}")
        if n_bond_types < 1:
            raise ValueError(f"n_bond_types: expected >= 1, got {n_bond_types}")
        out_dim = hidden if out_dim < 0 else out_dim
        self.n_atom_types = n_atom_types
        self.n_bond_types = n_bond_types
        self.out_dim = out_dim
        self.atom_embedding = nn.Embedding(n_atom_types, hidden)
        self.bond_embedding = nn.Embedding(n_bond_types, hidden)
        self.gnn = EncodeProcessDecode(hidden + 1, hidden, hidden, out_dim, layers, n_hidden_layers)
        self._hparams = dict(n_atom_types=n_atom_types, n_bond_types=n_bond_types, hidden=hidden, layers=layers,
                             out_dim=out_dim, n_hidden_layers=n_hidden_layers)

    @torch.jit.unused
    def hyperparameters(self) -> Dict[str, int]:
        """Constructor arguments (to rebuild the module; stored in bundle metadata)."""
        return dict(self._hparams)

    def forward(self, atom_types: torch.Tensor, masses: torch.Tensor, bond_index: torch.Tensor,
                bond_types: torch.Tensor, atom_to_bead: torch.Tensor, n_beads: int) -> torch.Tensor:
        """Bead embeddings (n_beads, out_dim) pooled (summed) from the atom graph's node latents.

        Shapes: atom_types (n_atoms,) long, masses (n_atoms,) amu, bond_index (2, n_bonds) long, bond_types
        (n_bonds,) long, atom_to_bead (n_atoms,) long in [0, n_beads).
        """
        a = self.atom_embedding(atom_types)
        node_x = torch.cat([a, torch.log(masses.to(a.dtype)).unsqueeze(-1)], dim=-1)
        edge_x = a.index_select(0, bond_index[0]) + a.index_select(0, bond_index[1]) + self.bond_embedding(bond_types)
        out, _ = self.gnn(node_x, edge_x, bond_index)
        total = torch.zeros(n_beads, out.shape[1], dtype=out.dtype, device=out.device).index_add_(0, atom_to_bead, out)
        count = torch.zeros(n_beads, dtype=out.dtype, device=out.device).index_add_(
            0, atom_to_bead, torch.ones_like(out[:, 0]))
        return total / count.clamp(min=1.0).unsqueeze(-1)
