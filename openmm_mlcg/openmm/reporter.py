"""``CGStateDataReporter``: OpenMM's ``StateDataReporter`` without the columns a learned CG run cannot fill.

What the stock ``StateDataReporter`` columns mean with :class:`~openmm_mlcg.openmm.LearnedIntegrator`:

* Step, Time (ps), Speed (ns/day), Elapsed/Remaining time, Box volume, Density: meaningful (one step is one
  model step of ``getStepSize()`` ps; density = total bead mass / box volume).
* Potential Energy: the energy of the forces a user added to the CG System (restraints, biases; 0 without
  them, :mod:`openmm_mlcg.openmm.forces`). The learned part has no energy: the model predicts steps.
* Kinetic Energy, Temperature, Total Energy: computed from the Context velocities, which are the mean
  velocities over the last model step (bead displacement / model time step, nm/ps). A mean velocity over a
  step much longer than the velocity correlation time is far below the instantaneous thermal velocity, so
  this "temperature" is not the system's temperature: for diffusive beads it is about 2 m D / (k_B dt) and
  falls as the model step grows (6-11 K for a 353 K electrolyte at 2 ps). No physical temperature exists
  for the CG model: it has no instantaneous velocities.

This reporter refuses the last three columns with an error that says why, and is otherwise identical.
"""
from __future__ import annotations

from openmm import app

__all__ = ["CGStateDataReporter", "UNAVAILABLE_COLUMNS"]

#: StateDataReporter options without a physical meaning for a learned CG run, and why.
UNAVAILABLE_COLUMNS = {
    "kineticEnergy": "Context velocities are displacements per model step, not thermal velocities",
    "totalEnergy": "the learned part has no energy and there is no thermal kinetic energy",
    "temperature": "Context velocities are displacements per model step, so it reads far below the real "
                   "temperature (about 2 m D / (k_B dt) for diffusive beads)",
}


class CGStateDataReporter(app.StateDataReporter):
    """``app.StateDataReporter`` for a ``LearnedIntegrator`` run; same arguments.

    Raises:
        ValueError: one of :data:`UNAVAILABLE_COLUMNS` was requested (the message says why it is unavailable).
    """

    def __init__(self, file, reportInterval, **kwargs):
        bad = [k for k in UNAVAILABLE_COLUMNS if kwargs.get(k)]
        if bad:
            self._openedFile = False  # StateDataReporter.__del__ reads it
            why = "; ".join(f"{k}: {UNAVAILABLE_COLUMNS[k]}" for k in bad)
            raise ValueError(f"CGStateDataReporter: column(s) {bad} are unavailable for a learned CG run ({why}). "
                             "Use step, time, potentialEnergy (of forces you added), speed, elapsedTime, remainingTime, "
                             "volume or density")
        super().__init__(file, reportInterval, **kwargs)
