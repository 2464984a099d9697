"""TorchScript-safe neural-network modules of the learned simulator (no I/O, no optimisers).

``EmbeddingGNN`` (fine graph -> bead embeddings), ``DynamicsGNN`` (Gaussian acceleration), ``ScoreGNN``
(NCSN refinement), ``EnergyScoreGNN`` (the conservative equilibrium score -grad E of ``"cg_langevin"``), built from ``EncodeProcessDecode``/``MLP``. ``build_edges`` (neighbors.py) makes the CG
graph outside the exported modules. Source: Fu et al., TMLR 2023, section 3 and appendix C.
"""
from .dynamics_gnn import DynamicsGNN
from .embedding import EmbeddingGNN
from .energy_score import EnergyScoreGNN
from .gnn import EncodeProcessDecode, InteractionLayer
from .mlp import MLP
from .neighbors import brute_force_pairs, build_edges, minimum_image
from .score import ScoreGNN

__all__ = ["MLP", "InteractionLayer", "EncodeProcessDecode", "EmbeddingGNN", "DynamicsGNN", "ScoreGNN",
           "EnergyScoreGNN",            "build_edges", "brute_force_pairs", "minimum_image"]
