"""Multi-layer perceptron used by every GNN, plain torch, TorchScript-safe.

Source: Sanchez-Gonzalez et al., ICML 2020 (MLPs with 2 hidden layers, ReLU, LayerNorm on encoder and
processor outputs); Fu et al., TMLR 2023, appendix C (2 hidden layers, ReLU).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["MLP"]


class MLP(nn.Module):
    """``n_hidden_layers`` x (Linear -> ReLU) -> Linear [-> LayerNorm].

    Args:
        in_dim, hidden, out_dim: feature sizes.
        n_hidden_layers: number of hidden layers (paper: 2).
        layer_norm: apply LayerNorm to the output (encoders and processor MLPs, not the decoder).

    Shapes: (..., in_dim) -> (..., out_dim).
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, n_hidden_layers: int = 2, layer_norm: bool = True):
        super().__init__()
        if n_hidden_layers < 0:
            raise ValueError(f"n_hidden_layers: expected >= 0, got {n_hidden_layers}")
        layers = []
        d = in_dim
        for _ in range(n_hidden_layers):
            layers += [nn.Linear(d, hidden), nn.ReLU()]
            d = hidden
        layers.append(nn.Linear(d, out_dim))
        if layer_norm:
            layers.append(nn.LayerNorm(out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_dim) -> (..., out_dim)."""
        return self.net(x)
