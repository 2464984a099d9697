"""Forces a user adds to the CG ``System`` (restraints, umbrella biases, an applied electric field), acting on the
learned dynamics.

The CG System of :func:`openmm_mlcg.openmm.create_cg_system` holds only a zero-strength ``HarmonicBondForce``
(``CGBondTopology``, the molecules for reporters). Any other force a user adds is evaluated by OpenMM on the CG
Context and integrated with the learned score in every Langevin sub-step of the default generator
(``cg_langevin``; :func:`openmm_mlcg.generators.cg_langevin.sample`, argument ``external_score``): the sub-step
moves the beads under (kT / m) s(x) + F_ext(x) / m, so a harmonic restraint of constant k holds a free bead with
variance kT / k and a constant force F drifts it at D F / kT. Nothing is ignored: a force the learned step cannot
act on is refused when the integrator is attached, with the reason:

* barostats and thermostats (``MonteCarloBarostat`` and its variants, ``AndersenThermostat``): they act on the
  box or the velocities between OpenMM steps, which a learned model step does not read; the learned dynamics is
  already at the temperature it was trained at, in the box of the Context;
* any force, for a generator that does not integrate forces (``Generator.honours_forces`` is False: the paper's
  score samplers and the interpolant) or with ``refine=False`` (the Dynamics GNN's Gaussian step).

``CMMotionRemover`` is accepted and has no effect (the learned step removes the periodic centre-of-mass drift
itself when no external force acts).
"""
from __future__ import annotations

from typing import Callable, List, NamedTuple, Optional, Tuple

import numpy as np
import openmm
import torch
from openmm import unit

__all__ = ["SystemForces", "classify_forces", "check_forces", "honours", "external_score_function",
           "TOPOLOGY_FORCE_NAME"]

#: name of the zero-strength bond force that :func:`create_cg_system` adds for reporters
TOPOLOGY_FORCE_NAME = "CGBondTopology"

_REFUSED = {
    "MonteCarloBarostat": "a barostat changes the box between steps",
    "MonteCarloAnisotropicBarostat": "a barostat changes the box between steps",
    "MonteCarloMembraneBarostat": "a barostat changes the box between steps",
    "MonteCarloFlexibleBarostat": "a barostat changes the box between steps",
    "AndersenThermostat": "a thermostat changes the velocities between steps",
}
_INERT = ("CMMotionRemover",)


class SystemForces(NamedTuple):
    """The forces of a CG System as the learned integrator sees them.

    Attributes:
        active: ``(index, description)`` of every force that acts on the beads (evaluated by OpenMM).
        refused: ``(index, description, reason)`` of every force the learned step cannot honour.
    """

    active: Tuple[Tuple[int, str], ...]
    refused: Tuple[Tuple[int, str, str], ...]


def _describe(index: int, force) -> str:
    kind = type(force).__name__
    name = force.getName()
    return f"force {index} ({kind}{'' if not name or name == kind else ' ' + repr(name)})"


def _is_topology_force(force) -> bool:
    """The zero-strength bond force of :func:`create_cg_system` (every bond with k = 0)."""
    if not isinstance(force, openmm.HarmonicBondForce) or force.getName() != TOPOLOGY_FORCE_NAME:
        return False
    return all(force.getBondParameters(i)[3].value_in_unit(unit.kilojoule_per_mole / unit.nanometer ** 2) == 0
               for i in range(force.getNumBonds()))


def classify_forces(system: openmm.System) -> SystemForces:
    """Sort the forces of a CG ``system`` into active, refused and inert (module docstring)."""
    active: List[Tuple[int, str]] = []
    refused: List[Tuple[int, str, str]] = []
    for i, force in enumerate(system.getForces()):
        kind = type(force).__name__
        if kind in _INERT or _is_topology_force(force):
            continue
        if kind in _REFUSED:
            refused.append((i, _describe(i, force), _REFUSED[kind]))
        else:
            active.append((i, _describe(i, force)))
    return SystemForces(tuple(active), tuple(refused))


def check_forces(forces: SystemForces, honoured: bool, why_not: str) -> None:
    """Refuse forces the learned step cannot act on.

    Args:
        forces: from :func:`classify_forces`. honoured: whether the current generator and settings integrate
            forces. why_not: the reason they do not (named in the message).

    Raises:
        ValueError: naming ``system``, each refused force and the reason.
    """
    if forces.refused:
        listed = "; ".join(f"{d}: {r}" for _, d, r in forces.refused)
        raise ValueError(f"system: the learned integrator cannot honour {listed}, which a learned model step does "
                         "not read; remove it from the CG System (the learned dynamics keeps the trained "
                         "temperature in the Context's box)")
    if forces.active and not honoured:
        listed = ", ".join(d for _, d in forces.active)
        raise ValueError(f"system: holds {listed}, but {why_not}, so they would be ignored; remove them, or run "
                         "the refined step of a 'cg_langevin' bundle, which integrates them")


def external_score_function(context: openmm.Context, temperature_K: float,
                            ) -> Callable[[torch.Tensor], torch.Tensor]:
    """F(x) / kT (1/nm) of the forces of ``context``'s System at positions ``x`` (n, 3) nm, as a torch function.

    Each call sets the Context's positions to ``x`` and asks OpenMM for the forces (kJ/mol/nm), a host round trip
    per Langevin sub-step. The Context's positions are left at the last ``x``: the integrator writes the step's
    result afterwards.

    Raises:
        ValueError: a non-positive ``temperature_K``.
    """
    from ..generators.cg_langevin import BOLTZMANN_KJ_PER_MOL_K

    if not (temperature_K and temperature_K > 0):
        raise ValueError(f"temperature_K: expected a positive temperature in K, got {temperature_K!r}")
    kt = BOLTZMANN_KJ_PER_MOL_K * float(temperature_K)

    def score(x: torch.Tensor) -> torch.Tensor:
        """F_ext(x) / kT, (n, 3) 1/nm, on ``x``'s device and dtype."""
        context.setPositions(x.detach().to("cpu", torch.float64).numpy())
        f = context.getState(getForces=True).getForces(asNumpy=True).value_in_unit(
            unit.kilojoule_per_mole / unit.nanometer)
        return torch.as_tensor(np.asarray(f) / kt, dtype=x.dtype, device=x.device)

    return score


def honours(sampler_class, refine: bool, refines: bool) -> Tuple[bool, Optional[str]]:
    """Whether a step with these settings integrates System forces, and if not, why (for :func:`check_forces`)."""
    if not refine:
        return False, "refine=False (the Dynamics GNN's Gaussian step has no force input)"
    if not refines:
        return False, "the bundle's Score GNN was not trained (its step is the Dynamics GNN's Gaussian)"
    if not getattr(sampler_class, "honours_forces", False):
        return False, f"the bundle's sampler {sampler_class.name!r} does not integrate forces"
    return True, None
