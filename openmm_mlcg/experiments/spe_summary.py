"""Human-readable table of a solid polymer electrolyte run (:func:`.spe.run_spe_experiment`'s summary)."""
from __future__ import annotations

import numpy as np

from .spe_judge import format_judgement

__all__ = ["format_summary"]


def format_summary(summary: dict) -> str:
    """Human-readable table of a :func:`run_spe_experiment` summary."""
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
    rdf = {label: m.get("rdf_mae", {}) for label, m in summary.get("metrics", {}).items() if m.get("rdf_mae")}
    if rdf:
        lines.append("RDF error |g - g_ref| vs reference MD, averaged over r (per bead-type pair):")
        for label, v in rdf.items():
            vals = {pair: e for pair, e in v.items() if e is not None and np.isfinite(e)}
            if vals:
                worst = max(vals, key=vals.get)
                lines.append(f"  {label:<22}mean over {len(vals)} pairs {np.mean(list(vals.values())):.3f}, "
                             f"worst {worst} {vals[worst]:.3f}")
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
    lines.append(f"speed, measured side by side in one process ({side.get('seconds_each', float('nan')):g} s each, "
                 f"alternating): learned {sp['learned_ns_per_hour']:.3g} ns/h, classical MD of the same system "
                 f"{sp['classical_ns_per_hour']:.3g} ns/h, ratio {sp['speed_up']:.3g}")
    lines.append(f"  (whole runs, timed at different moments, indicative only: learned run "
                 f"{sp.get('learned_run_ns_per_hour') or float('nan'):.3g} ns/h, reference MD "
                 f"{sp.get('reference_run_ns_per_hour') or float('nan'):.3g} ns/h; see benchmarks/bench_speed.py)")
    lines.append("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in summary["timings_s"].items()))
    return "\n".join(lines)
