"""Value checks of a training configuration (:class:`openmm_mlcg.train.config.TrainConfig`), one per key.

Split from :mod:`openmm_mlcg.train.config`, which holds the schema (dataclasses, defaults) and its YAML round
trip; every message names ``section.key``, the expected range and the actual value.
"""
from __future__ import annotations

import dataclasses

__all__ = ["validate_config"]


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
    from openmm_mlcg.generators.score_samplers import SAMPLERS, SCHEDULES

    _check("score.sampler", s.sampler, s.sampler in SAMPLERS, f"one of {SAMPLERS}")
    if m.score_energy and (s.sampler != "cg_langevin" or m.score_symmetric_pairs):
        raise ValueError(f"model.score_energy: the energy-based Score GNN needs score.sampler 'cg_langevin' and "
                         f"no model.score_symmetric_pairs (it is symmetric by construction); got sampler "
                         f"{s.sampler!r}, score_symmetric_pairs {m.score_symmetric_pairs!r}")
    _check("score.schedule", s.schedule, s.schedule in SCHEDULES, f"one of {SCHEDULES}")
    if s.sigma_min_nm is not None:
        _check("score.sigma_min_nm", s.sigma_min_nm, s.sigma_min_nm > 0, "> 0 (or null: from the data)")
    if s.sigma_max_nm is not None:
        _check("score.sigma_max_nm", s.sigma_max_nm, s.sigma_max_nm > 0, "> 0 (or null: from the data)")
    if s.sigma_min_nm is not None and s.sigma_max_nm is not None:
        _check("score.sigma_max_nm", s.sigma_max_nm, s.sigma_max_nm >= s.sigma_min_nm,
               f">= score.sigma_min_nm={s.sigma_min_nm}")
    _check("score.corrector_steps", s.corrector_steps, s.corrector_steps >= 0, ">= 0")
    _check("score.snr", s.snr, s.snr > 0, "> 0")
    _check("score.n_levels", s.n_levels, s.n_levels >= 1, ">= 1")
    _check("score.steps_per_level", s.steps_per_level, s.steps_per_level >= 0, ">= 0")
    _check("score.step_size_nm2", s.step_size_nm2, s.step_size_nm2 >= 0, ">= 0")
    _check("score.weight", s.weight, s.weight >= 0, ">= 0")
    _check("score.interpolant_noise", s.interpolant_noise, s.interpolant_noise > 0, "> 0")
    _check("score.cg_langevin_steps", s.cg_langevin_steps, s.cg_langevin_steps >= 1, ">= 1")
    _check("score.cg_langevin_omega_h", s.cg_langevin_omega_h, 0 < s.cg_langevin_omega_h < 2,
           "in (0, 2) (the Langevin scheme is unstable at omega h >= 2)")
    if s.cg_langevin_mass_floor_amu is not None:
        _check("score.cg_langevin_mass_floor_amu", s.cg_langevin_mass_floor_amu,
               s.cg_langevin_mass_floor_amu >= 0, ">= 0 (amu; 0: no floor, null: the median bead mass)")
    _check("score.cg_langevin_denoise", s.cg_langevin_denoise, 0 <= s.cg_langevin_denoise <= 1,
           "in [0, 1] (1: Tweedie, 0.5: one probability-flow Euler step, 0: no denoising)")
    _check("score.cg_langevin_reverse_levels", s.cg_langevin_reverse_levels, s.cg_langevin_reverse_levels >= 0,
           ">= 0")
    if s.excluded_volume_width is not None:
        _check("score.excluded_volume_width", s.excluded_volume_width, s.excluded_volume_width >= 1.5,
               ">= 1.5 (x sigma_b; a narrower wall is unstable in the Langevin sub-steps) or null (no wall)")
    _check("score.calibration_lag", s.calibration_lag, s.calibration_lag >= 1, ">= 1")
    _check("score.calibration_starts", s.calibration_starts, s.calibration_starts >= 1, ">= 1")
    _check("score.relative_entropy_steps", s.relative_entropy_steps, s.relative_entropy_steps >= 0, ">= 0")
    _check("score.relative_entropy_lr", s.relative_entropy_lr, s.relative_entropy_lr > 0, "> 0")
    if s.relative_entropy_steps > 0 and not m.score_energy:
        raise ValueError(f"score.relative_entropy_steps: expected 0 unless model.score_energy is true (relative "
                         f"entropy needs an energy), got {s.relative_entropy_steps}")
    for key in ("angle_correction_iterations", "angle_correction_steps"):
        v = getattr(s, key)
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if key.endswith("iterations") else 10):
            raise ValueError(f"score.{key}: expected an integer >= {0 if key.endswith('iterations') else 10}, "
                             f"got {v!r}")
    if s.angle_correction_iterations and (s.sampler != "cg_langevin" or s.relative_entropy_steps > 0):
        raise ValueError(f"score.angle_correction_iterations: expected 0 unless score.sampler is 'cg_langevin' "
                         f"without relative_entropy_steps, got {s.angle_correction_iterations} with {s.sampler!r}")
    pc = s.pair_correction_types
    if pc is not None:
        if isinstance(pc, str) or not isinstance(pc, (list, tuple)) or not pc or not all(
                isinstance(t, str) and t for t in pc):
            raise ValueError(f"score.pair_correction_types: expected a non-empty list of bead-type names or null, "
                             f"got {pc!r}")
        if s.sampler != "cg_langevin":
            raise ValueError(f"score.pair_correction_types: expected null unless score.sampler is 'cg_langevin' "
                             f"(it corrects the equilibrium score), got {list(pc)} with {s.sampler!r}")
        if s.relative_entropy_steps > 0:
            raise ValueError(f"score.pair_correction_types: expected null with score.relative_entropy_steps > 0 (the "
                             f"correction is fitted before the fine-tuning would change the network), got {list(pc)}")
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


def _check(name: str, value, ok: bool, expected: str) -> None:
    if not ok:
        raise ValueError(f"{name}: expected {expected}, got {value!r}")


def _nonempty(src) -> dict:
    """The fields of a SystemSource that are set (for messages)."""
    return {k: v for k, v in dataclasses.asdict(src).items() if v not in (None, [])}
