"""Explicit attachment of a :class:`~openmm_mlcg.openmm.LearnedIntegrator` to its Context.

OpenMM's Python API has no ``Integrator.getContext()``, and a CustomIntegrator is not told when a Context is
created with it. So the Context is named once, explicitly: ``integrator.attach(simulation_or_context)``, or
:func:`create_simulation`, which builds the ``app.Simulation`` and attaches it. (Earlier versions searched the
garbage collector's referrers for the Context; that is gone.)
"""
from __future__ import annotations

from openmm import app

__all__ = ["create_simulation"]


def create_simulation(topology, system, integrator, platform=None, properties=None, state=None) -> app.Simulation:
    """``app.Simulation(topology, system, integrator, platform, properties, state)`` with ``integrator``
    attached to its Context (:meth:`LearnedIntegrator.attach`).

    Args:
        topology, system: the CG Topology and System (:func:`openmm_mlcg.openmm.create_cg_system`).
        integrator: a LearnedIntegrator (anything with ``attach``).
        platform, properties, state: as for ``app.Simulation`` (platform: an ``openmm.Platform`` or None).

    Returns:
        the Simulation; ``simulation.step``, ``runForClockTime`` and ``integrator.step`` all advance it.

    Raises:
        TypeError: ``integrator`` has no ``attach`` method (not a LearnedIntegrator).
    """
    if not callable(getattr(integrator, "attach", None)):
        raise TypeError(f"integrator: expected a LearnedIntegrator, got {type(integrator).__name__}")
    simulation = app.Simulation(topology, system, integrator, platform, properties, state)
    integrator.attach(simulation)
    return simulation
