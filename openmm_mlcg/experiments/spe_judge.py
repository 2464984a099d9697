"""The main job's long-time targets: Li+ and TFSI- diffusivities judged against a long reference, with verdicts.

The main job's own reference (the 200 ps after training) is not diffusive, so a D fitted there says nothing about
long-time dynamics (issue 37). A long reference of the same system, run once and shipped at the CG level
(``benchmarks/spe_long_reference.py`` writes ``benchmarks/data/spe_demo_long``: ``cg_trajectory.npz``,
``mapping.npz``, ``recipe.json``), judges instead: D of each species over one fixed lag window (the recipe's
``fit_window_ps``), with a block-average uncertainty for the reference (equal blocks of the long run) and a
replica uncertainty for the learned model (each replica one segment), both from
:func:`openmm_mlcg.analysis.block_diffusivity`. The reference's MSD log-log slope over the window is reported
beside it: within 0.1 of 1 the window is diffusive and D is the diffusivity; below, it is an apparent D of the
subdiffusive regime (the 2-ns demo reference: Li+ 0.47, TFSI- 0.63 at 100-400 ps; a diffusive window needs a
longer reference), still compared like for like between the learned runs and the reference.

Verdict of a ratio D_learned / D_ref against a target factor f (1.5 by default): with s the standard error of
ln(ratio) (the two relative uncertainties in quadrature), **PASS** when |ln ratio| + 2 s <= ln f (within the
target beyond the noise), **FAIL** when |ln ratio| - 2 s > ln f (outside it beyond the noise), else **within
noise** (the measurement cannot tell).

The main job's verdicts, one row per target (:func:`judge_targets`, printed by :func:`format_targets`): Li+ and
TFSI- D within :data:`TARGET_FACTOR` of the long reference (the verdict above); the learned runs' mean RDF error
(over bead-type pairs, vs the main job's reference) at most the short MD's; the learned runs' mean number of
non-bonded bead pairs closer than the smallest collision cut-off at most the reference's + :data:`COLLISION_MARGIN`
per frame. The last two have no uncertainty (``analyze`` pools the replicas' frames: no per-replica RDF or count is
kept) and are judged plainly, PASS or FAIL. A target without the data it needs is "not judged (why)".
"""
from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

__all__ = [
    "COLLISION_MARGIN",
    "TARGET_FACTOR",
    "bead_type_names",
    "format_judgement",
    "format_targets",
    "judge_diffusivity",
    "judge_targets",
    "load_long_reference",
    "species_labels",
    "species_tracks",
    "verdict",
]

#: the diffusivity target of the learned step (issue 38: within 1.5x of the long reference)
TARGET_FACTOR = 1.5
#: close contacts target: learned mean pairs per frame at the smallest cut-off <= the reference's + this
COLLISION_MARGIN = 0.1
#: residue names of the SPE builder (``systems.spe``) -> species
_SPECIES = {"LI": "Li+", "TFS": "TFSI-"}


def species_labels(mapping) -> dict:
    """Analysis labels of the Li+ beads and of the TFSI- molecule centres of mass of an SPE ``mapping``.

    Returns:
        {"li_type": the Li+ bead type or None, "tfsi_types": sorted bead types of the TFSI- beads}.
    """
    graph = mapping.graph
    res = np.asarray(graph.residue_names)
    first_atom = np.array([np.flatnonzero(mapping.atom_to_bead == b)[0] for b in range(mapping.n_beads)])
    li = sorted({mapping.bead_types[b] for b in range(mapping.n_beads) if res[first_atom[b]].upper() == "LI"})
    tfsi = [mapping.bead_types[b] for b in range(mapping.n_beads) if res[first_atom[b]].upper() == "TFS"]
    return dict(li_type=li[0] if li else None, tfsi_types=sorted(set(tfsi)))


