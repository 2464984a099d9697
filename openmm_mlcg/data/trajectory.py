"""All-atom trajectories (any format mdtraj reads) -> coarse-grained bead trajectories, cached on disk.

The CG trajectory holds bead centres of mass (molecules made whole across periodic boundaries) that are
unwrapped in time, so finite differences give velocities and mean-squared displacements directly; wrapped
positions for neighbour search come from :meth:`CGTrajectory.wrapped_positions`. Units: nm, ps.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ..io.frame_interval import TIMED_SUFFIXES, recorded_frame_intervals, resolve_frame_interval
from ..util.io_utils import atomic_write, file_digest, write_npz
from ..util.geometry import as_box_frames, unwrap_in_time, wrap
from ..cg.mapping import CGMapping
from ..cg.topology import FineGraph

__all__ = ["CGTrajectory", "coarse_grain_trajectory", "map_trajectory"]

_CACHE_VERSION = 2  # 2: key on file content (BLAKE2b), not path + size + mtime


@dataclass(eq=False)
class CGTrajectory:
    """Coarse-grained trajectory.

    Attributes:
        positions: (F, n_beads, 3) float64 nm, unwrapped (continuous in time).
        box: (F, 3, 3) float64 nm reduced box vectors, or None if not periodic.
        time_ps: (F,) float64 ps.
        frame_interval_ps: time between saved frames, ps.
        mapping_hash: ``CGMapping.hash`` of the mapping that produced it.

    Raises:
        ValueError: shapes inconsistent, NaN/inf values, non-positive frame interval.
    """

    positions: np.ndarray
    box: Optional[np.ndarray]
    time_ps: np.ndarray
    frame_interval_ps: float
    mapping_hash: str

    def __post_init__(self):
        self.positions = np.asarray(self.positions, dtype=np.float64)
        if self.positions.ndim != 3 or self.positions.shape[-1] != 3:
            raise ValueError(f"positions: expected shape (n_frames, n_beads, 3), got {self.positions.shape}")
        if not np.all(np.isfinite(self.positions)):
            raise ValueError("positions: expected finite values, found NaN/inf")
        f = self.positions.shape[0]
        self.box = as_box_frames(self.box, f, "box")
        self.time_ps = np.asarray(self.time_ps, dtype=np.float64).reshape(-1)
        if self.time_ps.shape != (f,):
            raise ValueError(f"time_ps: expected shape ({f},), got {self.time_ps.shape}")
        if not (np.isfinite(self.frame_interval_ps) and self.frame_interval_ps > 0):
            raise ValueError(f"frame_interval_ps: expected a positive number of ps, got {self.frame_interval_ps}")
        self.frame_interval_ps = float(self.frame_interval_ps)

    def __repr__(self) -> str:
        box = "no box" if self.box is None else f"box {np.round(np.diag(self.box[0]), 3).tolist()} nm"
        return (f"CGTrajectory({self.n_frames} frames x {self.n_beads} beads, {self.frame_interval_ps:g} ps per "
                f"frame, {box}, mapping {self.mapping_hash[:12]})")

    @property
    def n_frames(self) -> int:
        """Number of frames F."""
        return int(self.positions.shape[0])

    @property
    def n_beads(self) -> int:
        """Number of beads n."""
        return int(self.positions.shape[1])

    def slice(self, start: int = 0, stop: Optional[int] = None) -> "CGTrajectory":
        """Frames ``start:stop`` as a new CGTrajectory (same mapping hash and frame interval)."""
        box = None if self.box is None else self.box[start:stop]
        return CGTrajectory(self.positions[start:stop], box, self.time_ps[start:stop], self.frame_interval_ps,
                            self.mapping_hash)

    def wrapped_positions(self) -> np.ndarray:
        """(F, n_beads, 3) positions wrapped into the box (for neighbour search).

        Raises:
            ValueError: the trajectory has no box.
        """
        if self.box is None:
            raise ValueError("box: wrapped positions need a periodic box, but this trajectory has box=None")
        return wrap(self.positions, self.box)

    def check_mapping(self, mapping: CGMapping) -> None:
        """Raise ValueError if ``mapping`` did not produce this trajectory."""
        if mapping.hash != self.mapping_hash:
            raise ValueError(f"mapping: hash {mapping.hash[:12]} does not match the trajectory's mapping_hash "
                             f"{self.mapping_hash[:12]} (n_beads {mapping.n_beads} vs {self.n_beads})")

    def save(self, path) -> None:
        """Write an ``.npz`` file atomically (exact float64 round trip)."""
        arrays = dict(positions=self.positions, time_ps=self.time_ps,
                      frame_interval_ps=np.array(self.frame_interval_ps),
                      mapping_hash=np.array(self.mapping_hash), units=np.array("nm,ps"),
                      cache_version=np.array(_CACHE_VERSION))
        if self.box is not None:
            arrays["box"] = self.box
        with atomic_write(path) as fh:
            write_npz(fh, arrays)

    @classmethod
    def load(cls, path, mapping: Optional[CGMapping] = None) -> "CGTrajectory":
        """Read a file written by :meth:`save`; with ``mapping``, check its hash.

        Raises:
            FileNotFoundError: missing file. ValueError: unreadable file, other units, hash mismatch.
        """
        from ..io.readers import read_npz

        path = Path(path)
        d = read_npz(path, "CGTrajectory", required=("positions", "time_ps", "frame_interval_ps", "mapping_hash",
                                                      "units"))
        units = str(d["units"])
        try:
            traj = cls(d["positions"], d.get("box"), d["time_ps"], float(d["frame_interval_ps"]),
                       str(d["mapping_hash"]))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"path: {path} is not a valid CGTrajectory file: {exc}") from None
        if units != "nm,ps":
            raise ValueError(f"path: expected units 'nm,ps' in {path}, got {units!r}")
        if mapping is not None:
            traj.check_mapping(mapping)
        return traj


def _mdtraj_topology_from_graph(graph: FineGraph):
    """A minimal mdtraj Topology (one residue per molecule) with the graph's atoms and bonds, for readers
    such as DCD/XTC that need a topology only for the atom count."""
    import mdtraj

    top = mdtraj.Topology()
    chain = top.add_chain()
    residues = [top.add_residue(graph.residue_names[0] or "MOL", chain)] if graph.n_atoms else []
    atoms = []
    for i in range(graph.n_atoms):
        if i and graph.molecules[i] != graph.molecules[i - 1]:
            residues.append(top.add_residue(graph.residue_names[i] or "MOL", chain))
        try:
            el = mdtraj.element.get_by_symbol(graph.atom_types[i])
        except KeyError:
            el = mdtraj.element.virtual_site
        atoms.append(top.add_atom(graph.atom_types[i], el, residues[-1]))
    for i, j in graph.bonds:
        top.add_bond(atoms[i], atoms[j])
    return top


def _check_structure(n_atoms: int, make_graph, mapping: CGMapping) -> None:
    """A topology read from a file may lack bond orders (PDB CONECT) or bonds (GRO): require the same atom
    count and, when it has bonds, the same bonds as the mapping's fine graph."""
    if n_atoms != mapping.graph.n_atoms:
        raise ValueError(f"topology: expected {mapping.graph.n_atoms} atoms (the mapping's fine graph), "
                         f"got {n_atoms}")
    graph = make_graph()
    if graph.n_bonds and not np.array_equal(graph.bonds, mapping.graph.bonds):
        raise ValueError(f"topology: bonds do not match the mapping's fine graph (hash {mapping.graph.hash[:12]}): "
                         f"{graph.n_bonds} bonds vs {mapping.graph.n_bonds}")


