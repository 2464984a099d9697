"""Li+ solvation-shell persistence of the SPE ensemble's boxes: reference MD, short MD and learned models.

For each box of a finished ``bench_spe_ensemble.py`` work dir, the beads that hold an oxygen (PEO ether
beads, the TFSI- sulfonyl bead) within ``--cutoff`` of a Li+ are its shell (:func:`openmm_mlcg.analysis.
residence.shell_occupancy`). Reported: the mean shell size and the intermittent residence correlation C(t)
(:func:`~openmm_mlcg.analysis.residence.residence_correlation`) at 2-100 ps of the reference's judging window,
of short MD (the training part) and of each given bundle rolled out from the box's last training frames
(``LearnedIntegrator(transfer=True)``, as the ensemble benchmark does), all sampled every model step (2 ps).
C(100 ps) near 1 means each Li+ keeps its segments over the window, the slow step of Li+ transport in PEO;
a model that exchanges shells faster gives a larger Li+ D and a Li+-pair RDF that loses the box's shells.

Usage: python benchmarks/spe_li_shell.py --work-dir benchmarks/work/spe_ensemble [--boxes 0 1 2 3]
       --model default=PATH [--model other=PATH ...] [--cutoff 0.32]
       [--out benchmarks/results/current/spe_li_shell.json]
Cost: ~10 s of rollout per model and box on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _bench_common import environment, named_bundles, write_json  # noqa: E402

LAGS_PS = (2, 4, 10, 20, 50, 100)


def shell_stats(x, box, li, ligands, cutoff, frame_ps: float) -> dict:
    """Mean shell size and C(t) at ``LAGS_PS`` (None beyond the trajectory's half length)."""
    from openmm_mlcg.analysis.residence import residence_correlation, shell_occupancy

    h = shell_occupancy(x, box, li, ligands, cutoff)
    c = residence_correlation(h)
    lags = {t: int(round(t / frame_ps)) for t in LAGS_PS}
    return dict(shell_size=float(h.sum(-1).mean()),
                C={str(t): (float(c[k]) if k < c.size else None) for t, k in lags.items()})


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work-dir", type=Path, required=True)
    ap.add_argument("--boxes", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--model", action="append", default=[], help="NAME=BUNDLE (repeatable)")
    ap.add_argument("--cutoff", type=float, default=0.32, help="shell radius, nm (first minimum of Li-O g(r))")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "current" / "spe_li_shell.json")
    a = ap.parse_args(argv)
    models = named_bundles(a.model, "--model")
    from openmm_mlcg.data import load_run
    from openmm_mlcg.util.threads import set_threads
    from openmm_mlcg.app.workflow import simulate_learned

    set_threads(2)
    per_box = {}
    for b in a.boxes:
        out = a.work_dir / f"seed{b}"
        summ = json.loads((out / "summary_refined.json").read_text())
        mapping, cg = load_run(out / "reference", group_size=7, seed=b)
        element = np.asarray(mapping.graph.atom_types)
        li = np.unique(mapping.atom_to_bead[element == "Li"])
        lig = np.setdiff1d(np.unique(mapping.atom_to_bead[element == "O"]), li)  # beads holding an oxygen
        dt = float(summ["model_time_step_ps"])
        stride = int(round(dt / float(cg.frame_interval_ps)))
        x, box = np.asarray(cg.positions), np.asarray(cg.box)
        (t0, t1), (j0, j1) = summ["train_frames"], summ["judged_frames"]
        row = {"reference": shell_stats(x[j0:j1:stride], box[j0], li, lig, a.cutoff, dt),
               "short MD": shell_stats(x[t0:t1:stride], box[t0], li, lig, a.cutoff, dt)}
        start = x[summ["rollout_start_frames"]]
        n_steps = int(round(summ["learned_ps"] / dt))
        for name, path in models.items():
            run = simulate_learned(path, mapping, start, box[j0], n_steps, a.work_dir / "li_shell" / f"{name}_box{b}",
                                   seed=0, transfer=True, progress=False)
            row[name] = shell_stats(np.asarray(run["positions"])[1:], box[j0], li, lig, a.cutoff, dt)
        per_box[str(b)] = row
        print(f"box {b}: " + "; ".join(f"{k} n {v['shell_size']:.2f} C(100 ps) {v['C']['100']}"
                                       for k, v in row.items()), flush=True)
    names = list(next(iter(per_box.values())))
    mean = {}
    for n in names:
        rows = [per_box[b][n] for b in per_box]
        mean[n] = dict(shell_size=float(np.mean([r["shell_size"] for r in rows])),
                       C={t: (float(np.mean([r["C"][t] for r in rows])) if all(r["C"][t] is not None for r in rows)
                              else None) for t in rows[0]["C"]})
    res = dict(benchmark="spe_li_shell", cutoff_nm=a.cutoff, ligands="beads holding an oxygen atom",
               lags_ps=list(LAGS_PS), models=models, per_box=per_box, mean_over_boxes=mean,
               environment=environment("cpu"))
    write_json(a.out, res)
    for n, v in mean.items():
        print(f"{n:>14s}: shell size {v['shell_size']:.2f}, C(t) at {LAGS_PS} ps: "
              + " ".join("-" if c is None else f"{c:.2f}" for c in v["C"].values()))
    return res


if __name__ == "__main__":
    main()
