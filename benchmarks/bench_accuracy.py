"""Accuracy benchmark: the paper's protocol (Fu et al., TMLR 2023, section 4) at a chosen scale.

Polymers (section 4.1): ``openmm_mlcg.experiments.polymer.run_polymer_experiment`` itself (one protocol code
path), with this benchmark's sizes and its learned ``variants=``: train on class-I chains (regular sequences),
test on class-II chains (random sequences); per test chain <R_g^2>, the R_g^2 distribution (EMD) and the R_g^2
relaxation time against long reference MD -> r^2 and MAE of <R_g^2> over chains, mean EMD, relaxation-time MAE.
SPE (section 4.2): train on the first part of a reference trajectory, roll out from its end and judge only the
frames after it (``openmm_mlcg.experiments.protocol.train_judge_split``, the experiments' split) ->
Li+ / TFSI- diffusivity (MSD fit, molecule centres of mass) absolute error, RDF error (mean |g - g_ref| over bins,
Li-TFSI and Li-Li), collision rate (bead pairs closer than 0.1 nm per frame) vs reference.

Compared (labels): "learned" (Dynamics GNN + Score refinement), "no refinement", "deterministic" (mean
acceleration, no refinement) and "short MD" (reference MD cut to the training length; for polymers the first
training-length part of each class-II trajectory).
Sizes per scale: ``openmm_mlcg.experiments.scales.ACCURACY_BENCH`` (``SCALES`` here).

Usage: python benchmarks/bench_accuracy.py --scale smoke|demo|paper [--part polymer|spe|both] [--device cpu|cuda]
       [--work-dir benchmarks/work/accuracy] [--out benchmarks/results/current]
Writes <out>/accuracy_<scale>.json and accuracy_<scale>_*.png. Resumable: reference MD, CG trajectories and
trained bundles already in the work dir are reused (delete a directory to redo it).
"""
from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _bench_common import environment, write_json  # noqa: E402

from openmm_mlcg.experiments.scales import ACCURACY_BENCH as SCALES  # noqa: E402  (the presets, as data)

COLLISION_CUTOFFS_NM = (0.1, 0.2)  # non-bonded bead pairs closer than this count as a collision
VARIANTS = {"learned": dict(refine=True, deterministic=False),
            "no refinement": dict(refine=False, deterministic=False),
            "deterministic": dict(refine=False, deterministic=True)}


def log(msg):
    print(f"[{datetime.datetime.now(datetime.timezone.utc):%H:%M:%S}] {msg}", flush=True)


def coarse_grain(run_dir, group_size, cache_dir):
    """(CGMapping, CGTrajectory) of a systems.* run directory (workflow.coarse_grain_run when available)."""
    try:
        from openmm_mlcg.app.workflow import coarse_grain_run
        return coarse_grain_run(run_dir, group_size, seed=0, cache_dir=cache_dir)
    except ImportError:
        from openmm_mlcg.data import load_run
        return load_run(run_dir, group_size, 0, cache_dir=cache_dir)


def generate_spe(s, work: Path, platform_name):
    """Reference MD (resumable): one PEO/LiTFSI demo-size SPE, NPT equilibration then NVT."""
    from openmm_mlcg.systems import spe
    t0 = time.perf_counter()
    (run,) = spe.generate(1, work / "spe_md", polymers="PEO", seed=0, platform=platform_name, scale="demo",
                          training_ps=s["total_ps"], equilibration_ps=s["equil_ps"], frame_interval_ps=s["frame_ps"],
                          progress_bar=False)
    log(f"SPE reference ready ({time.perf_counter() - t0:.0f} s)")
    return run


