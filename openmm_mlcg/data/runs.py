"""Reference-MD run directories -> (CG mapping, CG trajectory), each computed once and cached.

A run directory is what ``openmm_mlcg.systems`` writes (and what any user can assemble by hand):
``topology.pdb`` (with CONECT records), ``trajectory*.dcd`` and ``metadata.json`` holding
``frame_interval_ps`` (and, for reduced-unit bead models, ``atom_types`` and ``masses``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

from ..cg.mapping import BEAD_TYPE_RULES, CGMapping
from ..cg.topology import FineGraph
from .trajectory import CGTrajectory, coarse_grain_trajectory

__all__ = ["mapping_for_topology", "load_run", "read_run_metadata"]


def read_run_metadata(run_dir) -> dict:
    """``metadata.json`` of a run directory as a dict ({} if absent).

    Raises:
        FileNotFoundError: ``run_dir`` is not a directory.
    """
    d = Path(run_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"run_dir: directory {d} does not exist")
    meta = d / "metadata.json"
    from ..io.readers import read_json

    return read_json(meta, "run metadata", "run_dir") if meta.is_file() else {}


def _graph_from_topology(topology_path: Path, metadata: dict) -> FineGraph:
    # reduced-unit bead models have no elements: their types and masses are in the metadata
    return FineGraph.from_file(topology_path, atom_types=metadata.get("atom_types"), masses=metadata.get("masses"))


def mapping_for_topology(topology_path, group_size: int, seed: int = 0, cache_dir=None,
                         mapping_path=None, metadata: Optional[dict] = None) -> Tuple[CGMapping, FineGraph]:
    """METIS mapping of a topology file, computed once.

    Args:
        topology_path: PDB with CONECT / PSF / any mdtraj topology.
        group_size: target atoms per bead.  seed: METIS seed.
        cache_dir: directory for ``mapping_<graphhash>_g<size>_s<seed>_<bead-type rule>.npz`` (None: no cache).
        mapping_path: explicit mapping file: loaded (and checked against the topology) if it exists,
            otherwise written there.
        metadata: run metadata with optional ``atom_types``/``masses`` for element-less topologies.

    Returns:
        (mapping, fine graph).

    Raises:
        ValueError: the mapping file belongs to another topology; bad ``group_size``.
        FileNotFoundError: missing topology.
    """
    graph = _graph_from_topology(Path(topology_path), metadata or {})
    if mapping_path is not None and Path(mapping_path).is_file():
        mapping = CGMapping.load(mapping_path)
        mapping.check_graph(graph)
        return mapping, graph
    cache = None
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        cache = Path(cache_dir) / f"mapping_{graph.hash[:16]}_g{int(group_size)}_s{int(seed)}_{BEAD_TYPE_RULES[0]}.npz"
        if cache.is_file():
            return CGMapping.load(cache), graph
    mapping = CGMapping.from_graph(graph, group_size, seed=seed)
    for target in (mapping_path, cache):
        if target is not None:
            mapping.save(target)
    return mapping, graph


def load_run(run_dir, group_size: int = 7, seed: int = 0, cache_dir=None, mapping_path=None,
             frame_interval_ps: Optional[float] = None,
             frame_interval_option: str = "frame_interval_ps") -> Tuple[CGMapping, CGTrajectory]:
    """Coarse-grain a run directory: METIS mapping + unwrapped bead trajectory, both cached.

    Args:
        run_dir: directory with ``topology.pdb``, ``trajectory*.dcd`` (sorted, concatenated) and, optionally,
            ``metadata.json``.
        group_size, seed: METIS target atoms per bead and seed.
        cache_dir: cache directory (default ``run_dir/cg_cache``).
        mapping_path: optional explicit mapping file (see :func:`mapping_for_topology`).
        frame_interval_ps: ps between frames, only where the run records none; recorded values win
            (:func:`openmm_mlcg.io.frame_interval.resolve_frame_interval`): ``metadata.json['frame_interval_ps']``,
            else the OpenMM DCD header (time step x save interval), as ``coarse-grain`` and ``analyze`` read it.
        frame_interval_option: how the caller names that value in messages (the trainer: its YAML key).

    Returns:
        (mapping, CGTrajectory with positions (F, n_beads, 3) nm).

    Raises:
        FileNotFoundError: missing directory, topology or trajectories.
        ValueError: no frame interval known; mismatching cached mapping.
    """
    d = Path(run_dir)
    meta = read_run_metadata(d)
    topology = d / "topology.pdb"
    files = sorted(d.glob("trajectory*.dcd"))
    if not topology.is_file():
        raise FileNotFoundError(f"run_dir: {d} has no topology.pdb")
    if not files:
        raise FileNotFoundError(f"run_dir: {d} has no trajectory*.dcd")
    if frame_interval_ps is None and meta.get("frame_interval_ps") is None:
        from ..io.frame_interval import recorded_frame_intervals

        try:
            recorded = any(recorded_frame_intervals(f) for f in files)
        except ValueError:  # an unreadable DCD header: the trajectory reader reports it with the file named
            recorded = True
        if not recorded:
            raise ValueError(f"{frame_interval_option}: the run {d} records no time between saved frames (no "
                             f"metadata.json 'frame_interval_ps', no OpenMM DCD header time step in {files[0].name}); "
                             f"set {frame_interval_option} (ps), got None")
    cache_dir = Path(cache_dir) if cache_dir is not None else d / "cg_cache"
    mapping, graph = mapping_for_topology(topology, group_size, seed, cache_dir, mapping_path, meta)
    cg = coarse_grain_trajectory([str(f) for f in files], graph, mapping, cache_dir=str(cache_dir),
                                 frame_interval_ps=frame_interval_ps)
    return mapping, cg
