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

from openmm_mlcg.io.quiet import quiet_c_stdout
from openmm_mlcg.io.dcd import read_dcd_header
from openmm_mlcg.io.readers import check_input_file, dcd_frames, describe_file

from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from .diffusion import unwrap_positions
from openmm_mlcg.io.frame_interval import resolve_frame_interval
from .report import analyze

__all__ = ["analyze_files", "load_cg_positions"]


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
        FileNotFoundError: missing file. IsADirectoryError: a directory.
        ValueError: an empty file (0 bytes), a DCD that is not one or whose particle count differs from the
            topology's, or a particle count matching neither the atoms nor the beads (the message names the file).
    """
    paths = [Path(p) for p in (trajectory if isinstance(trajectory, (list, tuple)) else [trajectory])]
    for p in paths:
        check_input_file(p, "a trajectory", "trajectory")
    check_input_file(topology, "a topology", "topology")
    try:
        top = md.load_topology(str(topology))
    except Exception as exc:  # mdtraj raises many kinds of errors for a wrong file
        raise ValueError(f"topology: could not read {topology} as a topology (expected PDB/PSF/... readable by "
                         f"mdtraj, found {describe_file(topology)}): {exc}") from None
    if top.n_atoms == 0:
        raise ValueError(f"topology: {topology} holds no atoms (found {describe_file(topology)})")
    for p in paths:
        _check_dcd_particles(p, top.n_atoms, topology)
    try:
        with quiet_c_stdout():  # mdtraj's DCD plugin prints two lines per file on C stdout
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


def _check_dcd_particles(path: Path, n_atoms: int, topology) -> None:
    """Refuse a ``.dcd`` file that is not a DCD or whose header's particle count differs from the topology's.

    Raises:
        ValueError: naming ``trajectory``, the file, the expected and the found particle count (or what the file
            looks like).
    """
    if path.suffix.lower() != ".dcd":
        return
    try:
        found = read_dcd_header(path)["n_atoms"]
    except ValueError:
        raise ValueError(f"trajectory: {path} is {describe_file(path)}, expected a DCD trajectory") from None
    if found != n_atoms:
        raise ValueError(f"trajectory: {path} holds {found} particles per frame, expected {n_atoms} (the atoms of "
                         f"topology {topology}); the topology must match the trajectory's particles")


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
    bonds = np.array([sorted((b[0].index, b[1].index)) for b in top.bonds], dtype=np.int64).reshape(-1, 2)
    # molecules = bonded components (unbonded particles are their own molecule; mdtraj's find_molecules
    # refuses a residue of several unbonded atoms)
    graph = coo_matrix((np.ones(len(bonds)), (bonds[:, 0], bonds[:, 1])), shape=(top.n_atoms, top.n_atoms))
    _, labels = connected_components(graph, directed=False)
    _, first = np.unique(labels, return_index=True)
    mol = np.argsort(np.argsort(first))[labels]  # molecules numbered by their first atom
    return types, masses, mol, bonds


def _same_replicas(label, runs: list):
    """(positions (F, n, 3) or (R, F, n, 3), box, frame interval) of one label's run or replicas.

    Raises:
        ValueError: replicas with different frame counts, particle counts, frame intervals or boxes.
    """
    if len(runs) == 1:
        return runs[0][:3]
    x0, box0, dt0, _ = runs[0]
    for i, (x, box, dt, _) in enumerate(runs[1:], start=1):
        if x.shape != x0.shape:
            raise ValueError(f"trajectories[{label!r}] replicas: expected replicas of one shape (frames, beads, 3), "
                             f"got {x0.shape} for replica 0 and {x.shape} for replica {i}")
        if not np.isclose(dt, dt0, rtol=1e-6):
            raise ValueError(f"trajectories[{label!r}] replicas: expected one frame interval, got {dt0} ps for "
                             f"replica 0 and {dt} ps for replica {i}")
        if (box is None) != (box0 is None) or (box is not None and not np.allclose(box, box0, atol=1e-5)):
            raise ValueError(f"trajectories[{label!r}] replicas: expected the same periodic box in every replica "
                             f"(pooled observables share it), replica {i} differs from replica 0")
    return np.stack([r[0] for r in runs]), box0, dt0


def analyze_files(trajectories: Mapping, out_dir, topology=None, mapping=None, frame_interval_ps=None,
                  stride: int = 1, bead_masses=None, observables=None, reference: str | None = None,
                  bead_types: str = "mapping", **kwargs) -> dict:
    """Analyse trajectory files and compare them; thin wrapper for ``openmm-mlcg analyze``.

    Args:
        trajectories: {label: path | [paths] | (path_or_paths, topology_path) | {"replicas": [entry, ...]}}; e.g.
            {"learned": "cg_run/trajectory.dcd", "reference MD": ("md/trajectory.dcd", "md/topology.pdb")}.
            [paths] are one run split over files (concatenated); ``{"replicas": [...]}`` are independent runs of
            equal length and box, each entry in one of the other forms, pooled by ``analyze`` (positions
            (R, F, n, 3), :mod:`.replicas`); their provenance is a list, one record per replica.
        out_dir: output directory (analysis.json + PNGs).
        topology: default topology path for entries without their own (e.g. the CG PDB written with the CG system).
        mapping: CGMapping or path of a saved mapping (.npz); gives bead types, masses, molecules and CG bonds and
            maps all-atom trajectories to beads. Without it these come from the topology (atom names as bead types,
            element masses or ``bead_masses``, bonded components as molecules, topology bonds as CG bonds).
        frame_interval_ps: ps between saved frames, float or {label: float}, used only for trajectories that
            record none: a run's own record wins (metadata.json beside the trajectory, the DCD header's time
            step x save interval, XTC/TRR/H5 frame times; see :mod:`.frame_interval`) and a given value that
            disagrees with it is an error. Multiplied by ``stride``.
        stride: keep every stride-th frame.
        bead_masses: (n_beads,) amu override when no mapping is given.
        bead_types: with a mapping, "mapping" (its own types) or "chemistry" (one type per distinct bead
            chemistry, shared across residues and molecules: :mod:`openmm_mlcg.cg.bead_types`).
        observables, reference, **kwargs: passed to :func:`openmm_mlcg.analysis.report.analyze`
            (fit_window_ps, max_lag_ps, collision_cutoffs_nm, contact_cutoff_nm, rdf_n_bins, rdf_r_max_nm, ...).

    Returns:
        the dict returned by ``analyze``.

    Raises:
        FileNotFoundError: missing files. ValueError: no topology, inconsistent particle counts, missing frame
            interval, replicas of different lengths, intervals or boxes, and everything ``analyze`` raises.
    """
    if not isinstance(trajectories, Mapping) or not trajectories:
        raise ValueError(f"trajectories: expected a non-empty dict label -> path, got {trajectories!r}")
    if int(stride) < 1:
        raise ValueError(f"stride: expected an integer >= 1, got {stride}")
    from openmm_mlcg.util.outputs import check_output_dir

    check_output_dir(out_dir, "out_dir")  # before hours of analysis, not at the first PNG
    if mapping is not None and not hasattr(mapping, "map_positions"):
        from openmm_mlcg.cg.mapping import CGMapping
        mapping = CGMapping.load(mapping)
    arrays, boxes, info, sources = {}, {}, None, {}
    for label, spec in trajectories.items():
        replicas = spec.get("replicas") if isinstance(spec, Mapping) else None
        if isinstance(spec, Mapping) and (set(spec) != {"replicas"} or not isinstance(replicas, (list, tuple))
                                          or not replicas):
            raise ValueError(f"trajectories[{label!r}]: expected a path, [paths], (path(s), topology) or "
                             f"{{'replicas': [entry, ...]}}, got {spec!r}")
        runs = []
        for entry in (replicas or [spec]):
            if isinstance(entry, tuple) and len(entry) == 2 and not str(entry[1]).endswith((".dcd", ".xtc", ".h5")):
                traj_path, top_path = entry
            else:
                traj_path, top_path = entry, topology
            if top_path is None:
                raise ValueError(f"topology: expected a topology file for {label!r} (argument or (trajectory, "
                                 "topology)), got None")
            x, box, top = load_cg_positions(traj_path, top_path, mapping, stride)
            dt, source = resolve_frame_interval(label, traj_path, frame_interval_ps)
            runs.append((x, box, dt, {"frame_interval_ps": dt, "source": source, "stride": int(stride)}))
            if info is None and mapping is None:
                info = _topology_beads(top, bead_masses)
        x, box, dt = _same_replicas(label, runs)
        sources[label] = runs[0][3] if replicas is None else [r[3] for r in runs]
        arrays[label] = (x, np.arange(x.shape[-3]) * dt * int(stride))
        boxes[label] = box
    if bead_types not in ("mapping", "chemistry"):
        raise ValueError(f"bead_types: expected 'mapping' or 'chemistry', got {bead_types!r}")
    if mapping is not None:
        types = mapping.chemical_bead_types() if bead_types == "chemistry" else mapping.bead_types
        info = (np.array(types), mapping.bead_masses, mapping.bead_molecules, mapping.cg_bonds)
    types, masses, mol, bonds = info
    return analyze(arrays, boxes, types, masses, mol, bonds, out_dir, observables=observables,
                   reference=reference, provenance={"frame_interval": sources}, **kwargs)
