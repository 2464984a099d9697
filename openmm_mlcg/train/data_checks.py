"""The one check of a training configuration against its data, before anything is trained or written.

:func:`openmm_mlcg.train.config_checks.validate_config` checks every value on its own when the config is loaded;
:func:`check_against_data` checks what only the data can tell, in one pass, before the first optimisation step and
before the trainer creates its output directory (``train_on_trajectories``) or right after loading the data into
it (``train``, which removes what it created when the run fails before its first checkpoint): trajectories against
their mappings, the window span (``data.history``, ``data.stride``) against the trajectory lengths, the
``"cg_langevin"`` sampler's temperature and noise range, and what each enabled post-training fit needs of the
data (:func:`openmm_mlcg.train.fits.pipeline.check_fits`: bead types, CG bond angles, the calibration lag against
the trajectory lengths, periodic boxes). Every message names the YAML key (or the argument), the expected and the
actual value; bead types are listed with their atoms and residues (:func:`describe_bead_types`).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..cg.bead_types import bead_type_table, describe_bead_types

__all__ = ["bead_type_table", "check_against_data", "describe_bead_types"]


def check_against_data(cfg, trajectories: Sequence, mappings: Sequence, names: Sequence[str] | None = None):
    """Check ``cfg`` against its data and split the data in time (module docstring).

    Args:
        cfg: the training config (TrainConfig, nested dict or YAML path; validated on its own first).
        trajectories, mappings: the CG trajectories and one mapping each.
        names: how messages name each trajectory (``data.systems[i]``; default ``cg_trajectories[i]``).

    Returns:
        the time split of :func:`openmm_mlcg.train.sources.split_in_time` (train ids, train parts, validation ids,
        validation parts).

    Raises:
        ValueError: a ``training.device`` this machine lacks, trajectories and mappings that do not belong
            together, trajectories too short for one window, a ``model.cutoff_nm`` above half a box width, no
            temperature or a noise range without the cg_langevin noise level, or a post-training fit the data
            cannot serve (:func:`openmm_mlcg.train.fits.pipeline.check_fits`); an invalid config
            (:func:`openmm_mlcg.train.config.load_config`). TypeError: a config of another type.
    """
    from openmm_mlcg.generators import get_generator
    from openmm_mlcg.util.sanity import resolve_device

    from .bundle_metadata import cg_langevin_sigma
    from .config import load_config
    from .fits.pipeline import check_fits
    from .sources import split_in_time, window_span

    cfg = load_config(cfg)
    names = list(names) if names is not None else [f"cg_trajectories[{i}]" for i in range(len(trajectories))]
    resolve_device(cfg.training.device, "training.device")   # "cuda" without CUDA
    _check_pairs(trajectories, mappings, names)
    _check_lengths(cfg.data, trajectories, names)
    _check_cutoff(cfg.model.cutoff_nm, trajectories, names)
    split = split_in_time(trajectories, cfg.data.val_fraction, window_span(cfg.data.history, cfg.data.stride))
    if get_generator(cfg.score.sampler).equilibrium_score and cfg.score.enabled:  # the generator the fits serve
        cg_langevin_sigma(cfg, mappings, float(trajectories[0].frame_interval_ps))
        check_fits(cfg, split[1], [mappings[i] for i in split[0]])
    return split


def _check_pairs(trajectories: Sequence, mappings: Sequence, names: list[str]) -> None:
    """Equal non-zero numbers, each trajectory made with its mapping, one frame interval for all."""
    if len(trajectories) == 0 or len(trajectories) != len(mappings):
        raise ValueError(f"cg_trajectories/mappings: expected equal non-zero lengths, got {len(trajectories)} and "
                         f"{len(mappings)}")
    for name, t, m in zip(names, trajectories, mappings, strict=True):
        if getattr(t, "mapping_hash", None) and t.mapping_hash != m.hash:
            raise ValueError(f"{name}: the trajectory's mapping_hash {t.mapping_hash[:12]} does not match its "
                             f"mapping's hash {m.hash[:12]} (coarse-grained with another mapping)")
    dts = sorted({round(float(t.frame_interval_ps), 12) for t in trajectories})
    if len(dts) != 1:
        raise ValueError(f"cg_trajectories: expected one frame_interval_ps for all trajectories, got {dts} ps "
                         f"(data.systems[i].frame_interval_ps)")


def _check_lengths(data_cfg, trajectories: Sequence, names: list[str]) -> None:
    """Every trajectory holds one training window: (data.history + 1) * data.stride + 1 frames."""
    from .sources import window_span

    span = window_span(data_cfg.history, data_cfg.stride)
    for name, t in zip(names, trajectories, strict=True):
        n = int(np.asarray(t.positions).shape[0])
        if n < span:
            raise ValueError(f"data.history/data.stride: expected trajectories of at least (data.history + 1) * "
                             f"data.stride + 1 = ({data_cfg.history} + 1) * {data_cfg.stride} + 1 = {span} frames "
                             f"(one training window), got {n} frames in {name}; lower data.history or data.stride, "
                             f"or give a longer trajectory")


def _check_cutoff(cutoff_nm: float, trajectories: Sequence, names: list[str]) -> None:
    """``model.cutoff_nm`` is at most half the smallest width of every periodic box (the minimum image)."""
    for name, t in zip(names, trajectories, strict=True):
        if t.box is None:
            continue
        widths = np.diagonal(np.asarray(t.box), axis1=-2, axis2=-1)
        half = 0.5 * float(widths.min())
        if cutoff_nm > half:
            raise ValueError(f"model.cutoff_nm: expected at most half the smallest box width of {name} ({half:.4g} "
                             f"nm: the minimum-image convention needs a box twice as wide as the cutoff), got "
                             f"{cutoff_nm}")
