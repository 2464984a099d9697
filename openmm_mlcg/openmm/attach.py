"""Find the ``openmm.Context`` an integrator runs in.

OpenMM's Python API has no ``Integrator.getContext()``; the Python ``Context`` keeps its integrator in the
attribute ``_integrator``, so the Context is found among the referrers of the integrator object
(``gc.get_referrers``, ~10 ms, done once and then cached with a weak reference by the caller).
"""
from __future__ import annotations

import gc

import openmm

__all__ = ["find_context"]


def find_context(integrator):
    """Return the live ``openmm.Context`` created with ``integrator``, or None if there is none."""
    for ref in gc.get_referrers(integrator):
        if isinstance(ref, openmm.Context) and getattr(ref, "_integrator", None) is integrator:
            return ref
        if isinstance(ref, dict) and ref.get("_integrator") is integrator:  # instance __dict__ (older Pythons)
            for owner in gc.get_referrers(ref):
                if isinstance(owner, openmm.Context) and getattr(owner, "_integrator", None) is integrator:
                    return owner
    return None
