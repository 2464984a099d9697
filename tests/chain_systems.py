"""Synthetic chain + ion CG systems of the trainer tests and the golden rollout test (runtime imports only: no
trainer)."""
from __future__ import annotations

import numpy as np


def chain_ion_mapping(n_chains: int, n_ions: int, chain=("C", "C", "O", "C")):
    """The CG mapping (group size 2) of ``n_chains`` linear chains of atoms ``chain`` (residue ETH) and ``n_ions``
    Li ions."""
    from openmm_mlcg.cg.mapping import CGMapping
    from openmm_mlcg.cg.topology import FineGraph

    types, masses, bonds, res = [], [], [], []
    for _ in range(n_chains):
        o = len(types)
        types += list(chain)
        masses += [{"C": 12.011, "O": 15.999}[a] for a in chain]
        bonds += [(o + k, o + k + 1) for k in range(len(chain) - 1)]
        res += ["ETH"] * len(chain)
    types += ["Li"] * n_ions
    masses += [6.94] * n_ions
    res += ["LI"] * n_ions
    return CGMapping.from_graph(FineGraph.from_arrays(types, masses, bonds, residue_names=res), 2)


def chain_ion_system(seed=0, n_chains=3, n_ions=3, n_frames=50, box_nm=2.0):
    """Chains of 6 atoms (3 beads with group size 2: CG bonds and one angle each) and Li ions on a lattice,
    with an anti-persistent walk on top (deterministic: numpy RNG only)."""
    from openmm_mlcg.data import CGTrajectory

    mapping = chain_ion_mapping(n_chains, n_ions, ("C", "C", "O", "C", "C", "O"))
    rng = np.random.default_rng(seed)
    n = mapping.n_beads
    grid = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n] * box_nm / 3
    x = np.zeros((n_frames, n, 3))
    x[0] = grid + rng.normal(0, 0.02, size=(n, 3))
    for c in range(n_chains):   # bonded beads 0.25 nm apart along x
        first = [b for b in range(n) if mapping.bead_types[b] != "Li"][3 * c: 3 * c + 3]
        for k, b in enumerate(first):
            x[0, b] = x[0, first[0]] + np.array([0.25 * k, 0.03 * k * k, 0.0])
    v = np.zeros((n, 3))
    for t in range(1, n_frames):
        v = -0.6 * v + rng.normal(0, 0.004, size=(n, 3))
        x[t] = x[t - 1] + v
    box = np.tile(np.eye(3) * box_nm, (n_frames, 1, 1))
    return CGTrajectory(x, box, np.arange(n_frames) * 1.0, 1.0, mapping.hash), mapping
