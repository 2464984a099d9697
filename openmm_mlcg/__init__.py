"""openmm_mlcg: learned, time-integrated coarse-grained MD (Fu et al., TMLR 2023) as an OpenMM integrator.

The top-level package imports nothing heavy; import the submodules you need:
``openmm_mlcg.cg.topology``, ``.mapping``, ``.data``, ``.export``, ``.openmm``, ``.analysis``, ``.systems``.
The trainer lives in ``openmm_mlcg.train`` and is never imported by the runtime.
"""
from ._version import __version__

__all__ = ["__version__"]
