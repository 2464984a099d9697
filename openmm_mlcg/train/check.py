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

from .fits.pair_correction import CONTACT_NM, MIN_CONTACT_SAMPLES, contact_identity_check, require_equilibrium_score

__all__ = ["check_bundle", "check_model", "rank_pairs", "format_report", "check_status", "FLAG_Z", "FLAG_MIN_SAMPLES",
           "STATUSES"]

#: a pair is flagged when |difference| exceeds this many standard errors (the SE is a lower bound: frames are
#: correlated; on the SPE demo the common contacts are within 3, the chain end on Li+ at 7-15)
FLAG_Z = 5.0
#: ... and it has at least this many pair samples (contacts x noise draws)
FLAG_MIN_SAMPLES = MIN_CONTACT_SAMPLES
#: a check's ``status``: a pair flagged; no pair flagged among the pairs with enough samples; no pair with enough
#: samples (nothing was checked: not a pass)
STATUSES = ("flagged", "pass", "nothing_checked")


def check_model(model, trajectories: Sequence, mappings: Sequence, contact_nm: float = CONTACT_NM, draws: int = 8,
                seed: int = 1, max_frames: int = 400) -> Dict:
    """The check of a loaded model on CG trajectories (:func:`contact_identity_check`, ranked by :func:`rank_pairs`).

    Returns:
        dict ``contact_nm``, ``draws``, ``n_frames`` (frames used), ``pairs`` ({pair_key: dict(n, target, network,
        difference, se, z) in 1/nm}, largest |z| first), ``flagged`` (pair keys; see :func:`rank_pairs`) and
        ``status`` (:func:`check_status`).

    Raises:
        ValueError: as :func:`contact_identity_check`.
    """
    pairs, flagged = rank_pairs(contact_identity_check(model, trajectories, mappings, contact_nm, draws, seed,
                                                       max_frames))
    return dict(contact_nm=float(contact_nm), draws=int(draws), pairs=pairs, flagged=flagged,
                status=check_status(pairs, flagged),
                n_frames=int(sum(min(len(t.positions), int(max_frames)) for t in trajectories)))


def check_status(pairs: Dict[str, Dict], flagged: List[str]) -> str:
    """The verdict of a check (one of :data:`STATUSES`): "flagged" when a pair is flagged, "pass" when at least one
    pair had :data:`FLAG_MIN_SAMPLES` samples and none is flagged, else "nothing_checked"."""
    if flagged:
        return "flagged"
    return "pass" if any(v["n"] >= FLAG_MIN_SAMPLES for v in pairs.values()) else "nothing_checked"


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
        network, difference, se, z) in 1/nm, z = difference / se}, largest |z| first), ``flagged`` (the pair
        keys with |z| > :data:`FLAG_Z` and n >= :data:`FLAG_MIN_SAMPLES`) and ``status`` (:func:`check_status`:
        "flagged", "pass" or "nothing_checked").

    Raises:
        FileNotFoundError: the bundle or a data file is missing. ValueError: invalid config or data, a bundle that
            is not a trained ``"cg_langevin"`` one, data coarse-grained with another mapping than the one the bundle
            was trained with (:func:`_require_bundle_mapping`), a non-positive ``contact_nm`` or ``draws`` < 1.
    """
    from openmm_mlcg.util.io_utils import atomic_write
    from openmm_mlcg.bundle.export import load_bundle
    from openmm_mlcg.model import CGDynamicsModel

    from .config import load_config
    from .sources import load_sources, split_in_time, window_span

    if not Path(bundle).is_file():
        raise FileNotFoundError(f"bundle: file {bundle} does not exist")
    cfg = load_config(config)
    loaded = load_bundle(bundle)
    model = CGDynamicsModel.from_bundle(loaded, "cpu")
    require_equilibrium_score(model.metadata, "bundle", f" in {bundle}")  # before loading the data
    cache = Path(cfg.data.cache_dir) if cfg.data.cache_dir else Path(cfg.training.out_dir) / "cache"
    trajs, maps = load_sources(cfg.data, cache)
    _require_bundle_mapping(loaded, maps, bundle, config)
    tr_ids, tr, _, _ = split_in_time(trajs, cfg.data.val_fraction, window_span(cfg.data.history, cfg.data.stride))
    result = dict(bundle=str(bundle), **check_model(model, tr, [maps[i] for i in tr_ids], contact_nm, draws, seed,
                                                    max_frames))
    if out is not None:
        with atomic_write(out, "w") as fh:
            json.dump(result, fh, indent=1)
    return result


def _require_bundle_mapping(loaded, mappings: Sequence, bundle, config) -> None:
    """Refuse data coarse-grained with another mapping than the one ``loaded`` (a Bundle) was trained with, by the
    comparison :class:`openmm_mlcg.openmm.LearnedIntegrator` makes (:func:`openmm_mlcg.openmm.checks.resolve_mapping`) (a bundle trained on several mappings records
    none and is not compared).

    Raises:
        ValueError: naming the config's ``data.systems[i]``, the two mapping hashes and the bundle.
    """
    from openmm_mlcg.openmm.checks import resolve_mapping

    where = f"config {config}" if isinstance(config, (str, Path)) else "config"
    for i, m in enumerate(mappings):
        try:
            resolve_mapping(loaded, m)
        except ValueError:
            bound = loaded.metadata.get("mapping_hash") or loaded.mapping.hash
            raise ValueError(f"{where}: data.systems[{i}] was coarse-grained with mapping {m.hash[:12]}..., expected "
                             f"the mapping {bound[:12]}... that bundle {bundle} was trained with (another system, or "
                             f"another data.group_size / data.mapping_seed); check a bundle with the config it was "
                             f"trained from") from None


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
    status = result.get("status") or check_status(result["pairs"], result["flagged"])
    if status == "flagged":
        types = sorted({t for k in result["flagged"] for t in k.split("|")})
        lines.append(f"flagged: {', '.join(result['flagged'])}. The score is wrong at its own training frames for "
                     f"these contacts; score.terms.pair_correction_types (e.g. a rare type among {types}) fits a radial "
                     "correction for them.")
    elif status == "nothing_checked":
        lines.append(f"nothing was checked: no bead-type pair has {FLAG_MIN_SAMPLES} contact samples closer than "
                     f"{result['contact_nm']:g} nm (status: nothing_checked, not a pass); raise --contact-nm or "
                     "--draws, or give more training frames.")
    else:
        lines.append(f"pass: no pair beyond {FLAG_Z:g} standard errors (pairs with >= {FLAG_MIN_SAMPLES} samples).")
    return "\n".join(lines)
