"""Human-readable table of a solid polymer electrolyte run (:func:`.spe.run_spe_experiment`'s summary)."""
from __future__ import annotations

from ..analysis.report import finite_rdf_errors, mean_rdf_errors
from ..analysis.selection import split_pair
from .spe_judge import format_judgement, format_targets, judge_targets

__all__ = ["format_summary"]


def format_summary(summary: dict) -> str:
    """Human-readable table of a :func:`run_spe_experiment` summary, ending with the targets' verdicts
    (:func:`.spe_judge.format_targets` of ``summary["targets"]``, judged from the summary when absent)."""
    d = summary["diffusivity_cm2_per_s"]
    lines = [f"SPE {summary['scale']}: {summary['n_atoms']} atoms -> {summary['n_beads']} beads; model step "
             f"{summary['model_time_step_ps']:g} ps; trained on {summary['training_ps']:g} ps, reference "
             f"{summary['reference_ps']:g} ps, learned {summary.get('learned_replicas', 1)} x "
             f"{summary['learned_ps']:g} ps "
             "(replicas from the same start, pooled)",
             f"{'diffusivity (cm^2/s)':<22}{'Li+':>14}{'TFSI-':>14}"]
    for label in ("learned", "learned, one replica", "short MD", "reference MD"):
        if label not in d:
            continue
        row = d.get(label, {})
        lines.append(f"{label:<22}" + "".join(f"{row.get(sp, float('nan')):>14.3e}" for sp in ("Li+", "TFSI-")))
    lines += _rdf_lines(summary.get("metrics", {}), summary.get("bead_type_key") or {})
    lines += format_judgement(summary.get("long_time_targets"))
    coll = summary.get("mean_collisions", {})
    if coll:
        cutoffs = sorted({rc for v in coll.values() for rc in v}, key=float)
        lines.append("mean non-bonded bead pairs closer than " + ", ".join(f"{rc} nm" for rc in cutoffs) + ":")
        for label, v in coll.items():
            lines.append(f"  {label:<20}" + "".join(f"{v.get(rc, float('nan')):>10.2f}" for rc in cutoffs))
    check = summary.get("score_check")
    if check is not None:
        flagged = check["flagged"]
        lines.append(f"score check at the training frames (contacts < {check['contact_nm']:g} nm; openmm-mlcg check): "
                     + (", ".join(f"{k} {v['difference']:+.1f} +- {v['se']:.1f} /nm" for k, v in flagged.items())
                        if flagged else "no pair flagged"))
    sp = summary["speed"]
    side = sp.get("side_by_side", {})
    two_fs = sp.get("classical_2fs_ns_per_hour")
    lines.append(f"speed, measured side by side in one process ({side.get('seconds_each', float('nan')):g} s each, "
                 f"alternating): learned {sp['learned_ns_per_hour']:.3g} ns/h; classical MD of the same system, best "
                 f"practice ({sp.get('classical_setup') or 'as the reference'}) {sp['classical_ns_per_hour']:.3g} "
                 f"ns/h: ratio {sp['speed_up']:.3g}"
                 + (f"; the reference protocol's 2 fs {two_fs:.3g} ns/h: ratio {sp['speed_up_vs_2fs']:.3g}"
                    if two_fs else ""))
    lines.append(f"  (whole runs, timed at different moments, indicative only: learned run "
                 f"{sp.get('learned_run_ns_per_hour') or float('nan'):.3g} ns/h, reference MD "
                 f"{sp.get('reference_run_ns_per_hour') or float('nan'):.3g} ns/h; see benchmarks/bench_speed.py)")
    lines.append("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in summary["timings_s"].items()))
    lines += format_targets(summary.get("targets") or judge_targets(summary))
    return "\n".join(lines)


def _rdf_lines(metrics: dict, names: dict) -> list:
    """Mean RDF error per label (over the pairs all labels have) and its worst pair (with readable type names)."""
    errors = finite_rdf_errors(metrics)
    means, n_pairs = mean_rdf_errors(metrics)
    if not means:
        return []
    lines = ["RDF error |g - g_ref| vs reference MD, averaged over r (per bead-type pair):"]
    for label, mean in means.items():
        worst = max(errors[label], key=errors[label].get)
        readable = " / ".join(names.get(t, t) for t in split_pair(worst, names))
        lines.append(f"  {label:<22}mean over {n_pairs} pairs {mean:.3f}, worst {worst}"
                     + (f" ({readable})" if readable != worst else "") + f" {errors[label][worst]:.3f}")
    return lines
