"""DCD files written by OpenMM's ``DCDReporter``: header time step and trajectories with correct time stamps.

mdtraj's DCD reader ignores the header and numbers frames 0, 1, 2, ...; :func:`load_dcd` sets
``trajectory.time`` from the header instead (frame f at step ``first_step + f * interval``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io.dcd import read_dcd_header  # re-exported
from ..io.quiet import quiet_c_stdout

__all__ = ["read_dcd_header", "load_dcd"]

def load_dcd(path, top, timestep_ps: float | None = None):
    """``mdtraj.load_dcd`` with ``time`` (ps) taken from the header (or ``timestep_ps`` if given).

    Args:
        path: DCD file. top: anything mdtraj accepts as topology (file, mdtraj or OpenMM Topology).
        timestep_ps: override the header step size (the header stores it as float32).

    Returns:
        mdtraj.Trajectory with ``time[f] = (first_step + f * interval) * timestep_ps``.
    """
    import mdtraj

    header = read_dcd_header(path)
    if not isinstance(top, (str, Path, mdtraj.Topology)) and hasattr(top, "atoms"):
        top = mdtraj.Topology.from_openmm(top)
    with quiet_c_stdout():  # mdtraj's DCD plugin prints two lines per file on C stdout
        traj = mdtraj.load_dcd(str(path), top=top)
    dt = header["timestep_ps"] if timestep_ps is None else float(timestep_ps)
    traj.time = (header["first_step"] + np.arange(traj.n_frames) * header["interval"]) * dt
    return traj
