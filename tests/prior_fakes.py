"""Stand-ins shared by the prior tests: a CG trajectory, a CG mapping, and a zero Score GNN (an ideal gas)."""
import numpy as np
import torch


class FakeTraj:
    """CG trajectory: positions (F, n, 3) nm and a box (3, 3) nm or None."""

    def __init__(self, positions, box):
        self.positions, self.box = np.asarray(positions, dtype=np.float64), box


class FakeMap:
    """CG mapping: bead types and CG bonds (m, 2)."""

    def __init__(self, types, bonds):
        self.bead_types, self.cg_bonds = list(types), np.asarray(bonds, dtype=np.int64).reshape(-1, 2)


class ZeroScore(torch.nn.Module):
    """Score GNN of an ideal gas (zero everywhere)."""

    def forward(self, latent, residual, displacement, edge_index, edge_vec, edge_type, sigma, cutoff: float = 1.0,
                length_scale: float = 1.0):
        return torch.zeros(latent.shape[0], 3, dtype=latent.dtype)
