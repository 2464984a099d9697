"""The issue-9 long rollout: a bench_liquid bundle (default: the cg_langevin model, the default sampler) for >= 1e4 model steps.

Runs ``LearnedIntegrator`` in an ``app.Simulation`` (via :func:`openmm_mlcg.app.workflow.simulate_learned`) from the
start of the judging run, then reports g(r) error, first peak, D / D_ref (centre-of-mass frame) and the fraction
of nearest-neighbour distances below the reference's 0.1 % quantile, plus the g(r) error of each quarter of
the rollout (a drift of the structure over time would show there).

Usage: python benchmarks/liquid_long_rollout.py [--steps 10000] [--work-dir benchmarks/work/liquid]
       [--out benchmarks/results/current] [--threads 2]      (after bench_liquid.py; ~20 min per 1e4 steps, 2 cores)
Writes <out>/liquid_long_rollout.json.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _bench_common import environment, write_json  # noqa: E402
from bench_liquid import SCALES, STRIDE, box_of, reference_runs  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--work-dir", default=str(HERE / "work" / "liquid"))
    ap.add_argument("--out", default=str(HERE / "results" / "current"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="model_cg_langevin", help="model directory under the work dir's full/")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from openmm_mlcg.experiments import liquid as L
    from openmm_mlcg.bundle.export import load_bundle
    from openmm_mlcg.model import CGDynamicsModel
    from openmm_mlcg.app.workflow import simulate_learned

    work = Path(args.work_dir) / "full"
    bundle_path = work / args.model / "model.mlcg"
    if not bundle_path.is_file():
        raise SystemExit(f"{bundle_path}: not found; run benchmarks/bench_liquid.py first")
    mapping, _, ref_cg = reference_runs(work, SCALES["full"], args.threads)
    frames = np.asarray(ref_cg.positions)[::STRIDE]
    box = box_of(ref_cg)
    masses = np.asarray(mapping.bead_masses, dtype=np.float64)
    fit = (10.0, 100.0)
    ref = L.reference_summary(frames, np.arange(len(frames)) * 2.0, box, masses, fit)
    bundle = load_bundle(bundle_path)
    k = int(bundle.metadata["history"])
    t0 = time.perf_counter()
    out = simulate_learned(bundle, mapping, frames[:k + 1], box, args.steps, work / "rollouts" / f"long_{args.model}",
                           report_interval=max(1, args.steps // 2000), refine=True, deterministic=False, seed=3)
    wall = time.perf_counter() - t0
    x = out["positions"]
    m = L.rollout_metrics(x, out["time_ps"], box, masses, ref, fit, burn_in=max(1, len(x) // 10))
    q = len(x) // 4
    quarters = [L.gr_error(L.structure_summary(x[i * q:(i + 1) * q], box)["g"], ref["g"]) for i in range(4)]
    row = dict(n_steps=args.steps, model_time_step_ps=2.0, sampler=bundle.metadata["sampler"],
               gnn_passes_per_step=CGDynamicsModel.from_bundle(bundle).gnn_passes_per_step(True), wall_s=wall,
               seconds_per_step=wall / args.steps, gr_error=m["gr_error"], peak_height=m["peak_height"],
               reference_peak_height=ref["peak_height"], D_ratio=m["D_ratio"],
               nn_below_ref_q001=m["nn_below_ref_q001"], gr_error_by_quarter=quarters)
    print({key: (round(v, 4) if isinstance(v, float) else v) for key, v in row.items()})
    Path(args.out).mkdir(parents=True, exist_ok=True)
    write_json(Path(args.out) / "liquid_long_rollout.json", dict(
        benchmark="liquid_long_rollout", created=datetime.datetime.now().isoformat(timespec="seconds"),
        environment=environment(), result=row))


if __name__ == "__main__":
    main()
