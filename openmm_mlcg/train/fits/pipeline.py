"""After training a ``"cg_langevin"`` model: the post-training fits as an ordered, checkpointed pipeline of named
steps (``score.fits`` in the config; default :data:`DEFAULT_FITS`).

* ``pair_correction``: the pair-correction score term (``score.terms.pair_correction_types``;
  :mod:`openmm_mlcg.train.fits.pair_correction`);
* ``friction``: the frictions per bead type, fitted to the data's MSD
  (:func:`openmm_mlcg.train.fits.calibrate.calibrate_friction`);
* ``angle_correction``: the bond-angle score term (``score.terms.angle_correction_iterations``;
  :mod:`openmm_mlcg.train.fits.angle_correction`), rolled out with the fitted frictions;
* ``relative_entropy``: fine-tuning of the energy (``score.relative_entropy.steps``;
  :mod:`openmm_mlcg.train.fits.relative_entropy`).

A step runs when its own options switch it on. Every step sees the model with the metadata of the steps before it
(tables and frictions). A step that changes the sampled structure (``moves_structure``) after the frictions were
fitted is followed by the friction fit again (the structure moves the MSD). Each result is recorded in ``extra``
under the step's ``record_key`` (the checkpoint's record) and ``checkpoint()`` is called after each (after the
friction refit for a structure-moving step), so a resumed run skips what is done and gives the same bundle.

Each step states what it needs of the data (``check``: run by :func:`check_fits` before training, from
:func:`openmm_mlcg.train.data_checks.check_against_data`) and grades its own final result (``quality``: the rule of
:mod:`openmm_mlcg.train.fits.quality`; a fit far from its data warns, or is refused before the bundle is written).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Dict, Sequence

__all__ = ["FitStep", "FIT_STEPS", "DEFAULT_FITS", "fit_generator", "check_fits", "enabled_fits"]

#: the order the fits ran in before the pipeline existed (and still do by default)
DEFAULT_FITS = ("pair_correction", "friction", "angle_correction", "relative_entropy")


@dataclass(frozen=True)
class FitContext:
    """What a fit step reads: the model (its metadata the current one), the training data and the config."""

    model: Any
    cfg: Any
    trajectories: Sequence
    mappings: Sequence
    graphs: Sequence
    stride: int
    seed: int
    progress: bool


@dataclass(frozen=True)
class FitStep:
    """One named post-training fit.

    Attributes:
        name: its name in ``score.fits``. record_key: key of its record in the checkpoint's ``extra`` and the
        bundle's metadata. enabled(cfg): whether the config switches it on. run(ctx) -> record. apply(meta,
        record) -> the metadata with the fitted values. bundle_record(record): what the bundle keeps of it.
        moves_structure: a friction fit follows it when the frictions were fitted before.
        options(cfg): the options the fit depends on beyond the trained weights; a record fitted with other
        options (or before options were recorded) is fitted again, so a resumed run with a changed fit option
        refits without retraining (those options are free to change on resume: ``train.checkpoint``).
        check(cfg, trajectories, mappings): raise ValueError naming the YAML key when the training parts of the data
        cannot serve the fit (before training). quality(record, meta) -> its grade
        (:func:`openmm_mlcg.train.fits.quality.grade`).
    """

    name: str
    record_key: str
    enabled: Callable[[Any], bool]
    run: Callable[[FitContext], Dict]
    apply: Callable[[Any, Dict], Any]
    bundle_record: Callable[[Dict], Dict]
    check: Callable[[Any, Sequence, Sequence], None]
    quality: Callable[[Dict, Any], Dict]
    moves_structure: bool = False
    options: Callable[[Any], Dict] = lambda cfg: {}


def _friction_options(cfg) -> Dict:
    cg = cfg.score.cg_langevin
    return dict(rule="msd_slope_v2", calibration_lag=cg.calibration_lag, calibration_starts=cg.calibration_starts)


def _without_table(record: Dict) -> Dict:
    return {k: v for k, v in record.items() if k != "table"}


def _pair_correction(ctx: FitContext) -> Dict:
    from .pair_correction import fit_pair_correction

    return fit_pair_correction(ctx.model, ctx.trajectories, ctx.mappings,
                               list(ctx.cfg.score.terms.pair_correction_types), seed=ctx.seed)


def _friction(ctx: FitContext) -> Dict:
    from .calibrate import calibrate_friction

    cg = ctx.cfg.score.cg_langevin
    return calibrate_friction(ctx.model, ctx.trajectories, ctx.mappings, ctx.stride, cg.calibration_lag,
                              cg.calibration_starts)


def _angle_correction(ctx: FitContext) -> Dict:
    from .angle_correction import fit_angle_correction

    t = ctx.cfg.score.terms
    return fit_angle_correction(ctx.model, ctx.trajectories, ctx.mappings, ctx.stride, t.angle_correction_iterations,
                                t.angle_correction_steps, ctx.cfg.score.cg_langevin.calibration_starts, seed=ctx.seed)


def _relative_entropy(ctx: FitContext) -> Dict:
    from .relative_entropy import fine_tune_relative_entropy

    re = ctx.cfg.score.relative_entropy
    return fine_tune_relative_entropy(ctx.model, ctx.trajectories, ctx.mappings, ctx.graphs, re.steps, re.lr,
                                      ctx.seed, progress=ctx.progress)


def _check_pair_correction(cfg, trajectories: Sequence, mappings: Sequence) -> None:
    from .pair_correction import check_bead_types

    check_bead_types(list(cfg.score.terms.pair_correction_types), mappings, "score.terms.pair_correction_types")


def _check_friction(cfg, trajectories: Sequence, mappings: Sequence) -> None:
    from .calibrate import lag_room

    lag, k, stride = cfg.score.cg_langevin.calibration_lag, cfg.data.history, cfg.data.stride
    room = lag_room(trajectories, stride, k)
    if lag is not None and lag > room:
        raise ValueError(f"score.cg_langevin.calibration_lag: expected at most {room} model steps (the longest "
                         f"training part has {room + k + 1} model steps of data.stride={stride} frames, less "
                         f"data.history={k} + 1), got {lag}; give a shorter lag or null (the automatic rule)")


def _check_angle_correction(cfg, trajectories: Sequence, mappings: Sequence) -> None:
    from .angle_correction import angle_types

    if not angle_types(mappings):
        n_bonds = sum(len(m.cg_bonds) for m in mappings)
        raise ValueError(f"score.terms.angle_correction_iterations: expected 0 for data without CG bond angles (two "
                         f"CG bonds sharing a bead), got {cfg.score.terms.angle_correction_iterations}; the data's "
                         f"mappings have {n_bonds} CG bonds and no angle (molecules of at most two beads; a smaller "
                         f"data.group_size={cfg.data.group_size} cuts molecules into more beads)")


def _check_relative_entropy(cfg, trajectories: Sequence, mappings: Sequence) -> None:
    from .relative_entropy import non_periodic

    bad = non_periodic(trajectories)
    if bad:
        raise ValueError(f"score.relative_entropy.steps: expected 0 for non-periodic data (the fine-tuning needs a "
                         f"box per frame), got {cfg.score.relative_entropy.steps}; the trajectories at positions {bad} "
                         f"of data.systems (cg_trajectories) have no box")


def _quality(module: str, name: str):
    """The grade function ``name`` of fit module ``module`` (imported when a record is graded)."""
    def grade(record: Dict, meta) -> Dict:
        """The fit's grade (:mod:`openmm_mlcg.train.fits.quality`) of ``record`` under metadata ``meta``."""
        from importlib import import_module

        return getattr(import_module(f"{__package__}.{module}"), name)(record, meta)
    return grade


