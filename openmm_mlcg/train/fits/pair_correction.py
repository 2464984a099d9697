"""Pair correction of the learned equilibrium score, fitted by denoising score matching with the network frozen.

Why: on the SPE demo the Score GNN under-fits the rarest contact, the chain-end (C2H5O) bead on Li+, at its own
training frames. The measure is the denoising identity: for noisy frames x~ = x + sigma z, the optimal score
s* = E[-z / sigma | x~] satisfies E[(s*(x~) + z / sigma) . f(x~)] = 0 for every function f of x~ (tower
property). With f the projection on a Li+-ligand pair's unit vector, the network is off by 16-27 /nm for that
contact in every trained model (five training variants, and a model trained on four boxes), within noise for
the common contacts (docs/history.md, ablation 10). In a rollout the contact moves 0.02 nm outwards in one
model step and its RDF peak is a third of the reference's.

What: for the non-bonded bead-type pairs that involve ``types``, a radial pair score g_ab(r) on hat functions
(:class:`openmm_mlcg.priors.pair_correction.PairCorrection`) is added to the sampler's score (learned + priors) so that the sum
minimises the denoising loss at the sampler's noise level on the training frames. The correction is linear in
its coefficients, so this is ridge least squares in closed form (the normal equations are exactly the identity
above for every basis function), as force matching fits pair forces in multiscale coarse-graining (Izvekov &
Voth, J. Phys. Chem. B 109, 2469 (2005), doi:10.1021/jp044629q), with the denoising target in place of the
mapped forces (too noisy here: docs/history.md, ablation 8). The ridge is chosen by two-fold cross-validation between the
first and the second half of every trajectory in time (contacts persist longer than a half, so this tests
transfer to other contacts), from the statistics the fit accumulates anyway.

The runtime never imports this module: the fitted table travels in the bundle metadata (``pair_correction``).
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import torch

from openmm_mlcg.priors import ScoreTerms, pair_key
from openmm_mlcg.priors.pair_correction import PairCorrection

__all__ = ["fit_pair_correction", "contact_identity_check", "noisy_frames", "require_equilibrium_score", "check_bead_types",
           "pair_correction_quality", "RIDGES", "CONTACT_NM", "MIN_CONTACT_SAMPLES"]

#: ridge strengths tried, relative to the mean diagonal of the normal matrix
RIDGES = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
#: default contact distance of :func:`contact_identity_check`, nm
CONTACT_NM = 0.30
#: a bead-type pair with fewer contact samples (contacts x noise draws) is too noisy to judge (check, fit quality)
MIN_CONTACT_SAMPLES = 100


def require_equilibrium_score(meta, name: str = "model", where: str = "") -> None:
    """Raise ValueError naming ``name`` unless ``meta`` (ModelMetadata) is a trained ``"cg_langevin"`` model, the
    one sampler whose Score GNN is an equilibrium score that the fit and the check apply to."""
    if not meta.generator.equilibrium_score or not meta.score_enabled:
        raise ValueError(f"{name}: expected a trained 'cg_langevin' model, got sampler {meta.sampler!r} "
                         f"(score enabled: {meta.score_enabled}){where}")


def check_bead_types(types, mappings: Sequence, name: str = "types") -> None:
    """Raise ValueError naming ``name`` unless ``types`` is a non-empty list of bead types of ``mappings``; the message
    lists the bead types present with their atoms and residues
    (:func:`openmm_mlcg.cg.bead_types.describe_bead_types`, which prints the same list)."""
    from ...cg.bead_types import describe_bead_types

    names = {str(t) for m in mappings for t in m.bead_types}
    unknown = [t for t in types if str(t) not in names] if types else []
    if not types or unknown:
        odd = f" ({unknown} not among them)" if unknown and len(unknown) < len(types) else ""
        raise ValueError(f"{name}: expected bead types of the training data, got {list(types or [])}{odd}; the data's "
                         f"bead types (openmm_mlcg.train.describe_bead_types(mappings) prints them) are: "
                         f"{describe_bead_types(mappings)}")


def _pairs(names: Sequence[str], types: Sequence[str]) -> list:
    """Sorted keys of the bead-type pairs among ``names`` that involve one of ``types``."""
    return sorted({pair_key(a, b) for a in names for b in names if a in types or b in types})


def fit_pair_correction(model, trajectories: Sequence, mappings: Sequence, types: Sequence[str], draws: int = 8,
                        r_min_nm: float = 0.15, dr_nm: float = 0.0125, r_max_nm: float = 0.5,
                        ridges: Sequence[float] = RIDGES, seed: int = 0, max_frames: int = 400) -> Dict:
    """Fit the pair correction of a trained ``"cg_langevin"`` model (module docstring).

    Args:
        model: :class:`openmm_mlcg.model.CGDynamicsModel` (its metadata complete: sigma, priors); not changed.
        trajectories, mappings: the training CG trajectories (positions (F, n, 3) nm, box (F, 3, 3) nm or None)
            and their :class:`openmm_mlcg.cg.mapping.CGMapping`.
        types: bead-type names; every non-bonded pair that involves one of them gets a correction.
        draws: noise draws per frame. r_min_nm, dr_nm, r_max_nm: knots r_min + k dr up to min(r_max, cutoff), nm.
        ridges: ridge strengths tried (relative to the normal matrix's mean diagonal). seed: noise RNG seed.
        max_frames: at most this many evenly spaced frames per trajectory (the cost is linear in frames x draws).

    Returns:
        dict ``table`` (the metadata's ``pair_correction``: r_min_nm, dr_nm, scores {pair: [K values 1/nm]}),
        ``ridge`` (the chosen one), ``held_out`` ({ridge: change of the mean squared score residual per
        component on the other half, (1/nm)^2, mean of the two folds; < 0: better than no correction}), ``pairs``,
        ``n_frames``, ``draws``, ``identity_check`` ({"before", "after"}: :func:`contact_identity_check` of the
        fitted pairs within the fitted range, with other noise draws, without and with the correction).

    Raises:
        ValueError: the model is not a trained ``"cg_langevin"`` one, ``types`` names no bead type of the
            mappings, a trajectory has fewer than 2 frames, or ``draws`` < 1.
    """
    meta = model.metadata
    require_equilibrium_score(meta)
    check_bead_types(types, mappings, "types")
    names = sorted({str(t) for m in mappings for t in m.bead_types})
    r_hi = min(float(r_max_nm), float(meta.cutoff_nm))
    n_knots = int(np.floor((r_hi - r_min_nm) / dr_nm + 1e-9)) + 1
    if n_knots < 2:
        raise ValueError(f"r_min_nm: expected at least 2 knots below min(r_max_nm, cutoff) = {r_hi} nm, got "
                         f"r_min_nm={r_min_nm}, dr_nm={dr_nm}")
    pairs = _pairs(names, types)
    zero = {"r_min_nm": float(r_min_nm), "dr_nm": float(dr_nm), "scores": {k: [0.0] * n_knots for k in pairs}}
    n_par = len(pairs) * n_knots
    stats = [dict(AtA=torch.zeros(n_par, n_par, dtype=torch.float64), Aty=torch.zeros(n_par, dtype=torch.float64),
                  count=0) for _ in range(2)]
    n_frames, system = 0, None
    for d in noisy_frames(model, trajectories, mappings, draws, seed, max_frames):
        if d["system"] is not system:                   # a new mapping: its rows of the table
            system = d["system"]
            corr = PairCorrection(d["mapping"].bead_types, zero)
            column = torch.tensor([pairs.index(k) for k in corr.keys], dtype=torch.long)  # row -> fitted pair
        fold = stats[int(d["second_half"])]
        y = (d["target"] - d["score"]).reshape(-1)      # what the sampler's score misses, 1/nm
        touched, a = _design(corr, column, d["edges"], n_knots, n_par)
        fold["AtA"] += a.T @ a
        fold["Aty"] += a.T @ y[touched]
        fold["count"] += y.numel()
        n_frames += int(d["draw"] == 0)

    def solve(ata, aty, ridge):
        """Ridge solution (n_par,) of the normal equations, the ridge relative to their mean diagonal."""
        scale = float(torch.diagonal(ata).mean().clamp(min=1e-30))
        return torch.linalg.solve(ata + ridge * scale * torch.eye(n_par, dtype=torch.float64), aty)

    held_out = {}
    for ridge in ridges:
        change = 0.0
        for h in (0, 1):
            c = solve(stats[h]["AtA"], stats[h]["Aty"], ridge)
            other = stats[1 - h]
            change += float(c @ other["AtA"] @ c - 2.0 * c @ other["Aty"]) / max(other["count"], 1)
        held_out[float(ridge)] = change / 2.0
    best = min(held_out, key=held_out.get)
    c = solve(stats[0]["AtA"] + stats[1]["AtA"], stats[0]["Aty"] + stats[1]["Aty"], best).reshape(len(pairs), n_knots)
    table = {"r_min_nm": float(r_min_nm), "dr_nm": float(dr_nm),
             "scores": {k: [float(v) for v in c[i]] for i, k in enumerate(pairs)}}
    check = {}                                          # the identity over the fitted range, other noise draws
    for label, m in (("before", meta), ("after", meta.with_score_term("pair_correction", table))):
        model.metadata = m
        try:
            res = contact_identity_check(model, trajectories, mappings, r_hi, draws, seed + 1, max_frames)
        finally:
            model.metadata = meta
        check[label] = {k: v for k, v in res.items() if k in pairs}
    return dict(table=table, ridge=best, held_out=held_out, pairs=pairs, n_frames=n_frames, draws=int(draws),
                identity_check=check)


def pair_correction_quality(record: Dict, meta=None) -> Dict:
    """The grade (:func:`openmm_mlcg.train.fits.quality.grade`) of a :func:`fit_pair_correction` record: per fitted
    pair with at least :data:`MIN_CONTACT_SAMPLES` contact samples, the miss factor max(1, (|d_after| + se) /
    (|d_before| + se)) of the denoising identity's residual d at contacts (:func:`contact_identity_check`, other
    noise draws than the fit's) with and without the correction: > 1 when the correction leaves the score further
    from the data's target than no correction. The fit is at a bound when cross-validation chose the largest ridge
    of ``RIDGES`` (the data support no correction the grid allows; the smallest ridge is not a bound: the data
    determine the correction). ``meta`` is unused (the signature of every fit's grade).
    """
    from .quality import grade

    check = record.get("identity_check") or {}
    before, after = check.get("before") or {}, check.get("after") or {}
    entries = {}
    for key, b in before.items():
        a = after.get(key)
        if a is None or b["n"] < MIN_CONTACT_SAMPLES:
            continue
        se_b, se_a = (v["se"] if np.isfinite(v["se"]) else 0.0 for v in (b, a))
        d_b, d_a = abs(b["difference"]) + se_b, abs(a["difference"]) + se_a
        entries[key] = (d_b, d_a, max(1.0, d_a / d_b) if d_b > 0 else (1.0 if d_a == 0 else np.inf))
    ridges = [float(r) for r in (record.get("held_out") or {})]
    bound = [f"ridge {record['ridge']:g} (the largest tried)"] if ridges and record.get("ridge") == max(ridges) else []
    advice = ("score.terms.pair_correction_types names the bead types whose contacts get a correction; leave out a "
              "type whose contacts the data sample too rarely (openmm-mlcg check BUNDLE CONFIG lists the contacts and "
              "their samples), or give longer training trajectories.")
    return grade("|identity residual| + se at contacts, 1/nm", ("without correction", "with correction"), entries,
                 bound, advice)


def noisy_frames(model, trajectories: Sequence, mappings: Sequence, draws: int, seed: int, max_frames: int):
    """Yield, for ``draws`` noise draws of at most ``max_frames`` evenly spaced frames per trajectory, the noisy
    frame x~ = x + sigma z at the sampler's sigma and what the identities need: dict(system (an object per
    trajectory), mapping, draw, second_half (the frame is in the trajectory's second half), positions (n, 3) x~ in
    nm, edges (the CG graph on x~), score (n, 3) the sampler's score there (learned + the metadata's priors, 1/nm),
    target (n, 3) -z / sigma, 1/nm).

    Raises:
        ValueError: a trajectory has fewer than 2 frames, or ``draws`` < 1.
    """
    if int(draws) < 1:
        raise ValueError(f"draws: expected >= 1, got {draws}")
    meta = model.metadata
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for traj, mapping in zip(trajectories, mappings):
            x_all = np.asarray(traj.positions)
            if len(x_all) < 2:
                raise ValueError(f"trajectories: expected at least 2 frames each (two halves), got {len(x_all)}")
            system = object()
            graph = model.system_graph(mapping)
            emb = model.embed(graph)
            masses = torch.as_tensor(np.asarray(mapping.bead_masses), dtype=torch.float64)
            sig = meta.cg_langevin_sigmas(masses).to(torch.float64)
            terms = ScoreTerms.from_metadata(meta, mapping.bead_types, graph)
            n = x_all.shape[1]
            for f in np.unique(np.linspace(0, len(x_all) - 1, min(len(x_all), int(max_frames))).round().astype(int)):
                box = None if traj.box is None else torch.as_tensor(np.asarray(traj.box)[f], dtype=torch.float64)
                for k in range(int(draws)):
                    z = torch.randn((n, 3), generator=gen, dtype=torch.float64)
                    xn = torch.as_tensor(x_all[f], dtype=torch.float64) + sig * z
                    edges = model.edges(xn, box, graph.cg_bonds, validate=False)
                    score = model.equilibrium_gns(emb, xn, sig, edges).to(torch.float64) / sig
                    if terms is not None:
                        score = score + terms.score(xn, edges, sig, box)
                    yield dict(system=system, mapping=mapping, draw=k, second_half=f >= len(x_all) // 2, positions=xn,
                               edges=edges, score=score, target=-z / sig)


def contact_identity_check(model, trajectories: Sequence, mappings: Sequence, contact_nm: float = CONTACT_NM,
                           draws: int = 8, seed: int = 1, max_frames: int = 400) -> Dict[str, Dict[str, float]]:
    """How far the sampler's score is from the optimal one at the training frames, per bead-type pair in contact.

    The denoising identity (module docstring) with f = the projection of (e_i - e_j) on the unit vector u~ of every
    non-bonded pair closer than ``contact_nm`` in x~: a score that minimised the denoising loss has
    E[(s_i - s_j) . u~] = E[(-z_i / sigma + z_j / sigma) . u~]. No reference data is needed: a large difference
    means the score is wrong at its own training frames for that contact (SPE demo: the chain-end Li+ contact,
    +27 /nm, 7-9 standard errors; docs/history.md, ablation 10), which ``score.pair_correction_types`` repairs.

    Args:
        model, trajectories, mappings: as :func:`fit_pair_correction`. contact_nm: contact distance, nm.
        draws, seed, max_frames: noise draws per frame, their RNG seed, frames per trajectory.

    Returns:
        {pair_key: dict(n (pair samples), target, network, difference (network - target), se (of the difference
        over the samples; frames are correlated, so it is a lower bound)} in 1/nm, for every type pair with
        contacts.

    Raises:
        ValueError: as :func:`fit_pair_correction` (not a trained ``"cg_langevin"`` model, too few frames, draws
            < 1) or a ``contact_nm`` that is not positive.
    """
    meta = model.metadata
    require_equilibrium_score(meta)
    if not float(contact_nm) > 0:
        raise ValueError(f"contact_nm: expected a positive distance in nm, got {contact_nm!r}")
    names = sorted({str(t) for m in mappings for t in m.bead_types})
    keys = sorted({pair_key(a, b) for a in names for b in names})
    sums = torch.zeros(len(keys), 5, dtype=torch.float64)    # n, sum network, sum target, sum diff, sum diff^2
    system = None
    for d in noisy_frames(model, trajectories, mappings, draws, seed, max_frames):
        if d["system"] is not system:                           # a new mapping: each bead's row of the key table
            system = d["system"]
            index = {t: k for k, t in enumerate(names)}
            code = torch.tensor([index[str(t)] for t in d["mapping"].bead_types], dtype=torch.long)
            key_of = torch.tensor([[keys.index(pair_key(a, b)) for b in names] for a in names], dtype=torch.long)
        edge_index, vec, edge_type = d["edges"]
        src, dst = edge_index[0], edge_index[1]
        r = vec.to(torch.float64).norm(dim=-1)
        keep = (edge_type == 0) & (r < float(contact_nm)) & (src < dst)   # each pair once
        u = -vec[keep].to(torch.float64) / r[keep].unsqueeze(-1)          # from dst to src
        i, j = src[keep], dst[keep]
        net = ((d["score"][i] - d["score"][j]) * u).sum(-1)
        tgt = ((d["target"][i] - d["target"][j]) * u).sum(-1)
        row = key_of[code[i], code[j]]
        for col, v in enumerate((torch.ones_like(net), net, tgt, net - tgt, (net - tgt) ** 2)):
            sums[:, col] += torch.bincount(row, weights=v, minlength=len(keys))
    out = {}
    for key, (n, s_net, s_tgt, s_d, s_d2) in zip(keys, sums.tolist()):
        if n < 1:
            continue
        mean = s_d / n
        var = (s_d2 - n * mean ** 2) / (n - 1) if n > 1 else float("nan")
        out[key] = dict(n=int(n), target=s_tgt / n, network=s_net / n, difference=mean,
                        se=float(np.sqrt(max(var, 0.0) / n)) if n > 1 else float("nan"))
    return out


def _design(corr: PairCorrection, column: torch.Tensor, edges, n_knots: int, n_par: int):
    """The correction's score per coefficient (pair x knot) on the bead components it touches: (rows (m,) into the
    flattened (3 n) score, matrix (m, n_par)); the other rows of the full matrix are zero."""
    src, rows, k0, w, unit = corr.terms(edges)
    col = column[rows] * n_knots + k0
    touched, local = torch.unique(src, return_inverse=True)
    a = torch.zeros(3 * touched.numel(), n_par, dtype=torch.float64)
    for axis in range(3):
        a.index_put_((local * 3 + axis, col), (1 - w) * unit[:, axis], accumulate=True)
        a.index_put_((local * 3 + axis, col + 1), w * unit[:, axis], accumulate=True)
    flat = (touched.unsqueeze(-1) * 3 + torch.arange(3)).reshape(-1)
    return flat, a
