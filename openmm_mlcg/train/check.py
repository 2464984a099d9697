"""``openmm-mlcg check``: is a trained ``"cg_langevin"`` bundle's score right at its own training frames?

A reference-free diagnostic to run after training, before trusting a rollout: the denoising identity of
:func:`openmm_mlcg.train.fits.pair_correction.contact_identity_check`, per bead-type pair in contact, on the training
part of the data the config lists (the frames the trainer fitted; the validation part is left out, as in the
trainer). A pair whose difference is many standard errors from zero is a contact the sampler's score gets wrong
where it had data; on the SPE demo this flags the PEO chain end on Li+ (docs/history.md, ablation 10), which
``score.terms.pair_correction_types`` then repairs. The check includes the bundle's priors and pair correction, i.e.
exactly the score the sampler uses.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .fits.pair_correction import CONTACT_NM, contact_identity_check, require_equilibrium_score

__all__ = ["check_bundle", "check_model", "rank_pairs", "format_report", "FLAG_Z", "FLAG_MIN_SAMPLES"]

#: a pair is flagged when |difference| exceeds this many standard errors (the SE is a lower bound: frames are
#: correlated; on the SPE demo the common contacts are within 3, the chain end on Li+ at 7-15)
FLAG_Z = 5.0
#: ... and it has at least this many pair samples (contacts x noise draws)
FLAG_MIN_SAMPLES = 100


def check_model(model, trajectories: Sequence, mappings: Sequence, contact_nm: float = CONTACT_NM, draws: int = 8,
                seed: int = 1, max_frames: int = 400) -> Dict:
    """The check of a loaded model on CG trajectories (:func:`contact_identity_check`, ranked by :func:`rank_pairs`).

    Returns:
        dict ``contact_nm``, ``draws``, ``n_frames`` (frames used), ``pairs`` ({pair_key: dict(n, target, network,
        difference, se, z) in 1/nm}, largest |z| first) and ``flagged`` (pair keys; see :func:`rank_pairs`).

    Raises:
        ValueError: as :func:`contact_identity_check`.
    """
    pairs, flagged = rank_pairs(contact_identity_check(model, trajectories, mappings, contact_nm, draws, seed,
                                                       max_frames))
    return dict(contact_nm=float(contact_nm), draws=int(draws), pairs=pairs, flagged=flagged,
                n_frames=int(sum(min(len(t.positions), int(max_frames)) for t in trajectories)))


def check_bundle(bundle, config, contact_nm: float = CONTACT_NM, draws: int = 8, seed: int = 1, max_frames: int = 400,
                 out: Optional[str] = None) -> Dict:
    """Run the denoising-identity check of ``bundle`` on the training part of ``config``'s data.

    Args:
        bundle: path of a trained bundle (``model.mlcg``) with ``sampler: cg_langevin``.
        config: the training config (TrainConfig, nested dict or YAML path); only its ``data`` section is used
            (``data.systems`` loaded as the trainer does, through ``data.cache_dir`` or ``training.out_dir/cache``;
            the last ``data.val_fraction`` of every trajectory left out).
        contact_nm: pairs closer than this in the noisy frames count, nm. draws, seed, max_frames: noise draws per
            frame, their RNG seed, frames per trajectory (:func:`contact_identity_check`).
        out: optional JSON path, written atomically.

    Returns:
        dict ``contact_nm``, ``draws``, ``n_frames`` (training frames used), ``pairs`` ({pair_key: dict(n, target,
        network, difference, se, z) in 1/nm, z = difference / se}, largest |z| first) and ``flagged`` (the pair
        keys with |z| > :data:`FLAG_Z` and n >= :data:`FLAG_MIN_SAMPLES`).

    Raises:
        FileNotFoundError: the bundle or a data file is missing. ValueError: invalid config or data, a bundle that
            is not a trained ``"cg_langevin"`` one, a non-positive ``contact_nm`` or ``draws`` < 1.
    """
    from openmm_mlcg.util.io_utils import atomic_write
    from openmm_mlcg.bundle import load_model

    from .config import load_config
    from .sources import load_sources, split_in_time, window_span

    if not Path(bundle).is_file():
        raise FileNotFoundError(f"bundle: file {bundle} does not exist")
    cfg = load_config(config)
    model = load_model(bundle)
    require_equilibrium_score(model.metadata, "bundle", f" in {bundle}")  # before loading the data
    cache = Path(cfg.data.cache_dir) if cfg.data.cache_dir else Path(cfg.training.out_dir) / "cache"
    trajs, maps = load_sources(cfg.data, cache)
    tr_ids, tr, _, _ = split_in_time(trajs, cfg.data.val_fraction, window_span(cfg.data.history, cfg.data.stride))
    result = dict(bundle=str(bundle), **check_model(model, tr, [maps[i] for i in tr_ids], contact_nm, draws, seed,
                                                    max_frames))
    if out is not None:
        with atomic_write(out, "w") as fh:
            json.dump(result, fh, indent=1)
    return result


def rank_pairs(check: Dict[str, Dict[str, float]]) -> Tuple[Dict[str, Dict[str, float]], List[str]]:
    """Add z = difference / se to every pair of a :func:`contact_identity_check` result, order the pairs by |z|
    (largest first; NaN last) and list the flagged ones (|z| > :data:`FLAG_Z`, n >= :data:`FLAG_MIN_SAMPLES`).

    Returns:
        (pairs {pair_key: dict(..., z)}, flagged [pair_key]).
    """
    pairs = {}
    for key, v in check.items():
        z = v["difference"] / v["se"] if v["se"] and math.isfinite(v["se"]) and v["se"] > 0 else float("nan")
        pairs[key] = dict(v, z=z)
    order = sorted(pairs, key=lambda k: -abs(pairs[k]["z"]) if math.isfinite(pairs[k]["z"]) else 0.0)
    pairs = {k: pairs[k] for k in order}
    return pairs, [k for k, v in pairs.items() if v["n"] >= FLAG_MIN_SAMPLES and abs(v["z"]) > FLAG_Z]


def format_report(result: Dict) -> str:
    """The check as a text table (one line per bead-type pair, largest |z| first) and a verdict line."""
    lines = [f"denoising identity at the training frames (contacts < {result['contact_nm']:g} nm, "
             f"{result['n_frames']} frames x {result['draws']} draws), 1/nm:",
             f"{'pair':<32} {'n':>7} {'target':>8} {'network':>8} {'difference':>11} {'se':>6} {'z':>6}"]
    for key, v in result["pairs"].items():
        mark = "  <- flagged" if key in result["flagged"] else ""
        lines.append(f"{key:<32} {v['n']:>7d} {v['target']:>+8.1f} {v['network']:>+8.1f} {v['difference']:>+11.1f} "
                     f"{v['se']:>6.1f} {v['z']:>+6.1f}{mark}")
    if result["flagged"]:
        types = sorted({t for k in result["flagged"] for t in k.split("|")})
        lines.append(f"flagged: {', '.join(result['flagged'])}. The score is wrong at its own training frames for "
                     f"these contacts; score.terms.pair_correction_types (e.g. a rare type among {types}) fits a radial "
                     "correction for them.")
    else:
        lines.append(f"no pair beyond {FLAG_Z:g} standard errors.")
    return "\n".join(lines)
