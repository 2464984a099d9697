"""Value checks of a training configuration (:class:`openmm_mlcg.train.config.TrainConfig`), one per key.

Split from :mod:`openmm_mlcg.train.config`, which holds the schema (dataclasses, defaults) and its YAML round
trip; every message names ``section.key``, the expected range and the actual value. What only the data can tell
(bead types, CG angles, trajectory lengths, boxes) is checked before training by
:func:`openmm_mlcg.train.data_checks.check_against_data`.
"""
from __future__ import annotations

import dataclasses

__all__ = ["validate_config", "refuse_moved_keys", "MOVED_SCORE_KEYS"]

#: flat ``score`` keys of the configuration before issue 36 -> their place now (refused with that place)
MOVED_SCORE_KEYS = {
    **{f"cg_langevin_{k}": f"cg_langevin.{k}" for k in ("steps", "omega_h", "mass_floor_amu", "denoise",
                                                         "reverse_levels")},
    **{k: f"cg_langevin.{k}" for k in ("type_balance", "calibration_lag", "calibration_starts")},
    **{k: f"langevin.{k}" for k in ("schedule", "steps_per_level", "step_size_nm2")},
    **{k: f"ancestral.{k}" for k in ("corrector_steps", "snr")}, "interpolant_noise": "interpolant.noise",
    **{k: f"terms.{k}" for k in ("excluded_volume_width", "bond_prior", "pair_correction_types",
                                 "angle_correction_iterations", "angle_correction_steps")},
    "relative_entropy_steps": "relative_entropy.steps", "relative_entropy_lr": "relative_entropy.lr",
}


def refuse_moved_keys(raw: dict, section: str) -> None:
    """Raise ValueError for a flat key of the old ``score`` section, naming its new place and how to write it."""
    for k in raw:
        if k in MOVED_SCORE_KEYS:
            sub, key = MOVED_SCORE_KEYS[k].split(".")
            raise ValueError(f"{section}.{k}: this key moved to {section}.{sub}.{key}; write "
                             f"'{section}: {{{sub}: {{{key}: {raw[k]!r}}}}}' instead")


