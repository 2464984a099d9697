"""The metadata record of the model being trained: the ``"cg_langevin"`` generator's noise level and inertial masses,
the score terms that are data statistics (excluded volume, harmonic bonds), and everything the runtime reads.

Split from :mod:`openmm_mlcg.train.loop` (which runs the optimisation); the fields are documented in
:class:`openmm_mlcg.model.ModelMetadata` and the sampler in :mod:`openmm_mlcg.generators.cg_langevin`.
"""
from __future__ import annotations

import warnings
from typing import Optional

import numpy as np

from openmm_mlcg.model import ModelMetadata
from openmm_mlcg.util.sanity import training_physics

from .model_step import N_BOND_TYPES

__all__ = ["model_metadata", "cg_langevin_noise", "cg_langevin_sigma", "mass_floor_amu", "lightest_bead_amu"]


def mass_floor_amu(cfg, maps) -> Optional[float]:
    """The cg_langevin sampler's mass floor (amu): ``score.cg_langevin.mass_floor_amu``, the median bead mass of
    all mappings when that is None, no floor (None) when it is 0."""
    floor = cfg.score.cg_langevin.mass_floor_amu
    if floor is None:
        return float(np.median(np.concatenate([np.asarray(m.bead_masses, dtype=np.float64) for m in maps])))
    return float(floor) if floor > 0 else None


def lightest_bead_amu(cfg, maps) -> float:
    """Inertial mass (amu) of the sampler's lightest bead over all mappings (sets the cg_langevin noise level):
    the lightest bead mass, raised to the mass floor."""
    lightest = min(float(np.min(np.asarray(m.bead_masses))) for m in maps)
    floor = mass_floor_amu(cfg, maps)
    return lightest if floor is None else max(lightest, floor)


def cg_langevin_sigma(cfg, maps, frame_interval: float):
    """(sigma_b, (sigma_max, sigma_min)) nm of the ``"cg_langevin"`` sampler: sigma_b resolves the lightest bead's
    fastest oscillation at ``omega h = cg_langevin.omega_h`` (h: the sub-step, the model step or
    ``cg_langevin.relax_ps`` over ``cg_langevin.steps``); the training range is [sigma_b / 3, 3 sigma_b] unless
    given. Reads only the config and the mappings (checked before training, :mod:`openmm_mlcg.train.data_checks`).

    Raises:
        ValueError: no ``data.temperature_K``, or a given range that does not hold sigma_b.
    """
    from openmm_mlcg.generators.cg_langevin import smallest_stable_sigma

    t = cfg.data.temperature_K
    if t is None:
        raise ValueError("data.temperature_K: the 'cg_langevin' sampler needs the temperature of the training data "
                         "in K (give it in the config, or train from run directories whose metadata.json records "
                         "temperature_K), got None")
    sc, cg = cfg.score, cfg.score.cg_langevin
    span = cfg.data.stride * frame_interval if cg.relax_ps is None else min(float(cg.relax_ps),
                                                                             cfg.data.stride * frame_interval)
    sigma_b = smallest_stable_sigma(float(t), lightest_bead_amu(cfg, maps), span, cg.steps, cg.omega_h)
    sigma_range = (sc.sigma_max_nm or 3.0 * sigma_b, sc.sigma_min_nm or sigma_b / 3.0)
    if not sigma_range[1] <= sigma_b <= sigma_range[0]:
        raise ValueError(f"score.sigma_min_nm/sigma_max_nm: the range {sigma_range[1]}..{sigma_range[0]} nm must "
                         f"hold the cg_langevin noise level {sigma_b:.4g} nm")
    return sigma_b, sigma_range


def cg_langevin_noise(cfg, stats, maps, frame_interval: float):
    """:func:`cg_langevin_sigma`, warning when sigma_b exceeds half a model step's displacement std
    (``stats["velocity_std"]``).

    Raises:
        ValueError: as :func:`cg_langevin_sigma`.
    """
    sigma_b, sigma_range = cg_langevin_sigma(cfg, maps, frame_interval)
    steps = cfg.score.cg_langevin.steps
    if sigma_b > 0.5 * stats["velocity_std"]:
        warnings.warn(f"score.cg_langevin.steps: {steps} sub-steps smooth the lightest bead's score at "
                      f"sigma = {sigma_b:.3g} nm, more than half of one model step's displacement std "
                      f"({stats['velocity_std']:.3g} nm): the structure will be washed out; use more sub-steps "
                      "(sigma falls as 1 / steps)", UserWarning, stacklevel=3)
    return sigma_b, sigma_range