def bead_type_names(mapping, polymer: str | None = None) -> dict[str, str]:
    """Readable names of the bead types of an SPE ``mapping``: "<species> <formula>", or "<species>" for a type
    whose beads are whole molecules.

    The species is the residue's (LI -> "Li+", TFS -> "TFSI-", POL -> ``polymer`` or "polymer", any other residue
    its name); the formula is the chemistry type without its hash ("C2H4O_5951" -> "C2H4O"). Types whose names
    would coincide keep their hash ("PEO C2H4O (5951)").

    Returns:
        {bead type: name} for every bead type of ``mapping``.
    """
    res = np.asarray(mapping.graph.residue_names)
    mol = np.asarray(mapping.bead_molecules)
    sizes = np.bincount(mol)
    names: dict[str, str] = {}
    for b, t in enumerate(mapping.bead_types):
        if t in names:
            continue
        r = str(res[mapping.bead_atoms(b)[0]])
        species = _SPECIES.get(r.upper(), (polymer or "polymer") if r.upper() == "POL" else r)
        whole = bool(np.all(sizes[mol[np.asarray(mapping.bead_types) == t]] == 1))
        names[t] = species if whole else f"{species} {t.rsplit('_', 1)[0]}"
    counts = Counter(names.values())
    return {t: f"{n} ({t.rsplit('_', 1)[-1]})" if counts[n] > 1 and "_" in t else n for t, n in names.items()}


def species_tracks(mapping, positions) -> dict[str, np.ndarray]:
    """{"Li+": (..., F, m, 3) Li+ beads, "TFSI-": (..., F, m', 3) TFSI- centres of mass} of CG positions
    (..., F, n, 3) nm (unwrapped; a leading replica axis is kept), the system's centre-of-mass drift removed."""
    from ..analysis.diffusion import centre_of_mass_positions, remove_centre_of_mass_drift
    x = np.asarray(positions, dtype=np.float64)
    lead = x.shape[:-3]
    x = x.reshape((-1,) + x.shape[-3:])
    masses = np.asarray(mapping.bead_masses, dtype=np.float64)
    sp = species_labels(mapping)
    types = np.asarray([str(t) for t in mapping.bead_types])
    tfsi = np.isin(types, sp["tfsi_types"])
    out = {"Li+": [], "TFSI-": []}
    for xi in x:
        xi = remove_centre_of_mass_drift(xi, masses)
        out["Li+"].append(xi[:, types == sp["li_type"]])
        out["TFSI-"].append(centre_of_mass_positions(xi[:, tfsi], masses[tfsi],
                                                     np.asarray(mapping.bead_molecules)[tfsi])[0])
    return {k: np.stack(v).reshape(lead + v[0].shape) for k, v in out.items() if v[0].shape[1]}


def load_long_reference(data_dir, mapping) -> dict:
    """The shipped long reference of the system of ``mapping``: dict(tracks (:func:`species_tracks`), time_ps,
    recipe (with ``fit_window_ps`` and ``blocks``), data_dir).

    Raises:
        FileNotFoundError: a file of ``data_dir`` is missing. ValueError: the reference was coarse-grained with
        another mapping (another system), or its recipe names no fit window.
    """
    from ..data import CGTrajectory

    d = Path(data_dir)
    recipe_path = d / "recipe.json"
    if not recipe_path.is_file():
        raise FileNotFoundError(f"long_reference: {d} has no recipe.json (benchmarks/spe_long_reference.py writes it)")
    recipe = json.loads(recipe_path.read_text())
    if "fit_window_ps" not in recipe or "blocks" not in recipe:
        raise ValueError(f"long_reference: {recipe_path} names no fit_window_ps / blocks (analyse the run with "
                         "benchmarks/spe_long_reference.py first)")
    traj = CGTrajectory.load(d / "cg_trajectory.npz")
    if traj.mapping_hash != mapping.hash:
        raise ValueError(f"long_reference: {d} was coarse-grained with mapping {traj.mapping_hash[:12]}, this run's "
                         f"mapping is {mapping.hash[:12]} (another system or mapping: it cannot judge this run)")
    t = np.asarray(traj.time_ps) - float(traj.time_ps[0])
    return dict(tracks=species_tracks(mapping, traj.positions), time_ps=t, recipe=recipe, data_dir=str(d))


def verdict(ratio: float, relative_se: float, factor: float = TARGET_FACTOR) -> str:
    """"PASS", "FAIL" or "within noise" for a ratio with standard error ``relative_se`` of its log (module
    docstring); "n/a" when the ratio is not a positive finite number."""
    if not (ratio > 0 and math.isfinite(ratio) and math.isfinite(relative_se)):
        return "n/a"
    dev, limit = abs(math.log(ratio)), math.log(factor)
    if dev + 2.0 * relative_se <= limit:
        return "PASS"
    if dev - 2.0 * relative_se > limit:
        return "FAIL"
    return "within noise"