def validate_config(cfg) -> None:
    """Check the value ranges and the combinations of options of ``cfg`` (a TrainConfig).

    Raises:
        ValueError: naming ``section.key``, the expected range and the actual value.
    """
    d, m, s, o, n, t = cfg.data, cfg.model, cfg.score, cfg.optim, cfg.input_noise, cfg.training
    _check("data.group_size", d.group_size, d.group_size >= 1, ">= 1")
    _check("data.history", d.history, d.history >= 1, ">= 1")
    _check("data.stride", d.stride, d.stride >= 1, ">= 1")
    _check("data.val_fraction", d.val_fraction, 0.0 <= d.val_fraction < 1.0, "in [0, 1)")
    _check("data.max_val_windows", d.max_val_windows, d.max_val_windows >= 1, ">= 1")
    for i, src in enumerate(d.systems):
        forms = [src.dir is not None, src.topology is not None or bool(src.trajectories),
                 src.cg_trajectory is not None]
        if sum(forms) != 1:
            raise ValueError(f"data.systems[{i}]: expected exactly one of 'dir', 'topology'+'trajectories', "
                             f"'cg_trajectory'+'mapping'; got {_nonempty(src)}")
        if forms[1] and (src.topology is None or not src.trajectories):
            raise ValueError(f"data.systems[{i}]: 'topology' and 'trajectories' must be given together; "
                             f"got {_nonempty(src)}")
        if forms[2] and src.mapping is None:
            raise ValueError(f"data.systems[{i}]: 'cg_trajectory' needs 'mapping'; got {_nonempty(src)}")
        if src.frame_interval_ps is not None:
            _check(f"data.systems[{i}].frame_interval_ps", src.frame_interval_ps, src.frame_interval_ps > 0, "> 0")
    for key in ("embedding_hidden", "embedding_layers", "dynamics_hidden", "dynamics_layers",
                "score_hidden", "score_layers"):
        _check(f"model.{key}", getattr(m, key), getattr(m, key) >= 1, ">= 1")
    _check("model.min_std", m.min_std, m.min_std > 0, "> 0")
    _check("model.cutoff_nm", m.cutoff_nm, m.cutoff_nm > 0, "> 0")
    _check("model.score_rbf", m.score_rbf, m.score_rbf >= 1, ">= 1")
    _check_neighborhood(m, s)
    _check_score(s, m)
    if cfg.data.temperature_K is not None:
        _check("data.temperature_K", cfg.data.temperature_K, cfg.data.temperature_K > 0, "> 0 (K)")
    _check("optim.lr", o.lr, o.lr > 0, "> 0")
    _check("optim.lr_final", o.lr_final, 0 < o.lr_final <= o.lr, f"in (0, optim.lr={o.lr}]")
    _check("optim.batch_size", o.batch_size, o.batch_size >= 1, ">= 1")
    _check("optim.ema_decay", o.ema_decay, 0.0 <= o.ema_decay < 1.0, "in [0, 1)")
    _check("input_noise.std_min", n.std_min, n.std_min > 0, "> 0")
    _check("input_noise.std_max", n.std_max, n.std_max >= n.std_min, f">= input_noise.std_min={n.std_min}")
    _check("training.n_steps", t.n_steps, t.n_steps >= 1, ">= 1")
    _check("training.eval_every", t.eval_every, t.eval_every >= 1, ">= 1")
    _check("training.checkpoint_every", t.checkpoint_every, t.checkpoint_every >= 1, ">= 1")
    dev = t.device
    if not (dev == "cpu" or dev == "cuda" or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise ValueError(f"training.device: expected 'cpu', 'cuda' or 'cuda:N', got {dev!r}")


def _check_score(s, m) -> None:
    """The ``score`` section: shared keys, the generator's own section (``score.<sampler>``), the score terms and
    the post-training fits, and the combinations the fits allow."""
    from openmm_mlcg.generators import generator_names, get_generator

    from .fits.pipeline import FIT_STEPS

    gen = get_generator(s.sampler, "score.sampler")
    if m.score_energy and (not gen.equilibrium_score or m.score_symmetric_pairs):
        raise ValueError(f"model.score_energy: the energy-based Score GNN needs score.sampler 'cg_langevin' and "
                         f"no model.score_symmetric_pairs (it is symmetric by construction); got sampler "
                         f"{s.sampler!r}, score_symmetric_pairs {m.score_symmetric_pairs!r}")
    for name in generator_names():                  # every section, so a typo in an unused one is caught too
        if get_generator(name).config_class is not None:
            getattr(s, name).check(f"score.{name}")
    if s.sigma_min_nm is not None:
        _check("score.sigma_min_nm", s.sigma_min_nm, s.sigma_min_nm > 0, "> 0 (or null: from the data)")
    if s.sigma_max_nm is not None:
        _check("score.sigma_max_nm", s.sigma_max_nm, s.sigma_max_nm > 0, "> 0 (or null: from the data)")
    if s.sigma_min_nm is not None and s.sigma_max_nm is not None:
        _check("score.sigma_max_nm", s.sigma_max_nm, s.sigma_max_nm >= s.sigma_min_nm,
               f">= score.sigma_min_nm={s.sigma_min_nm}")
    _check("score.n_levels", s.n_levels, s.n_levels >= 1, ">= 1")
    _check("score.weight", s.weight, s.weight >= 0, ">= 0")
    t, re = s.terms, s.relative_entropy
    if t.excluded_volume_width is not None:
        _check("score.terms.excluded_volume_width", t.excluded_volume_width, t.excluded_volume_width >= 1.5,
               ">= 1.5 (x sigma_b; a narrower wall is unstable in the Langevin sub-steps) or null (no wall)")
    _check("score.relative_entropy.steps", re.steps, re.steps >= 0, ">= 0")
    _check("score.relative_entropy.lr", re.lr, re.lr > 0, "> 0")
    if re.steps > 0 and not m.score_energy:
        raise ValueError(f"score.relative_entropy.steps: expected 0 unless model.score_energy is true (relative "
                         f"entropy needs an energy), got {re.steps}")
    for key, low in (("angle_correction_iterations", 0), ("angle_correction_steps", 10)):
        v = getattr(t, key)
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"score.terms.{key}: expected an integer >= {low}, got {v!r}")
    equilibrium = gen.equilibrium_score
    if t.angle_correction_iterations and (not equilibrium or re.steps > 0):
        raise ValueError(f"score.terms.angle_correction_iterations: expected 0 unless score.sampler is 'cg_langevin' "
                         f"without relative_entropy.steps, got {t.angle_correction_iterations} with {s.sampler!r}")
    pc = t.pair_correction_types
    if pc is not None:
        if isinstance(pc, str) or not isinstance(pc, (list, tuple)) or not pc or not all(
                isinstance(x, str) and x for x in pc):
            raise ValueError(f"score.terms.pair_correction_types: expected a non-empty list of bead-type names or "
                             f"null, got {pc!r}")
        if not equilibrium:
            raise ValueError(f"score.terms.pair_correction_types: expected null unless score.sampler is 'cg_langevin' "
                             f"(it corrects the equilibrium score), got {list(pc)} with {s.sampler!r}")
        if re.steps > 0:
            raise ValueError(f"score.terms.pair_correction_types: expected null with score.relative_entropy.steps > 0 "
                             f"(the correction is fitted before the fine-tuning would change the network), got "
                             f"{list(pc)}")
    unknown = [f for f in s.fits if f not in FIT_STEPS]
    if unknown or len(set(s.fits)) != len(s.fits) or "friction" not in s.fits:
        raise ValueError(f"score.fits: expected distinct steps among {list(FIT_STEPS)} including 'friction', "
                         f"got {list(s.fits)}")


