"""Hydrogen mass repartitioning of an OpenMM System: the best-practice classical baseline's 4 fs step."""
from __future__ import annotations

import openmm
from openmm import app, unit

__all__ = ["repartition_hydrogen_mass"]


def repartition_hydrogen_mass(system: openmm.System, topology: app.Topology, hydrogen_mass=3.0) -> openmm.System:
    """Hydrogen mass repartitioning, in place: every hydrogen bonded to a heavy atom gets ``hydrogen_mass`` and its
    partner gives up the difference, so each molecule keeps its mass (as ``app.ForceField.createSystem(...,
    hydrogenMass=)`` does when it builds a System; Hopkins et al., J. Chem. Theory Comput. 11, 1864 (2015),
    doi:10.1021/ct5010406). With H-bond constraints it allows a 4 fs step with a LangevinMiddleIntegrator.

    Args:
        system: the System to change (clone it first to keep the original). topology: its Topology (bonds and
            elements). hydrogen_mass: amu or a mass Quantity, above the element mass.

    Returns:
        ``system``.

    Raises:
        ValueError: a ``hydrogen_mass`` not above 1.008 amu, a topology of another atom count, or a heavy atom left
            with a non-positive mass.
    """
    from ..util.units import to_float

    m_h = to_float(hydrogen_mass, unit.dalton, "hydrogen_mass")
    if not m_h > 1.008:
        raise ValueError(f"hydrogen_mass: expected more than the element mass 1.008 amu, got {m_h}")
    if topology.getNumAtoms() != system.getNumParticles():
        raise ValueError(f"topology: {topology.getNumAtoms()} atoms, but the System has {system.getNumParticles()} "
                         "particles")
    hydrogen = app.element.hydrogen
    for a, b in topology.bonds():
        if (a.element is hydrogen) == (b.element is hydrogen):
            continue
        h, heavy = (a, b) if a.element is hydrogen else (b, a)
        old_h = system.getParticleMass(h.index).value_in_unit(unit.dalton)
        old_heavy = system.getParticleMass(heavy.index).value_in_unit(unit.dalton)
        if old_heavy - (m_h - old_h) <= 0:
            raise ValueError(f"hydrogen_mass: {m_h} amu would leave atom {heavy.index} ({heavy.name}) with a "
                             "non-positive mass")
        system.setParticleMass(h.index, m_h)
        system.setParticleMass(heavy.index, old_heavy - (m_h - old_h))
    return system