def train_bundle(trajs, maps, m, d, out_dir: Path, device, time_step_hint):
    """Train (resumable) a small model on CG trajectories; returns the bundle path."""
    from openmm_mlcg.train import TrainConfig, train_on_trajectories
    bundle = out_dir / "model.mlcg"
    if bundle.is_file():
        return bundle
    cfg = TrainConfig.from_dict(dict(
        data=dict(history=d["history"], stride=d["stride"], group_size=d["group_size"], val_fraction=0.1),
        model=dict(embedding_hidden=m["hidden"], embedding_layers=m["layers"], dynamics_hidden=m["hidden"],
                   dynamics_layers=m["layers"], score_hidden=m["hidden"], score_layers=m["layers"],
                   cutoff_nm=d.get("cutoff_nm", 0.6)),
        score=dict(n_levels=m["n_levels"], langevin=dict(steps_per_level=m["steps_per_level"]),
                   sigma_max_nm=d.get("sigma_max_nm", 1.0)),
        optim=dict(batch_size=m["batch_size"], lr=1e-3, lr_final=1e-4),
        training=dict(n_steps=m["train_steps"], eval_every=max(1, m["train_steps"] // 5),
                      checkpoint_every=max(1, m["train_steps"] // 5), device=device, out_dir=str(out_dir),
                      progress=False)))
    t0 = time.perf_counter()
    path = train_on_trajectories(trajs, maps, cfg)
    log(f"trained {out_dir.name}: {m['train_steps']} steps in {time.perf_counter() - t0:.0f} s")
    return path


def rollout(bundle, mapping, frames, box, n_steps, out_dir: Path, variant, device, seed=0):
    """Learned CG trajectory (positions (F, n, 3) nm, time_ps) through OpenMM; cached as npz in out_dir."""
    cache = out_dir / "rollout.npz"
    if cache.is_file():
        z = np.load(cache)
        return z["positions"], z["time_ps"], float(z["wall_s"])
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _rollout(bundle, mapping, frames, box, n_steps, out_dir, variant, device, seed, cache)
    except (RuntimeError, FloatingPointError) as exc:  # the model left the physical state (NaN); recorded as failed
        log(f"rollout {out_dir.name} failed: {exc}")
        return None, None, float("nan")


def _rollout(bundle, mapping, frames, box, n_steps, out_dir, variant, device, seed, cache):
    try:
        from openmm_mlcg.app.workflow import simulate_learned
        r = simulate_learned(bundle, mapping, frames, box, n_steps, out_dir, report_interval=1, refine=variant["refine"],
                             deterministic=variant["deterministic"], seed=seed, device=device)
        pos, t, wall = np.asarray(r["positions"]), np.asarray(r["time_ps"]), float(r["wall_s"])
    except ImportError:  # workflow not available: step the runtime simulator directly
        import torch
        from openmm_mlcg.bundle.export import load_bundle
        from openmm_mlcg.model.simulator import LearnedSimulator
        sim = LearnedSimulator(load_bundle(bundle), mapping, device=device)
        x, h = sim.history_from_positions(frames)
        gen = torch.Generator(device=sim.device).manual_seed(seed)
        boxt = None if box is None else torch.as_tensor(np.asarray(box), dtype=torch.float64)
        t0, traj = time.perf_counter(), [x.cpu().numpy()]
        for _ in range(n_steps):
            x, h = sim.step(x, h, boxt, 1, refine=variant["refine"], generator=gen,
                            deterministic=variant["deterministic"])
            traj.append(x.cpu().numpy())
        wall, pos = time.perf_counter() - t0, np.stack(traj)
        t = np.arange(len(pos)) * sim.model_time_step_ps
    np.savez(cache, positions=pos, time_ps=t, wall_s=wall)
    return pos, t, wall


def polymer_part(cfg, work: Path, device, platform_name, scale):
    """The polymer experiment (``experiments.polymer.run_polymer_experiment``) with this benchmark's sizes and
    every learned variant of ``VARIANTS``; returns (results dict, its figure paths)."""
    from openmm_mlcg.experiments.polymer import run_polymer_experiment
    m = cfg["model"]
    summary = run_polymer_experiment(
        work / "polymer", scale=scale, platform=platform_name, device=device, variants=VARIANTS, log=log,
        **dict(cfg["polymer"], hidden=m["hidden"], layers=m["layers"], train_steps=m["train_steps"],
               batch_size=m["batch_size"], score_levels=m["n_levels"], score_steps_per_level=m["steps_per_level"]))
    metrics = {lab: (r if r["n_chains"] else {"error": "every rollout diverged (non-finite positions)", **r})
               for lab, r in summary["metrics"].items()}
    res = dict(setup=summary["settings"], metrics=metrics, per_chain=summary["per_chain"],
               rollout_wall_s=summary["timing"]["rollout_wall_s"], timing=summary["timing"])
    return res, [work / "polymer" / name for name in summary["plots"]]


def spe_species(mapping):
    """(Li bead indices, TFSI bead indices, Li molecule ids, TFSI molecule ids) from residue names LI / TFS."""
    g = mapping.graph
    res_of_mol = {int(mo): str(r).upper() for mo, r in zip(np.asarray(g.molecules), g.residue_names)}
    bead_mol = np.asarray(mapping.bead_molecules)
    res = np.array([res_of_mol.get(int(mo), "") for mo in bead_mol])
    li, tf = np.nonzero(np.char.startswith(res, "LI"))[0], np.nonzero(np.char.startswith(res, "TFS"))[0]
    return li, tf, np.unique(bead_mol[li]), np.unique(bead_mol[tf])


def _spe_obs(x, step, mapping, box, li, tf, li_m, tf_m):
    from openmm_mlcg.analysis import (centre_of_mass_positions, count_collisions, fit_diffusivity,
                                      mean_squared_displacement, radial_distribution)
    t = np.arange(len(x)) * step
    com, mols = centre_of_mass_positions(x, mapping.bead_masses, mapping.bead_molecules)
    o = {}
    for name, ids in (("Li", li_m), ("TFSI", tf_m)):
        lag, msd = mean_squared_displacement(com[:, np.isin(mols, ids)], t)
        fit = fit_diffusivity(lag, msd.mean(axis=1), (0.2 * lag[-1], lag[-1]))
        o[f"D_{name}_nm2_per_ps"] = float(fit["D_nm2_per_ps"])
    r_max = min(1.0, 0.49 * float(np.min(np.diag(box))))
    o["rdf"] = {"Li-TFSI": radial_distribution(x, box, li, tf, r_max_nm=r_max, n_bins=50),
                "Li-Li": radial_distribution(x, box, li, None, r_max_nm=r_max, n_bins=50)}
    bonds = np.asarray(mapping.cg_bonds).reshape(-1, 2)
    for rc in COLLISION_CUTOFFS_NM:
        o[f"collisions_per_frame_{rc}nm"] = float(np.mean(count_collisions(x, rc, box=box, exclude_bonds=bonds)))
    return o


def spe_part(cfg, work: Path, device, platform_name, scale):
    """Train on the first train_ps of one SPE trajectory, roll out for its whole length; compare observables."""
    s, m = cfg["spe"], cfg["model"]
    run = generate_spe(s, work, platform_name)
    mapping, traj = coarse_grain(run, s["group_size"], work / "spe_cg")
    pos, box = np.asarray(traj.positions), np.asarray(traj.box)[0]
    dt = float(traj.frame_interval_ps)
    from openmm_mlcg.experiments.protocol import train_judge_split
    k, st = s["history"], s["stride"]
    # the experiments' protocol: train on the first part, roll out from its end, judge only what follows
    split = train_judge_split(len(pos), int(round(s["train_ps"] / dt)), k, st)
    bundle = train_bundle([traj.slice(*split.train)], [mapping], m, s, work / "spe_model", device, None)
    series = {"reference MD": (pos[split.judge[0]:split.judge[1]], dt),
              "short MD": (pos[split.train[0]:split.train[1]], dt)}
    walls = {}
    for v, opts in VARIANTS.items():
        lp, lt, walls[v] = rollout(bundle, mapping, pos[split.start_frames], box, split.n_steps,
                                   work / "spe_rollouts_judged" / v.replace(" ", "_"), opts, device)
        if lp is not None:
            series[v] = (lp[1:], float(lt[1] - lt[0]))  # frame 0 is the last training frame
    li, tf, li_m, tf_m = spe_species(mapping)
    obs = {lab: _spe_obs(x, step, mapping, box, li, tf, li_m, tf_m) for lab, (x, step) in series.items()}
    ref = obs["reference MD"]
    metrics = {v: {"error": "rollout diverged (non-finite positions)"} for v in VARIANTS if v not in series}
    for lab in list(series)[1:]:
        o = obs[lab]
        err = {n: abs(o[f"D_{n}_nm2_per_ps"] - ref[f"D_{n}_nm2_per_ps"]) for n in ("Li", "TFSI")}
        metrics[lab] = {"D_Li_abs_err_nm2_per_ps": err["Li"], "D_TFSI_abs_err_nm2_per_ps": err["TFSI"],
                        "diffusivity_mae_nm2_per_ps": 0.5 * (err["Li"] + err["TFSI"]),
                        "rdf_mean_abs_err": {key: float(np.mean(np.abs(o["rdf"][key][1] - ref["rdf"][key][1])))
                                             for key in ref["rdf"]},
                        **{f"{kind}_{rc}nm": (o[f"collisions_per_frame_{rc}nm"] if kind == "collisions_per_frame" else
                                              o[f"collisions_per_frame_{rc}nm"] / ref[f"collisions_per_frame_{rc}nm"]
                                              if ref[f"collisions_per_frame_{rc}nm"] > 0 else float("nan"))
                           for rc in COLLISION_CUTOFFS_NM
                           for kind in ("collisions_per_frame", "collision_ratio_to_reference")}}
    values = {lab: {kk: vv for kk, vv in o.items() if kk != "rdf"} for lab, o in obs.items()}
    res = dict(setup={**s, "n_atoms": int(mapping.graph.n_atoms), "n_beads": int(mapping.n_beads), "n_li": int(li.size),
                      "n_tfsi_molecules": int(tf_m.size), "model_time_step_ps": dt * st,
                      "train_frames": list(split.train), "judged_frames": list(split.judge), "box_nm": float(box[0, 0])},
               values=values, metrics=metrics, rollout_wall_s=walls)
    return res, {lab: o["rdf"] for lab, o in obs.items()}


def plot(results, extras, out: Path, scale: str) -> list:
    """PNG figures: the polymer experiment's (<R_g^2> parity, R_g^2 distributions / ACFs); SPE RDFs and D."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    files = []
    for src in extras.get("polymer", []):  # the polymer experiment's own figures
        files.append(out / f"accuracy_{scale}_polymer_{Path(src).name}")
        shutil.copyfile(src, files[-1])
    if "spe" in results and "values" in results["spe"]:
        rdfs, vals = extras["spe"], results["spe"]["values"]
        fig, ax = plt.subplots(1, 3, figsize=(14, 4))
        for j, key in enumerate(("Li-TFSI", "Li-Li")):
            for lab, r in rdfs.items():
                ax[j].plot(r[key][0], r[key][1], label=lab, lw=2.5 if lab == "reference MD" else 1.2)
            top = 1.5 * float(np.max(rdfs["reference MD"][key][1])) + 0.5
            ax[j].set(xlabel="r (nm)", ylabel="g(r)", ylim=(0, top), title=f"RDF {key} (CG beads)")
        labs = list(vals)
        w = np.arange(len(labs))
        for off, name in ((-0.2, "Li"), (0.2, "TFSI")):
            ax[2].bar(w + off, [vals[lab][f"D_{name}_nm2_per_ps"] or 0 for lab in labs], 0.4, label=name)
        ax[2].set_xticks(w, labs, rotation=30, fontsize=7)
        ax[2].set(ylabel="D (nm^2/ps)", yscale="log", title="diffusivity (molecule COM)")
        ax[0].legend(fontsize=7); ax[2].legend(fontsize=7)
        fig.tight_layout()
        files.append(out / f"accuracy_{scale}_spe.png")
        fig.savefig(files[-1], dpi=110); plt.close(fig)
    return [str(f) for f in files]


def print_table(results):
    for part in ("polymer", "spe"):
        met = results.get(part, {}).get("metrics")
        if not met:
            continue
        keys = [k for k, v in next(iter(met.values())).items() if not isinstance(v, dict)]
        print(f"\n{part}: " + " | ".join(keys))
        for lab, r in met.items():
            vals = [r.get(k, r.get("error", "-")) for k in keys]
            print(f"  {lab:<14}" + " | ".join(f"{v:.4g}" if isinstance(v, (int, float)) else str(v) for v in vals))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=sorted(SCALES), default="demo")
    ap.add_argument("--smoke", action="store_true", help="same as --scale smoke")
    ap.add_argument("--part", choices=["polymer", "spe", "both"], default="both")
    ap.add_argument("--device", default="cpu", help="torch device of training and rollouts: cpu, cuda, cuda:N")
    ap.add_argument("--platform", default=None, help="OpenMM platform of the reference MD (default: fastest)")
    ap.add_argument("--work-dir", default=str(HERE / "work" / "accuracy"))
    ap.add_argument("--out", default=str(HERE / "results" / "current"))
    args = ap.parse_args(argv)
    scale = "smoke" if args.smoke else args.scale
    if args.device.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            raise ValueError(f"--device: {args.device!r} requested but CUDA is not available")
    cfg, work, out = SCALES[scale], Path(args.work_dir) / scale, Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = dict(benchmark="accuracy", scale=scale, environment=environment(args.device), config=cfg,
                   labels={"learned": "Dynamics GNN sample + Score GNN annealed-Langevin refinement",
                           "no refinement": "Dynamics GNN sample only",
                           "deterministic": "Dynamics GNN mean acceleration, no refinement",
                           "short MD": "reference MD cut to the training length"})
    extras = {}
    for part, fn in (("polymer", polymer_part), ("spe", spe_part)):
        if args.part not in (part, "both"):
            continue
        if cfg[part] is None:
            results[part] = {"skipped": f"no {part} setup at scale {scale!r} (SPE needs a box > 2 x 0.9 nm PME cutoff, "
                                        "minutes of MD)"}
            continue
        tp = time.perf_counter()
        log(f"{part}: start")
        results[part], extras[part] = fn(cfg, work, args.device, args.platform, scale)
        results[part]["wall_s"] = time.perf_counter() - tp
    results["figures"] = plot(results, extras, out, scale)
    results["wall_s"] = time.perf_counter() - t0
    results["load_average_end"] = list(os.getloadavg())
    path = write_json(out / f"accuracy_{scale}.json", results)
    print_table(results)
    print(f"\nwrote {path} ({results['wall_s']:.0f} s)")
    return results


if __name__ == "__main__":
    main()
