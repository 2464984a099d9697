"""Mini-batches of variable-size graphs: windows of several systems concatenated into one disjoint graph.

Each training window (an item of :class:`openmm_mlcg.data.WindowDataset`) is one CG graph of its system's
beads. A mini-batch concatenates the beads of all its windows (offsetting CG-bond indices), keeps a per-bead
``batch`` (graph index) vector and one box per graph, so the neighbour search and message passing never
connect different windows. Bead embeddings come from the static fine graph of each system: the Embedding GNN
runs once per distinct system in the batch and the result is gathered per window
(:meth:`openmm_mlcg.model.CGDynamicsModel.loss`). Positions, velocities and targets stay float64 (nm) like the
runtime's state, so the model normalises them in the same dtype on both sides (bit-identical predictions).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional, Sequence

import torch

from openmm_mlcg.model.graph import SystemGraph, atom_type_vocabulary, system_graph  # one mapping -> tensors

__all__ = ["SystemGraph", "system_graph", "atom_type_vocabulary", "Batch", "collate"]


@dataclass
class Batch:
    """A collated mini-batch of G windows with N beads in total.

    Attributes:
        system: (G,) long system index of each window. n_beads: (G,) long beads per window.
        batch: (N,) long window index of each bead (sorted). bead_masses: (N,) float32 amu.
        positions: (N, 3) current positions x_t, nm (unwrapped), float64 like the next four.
        history_velocities: (N, k, 3) nm per model step, oldest first.
        target_acceleration: (N, 3) nm per model step^2. next_positions: (N, 3) nm.
        boxes: (G, 3, 3) nm, rows of zeros for non-periodic windows.
        cg_bonds: (2, M) long, global bead indices.
        cg_bond_prior: (M, 2) [r0 nm, variance nm^2] of the harmonic-bond prior, or None when a graph has none.
        score_weight: (N,) per-bead weight of the Score GNN's loss, or None when a graph has none.
    """

    system: torch.Tensor
    n_beads: torch.Tensor
    batch: torch.Tensor
    bead_masses: torch.Tensor
    positions: torch.Tensor
    history_velocities: torch.Tensor
    target_acceleration: torch.Tensor
    next_positions: torch.Tensor
    boxes: torch.Tensor
    cg_bonds: torch.Tensor
    cg_bond_prior: Optional[torch.Tensor] = None
    score_weight: Optional[torch.Tensor] = None

    @property
    def n_graphs(self) -> int:
        """Number of windows (graphs) G in the batch."""
        return int(self.system.shape[0])

    def to(self, device) -> "Batch":
        """The batch with every tensor moved to ``device``."""
        return Batch(**{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name).to(device))
                        for f in fields(self)})


def collate(items: Sequence[dict], graphs: Sequence[SystemGraph]) -> Batch:
    """Concatenate WindowDataset items into one :class:`Batch`.

    Args:
        items: dicts with keys system (int), positions (n, 3), history_velocities (k, n, 3),
            target_acceleration (n, 3), next_positions (n, 3), box (3, 3) (zeros if non-periodic); arrays or tensors.
        graphs: per-system static graphs (indexed by ``item["system"]``).

    Raises:
        ValueError: empty ``items``, unknown system index, or an item whose bead count differs from its system.
    """
    if len(items) == 0:
        raise ValueError("items: expected at least one window, got 0")
    pos, hv, acc, nxt, boxes, bonds, masses, systems, counts = [], [], [], [], [], [], [], [], []
    offset = 0
    for it in items:
        s = int(it["system"])
        if not 0 <= s < len(graphs):
            raise ValueError(f"items: system index {s} out of range for {len(graphs)} systems")
        g = graphs[s]
        x = torch.as_tensor(it["positions"], dtype=torch.float64)
        if x.shape[0] != g.n_beads:
            raise ValueError(f"items: window of system {s} has {x.shape[0]} beads, mapping has {g.n_beads}")
        pos.append(x)
        hv.append(torch.as_tensor(it["history_velocities"], dtype=torch.float64).permute(1, 0, 2))
        acc.append(torch.as_tensor(it["target_acceleration"], dtype=torch.float64))
        nxt.append(torch.as_tensor(it["next_positions"], dtype=torch.float64))
        box = it.get("box")
        box = torch.zeros(3, 3) if box is None else torch.as_tensor(box).reshape(3, 3)
        boxes.append(box.to(torch.float64))
        bonds.append(g.cg_bonds + offset)
        masses.append(g.bead_masses)
        systems.append(s)
        counts.append(g.n_beads)
        offset += g.n_beads
    n_beads = torch.tensor(counts, dtype=torch.long)
    return Batch(
        system=torch.tensor(systems, dtype=torch.long),
        n_beads=n_beads,
        batch=torch.repeat_interleave(torch.arange(len(items)), n_beads),
        bead_masses=torch.cat(masses),
        positions=torch.cat(pos),
        history_velocities=torch.cat(hv).contiguous(),
        target_acceleration=torch.cat(acc),
        next_positions=torch.cat(nxt),
        boxes=torch.stack(boxes),
        cg_bonds=torch.cat(bonds, dim=1),
        cg_bond_prior=(torch.cat([graphs[s].cg_bond_prior for s in systems])
                       if all(graphs[s].cg_bond_prior is not None for s in systems) else None),
        score_weight=(torch.cat([graphs[s].score_weight for s in systems])
                      if all(graphs[s].score_weight is not None for s in systems) else None),
    )
