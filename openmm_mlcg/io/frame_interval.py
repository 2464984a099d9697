"""The time between saved frames of a trajectory file: what the run recorded wins over what the user says.

Recorded sources, in this order:

* ``metadata.json`` beside the trajectory (written by ``openmm_mlcg.systems``): ``frame_interval_ps``;
* the DCD header (``openmm.app.DCDReporter``): time step x save interval (the step is stored as float32, in
  AKMA units). mdtraj and other converters write a placeholder header (step 1 AKMA, interval 1), which is
  treated as "not recorded";
* formats that store the time of each frame (XTC, TRR, H5, NetCDF): the spacing of the first two frames.

A value given by the user (``--frame-interval-ps``) only fills in where nothing is recorded; if it disagrees
with a recorded value, or two recorded values disagree, :func:`resolve_frame_interval` raises and names both.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from openmm import unit

from openmm_mlcg.util.units import to_float

__all__ = ["recorded_frame_intervals", "resolve_frame_interval", "RTOL", "TIMED_SUFFIXES"]

#: relative tolerance when comparing intervals (DCD headers and XTC times are float32)
RTOL = 1e-3
#: trajectory formats that store the time of each frame (ps)
TIMED_SUFFIXES = {".xtc", ".trr", ".h5", ".nc", ".netcdf", ".ncdf", ".lh5"}


def _dcd_interval(path: Path) -> Optional[float]:
    from openmm_mlcg.io.dcd import AKMA_TIME_PS, read_dcd_header

    h = read_dcd_header(path)
    placeholder = h["interval"] == 1 and math.isclose(h["timestep_ps"], AKMA_TIME_PS, rel_tol=1e-6)
    if h["interval"] <= 0 or not h["timestep_ps"] > 0 or placeholder:
        return None
    return h["interval"] * h["timestep_ps"]


def _timed_interval(path: Path) -> Optional[float]:
    import mdtraj

    try:
        with mdtraj.open(str(path)) as fh:
            frames = fh.read(n_frames=2)
    except Exception:  # unreadable here: the trajectory loader reports it with context
        return None
    times = getattr(frames, "time", None)  # HDF5: named fields; XTC/TRR/NetCDF: (xyz, time, ...)
    if times is None and isinstance(frames, tuple) and len(frames) > 1:
        times = frames[1]
    if times is None or len(times) < 2 or not times[1] > times[0]:
        return None
    return float(times[1] - times[0])


def recorded_frame_intervals(path) -> dict:
    """Frame intervals (ps) recorded for trajectory file ``path``: {source description: ps}; {} if none.

    Raises:
        FileNotFoundError: ``path`` does not exist. ValueError: unreadable metadata.json or DCD header.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trajectory: file {path} does not exist")
    out = {}
    meta = path.parent / "metadata.json"
    if meta.is_file():
        from .readers import read_json

        value = read_json(meta, "run metadata", "frame_interval_ps").get("frame_interval_ps")
        if value is not None:
            out[f"{meta} 'frame_interval_ps'"] = float(value)
    suffix = path.suffix.lower()
    if suffix == ".dcd":
        value = _dcd_interval(path)
        if value is not None:
            out[f"DCD header of {path.name} (time step x save interval)"] = value
    elif suffix in TIMED_SUFFIXES:
        value = _timed_interval(path)
        if value is not None:
            out[f"frame times in {path.name}"] = value
    return out


def _agree(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=RTOL)


def resolve_frame_interval(label: str, paths, given=None) -> tuple[float, str]:
    """The frame interval of one labelled trajectory (one file or consecutive parts).

    Args:
        label: trajectory label (for messages).  paths: path or list of paths.
        given: ps (float, Quantity), a {label: ps} dict, or None; used only when nothing is recorded.

    Returns:
        (interval ps, where it came from).

    Raises:
        ValueError: recorded values disagree with each other or with ``given`` (both named), nothing recorded
            and nothing given, or a non-positive interval.
    """
    if isinstance(given, dict):
        given = given.get(label)
    if given is not None:
        given = to_float(given, unit.picosecond, "frame_interval_ps")
        if not given > 0:
            raise ValueError(f"frame_interval_ps: expected > 0 ps for {label!r}, got {given}")
    paths = [Path(p) for p in (paths if isinstance(paths, (list, tuple)) else [paths])]
    recorded = {}
    for p in paths:
        recorded.update(recorded_frame_intervals(p))
    if recorded:
        (src, value), *rest = recorded.items()
        for other, v in rest:
            if not _agree(v, value):
                raise ValueError(f"frame_interval_ps: {label!r} has two recorded frame intervals: {value:g} ps "
                                 f"({src}) and {v:g} ps ({other})")
        if given is not None and not _agree(given, value):
            raise ValueError(f"frame_interval_ps: {label!r} records {value:g} ps per frame ({src}), but "
                             f"{given:g} ps was given (--frame-interval-ps); the recorded value is used unless "
                             "you remove it, so drop the option or fix the file")
        if not value > 0:
            raise ValueError(f"frame_interval_ps: expected > 0 ps for {label!r}, got {value} ({src})")
        return value, src
    if given is None:
        raise ValueError(f"frame_interval_ps: expected the time between saved frames in ps for {label!r}: "
                         f"nothing is recorded in {paths[0]} (no metadata.json 'frame_interval_ps', no DCD "
                         "header time step, no frame times); pass --frame-interval-ps, got None")
    return given, "given (--frame-interval-ps)"