def refinement_metadata(score) -> dict:
    """Bundle metadata keys that say which generator and noise schedule the model was trained for (``score``: the
    config's ``ScoreConfig``)."""
    return dict(sampler=score.sampler, schedule=score.langevin.schedule,
                corrector_steps=int(score.ancestral.corrector_steps), snr=float(score.ancestral.snr),
                score_parametrisation="gaussian_residual", mean_parametrisation="minus_last_velocity_plus_residual")


def _score_terms(cfg, trajs, maps, sigma_b) -> dict:
    """The score terms whose tables are data statistics, fitted before training (``score.terms``): the
    excluded-volume wall (the closest non-bonded approach per bead-type pair, width ``excluded_volume_width`` x
    sigma_b) and the harmonic bonds (``bond_prior``: bond-length mean and variance per bead-type pair); none for
    the other generators (sigma_b None)."""
    from ..priors.bonds import bond_statistics
    from ..priors.excluded_volume import closest_approach

    t, out = cfg.score.terms, {}
    if sigma_b is None:
        return out
    if t.excluded_volume_width is not None:
        out["excluded_volume"] = {"r0_nm": closest_approach(trajs, maps, cfg.model.cutoff_nm, cfg.data.stride),
                                  "width_nm": float(t.excluded_volume_width) * float(sigma_b)}
    if t.bond_prior:
        out["bond_prior"] = bond_statistics(trajs, maps, cfg.data.stride)
    return out


def model_metadata(cfg, stats, vocab, sigmas, frame_interval, modules, trajs, maps, sigma_b=None) -> ModelMetadata:
    """The typed metadata record of the model being trained (validated; k compared with the Dynamics GNN)."""
    dc, sc, cg = cfg.data, cfg.score, cfg.score.cg_langevin
    return ModelMetadata.from_dict(dict(
        temperature_K=dc.temperature_K, cg_langevin_steps=cg.steps, cg_langevin_sigma_nm=sigma_b,
        cg_langevin_denoise=cg.denoise, cg_langevin_reverse_levels=cg.reverse_levels,
        cg_langevin_relax_ps=(None if cg.relax_ps is None or cg.relax_ps >= dc.stride * frame_interval
                              else float(cg.relax_ps)),
        cg_langevin_sigma_mass_amu=None if sigma_b is None else lightest_bead_amu(cfg, maps),
        cg_langevin_mass_floor_amu=None if sigma_b is None else mass_floor_amu(cfg, maps),
        score_terms=_score_terms(cfg, trajs, maps, sigma_b),
        model_time_step_ps=dc.stride * frame_interval, frame_interval_ps=frame_interval, stride=dc.stride,
        history=dc.history, cutoff_nm=cfg.model.cutoff_nm, min_std=cfg.model.min_std, **_neighborhood(cfg.model),
        sigmas_nm=[float(s) for s in sigmas], score_enabled=sc.enabled,
        # score disabled -> untrained Score GNN: 0 Langevin steps, so refinement is a no-op at runtime
        langevin_steps_per_level=sc.langevin.steps_per_level if sc.enabled else 0,
        langevin_step_size_nm2=sc.langevin.step_size_nm2, **refinement_metadata(sc),
        interpolant_noise_nm=sc.interpolant.noise * float(stats["velocity_std"]),  # a, nm
        velocity_std=float(stats["velocity_std"]), acceleration_std=float(stats["acceleration_std"]),
        atom_type_vocabulary=vocab, n_bond_types=N_BOND_TYPES,
        hyperparameters={name: m.hyperparameters() for name, m in modules.items()},
        **training_physics(trajs, maps),  # periodic, max_cg_bond_nm, bead_density_per_nm3: runtime checks
    ), "metadata")


def _neighborhood(mc) -> dict:
    """The DKMP* keys of the metadata (none for the radius graph): K and the shells resolved per GNN."""
    if mc.neighborhood == "radius":
        return {}
    from openmm_mlcg.nn.dkmp import default_shells_nm

    def shells(layers):
        """The configured DKMP* shell radii (nm), or the default ones for ``layers`` layers."""
        return list(mc.dkmp_shells_nm) if mc.dkmp_shells_nm is not None else default_shells_nm(mc.cutoff_nm, layers)
    return dict(neighborhood=mc.neighborhood, dkmp_k=mc.dkmp_k,
                dkmp_shells_nm={"dynamics": shells(mc.dynamics_layers), "score": shells(mc.score_layers)})