def _resolve_topology(topology, mapping: CGMapping):
    """-> (mdtraj Topology for loading, periodic hint or None); checks the topology against the mapping."""
    import mdtraj
    from openmm import app

    if topology is None or isinstance(topology, FineGraph):
        if topology is not None:
            mapping.check_graph(topology, "topology")
        return _mdtraj_topology_from_graph(mapping.graph), None
    if isinstance(topology, app.Topology):
        _check_structure(topology.getNumAtoms(), lambda: FineGraph.from_openmm(
            topology, masses=mapping.graph.masses, atom_types=mapping.graph.atom_types), mapping)
        return mdtraj.Topology.from_openmm(topology), topology.getPeriodicBoxVectors() is not None
    if isinstance(topology, mdtraj.Topology):
        top = topology
    elif isinstance(topology, (str, Path)):
        path = Path(topology)
        if not path.is_file():
            raise FileNotFoundError(f"topology: file {path} does not exist")
        try:
            top = mdtraj.load_topology(str(path))
        except Exception as exc:
            raise ValueError(f"topology: could not read {path} with mdtraj: {exc}") from exc
    else:
        raise TypeError(f"topology: expected a path, FineGraph, mdtraj or OpenMM Topology, got "
                        f"{type(topology).__name__}")
    _check_structure(top.n_atoms, lambda: FineGraph.from_mdtraj(
        top, masses=mapping.graph.masses, atom_types=mapping.graph.atom_types), mapping)
    return top, None


