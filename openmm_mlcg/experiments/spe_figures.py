"""Figures and the saved outputs of the SPE experiment (:mod:`.spe`): the headline panels, readable bead-type names,
and :func:`redraw_figures` / :func:`refresh_outputs`, which draw every figure again from the saved summary and
analysis.json (and recompute the targets) without rerunning anything."""
from __future__ import annotations

import json
import math
from pathlib import Path


from ..util.io_utils import atomic_write
from .spe_judge import TARGET_FACTOR, bead_type_names, judge_targets, verdict

__all__ = ["redraw_figures", "refresh_outputs"]


def _d_unit(values) -> tuple:
    """(factor, y label) showing diffusivities ``values`` (cm^2/s) as numbers of order 1: D / 10^p cm^2/s."""
    top = max((abs(v) for v in values if v is not None and math.isfinite(v) and v != 0), default=1.0)
    power = math.floor(math.log10(top))
    return 10.0 ** -power, (r"D (cm$^2$/s)" if power == 0 else rf"D (10$^{{{power}}}$ cm$^2$/s)")


def _scaled(values: dict, factor: float) -> dict:
    """``{series: {group: (value, se)}}`` times ``factor`` (None stays None)."""
    return {s: {g: tuple(None if v is None else v * factor for v in pair) for g, pair in per.items()}
            for s, per in values.items()}


def _judged_d_panel(judged: dict):
    """Bar panel of the long-time judgement (:func:`.spe_judge.judge_diffusivity`): learned and long-reference D
    per species, +-1 SE (replicas / blocks), the target range around the reference, the verdict under each."""
    from ..analysis.plots import BarPanel

    w, f = judged["fit_window_ps"], float(judged.get("target_factor", TARGET_FACTOR))
    values, bands, counts = {"learned": {}, "long reference": {}}, {}, {}
    for sp in ("Li+", "TFSI-"):
        j = judged.get(sp)
        if not j:
            continue
        group = f"{sp}: {verdict(j['ratio'], j['ratio_relative_se'], f)}\nratio {j['ratio']:.3g}"
        for series, key in (("learned", "learned"), ("long reference", "reference")):
            d = j[key]
            values[series][group] = (d["D_cm2_per_s"], d["D_cm2_per_s"] * d["relative_uncertainty"])
            counts[series] = d["n_segments"]
        bands[group] = (j["reference"]["D_cm2_per_s"] / f, j["reference"]["D_cm2_per_s"] * f)
    factor, ylabel = _d_unit([v for per in values.values() for v, _ in per.values()])
    return BarPanel(f"D over lags {w[0]:g}-{w[1]:g} ps vs the long reference; +-1 SE over "
                    f"{counts.get('learned', 0)} replicas / {counts.get('long reference', 0)} blocks; grey: within "
                    f"{f:g}x", ylabel, _scaled(values, factor),
                    {g: (lo * factor, hi * factor) for g, (lo, hi) in bands.items()})


def _headline_panels(summary: dict) -> list:
    """headline.png's bar panels (:class:`openmm_mlcg.analysis.plots.BarPanel`) from a summary: the long-time D
    judgement (when there is one), D fitted over the judged window per run, the mean RDF error per run."""
    from ..analysis.plots import BarPanel
    from ..analysis.report import mean_rdf_errors

    panels = [_judged_d_panel(summary["long_time_targets"])] if summary.get("long_time_targets") else []
    d = summary.get("diffusivity_cm2_per_s") or {}
    if any(d.values()):
        factor, ylabel = _d_unit([v for per in d.values() for v in per.values()])
        panels.append(BarPanel(f"D fitted over the {summary.get('reference_ps', float('nan')):g}-ps judged window "
                               "(one estimate per run: no uncertainty)", ylabel,
                               _scaled({label: {sp: (v, None) for sp, v in per.items()} for label, per in d.items()},
                                       factor)))
    means, n_pairs = mean_rdf_errors(summary.get("metrics") or {})
    if means:
        panels.append(BarPanel(f"RDF error vs reference MD, mean over {n_pairs} bead-type pairs (replicas pooled: "
                               "no uncertainty)", r"mean $|g - g_{ref}|$",
                               {label: {label: (v, None)} for label, v in means.items()}))
    return panels