def _with_frictions(meta, record: Dict):
    return dataclasses.replace(meta, cg_langevin_friction_per_ps=record["friction_per_ps"],
                               cg_langevin_friction_by_type=dict(record.get("friction_by_type") or {}))


#: name -> step; a new post-training fit is one entry here (and its name in ``score.fits``)
FIT_STEPS: Dict[str, FitStep] = {s.name: s for s in (
    FitStep("pair_correction", "pair_correction", lambda cfg: bool(cfg.score.terms.pair_correction_types),
            _pair_correction, lambda meta, rec: meta.with_score_term("pair_correction", rec["table"]),
            lambda rec: {"pair_correction_fit": _without_table(rec)}, _check_pair_correction,
            _quality("pair_correction", "pair_correction_quality")),
    FitStep("friction", "friction_calibration", lambda cfg: True, _friction, _with_frictions,
            lambda rec: {"friction_calibration": rec}, _check_friction, _quality("calibrate", "friction_quality"),
            options=_friction_options),
    FitStep("angle_correction", "angle_correction", lambda cfg: cfg.score.terms.angle_correction_iterations > 0,
            _angle_correction, lambda meta, rec: meta.with_score_term("angle_correction", rec["table"]),
            lambda rec: {"angle_correction_fit": _without_table(rec)}, _check_angle_correction,
            _quality("angle_correction", "angle_correction_quality"), moves_structure=True),
    FitStep("relative_entropy", "relative_entropy", lambda cfg: cfg.score.relative_entropy.steps > 0,
            _relative_entropy, lambda meta, rec: meta, lambda rec: {"relative_entropy": rec}, _check_relative_entropy,
            _quality("relative_entropy", "relative_entropy_quality"), moves_structure=True),
)}


