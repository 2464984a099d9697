"""Generators of the joint next state behind one interface (:mod:`.base`) and a name -> class registry: the default
``cg_langevin`` step (:mod:`.cg_langevin`) and the comparison generators (:mod:`.score_samplers`: ``langevin``,
``ancestral``, ``ode``; :mod:`.interpolant`)."""
from . import cg_langevin, interpolant, score_samplers  # noqa: F401  (registers the generators)
from .base import DEFAULT_GENERATOR, GENERATORS, Generator, StepInputs, generator_names, get_generator, register

__all__ = ["Generator", "StepInputs", "register", "get_generator", "generator_names", "GENERATORS",
           "DEFAULT_GENERATOR"]
