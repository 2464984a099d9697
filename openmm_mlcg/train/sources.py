"""Turn ``data.systems`` config entries into (CG trajectory, mapping) pairs, and split them in time.

Mappings are computed once with METIS and cached (``data.cache_dir``, default ``out_dir/cache``); CG
trajectories are cached by :func:`openmm_mlcg.data.coarse_grain_trajectory`.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import List, Tuple

import numpy as np

__all__ = ["load_sources", "split_in_time", "window_span"]


def load_sources(data_cfg, cache_dir) -> Tuple[list, list]:
    """Load every ``data.systems`` entry as a CG trajectory and its mapping.

    Args:
        data_cfg: :class:`openmm_mlcg.train.config.DataConfig` (paths already absolute).
        cache_dir: directory for cached mappings / CG trajectories (created by the first source that caches:
            ``cg_trajectory`` sources need none, so loading them writes nothing).

    Returns:
        (cg_trajectories, mappings), two lists of equal length.

    Raises:
        FileNotFoundError: a listed file or directory is missing.
        ValueError: no systems, or a directory whose frame interval is recorded nowhere (no metadata.json
            ``frame_interval_ps``, no OpenMM DCD header) and not given (``data.systems[i].frame_interval_ps``).
    """
    from openmm_mlcg.data import CGTrajectory, coarse_grain_trajectory, load_run, mapping_for_topology
    from openmm_mlcg.cg.mapping import CGMapping

    if not data_cfg.systems:
        raise ValueError("data.systems: expected at least one system, got an empty list")
    cache_dir = Path(cache_dir)
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
        if src.dir is not None:
            if not Path(src.dir).is_dir():
                raise FileNotFoundError(f"{name}.dir: directory {src.dir} does not exist")
            mapping, cg = load_run(src.dir, data_cfg.group_size, data_cfg.mapping_seed, cache_dir=cache_dir,
                                   mapping_path=src.mapping, frame_interval_ps=src.frame_interval_ps,
                                   frame_interval_option=f"{name}.frame_interval_ps")
            trajs.append(cg)
        else:
            topology, files = Path(src.topology), [Path(t) for t in src.trajectories]
            for f in [topology, *files]:
                if not f.is_file():
                    raise FileNotFoundError(f"{name}: file {f} does not exist")
            mapping, graph = mapping_for_topology(topology, data_cfg.group_size, data_cfg.mapping_seed,
                                                  cache_dir, src.mapping)
            trajs.append(coarse_grain_trajectory([str(f) for f in files], graph, mapping,
                                                 cache_dir=str(cache_dir), frame_interval_ps=src.frame_interval_ps))
        maps.append(mapping)
    return trajs, maps


def window_span(history: int, stride: int) -> int:
    """Number of frames one window needs: k history velocities + one target at stride s -> (k+1) s + 1."""
    return (history + 1) * stride + 1


def split_in_time(trajs: List, val_fraction: float, span: int) -> Tuple[List[int], List, List[int], List]:
    """Hold out the last ``val_fraction`` of the frames of every trajectory for validation.

    A trajectory too short to give both parts at least ``span`` frames goes entirely to training (with a
    ``UserWarning``: that trajectory then gives no validation windows and ``val_nll`` may be NaN).

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
            tr_ids.append(i); tr.append(t.slice(0, n - n_val))
            va_ids.append(i); va.append(t.slice(n - n_val, None))
        else:
            tr_ids.append(i); tr.append(t)
            if val_fraction > 0:
                warnings.warn(f"cg_trajectories[{i}]: {n} frames are too few to hold out {val_fraction:g} of them "
                              f"for validation (each part needs >= {span} frames); the whole trajectory is used for "
                              "training and gives no validation windows", UserWarning, stacklevel=2)
    return tr_ids, tr, va_ids, va
