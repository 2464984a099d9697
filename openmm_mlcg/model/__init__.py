"""The model object shared by trainer and runtime: :class:`CGDynamicsModel` and its :class:`ModelMetadata`.

Runtime code: never imports :mod:`openmm_mlcg.train`.
"""
from .core import CGDynamicsModel, LossOptions, Prediction
from .graph import SystemGraph, atom_type_vocabulary, system_graph
from .metadata import REQUIRED_KEYS, ModelMetadata

__all__ = ["CGDynamicsModel", "ModelMetadata", "Prediction", "LossOptions", "SystemGraph",
           "system_graph", "atom_type_vocabulary", "REQUIRED_KEYS"]