def judge_diffusivity(learned_positions, learned_time_ps, reference: dict, mapping,
                      factor: float = TARGET_FACTOR) -> dict:
    """Learned vs long-reference D per species over the reference's fit window, with uncertainties and a verdict.

    Args:
        learned_positions: (R, F, n, 3) nm unwrapped learned replicas (each replica one segment; R >= 2 for an
            uncertainty). learned_time_ps: (F,) ps. reference: :func:`load_long_reference`. mapping: CGMapping.
        factor: the target ratio.

    Returns:
        {species: dict(reference, learned (:func:`openmm_mlcg.analysis.block_diffusivity` results), ratio,
        ratio_relative_se, verdict)}, plus "fit_window_ps" and "target_factor".

    Raises:
        ValueError: learned runs shorter than the fit window's end.
    """
    from ..analysis.diffusion import block_diffusivity

    window = [float(v) for v in reference["recipe"]["fit_window_ps"]]
    blocks = int(reference["recipe"]["blocks"])
    learned = species_tracks(mapping, learned_positions)
    out: dict[str, object] = {"fit_window_ps": window, "target_factor": float(factor)}
    for sp, ref_x in reference["tracks"].items():
        ref = block_diffusivity(np.array_split(ref_x, blocks), reference["time_ps"], window)
        ref["loglog_slope"] = _loglog_slope(ref_x, reference["time_ps"], window)
        lrn = block_diffusivity(list(learned[sp]), learned_time_ps, window)
        ratio = lrn["D_nm2_per_ps"] / ref["D_nm2_per_ps"] if ref["D_nm2_per_ps"] > 0 else float("nan")
        rel = math.hypot(ref["relative_uncertainty"], lrn["relative_uncertainty"])
        out[sp] = dict(reference=ref, learned=lrn, ratio=float(ratio), ratio_relative_se=float(rel),
                       verdict=verdict(ratio, rel, factor))
    return out


def _loglog_slope(x, time_ps, window) -> float:
    """:func:`openmm_mlcg.analysis.diffusion.loglog_slope` of positions (F, m, 3) over the lag window."""
    from ..analysis.diffusion import loglog_slope, mean_squared_displacement

    lag, msd = mean_squared_displacement(x, time_ps, max_lag_ps=float(window[1]))
    return loglog_slope(lag, msd, window)


def format_judgement(judgement: dict | None) -> list:
    """Summary lines of :func:`judge_diffusivity` (none for None)."""
    if not judgement:
        return []
    w = judgement["fit_window_ps"]
    lines = [f"long-time target: D over lags {w[0]:g}-{w[1]:g} ps vs the long reference, within "
             f"{judgement['target_factor']:g}x (PASS / FAIL beyond 2 standard errors, else within noise):"]
    for sp in ("Li+", "TFSI-"):
        j = judgement.get(sp)
        if j:
            ref, lrn = j["reference"], j["learned"]
            slope = ref.get("loglog_slope", float("nan"))
            kind = "" if abs(slope - 1.0) <= 0.1 else f" (reference MSD slope {slope:.2f} there: an apparent D)"
            lines.append(f"  {sp:<6} reference {ref['D_cm2_per_s']:.3g} cm^2/s +- "
                         f"{100 * ref['relative_uncertainty']:.0f} %, learned {lrn['D_cm2_per_s']:.3g} +- "
                         f"{100 * lrn['relative_uncertainty']:.0f} %: ratio {j['ratio']:.2f} +- "
                         f"{100 * j['ratio_relative_se']:.0f} % -> {j['verdict']}{kind}")
    return lines


_NO_LONG_REFERENCE = "not judged (no long reference of this system given: --long-reference; shipped for the demo box)"


def judge_targets(summary: dict) -> list:
    """The main job's targets (module docstring) judged from a :func:`.spe.run_spe_experiment` summary.

    Args:
        summary: the summary dict (uses ``long_time_targets``, ``metrics``, ``mean_collisions``).

    Returns:
        rows, one per target, each dict(quantity, learned (float or None), uncertainty (1 SE, same unit, or
        None: none), target (text), verdict ("PASS", "FAIL", "within noise" or "not judged (why)"), note (where
        the uncertainty comes from, or why there is none; the D ratio)).
    """
    return [*_diffusivity_rows(summary.get("long_time_targets")), _rdf_row(summary.get("metrics") or {}),
            _collision_row(summary.get("mean_collisions") or {})]


