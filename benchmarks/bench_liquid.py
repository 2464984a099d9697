"""Liquid-structure benchmark (issue 9): LJ argon at a 2 ps model step, learned step vs reference MD.

Steps (each resumable in the work dir): reference MD (a training run and an independent judging run, OpenMM),
training with the project's trainer, one-step structure from true states for every variant, long rollouts
with ``LearnedIntegrator`` inside ``app.Simulation``. Protocol and metrics: :mod:`openmm_mlcg.experiments.liquid`.

Usage: python benchmarks/bench_liquid.py [--smoke | --quick] [--defaults] [--work-dir benchmarks/work/liquid]
       [--out benchmarks/results/current] [--rollout-steps 10000] [--short-rollout-steps 500]
       [--train-steps 1200] [--threads 2]
Writes <out>/liquid[_smoke|_quick][_defaults].json (nearest-neighbour distances as quantiles and the fraction below the
reference's 0.1 % quantile) and the same name with _gr.png.

``--defaults`` (the scorecard's liquid, issue 37): one model, the default generator, trained with the **trainer's
defaults** (lr, batch, history, validation fraction); the benchmark sets only scale (model sizes and training steps
of the preset) and the data's model step (stride 2: 2 ps). Only the default variant is run. Writes
<out>/liquid_defaults.json and liquid_defaults_gr.png; work in <work-dir>/<scale>_defaults (the reference MD is
shared with the other mode).
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

from openmm_mlcg.experiments.scales import LIQUID_BENCH as SCALES  # noqa: E402  (the presets, as data)

STRIDE = 2  # frames 1 ps apart: 2 ps model step


#: One trained model per generator of the joint next state (the Score GNN is trained differently for each):
#: the default, the stochastic interpolant from x_t, and the score-based samplers (trained by score matching).
MODELS = {"cg_langevin": dict(sampler="cg_langevin"), "interpolant": dict(sampler="interpolant"),
          "score": dict(sampler="ode")}
TEMPERATURE_K = 120.0  # openmm_mlcg.systems.lj.generate's default, the temperature of both reference runs


def training_config(sc: dict, out_dir, model_overrides=None, score_overrides=None, defaults: bool = False) -> dict:
    """The trainer config of the benchmark (scale ``sc``), optionally with ``model``/``score`` keys overridden;
    ``defaults``: the trainer's defaults except scale (model sizes, steps) and the data's stride and temperature."""
    if defaults:
        return dict(data=dict(stride=STRIDE, temperature_K=TEMPERATURE_K), model=dict(sc["model"]),
                    training=dict(n_steps=sc["train_steps"], eval_every=max(sc["train_steps"] // 4, 1),
                                  checkpoint_every=100, out_dir=str(out_dir), progress=False))
    return dict(data=dict(history=4, stride=STRIDE, val_fraction=0.05, temperature_K=TEMPERATURE_K),
                model=dict(sc["model"], cutoff_nm=0.6, **(model_overrides or {})), score=dict(score_overrides or {}),
                optim=dict(lr=1e-3, lr_final=1e-4, batch_size=2),
                training=dict(n_steps=sc["train_steps"], eval_every=max(sc["train_steps"] // 4, 1),
                              checkpoint_every=100, out_dir=str(out_dir), progress=False))


def box_of(cg) -> np.ndarray:
    """(3, 3) nm box of a CG trajectory (its first frame; the LJ boxes are fixed)."""
    return np.asarray(cg.box[0] if np.ndim(cg.box) == 3 else cg.box, dtype=np.float64)


def reference_runs(work: Path, sc: dict, threads: int):
    """The benchmark's two MD runs (training seed 1, judging seed 2), generated if missing (resumable).

    Returns:
        (mapping, train CGTrajectory, judging CGTrajectory); one bead per atom.
    """
    from openmm_mlcg.data import load_run
    from openmm_mlcg.systems import lj

    runs = {}
    for name, seed, ps in (("train", 1, sc["train_ps"]), ("ref", 2, sc["ref_ps"])):
        lj.generate(work / name, n_atoms=sc["n_atoms"], production_ps=ps, frame_interval_ps=1.0, seed=seed,
                    threads=threads, progress_bar=False)
        runs[name] = load_run(work / name, group_size=1)
    return runs["train"][0], runs["train"][1], runs["ref"][1]


DEFAULT_LABEL = "cg langevin, 15 sub-steps (default)"


def variants(bundles):
    """label -> (bundle, options, long rollout: True / short: False / none: None)."""
    from openmm_mlcg.model.dynamics import geometric_sigmas
    from openmm_mlcg.experiments.liquid import override_sampler

    cgl, itp = bundles["cg_langevin"], bundles["interpolant"]
    def n_steps(b, n):  # the interpolant runs len(sigmas_nm) steps; the last level is the network's floor
        return override_sampler(b, sigmas_nm=[float(x) for x in geometric_sigmas(
            float(b.metadata["sigmas_nm"][0]), float(b.metadata["sigmas_nm"][-1]), n)])

    def sub_steps(b, n):  # fewer Langevin sub-steps need a smoother score for the same omega h (friction kept)
        m = b.metadata
        return override_sampler(b, cg_langevin_steps=n,
                                cg_langevin_sigma_nm=float(m["cg_langevin_sigma_nm"]) * m["cg_langevin_steps"] / n)

    on = dict(refine=True, deterministic=False)
    out = {
        DEFAULT_LABEL: (cgl, on, True),
        "cg langevin, 10 sub-steps": (sub_steps(cgl, 10), on, False),
        "cg langevin, deterministic": (cgl, dict(refine=True, deterministic=True), False),
        "interpolant, 10 steps": (itp, on, False),
        "interpolant, 19 steps": (n_steps(itp, 19), on, False),
        "interpolant, 5 steps": (n_steps(itp, 5), on, False),
    }
    bundle = bundles["score"]
    sig = bundle.metadata["sigmas_nm"]
    paper = override_sampler(bundle, sampler="langevin", schedule="paper", langevin_steps_per_level=10,
                             langevin_step_size_nm2=5e-7,
                             sigmas_nm=[float(s) for s in geometric_sigmas(1.0, 0.001, 20)])
    anc = override_sampler(bundle, sampler="ancestral", corrector_steps=1)
    se = override_sampler(bundle, sampler="langevin", schedule="song_ermon", langevin_steps_per_level=2,
                          langevin_step_size_nm2=float(sig[-1]) ** 2 * 0.05)
    return {**out,
        "score ode": (bundle, dict(refine=True, deterministic=False), False),
        "ancestral + corrector": (anc, dict(refine=True, deterministic=False), False),
        "langevin song_ermon": (se, dict(refine=True, deterministic=False), False),
        "langevin paper": (paper, dict(refine=True, deterministic=False), None),  # 200 passes: one step only
        "no refinement": (bundle, dict(refine=False, deterministic=False), False),
        "deterministic": (bundle, dict(refine=False, deterministic=True), False),
        "Gaussian oracle": (bundle, dict(refine=False, deterministic=False, oracle=True), None),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--quick", action="store_true", help="1 ns of MD each, 400 training steps, 500-step rollout")
    ap.add_argument("--work-dir", default=str(HERE / "work" / "liquid"))
    ap.add_argument("--out", default=str(HERE / "results" / "current"))
    ap.add_argument("--rollout-steps", type=int)
    ap.add_argument("--short-rollout-steps", type=int)
    ap.add_argument("--train-steps", type=int)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--defaults", action="store_true", help="the default generator only, trainer defaults")
    ap.add_argument("--rescore", action="store_true",
                    help="recompute the rollout metrics of an existing JSON from the rollouts saved in the work dir")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from openmm_mlcg.analysis import nearest_neighbour_distances
    from openmm_mlcg.experiments import liquid as L
    from openmm_mlcg.bundle.export import load_bundle
    from openmm_mlcg.train.loop import train_on_trajectories
    from openmm_mlcg.app.workflow import simulate_learned

    scale = "smoke" if args.smoke else ("quick" if args.quick else "full")
    sc = dict(SCALES[scale])
    for key, arg in (("rollout", args.rollout_steps), ("short", args.short_rollout_steps),
                     ("train_steps", args.train_steps)):
        if arg is not None:
            sc[key] = arg
    work = Path(args.work_dir) / scale
    work.mkdir(parents=True, exist_ok=True)
    tag = "liquid" + ("_smoke" if args.smoke else "_quick" if args.quick else "") + ("_defaults" if args.defaults else "")
    model_dir = work.with_name(work.name + "_defaults") if args.defaults else work
    if args.rescore:
        return rescore(Path(args.out) / f"{tag}.json", work, sc, model_dir / "rollouts")
    t_all = time.perf_counter()
    mapping, train_cg, ref_cg = reference_runs(work, sc, args.threads)
    stride = STRIDE
    bundles, train_s = {}, {}
    models = {"cg_langevin": {}} if args.defaults else MODELS
    for name, score_overrides in models.items():
        cfg = training_config(sc, model_dir / ("model" if name == "score" else f"model_{name}"),
                              score_overrides=score_overrides, defaults=args.defaults)
        t0 = time.perf_counter()
        bundles[name] = load_bundle(train_on_trajectories([train_cg], [mapping], cfg))
        train_s[name] = time.perf_counter() - t0
    bundle = bundles["cg_langevin"]
    frames = ref_cg.positions[::stride]
    box = box_of(ref_cg)
    time_ps = np.arange(len(frames)) * 2.0
    masses = np.asarray(mapping.bead_masses, dtype=np.float64)
    ref = L.reference_summary(frames, time_ps, box, masses, sc["fit"])
    msd1 = float(((frames[1:] - frames[:-1]) ** 2).sum(-1).mean())
    k = int(bundle.metadata["history"])
    starts = np.linspace(k + 1, len(frames) - 2, sc["one_step"]).round().astype(int).tolist()
    truth_gr = L.gr(frames[np.array(starts) + 1], box, len(ref["g"]))[1]
    short_md = {n: L.split_gr_error(frames, box, n, len(ref["g"])) for n in (25, 250)}
    results = dict(benchmark="liquid", scale=scale, created=datetime.datetime.now().isoformat(timespec="seconds"),
                   environment=environment(), settings=dict(sc, model_time_step_ps=2.0, history=k),
                   training_s=train_s, bundle_metadata={name: {key: b.metadata.get(key) for key in (
                       "sampler", "schedule", "sigmas_nm", "interpolant_noise_nm", "velocity_std",
                       "acceleration_std", "val_nll", "val_nll_linear_baseline", "cg_langevin_steps",
                       "cg_langevin_sigma_nm", "cg_langevin_friction_per_ps", "friction_calibration")}
                       for name, b in bundles.items()},
                   reference=ref, reference_one_step_msd_nm2=msd1,
                   short_md_gr_error={f"{n * 2} ps": v for n, v in short_md.items()},
                   one_step_truth_gr_error_floor=L.gr_error(truth_gr, ref["g"]), variants={})
    todo = ({DEFAULT_LABEL: (bundle, dict(refine=True, deterministic=False), True)} if args.defaults
            else variants(bundles))
    for label, (bb, opts, long_run) in todo.items():
        row = {}
        v = dict(refine=opts["refine"], deterministic=opts["deterministic"],
                 oracle_msd=msd1 if opts.get("oracle") else None)
        one = L.one_step(bb, mapping, frames, box, starts, v, seed=1)
        r, g1 = L.gr(one["predicted"], box, len(ref["g"]))
        nn1 = nearest_neighbour_distances(one["predicted"], box)
        row["one_step"] = dict(gr_error=L.gr_error(g1, ref["g"]), peak_height=float(g1.max()), g=g1.tolist(),
                               nn_below_ref_q001=float(np.mean(nn1 < ref["nn_q001"])),
                               msd_nm2=float(((one["predicted"] - frames[np.array(starts)]) ** 2).sum(-1).mean()))
        if long_run is not None:
            n_steps = sc["rollout"] if long_run else sc["short"]
            t0 = time.perf_counter()
            out = simulate_learned(bb, mapping, frames[:k + 1], box, n_steps, model_dir / "rollouts" / _slug(label),
                                   report_interval=max(1, n_steps // 2000), refine=opts["refine"],
                                   deterministic=opts["deterministic"], seed=3)
            wall = time.perf_counter() - t0
            burn = max(1, len(out["positions"]) // 10)
            row["rollout"] = L.rollout_metrics(out["positions"], out["time_ps"], box, masses, ref, sc["fit"],
                                               burn_in=burn)
            row["rollout"]["n_steps"] = n_steps
            if long_run:  # spread: g(r) error and D in each quarter of the long rollout
                x, t = np.asarray(out["positions"]), np.asarray(out["time_ps"])
                q = len(x) // 4
                blocks = [slice(i * q, (i + 1) * q) for i in range(4)]
                row["rollout"]["gr_error_by_quarter"] = [
                    L.gr_error(L.structure_summary(x[b], box, len(ref["g"]))["g"], ref["g"]) for b in blocks]
                row["rollout"]["D_ratio_by_quarter"] = [_block_d(x[b], t[b], masses, sc["fit"]) / ref["D_nm2_per_ps"]
                                                        for b in blocks]
            row["cost"] = dict(gnn_passes_per_step=one["gnn_passes_per_step"],
                               seconds_per_step=out["wall_s"] / n_steps, wall_s=wall)
        results["variants"][label] = row
        print(label, {k2: (round(v2, 4) if isinstance(v2, float) else v2) for k2, v2 in row["one_step"].items()
                      if k2 != "g"}, flush=True)
        if "rollout" in row:
            print("   rollout", {k2: row["rollout"][k2] for k2 in ("gr_error", "peak_height", "D_ratio",
                                                                    "nn_below_ref_q001")}, row["cost"], flush=True)
    results["wall_s"] = time.perf_counter() - t_all
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / f"{tag}.json", results)
    plot(results, out_dir / f"{tag}_gr.png")
    print(f"wrote {out_dir / (tag + '.json')} in {results['wall_s']:.0f} s")


def _block_d(x, t, masses, fit) -> float:
    """COM-corrected D (nm^2/ps) of one block of a rollout; NaN when the block is shorter than the fit window."""
    from openmm_mlcg.experiments import liquid as L

    try:
        return L.com_corrected_diffusivity(x, t - t[0], masses, fit)
    except ValueError:
        return float("nan")


def _slug(label: str) -> str:
    return "_".join(label.replace(",", "").replace("(", "").replace(")", "").replace("+", "").split())


def rescore(json_path: Path, work: Path, sc: dict, rollouts: Path) -> None:
    """Recompute rollout metrics (same code path as a full run) from the saved rollout DCDs."""
    import json

    from openmm_mlcg.data import load_run
    from openmm_mlcg.experiments import liquid as L
    from openmm_mlcg.openmm import load_dcd

    results = json.loads(json_path.read_text())
    mapping, ref_cg = load_run(work / "ref", group_size=1)
    masses = np.asarray(mapping.bead_masses, dtype=np.float64)
    box = box_of(ref_cg)
    for label, row in results["variants"].items():
        if "rollout" not in row:
            continue
        d = rollouts / _slug(label)
        traj = load_dcd(d / "learned.dcd", str(d / "cg_topology.pdb"))
        x, t = traj.xyz.astype(np.float64), np.asarray(traj.time, dtype=np.float64)   # reported frames only
        n_steps = row["rollout"]["n_steps"]
        row["rollout"] = L.rollout_metrics(x, t, box, masses, results["reference"], sc["fit"],
                                           burn_in=max(1, len(x) // 10))
        row["rollout"]["n_steps"] = n_steps
        print(label, {k: row["rollout"][k] for k in ("gr_error", "peak_height", "D_ratio", "nn_below_ref_q001")})
    results["rescored"] = datetime.datetime.now().isoformat(timespec="seconds")
    write_json(json_path, results)
    plot(results, json_path.with_name(json_path.stem + "_gr.png"))


def plot(results: dict, path: Path) -> None:
    """g(r) of the reference, of one step and of the rollout, per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = results["reference"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, key, title in ((axes[0], "one_step", "one step from MD states"), (axes[1], "rollout", "rollout")):
        ax.plot(ref["r"], ref["g"], "k-", lw=2.5, label="reference MD")
        for label, row in results["variants"].items():
            if key in row:
                ax.plot(ref["r"], row[key]["g"], lw=1.2, label=f"{label} ({row[key]['gr_error']:.3f})")
        ax.set_title(f"LJ liquid, 2 ps model step: {title}")
        ax.set_xlabel("r (nm)")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("g(r)")
    fig.tight_layout()
    from openmm_mlcg.analysis.plots import save_figure

    save_figure(fig, path)


if __name__ == "__main__":
    main()
