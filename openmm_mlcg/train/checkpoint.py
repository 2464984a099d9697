"""Training checkpoints: model, optimiser, scheduler, RNG states and step, written atomically.

A checkpoint written at step s lets a killed run resume and produce exactly what an uninterrupted run would
have produced: all randomness of the trainer is drawn from generators seeded by (seed, step), and the global
RNG states (python, numpy, torch CPU/CUDA) are saved and restored as well.
"""
from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from openmm_mlcg.util.io_utils import atomic_write

from .config import TrainConfig

__all__ = ["save_checkpoint", "load_checkpoint", "rng_states", "set_rng_states", "check_resumable"]

CHECKPOINT_VERSION = 1

# config keys that may change between a run and its resumption
_RESUME_FREE = {"training.progress", "training.device", "training.resume", "training.out_dir",
                "training.eval_every", "training.checkpoint_every",
                # options of a post-training fit only: a changed one refits it (``train.fits.pipeline``)
                "score.cg_langevin.calibration_lag", "score.cg_langevin.calibration_starts"}


def rng_states() -> dict:
    """Global RNG states of python ``random``, numpy, torch CPU and (if available) CUDA."""
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    """Restore states produced by :func:`rng_states` (CUDA states only if CUDA is available)."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path, *, step: int, modules: dict, optimizer, scheduler, config: dict,
                    stats: dict, extra: Optional[dict] = None) -> None:
    """Write a checkpoint atomically (a crash mid-write leaves the previous checkpoint intact).

    Args:
        path: output file (e.g. out_dir/checkpoint.pt).
        step: number of completed optimisation steps.
        modules: name -> torch.nn.Module (state dicts are saved).
        optimizer, scheduler: torch optimiser and LR scheduler.
        config: resolved configuration dict (checked on resume).
        stats: dataset normalisation statistics (velocity_std, acceleration_std, ...).
        extra: anything else picklable (e.g. best validation NLL).
    """
    payload = {
        "version": CHECKPOINT_VERSION,
        "step": int(step),
        "modules": {k: m.state_dict() for k, m in modules.items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_states(),
        "config": config,
        "stats": stats,
        "extra": extra or {},
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())


def load_checkpoint(path, *, modules: dict, optimizer, scheduler, map_location="cpu",
                    restore_rng: bool = True, check: Optional[Callable[[dict], None]] = None) -> dict:
    """Load a checkpoint into ``modules``, ``optimizer`` and ``scheduler`` (in place).

    ``check(payload)`` (optional) runs before any state is loaded, e.g. to compare the stored config.

    Returns:
        the payload dict (keys step, config, stats, extra, ...).

    Raises:
        FileNotFoundError: missing file. ValueError: unreadable file, unknown version or missing module.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # corrupted / not a checkpoint
        raise ValueError(f"path: {path} is not a readable openmm_mlcg checkpoint ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"path: {path}: expected checkpoint version {CHECKPOINT_VERSION}, "
                         f"got {payload.get('version') if isinstance(payload, dict) else type(payload).__name__}")
    if check is not None:
        check(payload)
    missing = sorted(set(modules) - set(payload["modules"]))
    if missing:
        raise ValueError(f"path: {path} has no state for module(s) {missing}")
    for k, m in modules.items():
        m.load_state_dict(payload["modules"][k])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    if restore_rng:
        set_rng_states(payload["rng"])
    return payload


def _flatten(d: dict, prefix: str = "") -> dict:
    """{"a.b": v} from {"a": {"b": v}}."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resumable(saved: dict, current: dict, path: Path, step: int) -> None:
    """Check that ``current`` may resume a checkpoint written with ``saved`` (nested config dicts) at ``step``.

    The configs must agree apart from the _RESUME_FREE keys; ``training.n_steps`` may be raised (extend a run).
    A key the checkpoint's config lacks (an option added since it was written) counts as its default, which is
    chosen to be the behaviour of the code before the option existed.

    Raises:
        ValueError: naming the first differing key, the checkpoint's value and the config's.
    """
    a, b = _flatten(saved), _flatten(current)
    defaults = _flatten(TrainConfig().to_dict())
    a = {**{k: v for k, v in defaults.items() if k not in a}, **a}
    for key in sorted(set(a) | set(b)):
        if key == "training.n_steps" and b.get(key) is not None and int(b[key]) >= step:
            continue
        if key not in _RESUME_FREE and a.get(key) != b.get(key):
            hint = (f"training.n_steps can be raised, not set below the {step} steps done; "
                    if key == "training.n_steps" else "")
            raise ValueError(f"training.resume: checkpoint {path} was written with {key}={a.get(key)!r}, the config "
                             f"has {b.get(key)!r}; {hint}use a new training.out_dir or set training.resume: false")
