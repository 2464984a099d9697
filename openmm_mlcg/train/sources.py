"""Turn ``data.systems`` config entries into (CG trajectory, mapping) pairs, and split them in time.

Mappings are computed once with METIS and cached (``data.cache_dir``, default ``out_dir/cache``); CG
trajectories are cached by :func:`openmm_mlcg.data.coarse_grain_trajectory`.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

__all__ = ["load_sources", "split_in_time", "window_span"]


def _mapping_for(src, topology_path: Path, group_size: int, seed: int, cache_dir: Path):
    from openmm_mlcg.mapping import CGMapping
    from openmm_mlcg.topology import FineGraph

    graph = FineGraph.from_file(topology_path)
    if src.mapping is not None and Path(src.mapping).is_file():
        mapping = CGMapping.load(src.mapping)
        mapping.check_graph(graph)
        return mapping, graph
    cache = cache_dir / f"mapping_{graph.hash[:16]}_g{group_size}_s{seed}.npz"
    if cache.is_file():
        return CGMapping.load(cache), graph
    mapping = CGMapping.from_graph(graph, group_size, seed=seed)
    mapping.save(cache if src.mapping is None else src.mapping)
    return mapping, graph


def load_sources(data_cfg, cache_dir) -> Tuple[list, list]:
    """Load every ``data.systems`` entry as a CG trajectory and its mapping.

    Args:
        data_cfg: :class:`openmm_mlcg.train.config.DataConfig` (paths already absolute).
        cache_dir: directory for cached mappings / CG trajectories (created if missing).

    Returns:
        (cg_trajectories, mappings), two lists of equal length.

    Raises:
        FileNotFoundError: a listed file or directory is missing.
        ValueError: no systems, or a directory without metadata.json frame_interval_ps.
    """
    from openmm_mlcg.data import CGTrajectory, coarse_grain_trajectory
    from openmm_mlcg.mapping import CGMapping

    if not data_cfg.systems:
        raise ValueError("data.systems: expected at least one system, got an empty list")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    trajs, maps = [], []
    for i, src in enumerate(data_cfg.systems):
        name = f"data.systems[{i}]"
        if src.cg_trajectory is not None:
            for key in ("cg_trajectory", "mapping"):
                if not Path(getattr(src, key)).is_file():
                    raise FileNotFoundError(f"{name}.{key}: file {getattr(src, key)} does not exist")
            mapping = CGMapping.load(src.mapping)
            trajs.append(CGTrajectory.load(src.cg_trajectory, mapping=mapping))
            maps.append(mapping)
            continue
        frame_interval = src.frame_interval_ps
        if src.dir is not None:
            d = Path(src.dir)
            if not d.is_dir():
                raise FileNotFoundError(f"{name}.dir: directory {d} does not exist")
            topology, files = d / "topology.pdb", sorted(d.glob("trajectory*.dcd"))
            if not files:
                raise FileNotFoundError(f"{name}.dir: no trajectory*.dcd in {d}")
            meta = d / "metadata.json"
            if frame_interval is None:
                if not meta.is_file():
                    raise ValueError(f"{name}.dir: {d} has no metadata.json; give frame_interval_ps")
                frame_interval = json.loads(meta.read_text()).get("frame_interval_ps")
                if frame_interval is None:
                    raise ValueError(f"{name}.dir: {meta} has no 'frame_interval_ps'")
        else:
            topology, files = Path(src.topology), [Path(t) for t in src.trajectories]
        for f in [topology, *files]:
            if not f.is_file():
                raise FileNotFoundError(f"{name}: file {f} does not exist")
        mapping, graph = _mapping_for(src, topology, data_cfg.group_size, data_cfg.mapping_seed, cache_dir)
        trajs.append(coarse_grain_trajectory([str(f) for f in files], graph, mapping, cache_dir=str(cache_dir),
                                             frame_interval_ps=frame_interval))
        maps.append(mapping)
    return trajs, maps


def window_span(history: int, stride: int) -> int:
    """Number of frames one window needs: k history velocities + one target at stride s -> (k+1) s + 1."""
    return (history + 1) * stride + 1


def _slice(traj, start: int, stop: Optional[int]):
    box = traj.box[start:stop] if traj.box is not None else None
    fields = {f.name for f in dataclasses.fields(traj)}
    changes = dict(positions=traj.positions[start:stop], box=box)
    if "time_ps" in fields:
        changes["time_ps"] = traj.time_ps[start:stop]
    return dataclasses.replace(traj, **changes)


def split_in_time(trajs: List, val_fraction: float, span: int) -> Tuple[List[int], List, List[int], List]:
    """Hold out the last ``val_fraction`` of the frames of every trajectory for validation.

    A trajectory too short to give both parts at least ``span`` frames goes entirely to training.

    Returns:
        (train_system_ids, train_trajs, val_system_ids, val_trajs); system ids index the input list.

    Raises:
        ValueError: a trajectory has fewer than ``span`` frames.
    """
    tr_ids, tr, va_ids, va = [], [], [], []
    for i, t in enumerate(trajs):
        n = int(np.asarray(t.positions).shape[0])
        if n < span:
            raise ValueError(f"cg_trajectories[{i}]: expected at least {span} frames for one window "
                             f"((history+1)*stride+1), got {n}")
        n_val = int(round(val_fraction * n))
        if val_fraction > 0 and n_val >= span and n - n_val >= span:
            tr_ids.append(i); tr.append(_slice(t, 0, n - n_val))
            va_ids.append(i); va.append(_slice(t, n - n_val, None))
        else:
            tr_ids.append(i); tr.append(t)
    return tr_ids, tr, va_ids, va