def _bead_fields(mapping, polymer: str | None) -> dict:
    """The summary's bead blocks: "bead_type_key" {type: readable name} and "beads" {"types", "molecules"}
    (per bead, what the figures choose RDF panels by)."""
    return {"bead_type_key": bead_type_names(mapping, polymer),
            "beads": {"types": [str(t) for t in mapping.bead_types],
                      "molecules": [int(m) for m in mapping.bead_molecules]}}


def _ensure_bead_fields(summary: dict, out: Path) -> dict:
    """``summary`` with its bead blocks, from ``out/train/mapping.npz`` when it was written without them.

    Raises:
        FileNotFoundError: neither the blocks nor the mapping file.
    """
    if summary.get("beads") and summary.get("bead_type_key") is not None:
        return summary
    from ..cg.mapping import CGMapping

    path = out / "train" / "mapping.npz"
    if not path.is_file():
        raise FileNotFoundError(f"out_dir: the summary has no bead types and {path} does not exist")
    return {**summary, **_bead_fields(CGMapping.load(path), (summary.get("system") or {}).get("polymer"))}


def _read_summary(out: Path, tag: str) -> dict:
    path = out / f"summary_{tag}.json"
    if not path.is_file():
        raise FileNotFoundError(f"out_dir: {path} does not exist (run run_spe_experiment first)")
    return json.loads(path.read_text())


def _write_summary(out: Path, tag: str, summary: dict) -> None:
    with atomic_write(out / f"summary_{tag}.json", "w") as fh:
        json.dump(summary, fh, indent=1, default=lambda o: None)


def redraw_figures(out_dir, tag: str = "refined", summary: dict | None = None) -> list:
    """Draw every figure of a run again from its saved outputs, nothing rerun: headline.png (summary), msd.png,
    rdf.png and collisions.png (``analysis_<tag>/analysis.json``), training_loss.png (``train/log.csv``).

    Args:
        out_dir: the run's output directory.  tag: its summary's tag ("refined", "norefine", "refined_mean", ...).
        summary: the summary dict (default: read ``out_dir/summary_<tag>.json``).

    Returns:
        the written paths (str), in ``out_dir/analysis_<tag>``.

    Raises:
        FileNotFoundError: a missing summary or analysis.json, or no bead types (neither in the summary nor
        ``train/mapping.npz``).
    """
    from ..analysis.plots import plot_headline, plot_training_log
    from ..analysis.report import load_analysis, plot_observables

    out = Path(out_dir)
    summary = _ensure_bead_fields(_read_summary(out, tag) if summary is None else summary, out)
    adir = out / f"analysis_{tag}"
    analysis = load_analysis(adir)
    figs = plot_observables(analysis["observables"], adir, analysis.get("reference"), summary["beads"]["types"],
                            summary["beads"]["molecules"], analysis.get("metrics"), summary["bead_type_key"])
    figs.append(plot_headline(_headline_panels(summary), adir / "headline.png",
                              title=f"SPE {summary.get('scale', '')}: learned ({tag}) vs short MD vs reference MD"))
    log = out / "train" / "log.csv"
    if log.is_file():
        figs.append(plot_training_log(log, adir / "training_loss.png"))
    return [str(f) for f in figs]


def refresh_outputs(out_dir, tag: str = "refined") -> dict:
    """Bring a saved run's summary up to date from its own numbers, nothing rerun: the bead-type key and per-bead
    types (from ``train/mapping.npz`` when missing), the targets (:func:`.spe_judge.judge_targets`) and the
    figures (:func:`redraw_figures`); ``out_dir/summary_<tag>.json`` is rewritten.

    Returns:
        the updated summary.

    Raises:
        FileNotFoundError: as :func:`redraw_figures`.
    """
    out = Path(out_dir)
    summary = _ensure_bead_fields(_read_summary(out, tag), out)
    summary["targets"] = judge_targets(summary)
    summary["figures"] = redraw_figures(out, tag, summary)
    _write_summary(out, tag, summary)
    return summary
