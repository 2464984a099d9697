"""Input checks of :class:`~openmm_mlcg.openmm.LearnedIntegrator` against what its bundle was trained on
(see :mod:`openmm_mlcg.util.sanity`): history displacements, CG bond lengths, bead density and periodicity."""
from __future__ import annotations

import warnings

import numpy as np
from openmm import unit

from ..util import sanity
from ..util.sanity import resolve_device  # noqa: F401  (re-exported for the integrator)

__all__ = ["check_history", "check_context", "check_state", "resolve_device", "resolve_mapping"]

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
    check_state(metadata, x, box, mapping)


def check_state(metadata, positions: np.ndarray, box, mapping) -> None:
    """Positions (n, 3) nm and box (3, 3) nm or None against training: CG bonds and bead density.

    Run when a run starts, and again whenever the positions or the box change outside the integrator
    (``setPositions``, ``setPeriodicBoxVectors``, ``setState``) between steps. CG bonds longer than
    ``sanity.BOND_SLACK`` x the longest in training warn (the model's own output may stretch them); beyond
    ``CONTEXT_BOND_SLACK`` x (positions in Angstrom give 10 x) they are refused, as is a bead density outside the
    training range by more than ``sanity.DENSITY_FACTOR``.

    Raises:
        ValueError: naming ``positions`` or ``box``, the expected range and the actual value.
    """
    try:
        sanity.check_against_training(metadata, positions, box, mapping.cg_bonds, mapping.n_beads, "positions")
    except ValueError as exc:  # refuse only what no model output can be (e.g. Angstrom); else warn
        sanity.check_against_training(metadata, positions, box, mapping.cg_bonds, mapping.n_beads, "positions",
                                      bond_slack=CONTEXT_BOND_SLACK)
        warnings.warn(f"LearnedIntegrator: {exc}", RuntimeWarning, stacklevel=4)


def resolve_mapping(bundle, mapping):
    """The mapping a bundle runs on: ``mapping``, or the bundle's own for None; the guard against mix-ups.

    Args:
        bundle: a loaded Bundle (``metadata``, ``mapping``). mapping: a CGMapping or None.

    Returns:
        the CGMapping to simulate.

    Raises:
        ValueError: None given and the bundle has no bound mapping; or ``mapping``'s hash differs from the mapping
            the bundle was trained on (the message says ``transfer=True`` runs it on another system).
        TypeError: ``mapping`` is not a CGMapping.
    """
    bound = getattr(bundle, "mapping", None)
    bound_hash = bundle.metadata.get("mapping_hash") or (bound.hash if bound is not None else None)
    if mapping is None:
        if bound is None:
            raise ValueError("mapping: the bundle has no bound mapping, pass the CGMapping of the system")
        return bound
    if not hasattr(mapping, "hash") or not hasattr(mapping, "n_beads"):
        raise TypeError(f"mapping: expected a CGMapping, got {type(mapping).__name__}")
    if bound_hash is not None and mapping.hash != bound_hash:
        raise ValueError(f"mapping: the model was trained on another CG mapping (this one's hash "
                         f"{mapping.hash[:12]}..., {mapping.n_beads} beads; the bundle's {bound_hash[:12]}...). "
                         "To run it on another system of the same atom types, pass transfer=True; otherwise "
                         "pass the mapping it was trained with (or mapping=None)")
    return mapping
