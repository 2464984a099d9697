"""Long model steps on the electrolyte: the cost-accuracy frontier of the "jump and relax" step (issue 38, item 2).

Data: the SPE demo box's committed 2-ns reference (``benchmarks/data/spe_demo_long``, CG frames every 2 ps), as
``bench_electrolyte.py``: one model per model step dt, trained on the first ``--part-ps`` (400 ps) with the
**trainer's defaults** and the demo model sizes (scale), the model step = stride x 2 ps. Routes:

- ``default``: the shipped step at dt (Langevin sub-steps spanning the model step; at dt = 2 ps the current default);
- ``jump+relax``: ``score.cg_langevin.relax_ps`` = the data's frame interval (2 ps): the Dynamics GNN's Gaussian
  draw over dt, then the same 15 Langevin sub-steps over 2 ps (``openmm_mlcg.generators.cg_langevin``);
- ``Dynamics GNN alone``: the same bundle unrefined (the independent per-bead Gaussian of paper section 3).

Each runs ``--replicas`` learned runs of ``--learned-ps`` through ``LearnedIntegrator`` in ``app.Simulation``
from the end of the training part, judged on the whole 2-ns reference as ``bench_electrolyte.py``: Li+ and TFSI- D
over the reference's lag window (100-400 ps) with the verdict at 1.5x, the RDF error (mean over bead-type pairs of
mean |g - g_ref|, 0-1 nm) of the frames after 100 ps, and beside it the RDF error of MD frames (the reference after
the training part) and of the 2-ps default's frames, both at the SAME number of frames (the metric falls with the
frame count), and the learned simulated ns per wall hour.

``--system liquid``: the LJ argon liquid of ``bench_liquid.py`` (its cached 2 x 4 ns of MD, frames every 1 ps; the
trainer's defaults at the benchmark's scale, as ``bench_liquid.py --defaults``), relax_ps = 1 ps (its frame
interval), one rollout of ``--learned-ps`` judged as bench_liquid: g(r) error, first-peak height, D / D_ref
(centre-of-mass frame), nearest-neighbour distances below the reference's 0.1 % quantile.

Usage: python benchmarks/bench_long_step.py [--steps-ps 2 10 20 50] [--train-steps 1600] [--replicas 2]
       [--learned-ps 1000] [--threads 1] [--out benchmarks/results/current]
       python benchmarks/bench_long_step.py --system liquid --steps-ps 2 10 --learned-ps 4000
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _bench_common import environment, train_once, write_json  # noqa: E402
from bench_electrolyte import DATA, R_MAX_NM, learned_runs, load_data, rdf_error  # noqa: E402

BURN_PS = 100.0


def train(mapping, part, out_dir: Path, stride: int, steps: int, seed: int, temperature_K: float,
          relax_ps=None):
    """One model at the model step stride x frame interval: trainer defaults + scale (+ the route's relax_ps)."""
    from openmm_mlcg.experiments.scales import SPE

    score = {} if relax_ps is None else dict(cg_langevin=dict(relax_ps=float(relax_ps)))
    cfg = dict(data=dict(temperature_K=temperature_K, stride=stride), model=dict(SPE["demo"]["model"]),
               score=score, training=dict(n_steps=steps, eval_every=max(1, steps // 5),
                                          checkpoint_every=max(1, steps // 10), seed=seed, progress=False))
    return train_once([part], [mapping], cfg, out_dir)


def time_side_by_side(bundles: dict, mapping, x, box, stride_of: dict, ref_dir: Path, seconds: float) -> dict:
    """Simulated ns per wall hour of each learned bundle (refined) and of classical MD of the same all-atom box
    (the best-practice HMR 3 amu / 4 fs baseline and the reference's 2 fs protocol), timed alternately in this
    process (``experiments.speed.side_by_side_many``), so all see the same load. ``ref_dir``: the main job's
    reference run of this box (``examples/output/spe_demo/reference``, build seed 0)."""
    from openmm_mlcg.experiments.scales import SPE
    from openmm_mlcg.experiments.spe import BEST_PRACTICE_MD, _learned_simulation, md_simulation
    from openmm_mlcg.experiments.speed import side_by_side_many
    from openmm_mlcg.bundle.export import load_bundle
    from openmm_mlcg.systems import spe

    sims = {}
    if (ref_dir / "metadata.json").is_file():
        system = spe.build_spe(seed=0, **SPE["demo"]["build"])
        sims["MD, HMR 3 amu, 4 fs"] = md_simulation(system, ref_dir, None, 0,
                                                     time_step_ps=BEST_PRACTICE_MD["time_step_ps"],
                                                     hydrogen_mass_amu=BEST_PRACTICE_MD["hydrogen_mass_amu"])
        sims["MD, 2 fs (reference protocol)"] = md_simulation(system, ref_dir, None, 0)
    for name, bundle in bundles.items():
        k, stride = int(load_bundle(bundle).metadata["history"]), stride_of[name]
        start = x[len(x) - 1 - k * stride::stride][:k + 1]
        sims[name] = _learned_simulation(bundle, mapping, start, box, True, False, 0, None)
    return side_by_side_many(sims, seconds=seconds, rounds=2)


def liquid(a) -> list:
    """Rows of the LJ liquid (module docstring, ``--system liquid``)."""
    from bench_liquid import SCALES, box_of, reference_runs, training_config

    from openmm_mlcg.app.workflow import simulate_learned
    from openmm_mlcg.bundle.export import load_bundle
    from openmm_mlcg.experiments import liquid as L
    from openmm_mlcg.model.core import CGDynamicsModel

    sc = dict(SCALES["full"])
    work = HERE / "work" / "liquid" / "full"
    mapping, train_cg, ref_cg = reference_runs(work, sc, a.threads)
    box, frame_ps = box_of(ref_cg), 1.0
    masses = np.asarray(mapping.bead_masses, dtype=np.float64)
    x = np.asarray(ref_cg.positions)
    ref = L.reference_summary(x[::2], np.arange(len(x[::2])) * 2.0, box, masses, sc["fit"])
    rows = []
    for step_ps in sorted(a.steps_ps):
        stride = int(round(step_ps / frame_ps))
        for route in a.routes:
            if (route == "jump+relax" and stride <= 1) or (route == "default" and stride > 2 and not a.plain_long):
                continue
            jumps = (route == "jump+relax" and stride > 1) or (route == "Dynamics GNN alone" and stride > 2)
            relax = (a.relax_ps or frame_ps) if jumps else None
            out_dir = a.work_dir / (f"liquid_dt{step_ps:g}_" + ("plain" if not relax else "relax" if relax == frame_ps
                                                                else f"relax{relax:g}"))
            cfg = training_config(sc, out_dir, defaults=True)
            cfg["data"]["stride"] = stride
            if relax:
                cfg["score"] = dict(cg_langevin=dict(relax_ps=relax))
            bundle, train_wall = train_once([train_cg], [mapping], cfg, out_dir)
            k = int(load_bundle(bundle).metadata["history"])
            refine = route != "Dynamics GNN alone"
            n_steps = int(round(a.learned_ps / step_ps))
            run_dir = out_dir / f"rollout_{'refined' if refine else 'unrefined'}_{n_steps}"
            cache = run_dir / "rollout.npz"
            if not cache.is_file():
                o = simulate_learned(bundle, mapping, x[:k * stride + 1:stride], box, n_steps, run_dir,
                                     report_interval=1, refine=refine, seed=3)
                np.savez(cache, positions=o["positions"], time_ps=o["time_ps"], ns_per_hour=o["ns_per_hour"])
            out = np.load(cache)
            m = L.rollout_metrics(out["positions"], out["time_ps"], box, masses, ref, sc["fit"],
                                  burn_in=max(1, len(out["positions"]) // 10))
            row = dict(system="LJ liquid", model_step_ps=step_ps, route=route, relax_ps=relax, stride=stride,
                       history=k, training_wall_s=train_wall, frames=len(out["positions"]),
                       gr_error=m["gr_error"], peak_height=m["peak_height"], D_ratio=m["D_ratio"],
                       nn_below_ref_q001=m["nn_below_ref_q001"],
                       gnn_passes_per_step=CGDynamicsModel.from_bundle(load_bundle(bundle)).gnn_passes_per_step(refine),
                       learned_ns_per_hour=float(out["ns_per_hour"]))
            rows.append(row)
            print(f"liquid dt {step_ps:g} ps {route}: g(r) error {m['gr_error']:.3f}, peak {m['peak_height']:.2f} "
                  f"(ref {float(np.max(ref['g'])):.2f}), D x{m['D_ratio']:.2f}, NN overlaps "
                  f"{100 * m['nn_below_ref_q001']:.1f} %, {row['gnn_passes_per_step']} passes, "
                  f"{row['learned_ns_per_hour']:.0f} ns/h", flush=True)
    return rows


def markdown(res: dict) -> str:
    """The electrolyte rows of a result as a Markdown table (docs/benchmarks.md)."""
    speed = res.get("side_by_side") or {}
    lines = ["| model step | route | GNN passes / step | RDF error (per replica) | MD, 2-ps default at the same frames "
             "| Li+ D / ref | TFSI- D / ref | ns / wall hour, side by side |", "|---" * 8 + "|"]
    for r in res["rows"]:
        d = r["diffusivity"]
        dd = [f"{d[sp]['ratio']:.2f}x +- {100 * d[sp]['ratio_relative_se']:.0f} %" if isinstance(d, dict) else "n/a"
              for sp in ("Li+", "TFSI-")]
        reps = ", ".join(f"{v:.3f}" for v in (r.get("rdf_error_by_replica") or []))
        base = r["rdf_error_2ps_default_same_frames"]
        v = speed.get(f"learned, {r['model_step_ps']:g} ps {r['route']}", {}).get("ns_per_hour")
        lines.append(f"| {r['model_step_ps']:g} ps | {r['route']} | {r['gnn_passes_per_step']} | "
                     f"{r['rdf_error']:.3f} ({reps}) | {r['rdf_error_md_same_frames']:.3f}, "
                     f"{'' if base is None else f'{base:.3f}'} | {dd[0]} | {dd[1]} | {'' if v is None else f'{v:.3g}'} |")
    for name, v in speed.items():
        if name.startswith("MD"):
            lines.append(f"| | {name} | | | | | | {v['ns_per_hour']:.3g} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from openmm_mlcg.analysis import rdf_by_type
    from openmm_mlcg.bundle.export import load_bundle
    from openmm_mlcg.experiments.spe_judge import judge_diffusivity, species_tracks

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps-ps", type=float, nargs="+", default=[2.0, 10.0, 20.0, 50.0])
    ap.add_argument("--part-ps", type=float, default=400.0)
    ap.add_argument("--train-steps", type=int, default=1600)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--learned-ps", type=float, default=1000.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--routes", nargs="+", default=["default", "jump+relax", "Dynamics GNN alone"])
    ap.add_argument("--data-dir", type=Path, default=DATA)
    ap.add_argument("--work-dir", type=Path, default=HERE / "work" / "bench_long_step")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "current")
    ap.add_argument("--name", default="long_step")
    ap.add_argument("--system", choices=["electrolyte", "liquid"], default="electrolyte")
    ap.add_argument("--relax-ps", type=float, help="liquid: relax_ps of the long steps (default: the frame interval)")
    ap.add_argument("--time-s", type=float, default=0.0,
                    help="wall seconds per simulation of a side-by-side timing with classical MD (0: none)")
    ap.add_argument("--md-reference", type=Path, default=HERE.parent / "examples" / "output" / "spe_demo" / "reference",
                    help="the main job's reference run of the box (all-atom MD for the side-by-side timing)")
    ap.add_argument("--plain-long", action="store_true",
                    help="also train and run the plain step (sub-steps spanning dt) at every dt > the frame interval")
    a = ap.parse_args(argv)
    import torch
    torch.set_num_threads(a.threads)
    t_all = time.perf_counter()
    if a.system == "liquid":
        res = dict(benchmark="long model steps, LJ liquid (bench_liquid full data)", rows=liquid(a),
                   scale=dict(learned_ps=a.learned_ps), wall_s=time.perf_counter() - t_all,
                   command="python " + " ".join(sys.argv))
        res.update(environment("cpu"))
        write_json(a.out / f"{a.name}.json", res)
        return 0
    mapping, traj, recipe = load_data(a.data_dir)
    x, t = np.asarray(traj.positions), np.asarray(traj.time_ps) - float(traj.time_ps[0])
    dt = float(recipe["frame_interval_ps"])
    box = np.asarray(traj.box[0] if np.ndim(traj.box) == 3 else traj.box)
    types = np.asarray([str(b) for b in mapping.bead_types])
    reference = dict(tracks=species_tracks(mapping, x), time_ps=t, recipe=recipe)
    ref_rdf = rdf_by_type(x, box, types, r_max_nm=R_MAX_NM, n_bins=60)
    n = int(round(a.part_ps / dt)) + 1
    part = traj.slice(0, n)
    temperature = float(recipe["md_metadata"]["temperature_K"])
    rows, base_frames = [], None
    for step_ps in sorted(a.steps_ps):
        stride = int(round(step_ps / dt))
        if stride < 1 or abs(stride * dt - step_ps) > 1e-6:
            raise ValueError(f"--steps-ps: expected multiples of the frame interval {dt:g} ps, got {step_ps:g}")
        for route in a.routes:
            if route == "jump+relax" and stride == 1:
                continue                                   # relax_ps = the model step: the default itself
            if route == "default" and stride > 1 and not a.plain_long:
                continue                                   # the plain long step (sigma grows with dt): --plain-long
            relax = dt if route in ("jump+relax", "Dynamics GNN alone") and stride > 1 else None
            tag = f"dt{step_ps:g}_{'relax' if relax else 'plain'}_s{a.train_steps}_seed{a.seed}"
            bundle, train_wall = train(mapping, part, a.work_dir / tag, stride, a.train_steps, a.seed, temperature,
                                       relax)
            meta = load_bundle(bundle).metadata
            k = int(meta["history"])
            start = x[n - 1 - k * stride:n:stride]
            n_steps = int(round(a.learned_ps / step_ps))
            refine = route != "Dynamics GNN alone"
            lx, lt, wall = learned_runs(bundle, mapping, start, box, n_steps, a.replicas,
                                a.work_dir / tag / f"{'refined' if refine else 'unrefined'}_{n_steps}", a.seed,
                                        refine)
            burn = max(1, int(round(BURN_PS / step_ps)))
            frames = lx[:, burn:].reshape(-1, *lx.shape[2:])
            if stride == 1 and route == "default":
                base_frames = frames
            m = len(frames)
            md = x[np.linspace(n, len(x) - 1, m).astype(int)]
            base = (rdf_error(base_frames[np.linspace(0, len(base_frames) - 1, m).astype(int)], box, types, ref_rdf)
                    if base_frames is not None else None)
            try:
                judged = judge_diffusivity(lx, lt, reference, mapping)
                dif = {sp: dict(ratio=j["ratio"], ratio_relative_se=j["ratio_relative_se"], verdict=j["verdict"])
                       for sp, j in judged.items() if sp in ("Li+", "TFSI-")}
            except ValueError as e:
                dif = f"not judged: {e}"
            finite = bool(np.isfinite(lx).all())
            row = dict(model_step_ps=step_ps, route=route, relax_ps=relax, stride=stride, history=k, tag=tag,
                       gnn_passes_per_step=None, training_wall_s=train_wall, frames=m, finite=finite,
                       rdf_error=rdf_error(frames, box, types, ref_rdf) if finite else None,
                       rdf_error_by_replica=[rdf_error(r[burn:], box, types, ref_rdf) for r in lx] if finite else None,
                       rdf_error_md_same_frames=rdf_error(md, box, types, ref_rdf),
                       rdf_error_2ps_default_same_frames=base, diffusivity=dif,
                       friction_calibration_lag=(meta.get("friction_calibration") or {}).get("lag"),
                       learned_ns_per_hour=a.replicas * a.learned_ps / 1000.0 / (wall / 3600.0) if wall > 0 else None)
            from openmm_mlcg.model.core import CGDynamicsModel
            row["gnn_passes_per_step"] = CGDynamicsModel.from_bundle(load_bundle(bundle)).gnn_passes_per_step(refine)
            rows.append(row)
            d = ", ".join(f"{sp} D x{v['ratio']:.2f} +- {100 * v['ratio_relative_se']:.0f}%"
                          for sp, v in dif.items()) if isinstance(dif, dict) else dif
            print(f"dt {step_ps:g} ps {route}: RDF error {row['rdf_error']} ({m} frames; MD {row['rdf_error_md_same_frames']:.3f}, "
                  f"2-ps default {base}); {d}; {row['learned_ns_per_hour']:.0f} ns/h, "
                  f"{row['gnn_passes_per_step']} passes", flush=True)
    speed = None
    if a.time_s > 0:
        bundles = {f"learned, {r['model_step_ps']:g} ps {r['route']}": a.work_dir / r["tag"] / "model.mlcg"
                   for r in rows if r["route"] != "Dynamics GNN alone"}
        strides = {f"learned, {r['model_step_ps']:g} ps {r['route']}": r["stride"] for r in rows}
        speed = time_side_by_side(bundles, mapping, x, box, strides, a.md_reference, a.time_s)
        for name, v in speed.items():
            print(f"side by side: {name}: {v['ns_per_hour']:.3g} ns/h", flush=True)
    res = dict(benchmark="long model steps, electrolyte (SPE demo box)", data=str(a.data_dir), part_ps=a.part_ps,
               scale=dict(train_steps=a.train_steps, replicas=a.replicas, learned_ps=a.learned_ps),
               rows=rows, side_by_side=speed, wall_s=time.perf_counter() - t_all, command="python " + " ".join(sys.argv))
    res.update(environment("cpu"))
    write_json(a.out / f"{a.name}.json", res)
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