def _row(quantity, learned=None, uncertainty=None, target="", judged="", note="") -> dict:
    return {"quantity": quantity, "learned": learned, "uncertainty": uncertainty, "target": target,
            "verdict": judged, "note": note}


def _diffusivity_rows(judgement: dict | None) -> list:
    """Li+ and TFSI- D rows from :func:`judge_diffusivity` (verdict recomputed with :func:`verdict`)."""
    rows = []
    for sp in ("Li+", "TFSI-"):
        j = (judgement or {}).get(sp)
        if not j:
            rows.append(_row(f"{sp} D (cm^2/s)", target=f"within {TARGET_FACTOR:g}x of a long reference",
                             judged=_NO_LONG_REFERENCE))
            continue
        w, f = judgement["fit_window_ps"], float(judgement.get("target_factor", TARGET_FACTOR))
        lrn, ref = j["learned"], j["reference"]
        rows.append(_row(
            f"{sp} D, lags {w[0]:g}-{w[1]:g} ps (cm^2/s)", lrn["D_cm2_per_s"],
            lrn["D_cm2_per_s"] * lrn["relative_uncertainty"],
            f"within {f:g}x of long ref. {ref['D_cm2_per_s']:.3g} +- "
            f"{ref['D_cm2_per_s'] * ref['relative_uncertainty']:.2g}",
            verdict(j["ratio"], j["ratio_relative_se"], f),
            f"ratio {j['ratio']:.3g} +- {100 * j['ratio_relative_se']:.0f} %; SE over {lrn['n_segments']} "
            f"replicas, ref. over {ref['n_segments']} blocks"))
    return rows


def _rdf_row(metrics: dict) -> dict:
    """Mean RDF error (over the bead-type pairs both have) of "learned" vs "short MD", judged plainly."""
    from ..analysis.report import mean_rdf_errors

    means, n_pairs = mean_rdf_errors(metrics, ("learned", "short MD"))
    if len(means) < 2:
        return _row("RDF error |g - g_ref|", target="<= short MD's",
                    judged="not judged (no RDF error of the learned runs and short MD: no periodic box or reference)")
    learned, short = means["learned"], means["short MD"]
    return _row(f"RDF error, mean over {n_pairs} pairs", learned, None, f"<= short MD's {short:.3g}",
                "PASS" if learned <= short else "FAIL", "no uncertainty: the replicas are pooled, no per-replica RDF")


def _collision_row(mean_collisions: dict) -> dict:
    """Mean close pairs per frame at the smallest cut-off, learned vs reference MD + COLLISION_MARGIN, plainly."""
    learned, ref = mean_collisions.get("learned") or {}, mean_collisions.get("reference MD") or {}
    cutoffs = sorted(set(learned) & set(ref), key=float)
    if not cutoffs or learned[cutoffs[0]] is None or ref[cutoffs[0]] is None:
        return _row("close pairs per frame", target=f"<= reference MD's + {COLLISION_MARGIN:g}",
                    judged="not judged (no collision counts of the learned runs and reference MD)")
    rc = cutoffs[0]
    value, limit = float(learned[rc]), float(ref[rc]) + COLLISION_MARGIN
    return _row(f"close pairs < {float(rc):g} nm per frame", value, None,
                f"<= reference MD's {float(ref[rc]):.3g} + {COLLISION_MARGIN:g}", "PASS" if value <= limit else "FAIL",
                "no uncertainty: mean over frames of the replica-averaged count")


def format_targets(rows: list) -> list:
    """The lines of a table of :func:`judge_targets` rows: quantity, learned +- 1 SE, target, verdict; each
    row's note on an indented line below it."""
    def value(r):
        """The learned cell: value +- SE, or the value without one, or '-'."""
        if r["learned"] is None:
            return "-"
        if r["uncertainty"] is None:
            return f"{r['learned']:.3g}, no uncertainty"
        return f"{r['learned']:.3g} +- {r['uncertainty']:.2g}"

    table = [("quantity", "learned (+- 1 SE)", "target", "verdict", "")]
    table += [(r["quantity"], value(r), r["target"], r["verdict"], r.get("note", "")) for r in rows]
    widths = [max(len(row[c]) for row in table) for c in range(3)]
    lines = [("targets (D: PASS / FAIL beyond 2 standard errors, else within noise; without an uncertainty "
              "PASS / FAIL plainly):")]
    for row in table:
        lines.append("  " + "  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths)) + "  " + row[3])
        if row[4]:
            lines.append(f"      {row[4]}")
    return lines
