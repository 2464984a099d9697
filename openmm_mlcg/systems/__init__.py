"""Reference MD system builders run with OpenMM (import the submodule you need; nothing heavy here).

- ``openmm_mlcg.systems.md``: resumable protocol runner (``run_protocol``, ``Stage``, ``make_platform``).
- ``openmm_mlcg.systems.polymer``: Webb-style single-chain CG polymers (paper appendix B).
- ``openmm_mlcg.systems.spe``: solid polymer electrolytes (PEO + LiTFSI).
- ``openmm_mlcg.systems.lj``: Lennard-Jones liquids (one atom per bead; the liquid-structure benchmark).
"""
__all__ = ["md", "polymer", "spe", "lj"]
