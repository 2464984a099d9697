"""The starting state of ``openmm-mlcg run``: CG frames one model step apart, from CG or all-atom files.

A learned run needs the last k+1 CG frames one model step apart (k history velocities; see
:meth:`openmm_mlcg.openmm.LearnedIntegrator.initialize_history`). ``--start`` gives them as

* a CG file: a CG PDB (``cg.pdb`` of a run, one frame) or a CG trajectory (``cg.dcd`` + ``--topology cg.pdb``),
  one particle per bead;
* an all-atom file: a PDB, or a trajectory + ``--topology``, with the atoms of the mapping's topology; frames
  are mapped to beads with the mapping (molecules made whole, bead paths unwrapped in time).

The frames are taken from the end of the file(s), every ``model step / frame interval`` frames. A single frame
(a PDB) starts from rest: zero history velocities, the first k steps follow from an unphysical start.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["StartFrames", "load_start_frames"]

#: relative tolerance on "the model step is a whole number of frame intervals" (DCD headers are float32)
_RTOL = 1e-3


@dataclass
class StartFrames:
    """CG start of a learned run.

    frames: (m, n_beads, 3) nm, unwrapped, one model step apart (m = k+1), or (1, n_beads, 3) for a start
    from rest. box: (3, 3) nm row vectors of the last frame, or None (no unit cell). source: what was read,
    for messages and ``run.json``.
    """

    frames: np.ndarray
    box: np.ndarray | None
    source: str

    @property
    def from_rest(self) -> bool:
        """True when only one frame is known (zero history velocities)."""
        return self.frames.shape[0] == 1


def _load(paths: Sequence[Path], topology: Path | None):
    """mdtraj trajectory of ``paths`` (one or consecutive parts), silencing mdtraj's DCD plugin."""
    import mdtraj

    from ..io.quiet import quiet_c_stdout

    top = topology
    if top is None:
        if all(p.suffix.lower() in (".pdb", ".pdbx", ".cif", ".gro", ".h5") for p in paths):
            top = None
        else:
            raise ValueError(f"--topology: {paths[0].name} stores no topology (expected --topology with a PDB/PSF "
                             "of the same particles), got None")
    try:
        with quiet_c_stdout():
            if top is None:
                return mdtraj.load([str(p) for p in paths])
            return mdtraj.load([str(p) for p in paths], top=str(top))
    except Exception as exc:  # noqa: BLE001 (mdtraj raises many kinds of errors for a wrong file)
        raise ValueError(f"--start: could not read {', '.join(map(str, paths))}"
                         + (f" with topology {top}" if top else "") + f": {exc}") from None


def _stride(paths, n_frames: int, model_dt_ps: float, frame_interval_ps) -> tuple[int, str]:
    """Frames per model step of the start files (1 for one frame) and where the frame interval came from."""
    if n_frames == 1:
        return 1, "one frame"
    from ..io.frame_interval import resolve_frame_interval

    try:
        fi, src = resolve_frame_interval("--start", list(paths), frame_interval_ps)
    except ValueError as exc:
        if frame_interval_ps is None and all(p.suffix.lower() == ".pdb" for p in paths):
            fi, src = model_dt_ps, "PDB models taken one model step apart"
        else:
            raise ValueError(str(exc).replace("pass --frame-interval-ps", "pass --frame-interval-ps (ps between "
                                              "the --start frames)")) from None
    ratio = model_dt_ps / fi
    stride = round(ratio)
    if stride < 1 or not math.isclose(ratio, stride, rel_tol=_RTOL):
        raise ValueError(f"--start: frames are {fi:.6g} ps apart ({src}); the model step {model_dt_ps:.6g} ps "
                         "must be a whole number of frame intervals (expected frames every model step or an "
                         f"integer fraction of it), got {ratio:.6g} intervals per model step")
    return stride, f"{fi:.6g} ps per frame ({src})"


def load_start_frames(start: Sequence, mapping, history: int, model_dt_ps: float, topology=None,
                      frame_interval_ps=None) -> StartFrames:
    """Read ``--start`` and return the last ``history + 1`` CG frames one model step apart (or one frame).

    Args:
        start: one or several consecutive files (PDB, DCD, XTC, ... anything mdtraj reads).
        mapping: CGMapping of the simulated system.  history: k of the bundle.  model_dt_ps: its model step.
        topology: topology file for formats without one (DCD, XTC); None for PDB/GRO/H5.
        frame_interval_ps: ps between frames where the files record none (metadata.json, DCD header and
            XTC/TRR/H5 times win; a disagreeing value is an error).

    Returns:
        StartFrames.

    Raises:
        FileNotFoundError: a missing file. ValueError: unreadable files, a particle count that is neither the
        mapping's atoms nor its beads, frames not a whole fraction of a model step apart, or too few frames.
    """
    from ..io.readers import check_input_file

    paths = [Path(check_input_file(p, "a start structure or trajectory", "--start")) for p in start]
    if not paths:
        raise ValueError("--start: expected at least one file (a CG PDB, or frames with --topology), got none")
    top = None if topology is None else Path(check_input_file(topology, "a topology", "--topology"))
    traj = _load(paths, top)
    n_atoms, n_beads = int(mapping.graph.n_atoms), int(mapping.n_beads)
    if traj.n_atoms not in (n_atoms, n_beads):
        raise ValueError(f"--start: {paths[0]} holds {traj.n_atoms} particles; expected the {n_beads} beads of the "
                         f"mapping (a CG file) or its {n_atoms} atoms (an all-atom file, mapped to beads)")
    stride, interval = _stride(paths, traj.n_frames, model_dt_ps, frame_interval_ps)
    need = history * stride + 1
    if traj.n_frames == 1:
        keep = [0]
    elif traj.n_frames < need:
        raise ValueError(f"--start: {traj.n_frames} frames at {interval}; {history} history velocities at a "
                         f"{model_dt_ps:.6g}-ps model step need at least {need} frames (or give one frame, e.g. "
                         "a PDB, to start from rest)")
    else:
        keep = list(range(traj.n_frames - need, traj.n_frames, stride))
    xyz = np.asarray(traj.xyz[keep], dtype=np.float64)
    boxes = None if traj.unitcell_vectors is None else np.asarray(traj.unitcell_vectors[keep], dtype=np.float64)
    if traj.n_atoms == n_atoms and n_atoms != n_beads:
        frames = mapping.map_positions(xyz, boxes, unwrap=True)
        kind = "all-atom, mapped to beads"
    else:
        from ..util.geometry import unwrap_in_time

        frames = unwrap_in_time(xyz, boxes) if boxes is not None and len(keep) > 1 else xyz
        kind = "CG"
    box = None if boxes is None else boxes[-1]
    source = f"{', '.join(map(str, paths))} ({kind}; {len(keep)} of {traj.n_frames} frames, {interval})"
    return StartFrames(frames=frames, box=box, source=source)
