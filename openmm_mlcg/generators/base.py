"""The generator interface: how one model step draws the joint next state, and the name -> class registry.

A generator is what turns the trained networks into a next state: the default ``cg_langevin`` (Langevin
sub-steps on the learned equilibrium score) and the comparison generators (the paper's annealed Langevin, the
ancestral and probability-flow score samplers, the stochastic interpolant). Each one is a :class:`Generator`
subclass registered under its name (:func:`register`), the value of the config's ``score.sampler`` and of the
bundle's ``sampler``; :func:`get_generator` is the one place that turns that name into behaviour (an unknown
name is refused with the known ones, as openmm-ml's ``MLPotential`` does for its model names).

A generator says:

* ``name``; ``config_class``: the dataclass of its own nested config section (``score.<name>``, or None);
* ``metadata_keys``: the bundle metadata fields it reads (:class:`openmm_mlcg.model.ModelMetadata`);
* ``uses_dynamics``: whether its refined step needs the Dynamics GNN's Gaussian (a pass of that network);
* ``honours_forces``: whether its step integrates forces that are not learned (``StepInputs.external_score``: the
  CG System's own forces, e.g. restraints or an applied field); the OpenMM integrator refuses a System with such
  forces for a generator that cannot;
* ``equilibrium_score``: whether its Score GNN is an equilibrium score of the configurations (it reads the bead
  embeddings, not the Dynamics GNN's latents; score terms and post-training fits apply to it);
* :meth:`Generator.loss`: its training loss on a collated batch (added to the Gaussian NLL);
* :meth:`Generator.step`: one refined model step (the joint next positions);
* :meth:`Generator.score_passes`: the Score GNN passes of that step;
* :meth:`Generator.refines`: whether the step does any work for a bundle's metadata;
* :meth:`Generator.check_metadata`: what a bundle of this generator must record.

The runtime never imports the trainer: generators hold no training loop, only the loss of one batch.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Dict, NamedTuple, Optional, Tuple, Type

import torch

from ..util.registry import add_to_registry, lookup

__all__ = ["Generator", "StepInputs", "register", "get_generator", "generator_names", "GENERATORS",
           "DEFAULT_GENERATOR"]

#: the generator of the shipped default (``score.sampler``), chosen on bench_liquid (issue 9)
DEFAULT_GENERATOR = "cg_langevin"

#: name -> Generator subclass, filled by :func:`register` when the generator modules are imported
GENERATORS: Dict[str, Type["Generator"]] = {}


class StepInputs(NamedTuple):
    """What one refined model step of a system needs besides the current positions.

    Attributes:
        box: (3, 3) nm, validated, or None. cg_bonds: (2, m) bead indices.
        bead_embedding: (n, D) from :meth:`CGDynamicsModel.embed`. bead_masses: (n,) amu.
        bead_friction: (n, 1) 1/ps (``cg_langevin``) or None. score_terms: the system's
            :class:`openmm_mlcg.priors.ScoreTerms` (summed onto the learned score) or None.
        generator: torch RNG on the device or None. deterministic: no random numbers.
        external_score: ``f(x) -> (n, 3)`` F_ext(x) / kT in 1/nm of forces that are not learned (the CG System's
            own forces), or None; only generators with ``honours_forces`` accept it.
    """

    box: Optional[torch.Tensor]
    cg_bonds: torch.Tensor
    bead_embedding: Optional[torch.Tensor] = None
    bead_masses: Optional[torch.Tensor] = None
    bead_friction: Optional[torch.Tensor] = None
    score_terms: Any = None
    generator: Optional[torch.Generator] = None
    deterministic: bool = False
    external_score: Optional[Callable[[torch.Tensor], torch.Tensor]] = None


class Generator:
    """Base class of a generator of the joint next state (module docstring). Stateless: class methods only."""

    name: ClassVar[str] = ""
    config_class: ClassVar[Optional[type]] = None
    metadata_keys: ClassVar[Tuple[str, ...]] = ()
    uses_dynamics: ClassVar[bool] = True
    equilibrium_score: ClassVar[bool] = False
    honours_forces: ClassVar[bool] = False

    @classmethod
    def refines(cls, metadata) -> bool:
        """Whether the refined step does any work: by default, whenever the Score GNN was trained."""
        return bool(metadata.score_enabled)

    @classmethod
    def score_passes(cls, metadata) -> int:
        """Score GNN passes of one refined model step."""
        raise NotImplementedError

    @classmethod
    def needs_dynamics(cls, metadata) -> bool:
        """Whether the refined step of a bundle with this metadata needs the Dynamics GNN's prediction
        (``uses_dynamics`` unless the generator's own options say otherwise)."""
        return bool(cls.uses_dynamics)

    @classmethod
    def check_metadata(cls, metadata, name: str) -> None:
        """Raise ValueError naming ``name[key]`` when the metadata lacks what this generator needs."""

    @classmethod
    def loss(cls, model, prediction, positions: torch.Tensor, bead_embedding: torch.Tensor, batch,
             generator: Optional[torch.Generator]) -> torch.Tensor:
        """The generator's training loss on a collated batch (scalar).

        Args:
            model: the :class:`~openmm_mlcg.model.CGDynamicsModel`. prediction: its detached
                :class:`~openmm_mlcg.model.Prediction` on the (input-noised) positions (latents attached).
            positions: (N, 3) nm, the (noised) current positions. bead_embedding: (N, D).
            batch: ``openmm_mlcg.train.batching.Batch``. generator: CPU RNG of every draw.
        """
        raise NotImplementedError

    @classmethod
    def step(cls, model, positions: torch.Tensor, prediction, inputs: StepInputs) -> torch.Tensor:
        """Joint next positions (n, 3) nm of one refined model step from ``positions`` (n, 3) nm.

        ``prediction`` is the Dynamics GNN's :class:`~openmm_mlcg.model.Prediction` (None when
        ``uses_dynamics`` is False).
        """
        raise NotImplementedError


def register(cls: Type[Generator]) -> Type[Generator]:
    """Class decorator: add a :class:`Generator` subclass to the registry under its ``name``.

    Raises:
        ValueError: no name, or the name is taken by another class.
    """
    return add_to_registry(GENERATORS, cls.name, cls, "generator")


def generator_names() -> Tuple[str, ...]:
    """The registered generator names, default first (the package's ``__init__`` imports every generator module,
    so importing this module registers them all)."""
    return tuple(sorted(GENERATORS, key=lambda n: (n != DEFAULT_GENERATOR, n)))


def get_generator(name: str, what: str = "sampler") -> Type[Generator]:
    """The generator class registered under ``name``.

    Raises:
        ValueError: naming ``what``, the known names and the given one, for an unknown name.
    """
    return lookup(GENERATORS, name, what, "generators", generator_names())
