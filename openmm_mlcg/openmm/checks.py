"""Input checks of :class:`~openmm_mlcg.openmm.LearnedIntegrator` against what its bundle was trained on
(see :mod:`openmm_mlcg.util.sanity`): history displacements, CG bond lengths, bead density and periodicity."""
from __future__ import annotations

import warnings

import numpy as np
from openmm import unit

from ..util import sanity
from ..util.sanity import resolve_device  # noqa: F401  (re-exported for the integrator)

__all__ = ["check_history", "check_context", "resolve_device"]

CONTEXT_BOND_SLACK = 5.0


def check_history(metadata, frames: np.ndarray, mapping) -> None:
    """``frames`` (k+1, n, 3) nm: displacements against ``velocity_std``, CG bonds against training.

    Raises:
        ValueError: naming ``history``, the expected range and the actual value.
    """
    sanity.check_history_displacements(frames, float(metadata.get("velocity_std") or 0.0), "history",
                                       metadata.get("model_time_step_ps"))
    sanity.check_against_training(metadata, frames[-1], None, mapping.cg_bonds, mapping.n_beads, "history")


def check_context(metadata, context, mapping) -> None:
    """Periodicity of the Context's System, its box (bead density) and current positions (CG bonds).

    The Context may hold the model's own output (a resumed checkpoint), so CG bonds longer than
    ``sanity.BOND_SLACK`` x the longest in training only warn; beyond ``CONTEXT_BOND_SLACK`` x (positions in
    Angstrom give 10 x) they are refused.

    Raises:
        ValueError: naming ``system``, ``box`` or ``positions``.
    """
    periodic = context.getSystem().usesPeriodicBoundaryConditions()
    sanity.check_periodicity(metadata, periodic, "system")
    state = context.getState(getPositions=True)
    x = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer), dtype=np.float64)
    box = np.asarray(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)) if periodic else None
    try:
        sanity.check_against_training(metadata, x, box, mapping.cg_bonds, mapping.n_beads, "positions")
    except ValueError as exc:  # refuse only what no model output can be (e.g. Angstrom); else warn
        sanity.check_against_training(metadata, x, box, mapping.cg_bonds, mapping.n_beads, "positions",
                                      bond_slack=CONTEXT_BOND_SLACK)
        warnings.warn(f"LearnedIntegrator: {exc}", RuntimeWarning, stacklevel=3)