def map_trajectory(traj, mapping: CGMapping, frame_interval_ps: Optional[float] = None,
                   previous: Optional[np.ndarray] = None, name: str = "trajectory") -> CGTrajectory:
    """Coarse-grain an in-memory ``mdtraj.Trajectory`` (nm, ps) with ``mapping``.

    Args:
        traj: mdtraj Trajectory with ``mapping.graph.n_atoms`` atoms (box from its unit cell, if any).
        frame_interval_ps: ps between frames; None -> ``traj.timestep``.
        previous: (n_beads, 3) last unwrapped bead positions of a preceding block, to continue its path.

    Raises:
        ValueError: atom-count mismatch, NaN/inf coordinates, unknown frame interval, bonded atoms farther apart
            than any chemical bond (:meth:`CGMapping.check_bonded_atoms`).
    """
    if traj.n_atoms != mapping.graph.n_atoms:
        raise ValueError(f"{name}: expected {mapping.graph.n_atoms} atoms (the mapping's topology), "
                         f"got {traj.n_atoms}")
    xyz = np.asarray(traj.xyz, dtype=np.float64)
    if not np.all(np.isfinite(xyz)):
        raise ValueError(f"{name}: coordinates contain NaN/inf ({int(np.sum(~np.isfinite(xyz)))} entries)")
    if frame_interval_ps is None:
        frame_interval_ps = float(traj.timestep) if traj.n_frames > 1 else float("nan")
    box = None if traj.unitcell_vectors is None else as_box_frames(
        np.asarray(traj.unitcell_vectors, dtype=np.float64), traj.n_frames, f"{name} unit cell (box)")
    beads = mapping.map_positions(xyz, box, unwrap=False, name=name)  # checks bonded distances (Angstrom?)
    if box is not None:
        beads = unwrap_in_time(beads, box, previous)
    t = np.arange(traj.n_frames) * frame_interval_ps
    return CGTrajectory(beads, box, t, frame_interval_ps, mapping.hash)


def _cache_key(files, mapping: CGMapping, frame_interval_ps, periodic) -> str:
    # content, not size + mtime: a file rewritten in place with the same size and time stamp is a new key
    stats = [(f.stat().st_size, file_digest(f)) for f in files]
    blob = json.dumps(dict(version=_CACHE_VERSION, mapping=mapping.hash, files=stats, units="nm,ps",
                           frame_interval_ps=frame_interval_ps, periodic=periodic))
    return hashlib.sha256(blob.encode()).hexdigest()


