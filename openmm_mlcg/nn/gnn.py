"""Encode-process-decode graph network (plain torch index_add_, TorchScript-safe, no torch_geometric).

Source: Sanchez-Gonzalez et al., "Learning to Simulate Complex Physics with Graph Networks", ICML 2020
(encoder / processor / decoder; residual node and edge updates; sum aggregation); Fu et al., TMLR 2023,
section 3 ("Graph neural networks") and appendix C (7 message-passing layers).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import nn

from .mlp import MLP

__all__ = ["InteractionLayer", "EncodeProcessDecode"]


class InteractionLayer(nn.Module):
    """One message-passing layer with residual edge and node updates and sum aggregation.

    ``e' = e + MLP_e([e, h_src, h_dst])``; ``h' = h + MLP_v([h, sum_{edges into i} w_e e'])``, w_e = 1 unless
    ``edge_weight`` is given (a smooth cutoff envelope makes the node latents continuous in the positions).

    Shapes: h (n, hidden), e (E, hidden), edge_index (2, E) long [src, dst], edge_weight (E, 1) or None
    -> (h', e').
    """

    def __init__(self, hidden: int, n_hidden_layers: int = 2):
        super().__init__()
        self.edge_mlp = MLP(3 * hidden, hidden, hidden, n_hidden_layers, layer_norm=True)
        self.node_mlp = MLP(2 * hidden, hidden, hidden, n_hidden_layers, layer_norm=True)

    def forward(self, h: torch.Tensor, e: torch.Tensor, edge_index: torch.Tensor,
                edge_weight: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """One layer: (h', e') from h (n, hidden), e (E, hidden), edge_index (2, E), edge_weight (E, 1) or None."""
        src = edge_index[0]
        dst = edge_index[1]
        e = e + self.edge_mlp(torch.cat([e, h.index_select(0, src), h.index_select(0, dst)], dim=-1))
        agg = torch.zeros_like(h).index_add_(0, dst, e if edge_weight is None else e * edge_weight)
        h = h + self.node_mlp(torch.cat([h, agg], dim=-1))
        return h, e


class EncodeProcessDecode(nn.Module):
    """Encode-process-decode GNN (Sanchez-Gonzalez et al. 2020).

    Args:
        node_in, edge_in: input feature sizes; hidden: latent size; out_dim: decoder output size;
        n_layers: message-passing layers (paper: 7); n_hidden_layers: hidden layers per MLP (paper: 2).

    forward(node_x (n, node_in), edge_x (E, edge_in), edge_index (2, E)) -> (out (n, out_dim), h (n, hidden)),
    ``h`` being the last-layer node latents.
    """

    def __init__(self, node_in: int, edge_in: int, hidden: int, out_dim: int, n_layers: int = 7,
                 n_hidden_layers: int = 2):
        super().__init__()
        if n_layers < 0:
            raise ValueError(f"n_layers: expected >= 0, got {n_layers}")
        self.node_encoder = MLP(node_in, hidden, hidden, n_hidden_layers, layer_norm=True)
        self.edge_encoder = MLP(edge_in, hidden, hidden, n_hidden_layers, layer_norm=True)
        self.processor = nn.ModuleList([InteractionLayer(hidden, n_hidden_layers) for _ in range(n_layers)])
        self.decoder = MLP(hidden, hidden, out_dim, n_hidden_layers, layer_norm=False)

    def process(self, node_x: torch.Tensor, edge_x: torch.Tensor, edge_index: torch.Tensor,
                edge_weight: Optional[torch.Tensor] = None,
                layer_edges: Optional[List[torch.Tensor]] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Encoder and processor only: last-layer node latents (n, hidden) and edge latents (E, hidden).

        ``edge_weight`` (E, 1) or None weights every layer's aggregation (:class:`InteractionLayer`).
        ``layer_edges``: None (every layer passes messages on every edge: the radius graph) or one (E_l,) long
        tensor of edge indices per layer (DKMP*, :mod:`openmm_mlcg.nn.dkmp`): layer l updates and aggregates only
        those edges' latents; every edge is encoded and its latent returned.

        Raises:
            ValueError: ``layer_edges`` not one tensor per layer.
        """
        h = self.node_encoder(node_x)
        e = self.edge_encoder(edge_x)
        if layer_edges is None:
            for layer in self.processor:
                h, e = layer(h, e, edge_index, edge_weight)
            return h, e
        if len(layer_edges) != len(self.processor):
            raise ValueError(f"layer_edges: expected one edge set per message-passing layer "
                             f"({len(self.processor)}), got {len(layer_edges)}")
        for i, layer in enumerate(self.processor):
            idx = layer_edges[i]
            w: Optional[torch.Tensor] = None
            if edge_weight is not None:
                w = edge_weight.index_select(0, idx)
            h, e_l = layer(h, e.index_select(0, idx), edge_index.index_select(1, idx), w)
            e = e.index_copy(0, idx, e_l)
        return h, e

    def forward(self, node_x: torch.Tensor, edge_x: torch.Tensor, edge_index: torch.Tensor,
                layer_edges: Optional[List[torch.Tensor]] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """(decoder output (n, out_dim), last-layer node latents (n, hidden)); shapes in the class docstring;
        ``layer_edges`` as in :meth:`process`."""
        h, _ = self.process(node_x, edge_x, edge_index, None, layer_edges)
        return self.decoder(h), h
