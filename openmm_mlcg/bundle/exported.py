"""torch.export (ExportedProgram) path for the three GNNs, as an alternative to TorchScript.

torch.export specialises Python scalars into constants, so:
 * ``EmbeddingGNN``'s ``n_beads: int`` is passed as the length of a tensor (adapter below);
 * ``cutoff`` (Dynamics/Score) and ``displacement_scale`` (Score) are baked in at export time from the bundle
   metadata; the loaded wrapper refuses other values (ValueError).
Bead count, atom count, bond count and edge count are dynamic dimensions (``torch.export.Dim``).
Exported programs are saved for the device they were traced on (CPU here); ``.to(device)`` of the unlifted
module moves parameters but device constants created inside the graph may stay on the trace device, so the
TorchScript format remains the default for CUDA.

Source: torch.export documentation (https://pytorch.org/docs/stable/export.html).
"""
from __future__ import annotations

import io
from typing import Dict, Tuple

import torch
from torch import nn

__all__ = ["export_programs", "load_programs"]


class _EmbeddingAdapter(nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, atom_types, masses, bond_index, bond_types, atom_to_bead, bead_ones):
        """Bead embeddings (n_beads, hidden); the bead count arrives as the length of ``bead_ones``."""
        return self.module(atom_types, masses, bond_index, bond_types, atom_to_bead, bead_ones.shape[0])


class _DynamicsAdapter(nn.Module):
    def __init__(self, module, cutoff: float):
        super().__init__()
        self.module = module
        self.cutoff = float(cutoff)

    def forward(self, bead_embedding, bead_masses, history_velocities, edge_index, edge_vec, edge_type):
        """The wrapped Dynamics GNN with the cutoff (nm) baked in."""
        return self.module(bead_embedding, bead_masses, history_velocities, edge_index, edge_vec, edge_type,
                           self.cutoff)


class _ScoreAdapter(nn.Module):
    def __init__(self, module, cutoff: float, displacement_scale: float):
        super().__init__()
        self.module = module
        self.cutoff = float(cutoff)
        self.displacement_scale = float(displacement_scale)

    def forward(self, latent, residual, displacement, edge_index, edge_vec, edge_type, sigma):
        """The wrapped Score GNN with the cutoff (nm) and displacement scale baked in."""
        return self.module(latent, residual, displacement, edge_index, edge_vec, edge_type, sigma, self.cutoff,
                           self.displacement_scale)


def _examples(hp: Dict[str, dict]):
    g = torch.Generator().manual_seed(0)
    e, d, s = hp["embedding"], hp["dynamics"], hp["score"]
    n_atoms, n_beads, n_edges = 11, 5, 14
    chain = torch.stack([torch.arange(0, 7), torch.arange(1, 8)])
    bond_index = torch.cat([chain, chain.flip(0)], 1)
    emb = (torch.randint(0, e["n_atom_types"], (n_atoms,), generator=g), torch.rand(n_atoms, generator=g) + 1.0,
           bond_index, torch.randint(0, e["n_bond_types"], (bond_index.shape[1],), generator=g),
           torch.arange(n_atoms) % n_beads, torch.ones(n_beads))
    ei = torch.stack([torch.arange(n_edges) % n_beads, (torch.arange(n_edges) * 3 + 1) % n_beads])
    et = torch.randint(0, d["n_edge_types"], (n_edges,), generator=g)
    dyn = (torch.randn(n_beads, d["embedding_dim"], generator=g), torch.rand(n_beads, generator=g) + 1.0,
           torch.randn(n_beads, d["history"], 3, generator=g), ei, torch.randn(n_edges, 3, generator=g), et)
    sco = (torch.randn(n_beads, s["latent_dim"], generator=g), torch.randn(n_beads, 3, generator=g),
           torch.randn(n_beads, 3, generator=g), ei,
           torch.randn(n_edges, 3, generator=g), et, torch.rand(n_beads, 1, generator=g) + 0.1)
    return emb, dyn, sco


def export_programs(embedding, dynamics, score, cutoff: float, displacement_scale: float) -> Dict[str, bytes]:
    """Export the three eager modules with dynamic atom/bead/bond/edge counts; returns name -> bytes.

    Raises:
        RuntimeError (from torch.export) if a module cannot be exported.
    """
    from torch.export import Dim, export

    hp = dict(embedding=embedding.hyperparameters(), dynamics=dynamics.hyperparameters(),
              score=score.hyperparameters())
    emb_x, dyn_x, sco_x = _examples(hp)
    A, B, N, E = Dim("n_atoms", min=2), Dim("n_bonds", min=2), Dim("n_beads", min=2), Dim("n_edges", min=2)
    specs = {
        "embedding": (_EmbeddingAdapter(embedding), emb_x, ({0: A}, {0: A}, {1: B}, {0: B}, {0: A}, {0: N})),
        "dynamics": (_DynamicsAdapter(dynamics, cutoff), dyn_x, ({0: N}, {0: N}, {0: N}, {1: E}, {0: E}, {0: E})),
        "score": (_ScoreAdapter(score, cutoff, displacement_scale), sco_x,
                  ({0: N}, {0: N}, {0: N}, {1: E}, {0: E}, {0: E}, {0: N})),
    }
    out = {}
    for name, (mod, args, dyn) in specs.items():
        mod.eval()
        ep = export(mod, args, dynamic_shapes=dyn)
        buf = io.BytesIO()
        torch.export.save(ep, buf)
        out[name] = buf.getvalue()
    return out


class _Loaded(nn.Module):
    """Wrapper giving a loaded ExportedProgram the original module's call signature."""

    def __init__(self, name: str, program, scalars: Tuple[float, ...]):
        super().__init__()
        self.name = name
        self.program = program
        self.scalars = scalars

    def train(self, mode: bool = True):
        """No-op apart from the flag: exported programs are inference graphs (torch refuses train())."""
        self.training = mode
        return self

    def forward(self, *args):
        """Call the exported program with the model's arguments (counts and scalars as tensors)."""
        if self.name == "embedding":
            *head, n_beads = args
            return self.program(*head, torch.ones(int(n_beads), device=args[1].device))
        n_tensor = 7 if self.name == "score" else 6   # + cutoff (and the score's length scale)
        given = tuple(float(a) for a in args[n_tensor:])
        if self.name == "dynamics" and len(given) == 0:
            raise ValueError("cutoff: expected as the last argument")
        for g, s in zip(given, self.scalars):
            if abs(g - s) > 1e-12 * max(1.0, abs(s)):
                raise ValueError(f"{self.name}: exported with scalar arguments {self.scalars}, got {given}")
        return self.program(*args[:n_tensor])


def load_programs(blobs: Dict[str, bytes], cutoff: float, displacement_scale: float, device) -> Dict[str, nn.Module]:
    """Load exported programs saved by :func:`export_programs` -> name -> callable module on ``device``."""
    scalars = {"embedding": (), "dynamics": (cutoff,), "score": (cutoff, displacement_scale)}
    out = {}
    for name, data in blobs.items():
        ep = torch.export.load(io.BytesIO(data))
        out[name] = _Loaded(name, ep.module().to(device), scalars[name])
    return out
