"""Electrolyte from committed data: the SPE demo box trained on 40, 200 and 400 ps, judged against its 2-ns reference.

Data: ``benchmarks/data/spe_demo_long`` (``benchmarks/spe_long_reference.py``): 2 ns of NVT of the main job's box
(PEO/LiTFSI, 353 K, 965 atoms -> 158 CG beads, METIS group size 7), CG frames every 2 ps. No MD is rerun.

For each training part P (the first P ps of the reference, issue 37 item 2) one model is trained with the
**trainer's defaults** (generator ``cg_langevin`` with its fitted terms, lr, batch, history, input noise); the
benchmark sets only scale: the SPE demo model sizes (``experiments.scales.SPE['demo']['model']``) and training
steps, and the model step (2 ps = one frame). No SPE-specific sampler setting (the demo preset's mass floor and Li+
pair correction are per-system knobs, issue 38) is used. ``--replicas`` learned runs start from the last k+1 frames
of the part and run ``--learned-ps``. Judged against the whole reference:

- D of Li+ and of the TFSI- centres of mass over the recipe's lag window (100-400 ps), learned replicas as segments
  vs the reference's blocks (``experiments.spe_judge.judge_diffusivity``: ratio, uncertainty, PASS / FAIL / within
  noise at 1.5x). Short MD (the training part itself) gets a D only where the part is >= 2x the window's end.
- RDF error: mean over bead-type pairs of the mean |g - g_ref| (0-1.0 nm; half the box is 1.09 nm), learned (all replicas' frames after
  the first 100 ps) and short MD (the training part) against the reference; beside it the judge's own noise, a
  400-ps piece of the reference that no training part contains (1200-1600 ps) scored the same way.
- Speed: learned simulated ns per wall hour (the replicas' ``simulation.step`` time).

Usage: python benchmarks/bench_electrolyte.py [--parts 40 200 400] [--train-steps 1600] [--replicas 4]
       [--learned-ps 1000] [--seed 0] [--quick] [--out benchmarks/results/current]
``--quick``: the 40- and 200-ps parts only, 600 training steps, 2 replicas of 600 ps.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _bench_common import environment, train_once, write_json  # noqa: E402

DATA = HERE / "data" / "spe_demo_long"
R_MAX_NM = 1.0
JUDGE_NOISE_PS = (1200.0, 1600.0)


def load_data(data: Path):
    from openmm_mlcg.cg.mapping import CGMapping
    from openmm_mlcg.data import CGTrajectory

    recipe = json.loads((data / "recipe.json").read_text())
    return CGMapping.load(data / "mapping.npz"), CGTrajectory.load(data / "cg_trajectory.npz"), recipe


def train(mappings, parts, out_dir: Path, seed: int, steps: int, temperature_K: float,
          score: dict | None = None) -> tuple[Path, float]:
    """One model on ``parts`` (CGTrajectory list, one mapping each), trainer defaults except scale (``score``: a
    ``score`` section, for the ablation of the SPE preset's knobs only); a finished bundle is reused."""
    from openmm_mlcg.experiments.scales import SPE

    cfg = dict(data=dict(temperature_K=temperature_K), model=dict(SPE["demo"]["model"]), score=dict(score or {}),
               training=dict(n_steps=steps, eval_every=max(1, steps // 5), checkpoint_every=max(1, steps // 10),
                             seed=seed, progress=False))
    return train_once(list(parts), list(mappings), cfg, out_dir)


def rdf_error(positions, box, types, reference: dict) -> float:
    """Mean over bead-type pairs of mean |g - g_ref| (``reference``: :func:`rdfs` of the reference)."""
    from openmm_mlcg.analysis import rdf_by_type

    g = rdf_by_type(positions, box, types, r_max_nm=R_MAX_NM, n_bins=60)
    return float(np.mean([np.mean(np.abs(g[k]["g"] - v["g"])) for k, v in reference.items() if k in g]))


def learned_runs(bundle, mapping, start, box, n_steps: int, replicas: int, out: Path, seed: int,
                 refine: bool = True):
    """(R, F, n, 3) unwrapped positions (first frame = start), time (F,) ps from 0, wall s; cached per replica
    (``refine=False``: the Dynamics GNN's Gaussian alone)."""
    from openmm_mlcg.app.workflow import simulate_learned

    xs, wall, t = [], 0.0, None
    for r in range(replicas):
        d = out / f"replica{r}"
        cache = d / "rollout.npz"
        if not cache.is_file():
            res = simulate_learned(bundle, mapping, start, box, n_steps, d, report_interval=1, refine=refine,
                                   seed=seed * 1000 + r, platform="Reference")
            d.mkdir(parents=True, exist_ok=True)
            np.savez(cache, positions=res["positions"], time_ps=res["time_ps"], wall_s=res["wall_s"])
        z = np.load(cache)
        xs.append(z["positions"])
        t, wall = z["time_ps"] - z["time_ps"][0], wall + float(z["wall_s"])
    return np.stack(xs), t, wall


def main(argv=None) -> int:
    from openmm_mlcg.analysis import rdf_by_type
    from openmm_mlcg.analysis.diffusion import block_diffusivity
    from openmm_mlcg.experiments.spe_judge import judge_diffusivity, species_tracks, verdict

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", type=float, nargs="+", default=[40.0, 200.0, 400.0])
    ap.add_argument("--train-steps", type=int, default=1600)
    ap.add_argument("--replicas", type=int, default=4)
    ap.add_argument("--learned-ps", type=float, default=1000.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--preset-score", action="store_true",
                    help="ablation: train with the SPE demo preset's score section (mass floor 150 amu, Li+ pair "
                         "correction) instead of the defaults; writes electrolyte_preset_score.json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir", type=Path, default=DATA)
    ap.add_argument("--work-dir", type=Path, default=HERE / "work" / "bench_electrolyte")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "current")
    a = ap.parse_args(argv)
    if a.quick:
        a.parts, a.train_steps, a.replicas, a.learned_ps = [40.0, 200.0], min(a.train_steps, 600), 2, 600.0
    import torch
    torch.set_num_threads(a.threads)
    t_all = time.perf_counter()
    mapping, traj, recipe = load_data(a.data_dir)
    x, t = np.asarray(traj.positions), np.asarray(traj.time_ps) - float(traj.time_ps[0])
    dt = float(recipe["frame_interval_ps"])
    box = np.asarray(traj.box[0] if np.ndim(traj.box) == 3 else traj.box)
    types = np.asarray([str(b) for b in mapping.bead_types])
    window = [float(v) for v in recipe["fit_window_ps"]]
    reference = dict(tracks=species_tracks(mapping, x), time_ps=t, recipe=recipe)
    ref_rdf = rdf_by_type(x, box, types, r_max_nm=R_MAX_NM, n_bins=60)
    lo, hi = (int(round(v / dt)) for v in JUDGE_NOISE_PS)
    judge_noise = rdf_error(x[lo:hi], box, types, ref_rdf)
    n_steps = int(round(a.learned_ps / dt))
    burn = int(round(100.0 / dt))
    rows = {}
    for part_ps in a.parts:
        n = int(round(part_ps / dt)) + 1
        part = traj.slice(0, n)
        tag = f"part{int(part_ps)}_s{a.train_steps}_seed{a.seed}" + ("_preset_score" if a.preset_score else "")
        from openmm_mlcg.experiments.scales import SPE
        bundle, train_wall = train([mapping], [part], a.work_dir / tag, a.seed, a.train_steps,
                                   float(recipe["md_metadata"]["temperature_K"]),
                                   SPE["demo"]["score"] if a.preset_score else None)
        from openmm_mlcg.bundle.export import load_bundle
        k = int(load_bundle(bundle).metadata["history"])
        lx, lt, wall = learned_runs(bundle, mapping, x[n - k - 1:n], box, n_steps, a.replicas,
                                    a.work_dir / tag / f"learned_{n_steps}", a.seed)
        judged = judge_diffusivity(lx, lt, reference, mapping)
        short = {}
        if part_ps >= 2 * window[1]:
            tracks = species_tracks(mapping, x[:n])
            for sp, tr in tracks.items():
                d = block_diffusivity(np.array_split(tr, 2), t[:n], window)
                ref_d = judged[sp]["reference"]
                ratio = d["D_nm2_per_ps"] / ref_d["D_nm2_per_ps"]
                rel = float(np.hypot(d["relative_uncertainty"], ref_d["relative_uncertainty"]))
                short[sp] = dict(D_cm2_per_s=d["D_cm2_per_s"], ratio=ratio, ratio_relative_se=rel,
                                 verdict=verdict(ratio, rel))
        rows[f"{int(part_ps)} ps"] = dict(
            training_ps=part_ps, training_frames=n, history=k, training_wall_s=train_wall,
            diffusivity={sp: dict(ratio=j["ratio"], ratio_relative_se=j["ratio_relative_se"], verdict=j["verdict"],
                                  learned_D_cm2_per_s=j["learned"]["D_cm2_per_s"],
                                  reference_D_cm2_per_s=j["reference"]["D_cm2_per_s"],
                                  reference_relative_se=j["reference"]["relative_uncertainty"],
                                  reference_loglog_slope=j["reference"]["loglog_slope"])
                         for sp, j in judged.items() if sp in ("Li+", "TFSI-")},
            short_md_diffusivity=short or f"n/a: a {part_ps:g}-ps part is shorter than 2x the window end "
                                          f"({2 * window[1]:g} ps)",
            rdf_error=dict(learned=rdf_error(lx[:, burn:].reshape(-1, *lx.shape[2:]), box, types, ref_rdf),
                           short_md=rdf_error(x[:n], box, types, ref_rdf), judge_noise_400ps=judge_noise),
            learned_ns_per_hour=a.replicas * a.learned_ps / 1000.0 / (wall / 3600.0) if wall > 0 else None)
        r = rows[f"{int(part_ps)} ps"]
        print(f"{part_ps:g} ps: " + ", ".join(f"{sp} D x{v['ratio']:.2f} +- {100 * v['ratio_relative_se']:.0f}% "
                                              f"{v['verdict']}" for sp, v in r["diffusivity"].items())
              + f"; RDF error learned {r['rdf_error']['learned']:.3f}, short MD {r['rdf_error']['short_md']:.3f}, "
                f"judge noise {judge_noise:.3f}; {r['learned_ns_per_hour']:.0f} ns/h", flush=True)
    res = dict(benchmark="electrolyte (SPE demo box, training parts)", data=str(a.data_dir.relative_to(HERE.parent))
               if a.data_dir.is_relative_to(HERE.parent) else str(a.data_dir), fit_window_ps=window,
               quick=a.quick, seed=a.seed, scale=dict(train_steps=a.train_steps, replicas=a.replicas,
                                                      learned_ps=a.learned_ps, model_step_ps=dt),
               parts=rows, wall_s=time.perf_counter() - t_all, command="python " + " ".join(sys.argv))
    res.update(environment("cpu"))
    res["score_settings"] = "SPE demo preset (mass floor, Li+ pair correction)" if a.preset_score else "trainer defaults"
    name = "electrolyte" + ("_quick" if a.quick else "") + ("_preset_score" if a.preset_score else "")
    write_json(a.out / f"{name}.json", res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
