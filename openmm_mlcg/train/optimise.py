"""The optimisation steps of a run: mini-batch choice, loss, clipped Adam step, weight average, validation, log.

Split from :mod:`openmm_mlcg.train.loop` (which prepares the data, the model, the checkpoints and the bundle).
One process or several (:mod:`openmm_mlcg.train.distributed`): every rank takes its share of the same global
window list of a step, DDP averages the gradients, rank 0 writes the log row (the all-reduced per-bead means).

Determinism: mini-batch indices and all noise of step s come from generators seeded by (seed, s) (and the rank),
so a run killed after a checkpoint and resumed gives the same parameters as an uninterrupted run.
"""
from __future__ import annotations

import contextlib
import csv
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from openmm_mlcg.util.threads import ThreadWatch

from .batching import collate
from .distributed import SINGLE, Ranks, step_generator, wrap
from .log import LOG_COLUMNS
from .model_step import loss_options

__all__ = ["batch_indices", "optimise", "validate"]


@lru_cache(maxsize=4)
def _epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([int(seed), int(epoch), 11]).permutation(n)


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> list:
    """Window indices of step ``step`` (the global batch): consecutive slices of a fresh permutation per epoch
    (deterministic)."""
    out = []
    for j in range(step * batch_size, (step + 1) * batch_size):
        epoch, offset = divmod(j, n)
        out.append(int(_epoch_order(n, seed, epoch)[offset]))
    return out


@torch.no_grad()
def validate(model, graphs, dataset, cfg, device) -> float:
    """Validation NLL (nats per component): the per-bead mean over at most ``data.max_val_windows`` windows spread
    evenly over ``dataset`` (nan when it is empty)."""
    n = len(dataset)
    if n == 0:
        return float("nan")
    idx = np.unique(np.linspace(0, n - 1, min(n, cfg.data.max_val_windows)).round().astype(int))
    total, count = 0.0, 0
    for start in range(0, len(idx), cfg.optim.batch_size):
        chunk = idx[start:start + cfg.optim.batch_size]
        batch = collate([dataset[int(i)] for i in chunk], graphs).to(device)
        losses = model.loss(batch, graphs, torch.Generator().manual_seed(0), train=False, options=loss_options(cfg))
        nb = int(batch.positions.shape[0])
        total += float(losses["nll"]) * nb
        count += nb
    return total / count


def optimise(model, modules, ema, params, optimizer, scheduler, data, graphs_tr, graphs_va, cfg, device,
             start: int, extra: dict, checkpoint, callback, log_path: Path, ranks: Ranks = SINGLE) -> None:
    """The optimisation steps ``start`` .. ``training.n_steps``: loss, clipped Adam step, learning-rate decay,
    weight average, validation, the log row and the checkpoints (validation, log and checkpoints on rank 0;
    ``callback(step, row)`` on every rank with the all-reduced row).

    Raises:
        FloatingPointError: the loss is not finite (on every rank: the checked loss is the all-reduced one).
    """
    tc = cfg.training
    options = loss_options(cfg)
    loss_fn = wrap(model, ranks)
    bar = tqdm(range(start, tc.n_steps), initial=start, total=tc.n_steps, disable=not (tc.progress and ranks.is_main),
               desc="train", dynamic_ncols=True)
    watch = ThreadWatch("training") if torch.device(device).type == "cpu" else None  # warns once if the threads are starved
    with contextlib.ExitStack() as stack, bar:
        log_fh = stack.enter_context(open(log_path, "a", newline="")) if ranks.is_main else None
        writer = csv.DictWriter(log_fh, fieldnames=LOG_COLUMNS) if ranks.is_main else None
        for step in bar:
            if watch is not None:
                watch.check()
            t0 = time.perf_counter()
            for m in modules.values():
                m.train()
            gen = step_generator(tc.seed, step, ranks.rank)
            idx = ranks.shard(batch_indices(len(data.train_ds), cfg.optim.batch_size, tc.seed, step))
            batch = collate([data.train_ds[i] for i in idx], graphs_tr).to(device)
            losses = loss_fn(batch, graphs_tr, gen, options)
            reduced, beads = _reduced_losses(losses, int(batch.positions.shape[0]), ranks)
            optimizer.zero_grad(set_to_none=True)
            # DDP averages the ranks' gradients: weighting each by its share of the beads gives the gradient of
            # the per-bead mean over the global batch (the loss of one process)
            weight = ranks.world_size * int(batch.positions.shape[0]) / beads
            (losses["loss"] * weight if ranks.distributed else losses["loss"]).backward()
            if cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            for k, m in ema.items():
                m.update_parameters(modules[k])
            done = step + 1
            row = {"step": done, **reduced, "val_nll": "", "lr": lr,
                   "samples_per_s": cfg.optim.batch_size / (time.perf_counter() - t0)}
            if ranks.is_main and (done % tc.eval_every == 0 or done == tc.n_steps):
                for m in modules.values():
                    m.eval()
                row["val_nll"] = validate(model, graphs_va, data.val_ds, cfg, device)
                extra["val_nll"] = row["val_nll"]
            if not np.isfinite(row["loss"]):
                raise FloatingPointError(f"training diverged at step {done}: loss {row['loss']} "
                                         f"(try a smaller optim.lr or optim.grad_clip)")
            if ranks.is_main:
                writer.writerow(row)
                log_fh.flush()
                if done % tc.checkpoint_every == 0 or done == tc.n_steps:
                    checkpoint(done)
            bar.set_postfix(loss=f"{row['loss']:.3f}", nll=f"{row['nll']:.3f}")
            if callback is not None:
                callback(done, row)


def _reduced_losses(losses: dict, beads: int, ranks: Ranks):
    """({loss, nll, score_loss}: per-bead means over the global batch, the global batch's bead count)."""
    keys = ("loss", "nll", "score_loss")
    if not ranks.distributed:
        return {k: losses[k].item() for k in keys}, beads
    sums = ranks.sum([beads] + [beads * losses[k].item() for k in keys])
    return {k: s / sums[0] for k, s in zip(keys, sums[1:])}, sums[0]
