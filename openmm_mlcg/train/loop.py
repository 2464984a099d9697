"""The training loop: data -> windows -> Adam with exponential LR decay -> checkpoints, CSV log -> bundle.

Outputs in ``training.out_dir``: ``resolved_config.yaml``, ``log.csv`` (step, loss, nll, score_loss, val_nll,
lr, samples_per_s), ``checkpoint.pt`` (resumable), ``model.mlcg`` (exported bundle), ``training_loss.png``
(loss curves). With ``training.progress`` an end-of-training summary is printed (final train/validation loss,
time, bundle path).

Extending: rerun with a larger ``training.n_steps`` and otherwise the same config; training continues from the
checkpoint (:func:`_extend_schedule`). This differs from a run started with the larger n_steps.

Determinism and resume: mini-batch indices and all noise of step s come from generators seeded by
(seed, s), so a run killed after a checkpoint and resumed gives the same parameters as an uninterrupted run.

Data parallel: launched by ``torchrun`` the run trains with DistributedDataParallel, rank 0 writing every output
(:mod:`openmm_mlcg.train.distributed`; the steps are :mod:`openmm_mlcg.train.optimise`).

Source: Fu et al., TMLR 2023, section 3 and appendix C (Adam, lr 2e-4 decayed exponentially to 2e-5, L =
L_dyn + L_score); Sanchez-Gonzalez et al. 2020 (input noise); gradient clipping at 20 (reference code).
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch

from openmm_mlcg.model.dynamics import geometric_sigmas
from openmm_mlcg.generators import get_generator
from openmm_mlcg.bundle import save_model
from openmm_mlcg.model import CGDynamicsModel
from openmm_mlcg.nn.losses import type_balanced_weights
from openmm_mlcg.util.outputs import check_output_dir
from openmm_mlcg.util.sanity import resolve_device

from .batching import atom_type_vocabulary
from .checkpoint import check_resumable, load_checkpoint, save_checkpoint
from .baseline import linear_history_nll
from .bundle_metadata import cg_langevin_noise, model_metadata
from .config import TrainConfig, load_config
from .distributed import SINGLE, Ranks, session
from .model_step import build_modules
from .optimise import optimise
from .run_directory import CHECKPOINT_NAME, refuse_busy, run_directory
from .log import LOG_COLUMNS, read_log, training_summary, write_log
from .sources import load_sources

__all__ = ["train", "train_on_trajectories", "training_summary", "LOG_COLUMNS"]


def train(config: Union[TrainConfig, dict, str, Path], callback: Optional[Callable[[int, dict], None]] = None) -> Path:
    """Train from a config (TrainConfig, nested dict or YAML path) whose ``data.systems`` lists the data.

    The config is checked on its own when loaded and against the data before the first optimisation step
    (:func:`openmm_mlcg.train.data_checks.check_against_data`); a run that fails before its first checkpoint removes
    what it created in ``training.out_dir`` (:func:`openmm_mlcg.train.run_directory.run_directory`).

    Returns:
        path of the exported bundle ``out_dir/model.mlcg``.

    Raises:
        ValueError/TypeError/FileNotFoundError: invalid config or data (see :class:`TrainConfig`, :func:`load_sources`,
            :func:`openmm_mlcg.train.data_checks.check_against_data`).
        OutputLockedError: another process is training into the same ``training.out_dir``.
        FitQualityError: a post-training fit far from its data (:mod:`openmm_mlcg.train.fits.quality`).
    """
    cfg = load_config(config)
    with session(cfg.training.device) as ranks, contextlib.ExitStack() as lock:
        ranks.shard(range(cfg.optim.batch_size))  # a batch the ranks can share
        out = check_output_dir(cfg.training.out_dir, "training.out_dir")
        cache = Path(cfg.data.cache_dir) if cfg.data.cache_dir else out / "cache"

        def sources():
            """The lock (rank 0: one trainer per out_dir) and the data (rank 0 fills the cache the others read)."""
            if ranks.is_main:
                lock.enter_context(run_directory(out, "train", "training.out_dir"))
            return load_sources(cfg.data, cache)

        trajs, maps = ranks.main_first(sources)
        if cfg.data.temperature_K is None:
            cfg.data.temperature_K = _run_temperature(cfg.data)
        data = _prepare_data(trajs, maps, cfg, [f"data.systems[{i}]" for i in range(len(trajs))])
        return _train_on_trajectories(data, maps, cfg, callback, ranks)


def _run_temperature(data_cfg) -> Optional[float]:
    """The one ``temperature_K`` of the ``dir`` sources' metadata.json files (None if any lacks it or they differ)."""
    from openmm_mlcg.data import read_run_metadata

    temps = set()
    for src in data_cfg.systems:
        t = read_run_metadata(src.dir).get("temperature_K") if src.dir is not None else None
        if t is None:
            return None
        temps.add(round(float(t), 6))
    return temps.pop() if len(temps) == 1 else None


