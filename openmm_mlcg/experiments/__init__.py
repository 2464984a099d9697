"""End-to-end experiments of Fu et al., TMLR 2023 (section 4), scaled to run on a laptop or a GPU.

Import-light: the submodules (``openmm_mlcg.experiments.polymer``, ``openmm_mlcg.experiments.spe``,
``openmm_mlcg.experiments.liquid``: the liquid-structure benchmark) import
OpenMM, torch and the trainer only when imported themselves; ``protocol`` (the train / judge split) and
``scales`` (every scale preset, as data) import neither.
"""
__all__ = ["polymer", "spe", "liquid", "protocol", "scales"]
