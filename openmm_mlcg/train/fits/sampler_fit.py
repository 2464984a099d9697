"""After training a ``"cg_langevin"`` model: the fits of its sampler, in order, each once per run.

1. the pair correction (``score.pair_correction_types``, :mod:`openmm_mlcg.train.fits.pair_correction`);
2. the frictions per bead type, to the data's MSD (:func:`openmm_mlcg.train.fits.calibrate.calibrate_friction`);
3. the bond-angle correction (``score.angle_correction_iterations``, :mod:`openmm_mlcg.train.fits.angle_correction`),
   rolled out with the fitted frictions, then the frictions again (the structure it changes moves the MSD);
4. the relative-entropy fine-tuning (``score.relative_entropy_steps``), then the frictions again.

Every result goes into ``extra`` (the checkpoint's record) and ``checkpoint()`` is called after each, so a resumed
run skips what is done and gives the same bundle.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Sequence


def fit_sampler(model, meta, extra: Dict, cfg, trajectories: Sequence, mappings: Sequence, graphs: Sequence,
                stride: int, seed: int, checkpoint: Callable[[], None], progress: bool = False):
    """Run the fits above on ``model`` (a trained :class:`openmm_mlcg.model.CGDynamicsModel` with metadata
    ``meta``) and return the bundle's metadata: frictions and corrections, and in its ``extra`` the records
    ``friction_calibration``, ``pair_correction_fit``, ``angle_correction_fit`` and ``relative_entropy``."""
    from .calibrate import calibrate_friction

    def fitted(fc):
        """The metadata with the frictions of a :func:`calibrate_friction` result."""
        return dataclasses.replace(meta, cg_langevin_friction_per_ps=fc["friction_per_ps"],
                                   cg_langevin_friction_by_type=dict(fc.get("friction_by_type") or {}))

    def calibrate():
        """Fit the frictions per bead type to the training data's MSD (:func:`calibrate_friction`)."""
        return calibrate_friction(model, trajectories, mappings, stride, cfg.score.calibration_lag,
                                  cfg.score.calibration_starts)

    if cfg.score.pair_correction_types and "pair_correction" not in extra:
        from .pair_correction import fit_pair_correction
        extra["pair_correction"] = fit_pair_correction(model, trajectories, mappings,
                                                       list(cfg.score.pair_correction_types), seed=seed)
        checkpoint()
    if "pair_correction" in extra:  # before the friction fit: the sampler it calibrates includes it
        meta = dataclasses.replace(meta, pair_correction=extra["pair_correction"]["table"])
        model.metadata = meta
    if "friction_calibration" not in extra:  # once per run (kept in the checkpoint for resumes)
        extra["friction_calibration"] = calibrate()
        checkpoint()
    refit = cfg.score.angle_correction_iterations > 0 and "angle_correction" not in extra
    if refit:
        from .angle_correction import fit_angle_correction
        model.metadata = fitted(extra["friction_calibration"])   # the rollouts need the fitted frictions
        extra["angle_correction"] = fit_angle_correction(
            model, trajectories, mappings, stride, cfg.score.angle_correction_iterations,
            cfg.score.angle_correction_steps, cfg.score.calibration_starts, seed=seed)
    if "angle_correction" in extra:
        meta = dataclasses.replace(meta, angle_correction=extra["angle_correction"]["table"])
        model.metadata = meta
    if refit:   # the structure the correction changes moves the MSD: frictions again, with it
        extra["friction_calibration"] = calibrate()
        checkpoint()
    if cfg.score.relative_entropy_steps > 0 and "relative_entropy" not in extra:
        # the chains need the fitted friction to equilibrate (with the default one they stay far above the
        # data's energy and the fine-tuning distorts the field); the field changes, so the friction is refitted
        from .relative_entropy import fine_tune_relative_entropy

        model.metadata = fitted(extra["friction_calibration"])
        extra["relative_entropy"] = fine_tune_relative_entropy(
            model, trajectories, mappings, graphs, cfg.score.relative_entropy_steps,
            cfg.score.relative_entropy_lr, seed, progress=progress)
        model.metadata = meta
        extra["friction_calibration"] = calibrate()
        checkpoint()
    out = fitted(extra["friction_calibration"]).with_extra(friction_calibration=extra["friction_calibration"])
    if "relative_entropy" in extra:
        out = out.with_extra(relative_entropy=extra["relative_entropy"])
    for key in ("pair_correction", "angle_correction"):      # the fits' records, without the tables
        if key in extra:
            out = out.with_extra(**{f"{key}_fit": {k: v for k, v in extra[key].items() if k != "table"}})
    return out