def _ema_modules(modules: dict, decay: float) -> dict:
    """name -> exponential moving average of that module's weights and buffers (``optim.ema_decay``; {} at 0)."""
    if decay <= 0:
        return {}
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return {k: AveragedModel(m, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
            for k, m in modules.items()}


def _finite_or_none(x):
    return float(x) if x is not None and np.isfinite(x) else None


def _model_config(cfg) -> dict:
    """The config recorded in the bundle, without where and how verbosely it ran (so identical training in
    another directory exports the identical bundle)."""
    d = cfg.to_dict()
    for key in ("out_dir", "progress", "resume"):
        d["training"].pop(key, None)
    return d


def _extend_schedule(optimizer, scheduler, lr_final: float, start: int, n_steps: int) -> None:
    """After raising n_steps: decay the learning rate from its current value to ``lr_final`` over the new
    remaining steps (a finished run continues at ``lr_final``)."""
    lr_now = optimizer.param_groups[0]["lr"]
    scheduler.gamma = (lr_final / lr_now) ** (1.0 / (n_steps - start)) if n_steps > start and lr_now > 0 else 1.0


def train_on_trajectories(cg_trajectories: Sequence, mappings: Sequence, config,
                          callback: Optional[Callable[[int, dict], None]] = None) -> Path:
    """Train on CG trajectories in memory (``data.systems`` of the config is ignored).

    The config is checked against the data (:func:`openmm_mlcg.train.data_checks.check_against_data`) before
    anything is written; a run that fails before its first checkpoint removes what it created in
    ``training.out_dir``.

    Args:
        cg_trajectories: list of :class:`openmm_mlcg.data.CGTrajectory` (unwrapped positions, nm).
        mappings: list of :class:`openmm_mlcg.cg.mapping.CGMapping`, one per trajectory (may repeat).
        config: TrainConfig, nested dict or YAML path.
        callback: optional ``callback(step, row)`` after every completed step (row = the log values; under
            torchrun on every rank, with the all-reduced losses).

    Returns:
        path of the exported bundle ``out_dir/model.mlcg`` (bound to the mapping if all trajectories share one).

    Raises:
        ValueError: length mismatch, mapping/trajectory hash mismatch, different model time steps, too-short
            trajectories, an option the data cannot serve, or a checkpoint in out_dir written with an incompatible
            config.
        OutputLockedError: another process is training into the same ``training.out_dir``.
        FitQualityError: a post-training fit far from its data (:mod:`openmm_mlcg.train.fits.quality`).
    """
    cfg = load_config(config)
    maps = list(mappings)
    with session(cfg.training.device) as ranks, contextlib.ExitStack() as lock:
        ranks.shard(range(cfg.optim.batch_size))  # a batch the ranks can share
        out = check_output_dir(cfg.training.out_dir, "training.out_dir")

        def checked():
            """A busy directory first, then the checks (nothing created), then the lock (rank 0)."""
            if ranks.is_main:
                refuse_busy(out, "train", "training.out_dir")
            prepared = _prepare_data(list(cg_trajectories), maps, cfg)
            if ranks.is_main:
                lock.enter_context(run_directory(out, "train", "training.out_dir"))
            return prepared

        data = ranks.main_first(checked)
        return _train_on_trajectories(data, maps, cfg, callback, ranks)


class _Data(NamedTuple):
    """The training data of a run: the whole trajectories, the vocabulary, the time split (indices into the
    trajectories and the parts), the window datasets, their normalisation statistics and the frame interval (ps)."""

    trajectories: list
    vocab: list
    tr_ids: list
    tr: list
    va_ids: list
    va: list
    train_ds: object
    val_ds: object
    stats: dict
    frame_interval: float


def _prepare_data(trajs: list, maps: list, cfg, names: Optional[Sequence[str]] = None) -> _Data:
    """Check the config against the data (:func:`openmm_mlcg.train.data_checks.check_against_data`; ``names``:
    how messages name the trajectories), split them in time and cut the windows.

    Raises:
        ValueError: as :func:`check_against_data`, or beads that do not move.
    """
    from openmm_mlcg.data import WindowDataset

    from .data_checks import check_against_data

    dc = cfg.data
    tr_ids, tr, va_ids, va = check_against_data(cfg, trajs, maps, names)
    vocab = atom_type_vocabulary(maps)
    train_ds = WindowDataset(tr, [maps[i] for i in tr_ids], history=dc.history, stride=dc.stride)
    val_ds = WindowDataset(va, [maps[i] for i in va_ids], history=dc.history, stride=dc.stride) if va else []
    stats = {k: float(v) for k, v in train_ds.velocity_statistics().items()}
    for key in ("velocity_std", "acceleration_std"):
        if not (np.isfinite(stats[key]) and stats[key] > 0):
            raise ValueError(f"cg_trajectories: expected moving beads, but the training windows have {key}="
                             f"{stats[key]} (nm per model step); check the trajectories and data.stride")
    return _Data(list(trajs), vocab, tr_ids, tr, va_ids, va, train_ds, val_ds, stats, float(trajs[0].frame_interval_ps))


def _noise_levels(cfg, stats: dict, maps: list, frame_interval: float):
    """(sigma_b or None, the descending noise levels (L,) nm): an equilibrium-score generator derives its range
    from the sub-step (:func:`cg_langevin_noise`), the others from the data's velocity_std."""
    sigma_b = None
    if get_generator(cfg.score.sampler).equilibrium_score and cfg.score.enabled:
        sigma_b, sigma_range = cg_langevin_noise(cfg, stats, maps, frame_interval)
    else:
        sigma_range = cfg.score.resolved_sigmas(stats["velocity_std"])
    return sigma_b, geometric_sigmas(sigma_range[0], sigma_range[1], cfg.score.n_levels)


def _train_on_trajectories(data: _Data, maps: list, cfg, callback: Optional[Callable[[int, dict], None]] = None,
                           ranks: Ranks = SINGLE) -> Path:
    """Train on the checked data (:func:`_prepare_data`) into ``training.out_dir`` (its lock held by the caller):
    the optimisation, the post-training fits and the bundle ``out_dir/model.mlcg`` (bound to the mapping if all
    trajectories share one). In a distributed run (``ranks``) every rank trains, rank 0 alone writes.

    Raises:
        ValueError: a checkpoint in out_dir written with an incompatible config.
        FloatingPointError: the loss is not finite. FitQualityError: a fit far from its data.
    """
    tc, dc = cfg.training, cfg.data
    trajs = data.trajectories
    out = Path(tc.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = ranks.device(resolve_device(tc.device, "training.device"))
    torch.manual_seed(tc.seed)
    np.random.seed(tc.seed % 2**32)
    stats = data.stats

    modules = build_modules(cfg.model, len(data.vocab), dc.history, cfg.score.sampler)
    for m in modules.values():
        m.to(device)
    params = [p for m in modules.values() for p in m.parameters()]
    optimizer = torch.optim.Adam(params, lr=cfg.optim.lr)
    gamma = (cfg.optim.lr_final / cfg.optim.lr) ** (1.0 / tc.n_steps)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma)
    sigma_b, sigmas = _noise_levels(cfg, stats, maps, data.frame_interval)

    ema = _ema_modules(modules, cfg.optim.ema_decay)
    saved_modules = {**modules, **{f"ema_{k}": m for k, m in ema.items()}}  # what a checkpoint holds
    ckpt_path, log_path = out / CHECKPOINT_NAME, out / "log.csv"
    start, extra = 0, {}
    if tc.resume and ckpt_path.is_file():
        payload = load_checkpoint(ckpt_path, modules=saved_modules, optimizer=optimizer, scheduler=scheduler,
                                  map_location="cpu",
                                  check=lambda p: check_resumable(p["config"], cfg.to_dict(), ckpt_path,
                                                                   int(p["step"])))
        start, stats, extra = int(payload["step"]), payload["stats"], payload["extra"]
        if int(payload["config"]["training"]["n_steps"]) != tc.n_steps:
            _extend_schedule(optimizer, scheduler, cfg.optim.lr_final, start, tc.n_steps)
    model = CGDynamicsModel(modules["embedding"], modules["dynamics"], modules["score"],
                            model_metadata(cfg, stats, data.vocab, sigmas, data.frame_interval, modules, trajs, maps,
                                           sigma_b)).to(device)
    graphs_all = [model.system_graph(m) for m in maps]  # with the metadata's bond prior
    if cfg.score.cg_langevin.type_balance:
        for g, m in zip(graphs_all, maps):
            g.score_weight = type_balanced_weights(m.bead_types)
    graphs_tr = [graphs_all[i].to(device) for i in data.tr_ids]
    graphs_va = [graphs_all[i].to(device) for i in data.va_ids]
    if ranks.is_main and "val_nll_linear_baseline" not in extra:  # once per run (kept in the checkpoint)
        extra["val_nll_linear_baseline"] = linear_history_nll(
            data.train_ds, data.val_ds, [maps[i].bead_types for i in data.tr_ids],
            [maps[i].bead_types for i in data.va_ids], stats["acceleration_std"], cfg.data.max_val_windows)
    if ranks.is_main:
        cfg.save_yaml(out / "resolved_config.yaml")
        write_log(log_path, read_log(log_path, start))

    t_session = time.perf_counter()
    wall_before = float(extra.get("train_time_s", 0.0))

    def checkpoint(step):
        """Save the resumable state after ``step`` steps (modules, optimiser, scheduler, statistics, extras)."""
        extra["train_time_s"] = wall_before + time.perf_counter() - t_session
        save_checkpoint(ckpt_path, step=step, modules=saved_modules, optimizer=optimizer, scheduler=scheduler,
                        config=cfg.to_dict(), stats=stats, extra=extra)

    optimise(model, modules, ema, params, optimizer, scheduler, data, graphs_tr, graphs_va, cfg, device, start,
             extra, checkpoint, callback, log_path, ranks)
    for k, m in ema.items():  # the bundle, the post-training fits and the fine-tuning use the averaged weights
        modules[k].load_state_dict(m.module.state_dict())
    for m in modules.values():
        m.eval()
    # rank 0 alone: the post-training fits (not distributed) and the bundle; the others wait for it
    ranks.on_main(lambda: _export(model, extra, cfg, data, maps, graphs_tr, lambda: checkpoint(tc.n_steps), out))
    bundle = out / "model.mlcg"
    if tc.progress and ranks.is_main:
        print(training_summary(log_path, bundle, wall_before + time.perf_counter() - t_session,
                               float(extra["val_nll_linear_baseline"])), flush=True)
        _print_fits(model.metadata)
    return bundle


def _export(model, extra: dict, cfg, data: _Data, maps: list, graphs_tr, checkpoint, out: Path) -> Path:
    """The post-training fits of an equilibrium-score generator (:mod:`openmm_mlcg.train.fits.pipeline`), the
    bundle ``out/model.mlcg`` (bound to the mapping when there is one) and the loss plot."""
    tc = cfg.training
    meta = model.metadata
    if meta.generator.equilibrium_score and meta.score_enabled:
        from .fits.pipeline import fit_generator
        meta = fit_generator(model, extra, cfg, data.tr, [maps[i] for i in data.tr_ids], graphs_tr, cfg.data.stride,
                             tc.seed, checkpoint, tc.progress)
    meta = meta.with_extra(training_steps=tc.n_steps, val_nll=_finite_or_none(extra.get("val_nll")),
                           val_nll_linear_baseline=_finite_or_none(extra["val_nll_linear_baseline"]),
                           train_config=_model_config(cfg))
    model.metadata = meta
    bound = maps[0] if len({m.hash for m in maps}) == 1 else None  # one mapping: bind it to the bundle
    bundle = out / "model.mlcg"
    model.cpu()
    save_model(model, bundle, mapping=bound)
    from openmm_mlcg.analysis.plots import plot_training_log
    plot_training_log(out / "log.csv", out / "training_loss.png")
    return bundle


def _factor(ratio) -> str:
    """A fit's miss factor for the summary ("unbounded" when None)."""
    return "unbounded" if ratio is None else f"{ratio:.3g}x"


def _print_fits(meta) -> None:
    """One line on the fitted cg_langevin frictions and one on the grades of the fits (when the bundle has them)."""
    grades = meta.extra.get("fit_quality") or {}
    if grades:
        print("fit quality (model vs data, worst case): " + ", ".join(
            f"{name} {q['status']} {_factor(q['ratio'])}" + (" at a bound" if q["at_bound"] else "")
            for name, q in grades.items()), flush=True)
    fc = meta.extra.get("friction_calibration")
    if fc:
        types = ", ".join(f"{t} {g:.3g}" for t, g in sorted((fc.get("friction_by_type") or {}).items()))
        print(f"cg_langevin: sigma {meta.cg_langevin_sigma_nm:.4g} nm (lightest bead, inertial mass "
              f"{meta.cg_langevin_sigma_mass_amu:.4g} amu), {meta.cg_langevin_steps} "
              f"sub-steps, friction per bead type ({types}) /ps fitted to the MSD increment over "
              f"[{fc.get('half_lag', 0)}, {fc['lag']}] model steps (data {fc['data_msd_nm2']:.4g} nm^2, model "
              f"{fc['model_msd_nm2']:.4g} nm^2, {fc['n_starts']} starts; lag {fc.get('lag_rule', 'given')})",
              flush=True)