# 108 lines, 25 of them the docstring: every input is checked by name before the one pass that maps the frames.
def coarse_grain_trajectory(trajectory_files: Union[str, Path, Sequence], topology, mapping: CGMapping,
                            cache_dir=None, frame_interval_ps=None, *, periodic: Optional[bool] = None,
                            chunk: int = 1000) -> CGTrajectory:
    """Load all-atom trajectory file(s) with mdtraj, map them to beads once, and cache the result.

    Args:
        trajectory_files: one path or a list of consecutive parts (DCD, XTC, TRR, H5, NetCDF, LAMMPS dump,
            ... anything ``mdtraj.load`` reads with a topology).
        topology: topology file path (PDB with CONECT, PSF, GRO, ...), mdtraj/OpenMM Topology, FineGraph or
            None (use ``mapping.graph``). Checked against the mapping's fine graph.
        mapping: the CGMapping.
        cache_dir: directory for ``cg_<name>_<key>.npz``; key = mapping hash, file contents (BLAKE2b),
            frame interval, units. None: no caching.
        frame_interval_ps: ps between saved frames (float or Quantity), used only where the files record none:
            what they record wins (:func:`openmm_mlcg.io.frame_interval.resolve_frame_interval`: ``metadata.json``
            beside them, an OpenMM DCD header, or the frame times of XTC/TRR/H5/NetCDF), and a given value that
            disagrees with it raises, naming both.
        periodic: True requires a unit cell in the files; None infers it (an OpenMM topology with box
            vectors implies True).
        chunk: frames read at a time (memory bound).

    Returns:
        CGTrajectory with unwrapped bead positions (nm), box per frame (nm) or None.

    Raises:
        FileNotFoundError: a file is missing. TypeError: bad ``topology`` type. ValueError: unreadable file,
        atom-count or mapping-hash mismatch, NaN/inf coordinates, missing box for periodic data, unknown or
        inconsistent frame interval.
    """
    import mdtraj
    from openmm import unit
    from ..io.quiet import quiet_iter
    from ..util.units import to_float

    if not isinstance(mapping, CGMapping):
        raise TypeError(f"mapping: expected CGMapping, got {type(mapping).__name__}")
    files = [trajectory_files] if isinstance(trajectory_files, (str, Path)) else list(trajectory_files)
    if not files:
        raise ValueError("trajectory_files: expected at least one file, got an empty list")
    files = [Path(f) for f in files]
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"trajectory_files: file {f} does not exist")

    try:
        recorded = any(recorded_frame_intervals(f) for f in files)
    except ValueError:  # an unreadable header: the trajectory reader below reports it with the file named
        recorded = False
    if recorded:  # what the run recorded wins; a given value that disagrees raises
        frame_interval_ps = resolve_frame_interval("trajectory_files", files, frame_interval_ps)[0]
    if frame_interval_ps is not None:
        frame_interval_ps = to_float(frame_interval_ps, unit.picosecond, "frame_interval_ps")
        if frame_interval_ps <= 0:
            raise ValueError(f"frame_interval_ps: expected > 0 ps, got {frame_interval_ps}")
    top, hint = _resolve_topology(topology, mapping)
    periodic = hint if periodic is None else bool(periodic)
    cache_path = None
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        key = _cache_key(files, mapping, frame_interval_ps, periodic)
        cache_path = cache_dir / f"cg_{files[0].stem}_{key[:16]}.npz"
        if cache_path.is_file():
            return CGTrajectory.load(cache_path, mapping=mapping)
    blocks, boxes, last = [], [], None
    for f in files:
        n_before = len(blocks)
        try:
            reader = mdtraj.iterload(str(f), top=top, chunk=chunk)
            for part in quiet_iter(reader):  # no dcdplugin chatter on stdout
                if periodic and part.unitcell_vectors is None:
                    raise ValueError(f"box: periodic data expected but trajectory_files {f} has no unit cell; "
                                     "pass periodic=False for a non-periodic system")
                dt = frame_interval_ps
                if dt is None:
                    if f.suffix.lower() not in TIMED_SUFFIXES or part.n_frames < 2 or not part.timestep > 0:
                        raise ValueError(f"frame_interval_ps: cannot be read from {f.name} (format stores no "
                                         "reliable time or fewer than 2 frames); pass it explicitly, got None")
                    frame_interval_ps = dt = float(part.timestep)
                cg = map_trajectory(part, mapping, dt, previous=last, name=f"trajectory_files ({f.name})")
                if blocks and (cg.box is None) != (boxes[0] is None):
                    raise ValueError(f"trajectory_files: {f.name} mixes frames with and without a unit cell")
                blocks.append(cg.positions)
                boxes.append(cg.box)
                last = cg.positions[-1]
        except ValueError as exc:
            if str(exc).startswith(("box:", "frame_interval_ps:", "trajectory_files")):
                raise
            raise ValueError(f"trajectory_files: could not read {f} with a topology of {top.n_atoms} atoms: "
                             f"{exc}") from exc
        except (OSError, IOError, RuntimeError, TypeError, KeyError, IndexError, EOFError) as exc:
            from ..io.readers import dcd_frames, describe_file

            if f.suffix.lower() == ".dcd" and dcd_frames(f) == 0:
                raise ValueError(f"trajectory_files: {f} holds no frames (a DCD header only; expected at least one "
                                 f"frame of {top.n_atoms} atoms)") from None

            raise ValueError(f"trajectory_files: could not read {f} with mdtraj (expected frames of "
                             f"{top.n_atoms} atoms, found {describe_file(f)}): {exc}") from exc
        if len(blocks) == n_before or sum(len(b) for b in blocks[n_before:]) == 0:
            raise ValueError(f"trajectory_files: {f} holds no frames (expected at least one frame of "
                             f"{top.n_atoms} atoms)")
    positions = np.concatenate(blocks)
    box = None if boxes[0] is None else np.concatenate(boxes)
    traj = CGTrajectory(positions, box, np.arange(len(positions)) * frame_interval_ps, frame_interval_ps,
                        mapping.hash)
    if cache_path is not None:
        traj.save(cache_path)
    return traj
