"""analyze_files(): file-based front end of :func:`openmm_mlcg.analysis.report.analyze` (used by the CLI).

Reads trajectories with mdtraj (DCD/XTC/H5/PDB as written by OpenMM reporters or reference MD), maps all-atom
frames to beads with a saved CGMapping when needed, unwraps positions and calls ``analyze``.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import mdtraj as md
import numpy as np
from openmm import unit

from openmm_mlcg.readers import dcd_frames, describe_file, read_json
from openmm_mlcg.units import to_float

from .diffusion import unwrap_positions
from .report import analyze

__all__ = ["analyze_files", "load_cg_positions"]


def _interval(label, traj_path: Path, frame_interval_ps) -> float:
    value = frame_interval_ps.get(label) if isinstance(frame_interval_ps, Mapping) else frame_interval_ps
    if value is None:
        meta = traj_path.parent / "metadata.json"
        if meta.is_file():
            value = read_json(meta, "run metadata", "frame_interval_ps").get("frame_interval_ps")
    if value is None:
        raise ValueError(f"frame_interval_ps: expected the time between saved frames in ps for {label!r} "
                         f"(argument, or 'frame_interval_ps' in {traj_path.parent / 'metadata.json'}), got None")
    dt = to_float(value, unit.picosecond, "frame_interval_ps")
    if dt <= 0:
        raise ValueError(f"frame_interval_ps: expected > 0 ps for {label!r}, got {dt}")
    return dt


def load_cg_positions(trajectory, topology, mapping=None, stride: int = 1):
    """Load one trajectory as unwrapped bead positions.

    Args:
        trajectory: path (or list of paths, concatenated) readable by mdtraj.
        topology: path of a topology readable by mdtraj (PDB, PSF, ...) matching the trajectory's particles.
        mapping: CGMapping or None. If the file holds mapping.graph.n_atoms atoms, atoms are mapped to bead
            centres of mass (molecules made whole, unwrapped); if it holds mapping.n_beads particles, they are beads.
        stride: keep every stride-th frame.

    Returns:
        (positions (F, n_beads, 3) nm unwrapped, box (F, 3, 3) nm or None, mdtraj.Topology).

    Raises:
        FileNotFoundError: missing file. ValueError: particle count matches neither the atoms nor the beads.
    """
    paths = [Path(p) for p in (trajectory if isinstance(trajectory, (list, tuple)) else [trajectory])]
    for p in paths + [Path(topology)]:
        if not p.is_file():
            raise FileNotFoundError(f"trajectory/topology: file {p} does not exist")
    try:
        top = md.load_topology(str(topology))
    except Exception as exc:  # mdtraj raises many kinds of errors for a wrong file
        raise ValueError(f"topology: could not read {topology} as a topology (expected PDB/PSF/... readable by "
                         f"mdtraj, found {describe_file(topology)}): {exc}") from None
    if top.n_atoms == 0:
        raise ValueError(f"topology: {topology} holds no atoms (found {describe_file(topology)})")
    try:
        traj = md.load([str(p) for p in paths], top=top, stride=int(stride))
    except Exception as exc:
        empty = [p for p in paths if p.suffix.lower() == ".dcd" and dcd_frames(p) == 0]
        if empty:
            raise ValueError(f"trajectory: {empty[0]} holds no frames (a DCD header only; expected frames of "
                             f"{top.n_atoms} particles)") from None
        raise ValueError(f"trajectory: could not read {paths[0]} with topology {topology} ({top.n_atoms} atoms); "
                         f"the topology must match the trajectory's particles: {exc}") from None
    if traj.n_frames == 0:
        raise ValueError(f"trajectory: {paths[0]} holds no frames (expected frames of {top.n_atoms} particles)")
    x = traj.xyz.astype(np.float64)
    box = None if traj.unitcell_vectors is None else traj.unitcell_vectors.astype(np.float64)
    if mapping is not None and x.shape[1] == mapping.graph.n_atoms and x.shape[1] != mapping.n_beads:
        return mapping.map_positions(x, box, unwrap=True), box, traj.topology
    if mapping is not None and x.shape[1] != mapping.n_beads:
        raise ValueError(f"trajectory: expected {mapping.graph.n_atoms} atoms or {mapping.n_beads} beads "
                         f"(mapping), got {x.shape[1]} particles in {paths[0]}")
    return unwrap_positions(x, box), box, traj.topology


def _topology_beads(top: md.Topology, bead_masses):
    types = np.array([a.name for a in top.atoms])
    if bead_masses is None:
        masses = np.array([a.element.mass if a.element is not None and a.element.mass > 0 else np.nan
                           for a in top.atoms])
        if np.isnan(masses).any():
            warnings.warn("bead_masses: topology has massless/unknown elements; using equal masses "
                          "(pass bead_masses or a mapping for mass-weighted Rg and centres of mass)")
            masses = np.ones(top.n_atoms)
    else:
        masses = bead_masses
    mol = np.empty(top.n_atoms, dtype=np.int64)
    for k, group in enumerate(sorted(top.find_molecules(), key=lambda s: min(a.index for a in s))):
        for a in group:
            mol[a.index] = k
    bonds = np.array([sorted((b[0].index, b[1].index)) for b in top.bonds], dtype=np.int64).reshape(-1, 2)
    return types, masses, mol, bonds


def analyze_files(trajectories: Mapping, out_dir, topology=None, mapping=None, frame_interval_ps=None,
                  stride: int = 1, bead_masses=None, observables=None, reference: str | None = None,
                  **kwargs) -> dict:
    """Analyse trajectory files and compare them; thin wrapper for ``openmm-mlcg analyze``.

    Args:
        trajectories: {label: path | [paths] | (path_or_paths, topology_path)}; e.g.
            {"learned": "cg_run/trajectory.dcd", "reference MD": ("md/trajectory.dcd", "md/topology.pdb")}.
        out_dir: output directory (analysis.json + PNGs).
        topology: default topology path for entries without their own (e.g. the CG PDB written with the CG system).
        mapping: CGMapping or path of a saved mapping (.npz); gives bead types, masses, molecules and CG bonds and
            maps all-atom trajectories to beads. Without it these come from the topology (atom names as bead types,
            element masses or ``bead_masses``, bonded components as molecules, topology bonds as CG bonds).
        frame_interval_ps: ps between saved frames, float or {label: float}; None -> metadata.json beside the
            trajectory ("frame_interval_ps"). Multiplied by ``stride``.
        stride: keep every stride-th frame.
        bead_masses: (n_beads,) amu override when no mapping is given.
        observables, reference, **kwargs: passed to :func:`openmm_mlcg.analysis.report.analyze`
            (fit_window_ps, max_lag_ps, collision_cutoffs_nm, contact_cutoff_nm, rdf_n_bins, rdf_r_max_nm, ...).

    Returns:
        the dict returned by ``analyze``.

    Raises:
        FileNotFoundError: missing files. ValueError: no topology, inconsistent particle counts, missing frame
            interval, and everything ``analyze`` raises.
    """
    if not isinstance(trajectories, Mapping) or not trajectories:
        raise ValueError(f"trajectories: expected a non-empty dict label -> path, got {trajectories!r}")
    if int(stride) < 1:
        raise ValueError(f"stride: expected an integer >= 1, got {stride}")
    from openmm_mlcg.outputs import check_output_dir

    check_output_dir(out_dir, "out_dir")  # before hours of analysis, not at the first PNG
    if mapping is not None and not hasattr(mapping, "map_positions"):
        from openmm_mlcg.mapping import CGMapping
        mapping = CGMapping.load(mapping)
    arrays, boxes, info = {}, {}, None
    for label, entry in trajectories.items():
        if isinstance(entry, tuple) and len(entry) == 2 and not str(entry[1]).endswith((".dcd", ".xtc", ".h5")):
            traj_path, top_path = entry
        else:
            traj_path, top_path = entry, topology
        if top_path is None:
            raise ValueError(f"topology: expected a topology file for {label!r} (argument or (trajectory, topology)), "
                             "got None")
        first = Path(traj_path[0] if isinstance(traj_path, (list, tuple)) else traj_path)
        x, box, top = load_cg_positions(traj_path, top_path, mapping, stride)
        dt = _interval(label, first, frame_interval_ps) * int(stride)
        arrays[label] = (x, np.arange(x.shape[0]) * dt)
        boxes[label] = box
        if info is None and mapping is None:
            info = _topology_beads(top, bead_masses)
    if mapping is not None:
        info = (np.array(mapping.bead_types), mapping.bead_masses, mapping.bead_molecules, mapping.cg_bonds)
    types, masses, mol, bonds = info
    return analyze(arrays, boxes, types, masses, mol, bonds, out_dir, observables=observables,
                   reference=reference, **kwargs)
