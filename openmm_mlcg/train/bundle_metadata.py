"""The metadata record of the model being trained: the ``"cg_langevin"`` sampler's noise level and inertial masses,
its priors' data statistics (excluded volume, harmonic bonds), and everything the runtime reads from a bundle.

Split from :mod:`openmm_mlcg.train.loop` (which runs the optimisation); the fields are documented in
:class:`openmm_mlcg.model.ModelMetadata` and the sampler in :mod:`openmm_mlcg.generators.cg_langevin`.
"""
from __future__ import annotations

import warnings
from typing import Optional

import numpy as np

from openmm_mlcg.model import ModelMetadata
from openmm_mlcg.util.sanity import training_physics

from .config import refinement_metadata
from .model_step import N_BOND_TYPES

__all__ = ["model_metadata", "cg_langevin_noise", "mass_floor_amu", "lightest_bead_amu"]


def mass_floor_amu(cfg, maps) -> Optional[float]:
    """The cg_langevin sampler's mass floor (amu): ``score.cg_langevin_mass_floor_amu``, the median bead mass of
    all mappings when that is None, no floor (None) when it is 0."""
    floor = cfg.score.cg_langevin_mass_floor_amu
    if floor is None:
        return float(np.median(np.concatenate([np.asarray(m.bead_masses, dtype=np.float64) for m in maps])))
    return float(floor) if floor > 0 else None


def lightest_bead_amu(cfg, maps) -> float:
    """Inertial mass (amu) of the sampler's lightest bead over all mappings (sets the cg_langevin noise level):
    the lightest bead mass, raised to the mass floor."""
    lightest = min(float(np.min(np.asarray(m.bead_masses))) for m in maps)
    floor = mass_floor_amu(cfg, maps)
    return lightest if floor is None else max(lightest, floor)


def cg_langevin_noise(cfg, stats, maps, frame_interval: float):
    """(sigma_b, (sigma_max, sigma_min)) nm of the ``"cg_langevin"`` sampler: sigma_b resolves the lightest bead's
    fastest oscillation at ``omega h = cg_langevin_omega_h``; the training range is [sigma_b / 3, 3 sigma_b] unless
    given. Warns when sigma_b exceeds half a model step's displacement std.

    Raises:
        ValueError: no ``data.temperature_K``, or a given range that does not hold sigma_b.
    """
    from openmm_mlcg.generators.cg_langevin import smallest_stable_sigma

    t = cfg.data.temperature_K
    if t is None:
        raise ValueError("data.temperature_K: the 'cg_langevin' sampler needs the temperature of the training data "
                         "in K (give it in the config, or train from run directories whose metadata.json records "
                         "temperature_K), got None")
    sc = cfg.score
    sigma_b = smallest_stable_sigma(float(t), lightest_bead_amu(cfg, maps), cfg.data.stride * frame_interval,
                                    sc.cg_langevin_steps, sc.cg_langevin_omega_h)
    sigma_range = (sc.sigma_max_nm or 3.0 * sigma_b, sc.sigma_min_nm or sigma_b / 3.0)
    if sigma_b > 0.5 * stats["velocity_std"]:
        warnings.warn(f"score.cg_langevin_steps: {sc.cg_langevin_steps} sub-steps smooth the lightest bead's score at "
                      f"sigma = {sigma_b:.3g} nm, more than half of one model step's displacement std "
                      f"({stats['velocity_std']:.3g} nm): the structure will be washed out; use more sub-steps "
                      "(sigma falls as 1 / cg_langevin_steps)", UserWarning, stacklevel=3)
    if not sigma_range[1] <= sigma_b <= sigma_range[0]:
        raise ValueError(f"score.sigma_min_nm/sigma_max_nm: the range {sigma_range[1]}..{sigma_range[0]} nm must "
                         f"hold the cg_langevin noise level {sigma_b:.4g} nm")
    return sigma_b, sigma_range


def _excluded_volume(cfg, trajs, maps, sigma_b) -> dict:
    """Metadata of the ``"cg_langevin"`` sampler's excluded-volume prior (:mod:`openmm_mlcg.priors.prior`): the closest
    non-bonded approach per bead-type pair in the data and the wall width ``excluded_volume_width`` x sigma_b."""
    w = cfg.score.excluded_volume_width
    if sigma_b is None or w is None:
        return {}
    from ..priors.prior import closest_approach

    return dict(excluded_volume_nm=closest_approach(trajs, maps, cfg.model.cutoff_nm, cfg.data.stride),
                excluded_volume_width_nm=float(w) * float(sigma_b))


def _bond_prior(cfg, trajs, maps, sigma_b) -> dict:
    """Metadata of the ``"cg_langevin"`` sampler's harmonic-bond prior (:mod:`openmm_mlcg.priors.prior`): the bond-length
    mean and variance per bead-type pair in the data (none without ``score.bond_prior`` or another sampler)."""
    if sigma_b is None or not cfg.score.bond_prior:
        return {}
    from ..priors.prior import bond_statistics

    return dict(bond_prior=bond_statistics(trajs, maps, cfg.data.stride))


def model_metadata(cfg, stats, vocab, sigmas, frame_interval, modules, trajs, maps, sigma_b=None) -> ModelMetadata:
    """The typed metadata record of the model being trained (validated; k compared with the Dynamics GNN)."""
    dc = cfg.data
    return ModelMetadata.from_dict(dict(
        temperature_K=dc.temperature_K, cg_langevin_steps=cfg.score.cg_langevin_steps, cg_langevin_sigma_nm=sigma_b,
        cg_langevin_denoise=cfg.score.cg_langevin_denoise,
        cg_langevin_reverse_levels=cfg.score.cg_langevin_reverse_levels,
        cg_langevin_sigma_mass_amu=None if sigma_b is None else lightest_bead_amu(cfg, maps),
        cg_langevin_mass_floor_amu=None if sigma_b is None else mass_floor_amu(cfg, maps),
        **_excluded_volume(cfg, trajs, maps, sigma_b), **_bond_prior(cfg, trajs, maps, sigma_b),
        model_time_step_ps=dc.stride * frame_interval, frame_interval_ps=frame_interval, stride=dc.stride,
        history=dc.history, cutoff_nm=cfg.model.cutoff_nm, min_std=cfg.model.min_std,
        sigmas_nm=[float(s) for s in sigmas], score_enabled=cfg.score.enabled,
        # score disabled -> untrained Score GNN: 0 Langevin steps, so refinement is a no-op at runtime
        langevin_steps_per_level=cfg.score.steps_per_level if cfg.score.enabled else 0,
        langevin_step_size_nm2=cfg.score.step_size_nm2, **refinement_metadata(cfg.score),
        interpolant_noise_nm=cfg.score.interpolant_noise * float(stats["velocity_std"]),  # a, nm
        velocity_std=float(stats["velocity_std"]), acceleration_std=float(stats["acceleration_std"]),
        atom_type_vocabulary=vocab, n_bond_types=N_BOND_TYPES,
        hyperparameters={name: m.hyperparameters() for name, m in modules.items()},
        **training_physics(trajs, maps),  # periodic, max_cg_bond_nm, bead_density_per_nm3: runtime checks
    ), "metadata")
