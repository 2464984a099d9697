"""DCD files written by OpenMM's ``DCDReporter``: header time step and trajectories with correct time stamps.

mdtraj's DCD reader ignores the header and numbers frames 0, 1, 2, ...; :func:`load_dcd` sets
``trajectory.time`` from the header instead (frame f at step ``first_step + f * interval``).
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

__all__ = ["read_dcd_header", "load_dcd"]

#: DCD (CHARMM/AKMA) time unit in ps, as used by openmm.app.DCDFile.
AKMA_TIME_PS = 0.04888821


def read_dcd_header(path) -> dict:
    """Read the CHARMM DCD header.

    Returns:
        dict(n_frames=int, first_step=int, interval=int (steps between frames), timestep_ps=float).

    Raises:
        FileNotFoundError: missing file. ValueError: not a DCD file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: DCD file {path} does not exist")
    with open(path, "rb") as fh:
        head = fh.read(48)
    if len(head) < 48 or head[4:8] != b"CORD" or struct.unpack("<i", head[:4])[0] != 84:
        raise ValueError(f"path: {path} is not a little-endian CHARMM DCD file")
    n_frames, first_step, interval = struct.unpack("<3i", head[8:20])
    (delta,) = struct.unpack("<f", head[44:48])
    return dict(n_frames=n_frames, first_step=first_step, interval=interval, timestep_ps=float(delta) * AKMA_TIME_PS)


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
    traj = mdtraj.load_dcd(str(path), top=top)
    dt = header["timestep_ps"] if timestep_ps is None else float(timestep_ps)
    traj.time = (header["first_step"] + np.arange(traj.n_frames) * header["interval"]) * dt
    return traj
