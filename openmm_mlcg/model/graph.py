"""Static model inputs of one system: the mapping-to-tensor conversion and the atom-type vocabulary lookup.

The trainer (one :class:`SystemGraph` per training system) and the runtime (the simulated system) build these
tensors here and nowhere else, so both feed the Embedding GNN the same atom-type indices, masses and bonds.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import List, Optional, Sequence

import numpy as np
import torch

from ..nn.neighbors import cg_bond_index

__all__ = ["SystemGraph", "system_graph", "atom_type_vocabulary"]


@dataclass
class SystemGraph:
    """Static tensors of one system (fine graph + CG mapping), input of the Embedding GNN.

    Attributes:
        atom_types: (n_atoms,) long indices into the shared atom-type vocabulary.
        masses: (n_atoms,) float32 amu.
        bond_index: (2, 2 n_bonds) long, both directions. bond_types: (2 n_bonds,) long bond-order codes.
        atom_to_bead: (n_atoms,) long. n_beads: int. bead_masses: (n_beads,) float32 amu.
        cg_bonds: (2, n_cg_bonds) long, local bead indices (i < j).
        cg_bond_prior: (n_cg_bonds, 2) float64 [r0 nm, variance nm^2] of the harmonic-bond prior
            (:func:`openmm_mlcg.priors.bonds.bond_parameters`, set by ``CGDynamicsModel.system_graph``) or None.
        score_weight: (n_beads,) float32 per-bead weight of the Score GNN's training loss
            (:func:`openmm_mlcg.nn.losses.type_balanced_weights`, set by the trainer) or None (all 1).
    """

    atom_types: torch.Tensor
    masses: torch.Tensor
    bond_index: torch.Tensor
    bond_types: torch.Tensor
    atom_to_bead: torch.Tensor
    n_beads: int
    bead_masses: torch.Tensor
    cg_bonds: torch.Tensor
    cg_bond_prior: Optional[torch.Tensor] = None
    score_weight: Optional[torch.Tensor] = None

    def to(self, device) -> "SystemGraph":
        """A copy with every tensor on ``device``."""
        return SystemGraph(**{f.name: (getattr(self, f.name).to(device) if torch.is_tensor(getattr(self, f.name))
                                       else getattr(self, f.name)) for f in fields(self)})


def atom_type_vocabulary(mappings: Sequence) -> List[str]:
    """Sorted union of the atom types of all mappings' fine graphs (stored in the bundle metadata)."""
    return sorted({t for m in mappings for t in m.graph.atom_types})


def system_graph(mapping, vocabulary: Sequence[str], n_bond_types: Optional[int] = None,
                 device=None) -> SystemGraph:
    """Build the :class:`SystemGraph` of a :class:`openmm_mlcg.cg.mapping.CGMapping`.

    Args:
        mapping: the CG mapping (its ``graph`` gives atom types, masses, bonds and bond types).
        vocabulary: atom types in embedding order (bundle ``atom_type_vocabulary``).
        n_bond_types: if given, bond-type codes must be below it (bundle ``n_bond_types``).
        device: torch device of the tensors (default CPU).

    Raises:
        ValueError: an atom type of the mapping is not in ``vocabulary`` (named), or a bond-type code is
            >= ``n_bond_types``.
    """
    g = mapping.graph
    lookup = {t: i for i, t in enumerate(vocabulary)}
    unknown = sorted(set(g.atom_types) - set(lookup))
    if unknown:
        raise ValueError(f"mapping: atom types {unknown} are not in the bundle's atom_type_vocabulary "
                         f"{list(vocabulary)}")
    bonds = torch.tensor(np.asarray(g.bonds, dtype=np.int64).reshape(-1, 2)).t()
    btypes = torch.tensor(np.asarray(g.bond_types, dtype=np.int64).reshape(-1))
    if n_bond_types is not None and btypes.numel() and int(btypes.max()) >= n_bond_types:
        raise ValueError(f"mapping: bond type code {int(btypes.max())} >= bundle n_bond_types {n_bond_types}")
    cg = cg_bond_index(mapping)
    graph = SystemGraph(
        atom_types=torch.tensor([lookup[t] for t in g.atom_types], dtype=torch.long),
        masses=torch.tensor(np.asarray(g.masses), dtype=torch.float32),
        bond_index=torch.cat([bonds, bonds.flip(0)], dim=1).contiguous(),
        bond_types=torch.cat([btypes, btypes]),
        atom_to_bead=torch.tensor(np.asarray(mapping.atom_to_bead), dtype=torch.long),
        n_beads=int(mapping.n_beads),
        bead_masses=torch.tensor(np.asarray(mapping.bead_masses), dtype=torch.float32),
        cg_bonds=cg,
    )
    return graph if device is None else graph.to(device)
