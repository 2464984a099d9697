"""What limits the learned step on the liquid benchmark (issue 9): training length, generator and model step.

On bench_liquid's work dir (its reference MD; models it has trained are reused): trains (or resumes) the
benchmark's model with the score (ODE) and the stochastic-interpolant generators for 1200 and 4800 steps, and
the interpolant at a 1 ps model step (stride 1), then measures one step from 10 true states of the judging run:
g(r) error and first peak against the judging run's g(r), one-step MSD against the reference's, fraction of
nearest-neighbour distances below the reference's 0.1 % quantile, GNN passes. Also reports the validation NLL
of each model beside the linear-in-history baseline.

Usage: python benchmarks/liquid_learning_curve.py [--work-dir benchmarks/work/liquid] [--out benchmarks/results/current]
       [--threads 2] [--only NAME ...]
Writes <out>/liquid_learning_curve.json. Time: ~20 min per 4800-step model on 2 CPU cores, ~5 min per 1200.
"""
from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _bench_common import environment, write_json  # noqa: E402
from bench_liquid import SCALES, box_of, reference_runs, training_config  # noqa: E402

#: name -> (work-dir subfolder, training steps, stride, score overrides); "model" / "model_interpolant" are
#: bench_liquid's own 1200-step models
MODELS = {
    "score ode, 1200 steps": ("model", 1200, 2, dict(sampler="ode")),
    "interpolant, 1200 steps": ("model_interpolant", 1200, 2, dict(sampler="interpolant")),
    "score ode, 4800 steps": ("model_ode_4800", 4800, 2, dict(sampler="ode")),
    "interpolant, 4800 steps": ("model_itp_4800", 4800, 2, dict(sampler="interpolant")),
    "interpolant, 1200 steps, 1 ps model step": ("model_itp_1ps", 1200, 1, dict(sampler="interpolant")),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work-dir", default=str(HERE / "work" / "liquid"))
    ap.add_argument("--out", default=str(HERE / "results" / "current"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="model names to run (default: all)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from openmm_mlcg.analysis import nearest_neighbour_distances
    from openmm_mlcg.experiments import liquid as L
    from openmm_mlcg.bundle.export import load_bundle
    from openmm_mlcg.train.loop import train_on_trajectories

    sc = dict(SCALES["full"])
    work = Path(args.work_dir) / "full"
    mapping, train_cg, ref_cg = reference_runs(work, sc, args.threads)
    box = box_of(ref_cg)
    rows = {}
    for label, (sub, steps, stride, score) in MODELS.items():
        if args.only and label not in args.only:
            continue
        cfg = training_config(dict(sc, train_steps=steps), work / sub, score_overrides=score)
        cfg["data"]["stride"] = stride
        bundle = load_bundle(train_on_trajectories([train_cg], [mapping], cfg))
        frames = np.asarray(ref_cg.positions, dtype=np.float64)[::stride]
        ref = L.structure_summary(frames, box)
        nn_q = float(np.quantile(ref.pop("nn"), 0.001))
        msd_ref = float(((frames[1:] - frames[:-1]) ** 2).sum(-1).mean())
        k = int(bundle.metadata["history"])
        starts = np.linspace(k + 1, len(frames) - 2, sc["one_step"]).round().astype(int).tolist()
        one = L.one_step(bundle, mapping, frames, box, starts, dict(refine=True, deterministic=False), seed=1)
        g = L.gr(one["predicted"], box, len(ref["g"]))[1]
        nn = nearest_neighbour_distances(one["predicted"], box)
        rows[label] = dict(
            generator=bundle.metadata["sampler"], training_steps=steps, model_time_step_ps=float(stride),  # frames are 1 ps apart
            gnn_passes_per_step=one["gnn_passes_per_step"], gr_error=L.gr_error(g, ref["g"]),
            peak_height=float(g.max()), reference_peak_height=ref["peak_height"],
            msd_ratio=float(((one["predicted"] - frames[np.array(starts)]) ** 2).sum(-1).mean()) / msd_ref,
            nn_below_ref_q001=float(np.mean(nn < nn_q)), val_nll=bundle.metadata.get("val_nll"),
            val_nll_linear_baseline=bundle.metadata.get("val_nll_linear_baseline"))
        print(label, {key: (round(v, 4) if isinstance(v, float) else v) for key, v in rows[label].items()},
              flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "liquid_learning_curve.json", dict(
        benchmark="liquid_learning_curve", created=datetime.datetime.now().isoformat(timespec="seconds"),
        environment=environment(), settings=dict(n_atoms=sc["n_atoms"], one_step_states=sc["one_step"],
                                                 model=sc["model"]), models=rows))
    print(f"wrote {out / 'liquid_learning_curve.json'}")


if __name__ == "__main__":
    main()