def _check(name: str, value, ok: bool, expected: str) -> None:
    if not ok:
        raise ValueError(f"{name}: expected {expected}, got {value!r}")


def _nonempty(src) -> dict:
    """The fields of a SystemSource that are set (for messages)."""
    return {k: v for k, v in dataclasses.asdict(src).items() if v not in (None, [])}


def _check_neighborhood(m, s) -> None:
    """``model.neighborhood`` and the DKMP* keys (:func:`openmm_mlcg.nn.dkmp.check_dkmp`)."""
    from openmm_mlcg.nn.dkmp import NEIGHBORHOODS, check_dkmp

    if m.neighborhood not in NEIGHBORHOODS:
        raise ValueError(f"model.neighborhood: expected one of {NEIGHBORHOODS}, got {m.neighborhood!r}")
    if m.neighborhood == "radius":
        return
    if m.score_energy:
        raise ValueError("model.neighborhood: 'dkmp' selects neighbours discontinuously, so it cannot define the "
                         "energy of model.score_energy: true; got both")
    if s.enabled and s.sampler != "cg_langevin":
        raise ValueError(f"model.neighborhood: 'dkmp' needs score.sampler 'cg_langevin' (or score.enabled: false), "
                         f"got {s.sampler!r}")
    if m.dkmp_shells_nm is not None and m.dynamics_layers != m.score_layers:
        raise ValueError(f"model.dkmp_shells_nm: one list of shells needs model.dynamics_layers == "
                         f"model.score_layers, got {m.dynamics_layers} and {m.score_layers} (or null: one rule per GNN)")
    check_dkmp(m.dkmp_k, m.dkmp_shells_nm, m.dynamics_layers, m.cutoff_nm, prefix="model.")