def enabled_fits(cfg) -> list:
    """The steps of ``cfg.score.fits`` that the config switches on, in order."""
    return [FIT_STEPS[name] for name in cfg.score.fits if FIT_STEPS[name].enabled(cfg)]


def check_fits(cfg, trajectories: Sequence, mappings: Sequence) -> None:
    """Each enabled fit's ``check`` on the training parts of the data (before training).

    Raises:
        ValueError: a fit cannot use these data (the message names the YAML key, the expected and the actual value).
    """
    for step in enabled_fits(cfg):
        step.check(cfg, trajectories, mappings)


def fit_generator(model, extra: Dict, cfg, trajectories: Sequence, mappings: Sequence, graphs: Sequence,
                  stride: int, seed: int, checkpoint: Callable[[], None], progress: bool = False):
    """Run the steps of ``cfg.score.fits`` on ``model`` (a trained :class:`openmm_mlcg.model.CGDynamicsModel`) and
    return the bundle's metadata: the fitted score terms and frictions, the fits' records in its ``extra``.

    ``extra`` is the checkpoint's record: a step whose ``record_key`` is in it is not run again (its record is
    applied), so a resumed run gives the same bundle. ``model.metadata`` is the result on return. Every fit's final
    record is graded (:mod:`openmm_mlcg.train.fits.quality`; the grades in the metadata's ``fit_quality``).

    Warns:
        UserWarning: a fit whose result misses its data by more than ``quality.WARN_FACTOR`` or sits at a bound.

    Raises:
        FitQualityError: a fit whose result misses its data by more than ``quality.REFUSE_FACTOR`` (the records are
            in ``extra`` and checkpointed: a resumed run with other fit options refits only what they change).
    """
    from .quality import judge, public

    ctx = FitContext(model, cfg, trajectories, mappings, graphs, stride, seed, progress)
    friction = FIT_STEPS["friction"]
    records: Dict[str, Dict] = {}

    def do(step: FitStep, rerun: bool = False, save: bool = True) -> None:
        """Run (or replay from ``extra``) one step and apply it to the model's metadata."""
        opts = step.options(cfg)
        stale = step.record_key in extra and extra[step.record_key].get("options", {}) != opts
        if rerun or stale or step.record_key not in extra:
            extra[step.record_key] = dict(step.run(ctx), **({"options": opts} if opts else {}))
            if save:
                checkpoint()
        records[step.name] = extra[step.record_key]
        model.metadata = step.apply(model.metadata, records[step.name])

    for step in enabled_fits(cfg):
        fresh = step.record_key not in extra or extra[step.record_key].get("options", {}) != step.options(cfg)
        refit = step.moves_structure and "friction" in records
        do(step, save=not refit)        # checkpointed with the frictions refitted after it, never without them
        if refit:
            do(friction, rerun=fresh)
    out = model.metadata
    grades = {name: FIT_STEPS[name].quality(rec, out) for name, rec in records.items()}
    judge(grades)
    for name, rec in records.items():
        out = out.with_extra(**FIT_STEPS[name].bundle_record(rec))
    model.metadata = out.with_extra(fit_quality=public(grades))
    return model.metadata
