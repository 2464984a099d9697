"""openmm_mlcg: learned, time-integrated coarse-grained MD (Fu et al., TMLR 2023) as an OpenMM integrator.

The top-level package imports nothing heavy; import the subpackage you need, in data-flow order: ``.cg`` (topology
-> CG mapping), ``.data`` (CG trajectories, windows), ``.nn`` (networks), ``.model`` (the model object and its
metadata), ``.generators`` (the learned step), ``.priors`` (score terms), ``.train`` (the trainer), ``.bundle``
(the model file), ``.openmm`` (``LearnedIntegrator``), ``.analysis``, ``.systems``, ``.experiments``, ``.app``
(command line); ``.util`` and ``.io`` are shared leaves. The runtime never imports ``openmm_mlcg.train``.
"""
from ._version import __version__

__all__ = ["__version__"]
