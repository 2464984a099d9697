"""DKMP* vs the radius graph (issue 42): cost and peak memory per Score-GNN pass from 1e3 to 1e5 beads, and the
held-out denoising score-matching loss of the same small model trained with each neighbourhood.

1. Scaling: synthetic periodic systems of uniform random beads at the SPE CG bead density (13.5 beads/nm^3,
   ``bench_speed.BEAD_DENSITY_PER_NM3``) with CG bonds (2i, 2i+1), cutoff 0.6 nm, one untrained TorchScript Score
   GNN (``--model``: ``bench_model.MODEL_SIZES``; "paper" = hidden 128, 7 layers); per pass: the graph (one radius
   search, ``build_edges``; plus the per-layer selection, ``select_layers``, for DKMP*) and the Score GNN forward
   (no grad). One subprocess per (size, neighbourhood), 1 torch thread; peak memory = the kernel's peak RSS
   (VmHWM, reset after warm-up) minus the RSS before, as ``bench_speed.py`` (tracemalloc is blind to torch).
   The exponent of cost vs N is the slope of a least-squares fit of log(ms) on log(N).
2. Accuracy: the SPE demo model sizes (``experiments.scales.SPE['demo']['model']``) trained ``--train-steps`` steps
   with each neighbourhood (same seed, same data: the first ``--train-frames`` frames of the committed
   ``benchmarks/data/spe_demo_long`` CG trajectory), then the denoising score-matching loss of the ``cg_langevin``
   objective (``CGDynamicsModel.loss``, validation mode, the same noise draws for both) on windows of the last
   ``--heldout-frames`` frames, never seen in training (post-training fits: the friction only, ``score.fits: [friction]``, at a short lag, 10 steps).

Usage: python benchmarks/bench_dkmp.py [--sizes 1000,3000,10000,30000,100000] [--model paper] [--k 4]
       [--train-steps 200] [--smoke]
Writes benchmarks/results/current/dkmp_cpu.json (environment with the load average) and prints tables.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _bench_common import environment, write_json  # noqa: E402

BEAD_DENSITY_PER_NM3 = 13.5
CUTOFF_NM = 0.6
DATA = HERE / "data" / "spe_demo_long"


def worker(n_beads: int, neighborhood: str, model: str, k: int, repeats: int) -> dict:
    """Subprocess body: median graph + Score-GNN pass times and peak RSS for one size and neighbourhood."""
    import torch
    from bench_model import MODEL_SIZES, make_modules, synthetic_system
    from bench_speed import _reset_peak_rss, _vm_kb
    from openmm_mlcg.nn.dkmp import default_shells_nm, select_layers
    from openmm_mlcg.nn.neighbors import build_edges

    torch.set_num_threads(1)
    torch.manual_seed(0)
    sco = make_modules(model, history=2)["score"].eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sco = torch.jit.script(sco)
    layers_n = MODEL_SIZES[model]["layers"]
    shells = default_shells_nm(CUTOFF_NM, layers_n)
    latent_dim = MODEL_SIZES[model]["dynamics_hidden"]

    def one_pass(x, box, bonds, lat, zero, sigma):
        ei, ev, et = build_edges(x, box, CUTOFF_NM, bonds, validate=False)
        t_graph = time.perf_counter()
        layers = select_layers(ei, ev, et, shells, k) if neighborhood == "dkmp" else None
        t_sel = time.perf_counter()
        args = (lat, zero, zero, ei, ev.float(), et, sigma, CUTOFF_NM, 0.05)
        out = sco(*args) if layers is None else sco(*args, layers)
        return out, t_graph, t_sel, ei.shape[1], (sum(int(l.numel()) for l in layers) if layers else
                                                  layers_n * ei.shape[1])

    def inputs(n):
        x, box, bonds = synthetic_system(n, (n / BEAD_DENSITY_PER_NM3) ** (1 / 3), "cpu")
        g = torch.Generator().manual_seed(1)
        return (x, box, bonds, torch.randn(n, latent_dim, generator=g), torch.zeros(n, 3),
                torch.full((n, 1), 0.05))

    with torch.no_grad():
        for _ in range(2):
            one_pass(*inputs(200))                                   # TorchScript profiling runs
        data = inputs(n_beads)
        reset = _reset_peak_rss()
        base_kb = _vm_kb("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rows = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            _, t_graph, t_sel, n_edges, messages = one_pass(*data)
            t1 = time.perf_counter()
            rows.append((t_graph - t0, t_sel - t_graph, t1 - t_sel, t1 - t0))
    peak_kb = (_vm_kb("VmHWM") if reset else None) or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    med = np.median(np.array(rows), 0) * 1e3
    return dict(n_beads=n_beads, neighborhood=neighborhood, model=model, k=k if neighborhood == "dkmp" else None,
                shells_nm=shells if neighborhood == "dkmp" else None, repeats=repeats, n_edges=n_edges,
                messages_per_pass=messages, messages_per_bead_layer=messages / n_beads / layers_n,
                radius_search_ms=float(med[0]), selection_ms=float(med[1]), score_gnn_ms=float(med[2]),
                pass_ms=float(med[3]), peak_rss_reset_after_warmup=reset,
                peak_rss_increase_mb=(peak_kb - base_kb) / 1024.0, peak_rss_mb=peak_kb / 1024.0)


def scaling(sizes, model: str, k: int, budget_s: float) -> tuple[list, list]:
    """One subprocess per (size, neighbourhood), smallest first, under ``budget_s``; fewer repeats when large."""
    rows, skipped, t0 = [], [], time.perf_counter()
    for n in sorted(sizes):
        for hood in ("radius", "dkmp"):
            left = budget_s - (time.perf_counter() - t0)
            if left < 20:
                skipped.append(dict(n_beads=n, neighborhood=hood, reason=f"time budget {budget_s:.0f} s spent"))
                continue
            repeats = 3 if n <= 3000 else 1
            cmd = [sys.executable, __file__, "--_worker", str(n), hood, model, str(k), str(repeats)]
            env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=left, env=env)
            except subprocess.TimeoutExpired:
                skipped.append(dict(n_beads=n, neighborhood=hood, reason=f"timed out after {left:.0f} s (budget)"))
                continue
            line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
            if p.returncode != 0 or not line:
                skipped.append(dict(n_beads=n, neighborhood=hood,
                                    reason=f"worker failed (rc {p.returncode}): {p.stderr.strip()[-300:]}"))
                continue
            r = json.loads(line[-1][7:])
            rows.append(r)
            print(f"  {n:>7} {hood:<6} edges {r['n_edges']:>9} msgs/bead/layer {r['messages_per_bead_layer']:6.2f} "
                  f"search {r['radius_search_ms']:9.1f} ms select {r['selection_ms']:8.1f} ms score "
                  f"{r['score_gnn_ms']:9.1f} ms pass {r['pass_ms']:9.1f} ms peak +{r['peak_rss_increase_mb']:.0f} MB",
                  flush=True)
    return rows, skipped


def exponents(rows) -> dict:
    """Slope of log(pass ms) and log(peak MB) vs log(N) per neighbourhood (sizes >= 3000: past fixed costs)."""
    out = {}
    for hood in ("radius", "dkmp"):
        r = [x for x in rows if x["neighborhood"] == hood and x["n_beads"] >= 3000]
        if len(r) >= 2:
            n = np.log([x["n_beads"] for x in r])
            out[hood] = dict(pass_ms=float(np.polyfit(n, np.log([x["pass_ms"] for x in r]), 1)[0]),
                             score_gnn_ms=float(np.polyfit(n, np.log([x["score_gnn_ms"] for x in r]), 1)[0]),
                             peak_rss_mb=float(np.polyfit(n, np.log([max(x["peak_rss_increase_mb"], 1.0)
                                                                       for x in r]), 1)[0]),
                             fit_sizes=[x["n_beads"] for x in r])
    return out


def trainer_model_sizes(name: str) -> dict:
    """``bench_model.MODEL_SIZES[name]`` (the paper's: Fu et al. appendix C) as the trainer's model options."""
    from bench_model import MODEL_SIZES

    z = MODEL_SIZES[name]
    return dict(embedding_hidden=z["embedding_hidden"], dynamics_hidden=z["dynamics_hidden"],
                score_hidden=z["score_hidden"], embedding_layers=z["layers"], dynamics_layers=z["layers"],
                score_layers=z["layers"])


def accuracy(steps: int, train_frames: int, heldout_frames: int, k: int, out_dir: Path, seed: int = 0,
             model_size: str = "demo") -> dict:
    """Train the SPE demo sizes (``model_size="paper"``: the paper's) with each neighbourhood (same seed and data);
    held-out score-matching loss."""
    import torch
    from openmm_mlcg.bundle import load_model
    from openmm_mlcg.cg.mapping import CGMapping
    from openmm_mlcg.data import CGTrajectory, WindowDataset
    from openmm_mlcg.experiments.scales import SPE
    from openmm_mlcg.train import TrainConfig, train_on_trajectories
    from openmm_mlcg.train.batching import collate

    mapping = CGMapping.load(DATA / "mapping.npz")
    traj = CGTrajectory.load(DATA / "cg_trajectory.npz")
    recipe = json.loads((DATA / "recipe.json").read_text())
    temperature = float(recipe["md_metadata"]["temperature_K"])
    demo = SPE["demo"]
    train_part, held = traj.slice(0, train_frames), traj.slice(traj.n_frames - heldout_frames, traj.n_frames)
    out = dict(data=str(DATA.relative_to(HERE.parent)), train_frames=[0, train_frames],
               heldout_frames=[traj.n_frames - heldout_frames, traj.n_frames], train_steps=steps,
               model=dict(demo["model"], **(trainer_model_sizes(model_size) if model_size != "demo" else {})),
               k=k, seed=seed)
    for hood in ("radius", "dkmp"):
        model_cfg = dict(out["model"], neighborhood=hood, dkmp_k=k)
        cfg = TrainConfig.from_dict(dict(
            data=dict(history=demo["history"], stride=demo["stride"], val_fraction=0.0, temperature_K=temperature),
            model=model_cfg, score=dict(n_levels=demo["score"]["n_levels"], cg_langevin=dict(demo["score"].get("cg_langevin", {}), calibration_lag=10,
                                                                     calibration_starts=1),
                       fits=["friction"]),
            optim=dict(batch_size=demo["batch_size"]),
            training=dict(n_steps=steps, eval_every=steps, checkpoint_every=steps, seed=seed,
                          out_dir=str(out_dir / hood), progress=False)))
        t0 = time.perf_counter()
        path = train_on_trajectories([train_part], [mapping], cfg)
        train_s = time.perf_counter() - t0
        model = load_model(path)
        graphs = [model.system_graph(mapping)]
        ds = WindowDataset([held], [mapping], history=model.history_length, stride=demo["stride"])
        gen = torch.Generator().manual_seed(123)
        losses, t_eval = [], time.perf_counter()
        with torch.no_grad():
            for start in range(0, len(ds) - 3, 4):
                batch = collate([ds[i] for i in range(start, start + 4)], graphs)
                for _ in range(4):                                    # 4 noise draws per window batch
                    losses.append(float(model.loss(batch, graphs, gen, train=False)["score_loss"]))
        out[hood] = dict(heldout_score_loss=float(np.mean(losses)),
                         heldout_score_loss_sem=float(np.std(losses) / np.sqrt(len(losses))),
                         n_evaluations=len(losses), n_windows=len(ds), train_s=train_s,
                         eval_s=time.perf_counter() - t_eval,
                         shells_nm=model.metadata.dkmp_shells_nm or None)
        print(f"  {hood:<6} held-out score-matching loss {out[hood]['heldout_score_loss']:.4f} +- "
              f"{out[hood]['heldout_score_loss_sem']:.4f} ({len(losses)} evaluations), trained in {train_s:.0f} s",
              flush=True)
    return out


def accuracy_seeds(a, t0: float) -> int:
    """The accuracy part once per seed of ``--accuracy-seeds``: the held-out loss of each neighbourhood and their
    paired difference (DKMP* - radius) per seed, with its mean and standard error over the seeds."""
    runs = []
    for seed in a.accuracy_seeds:
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(accuracy(a.train_steps, a.train_frames, a.heldout_frames, a.k, Path(tmp), seed,
                                 a.accuracy_model))
    diff = np.array([r["dkmp"]["heldout_score_loss"] / r["radius"]["heldout_score_loss"] - 1.0 for r in runs])
    summary = dict(relative_difference_dkmp_minus_radius=diff.tolist(), mean=float(diff.mean()),
                   standard_error=float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else None)
    res = dict(benchmark="bench_dkmp accuracy over training seeds", environment=environment("cpu"), k=a.k,
               model_size=a.accuracy_model,
               train_steps=a.train_steps, seeds=a.accuracy_seeds, runs=runs, summary=summary,
               wall_s=time.perf_counter() - t0, command="python " + " ".join(sys.argv))
    print(f"DKMP* / radius - 1 per seed: {np.round(diff, 4).tolist()}; mean {summary['mean']:+.4f} "
          f"+- {summary['standard_error'] or float('nan'):.4f}")
    suffix = ("" if a.k == 4 else f"_k{a.k}") + ("" if a.accuracy_model == "demo" else f"_{a.accuracy_model}")
    name = f"dkmp_accuracy_seeds{suffix}.json"
    print(f"wrote {write_json(Path(a.out).parent / name, res)}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,3000,10000,30000,100000")
    ap.add_argument("--model", default="paper", help="Score GNN size of the scaling part (bench_model.MODEL_SIZES)")
    ap.add_argument("--k", type=int, default=4, help="DKMP* K (neighbours per shell)")
    ap.add_argument("--train-steps", type=int, default=200)
    ap.add_argument("--train-frames", type=int, default=400)
    ap.add_argument("--heldout-frames", type=int, default=200)
    ap.add_argument("--scaling-budget-s", type=float, default=420.0)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes and 5 training steps (not written)")
    ap.add_argument("--scaling-only", action="store_true", help="only the cost part (no training; accuracy null)")
    ap.add_argument("--accuracy-seeds", type=int, nargs="+",
                    help="only the accuracy part, once per training seed; writes dkmp_accuracy_seeds[_k<K>].json beside --out")
    ap.add_argument("--accuracy-model", choices=("demo", "paper"), default="demo",
                    help="model sizes of --accuracy-seeds: the SPE demo's or the paper's (hidden 128, 7 layers)")
    ap.add_argument("--out", default=str(HERE / "results" / "current" / "dkmp_cpu.json"))
    ap.add_argument("--_worker", nargs=5, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._worker:
        n, hood, model, k, repeats = a._worker
        print("RESULT " + json.dumps(worker(int(n), hood, model, int(k), int(repeats))))
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if a.accuracy_seeds:
        return accuracy_seeds(a, t0)
    sizes = [300, 1000] if a.smoke else [int(s) for s in a.sizes.split(",")]
    print(f"scaling ({a.model} Score GNN, cutoff {CUTOFF_NM} nm, K = {a.k}, 1 thread):", flush=True)
    rows, skipped = scaling(sizes, a.model, a.k, 60.0 if a.smoke else a.scaling_budget_s)
    ratios = {}
    for n in sorted({r["n_beads"] for r in rows}):
        pair = {r["neighborhood"]: r for r in rows if r["n_beads"] == n}
        if len(pair) == 2:
            ratios[str(n)] = dict(pass_cost_ratio=pair["radius"]["pass_ms"] / pair["dkmp"]["pass_ms"],
                                  score_gnn_cost_ratio=pair["radius"]["score_gnn_ms"] / pair["dkmp"]["score_gnn_ms"],
                                  peak_memory_ratio=pair["radius"]["peak_rss_increase_mb"] /
                                  max(pair["dkmp"]["peak_rss_increase_mb"], 1e-9))
    fit = exponents(rows)
    print(f"radius / dkmp cost per pass: {json.dumps({n: round(v['pass_cost_ratio'], 2) for n, v in ratios.items()})}")
    print(f"exponents (cost ~ N^p): {json.dumps({h: round(v['pass_ms'], 3) for h, v in fit.items()})}", flush=True)
    acc = None
    if not a.scaling_only:
        print("accuracy (SPE demo sizes, same seed and data):", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            acc = accuracy(5 if a.smoke else a.train_steps, 60 if a.smoke else a.train_frames,
                           40 if a.smoke else a.heldout_frames, a.k, Path(tmp))
    res = dict(benchmark="bench_dkmp", environment=environment("cpu"), bead_density_per_nm3=BEAD_DENSITY_PER_NM3,
               cutoff_nm=CUTOFF_NM, scaling=dict(model=a.model, k=a.k, rows=rows, skipped=skipped,
                                                  radius_over_dkmp=ratios, exponents=fit),
               accuracy=acc, wall_s=time.perf_counter() - t0, smoke=a.smoke)
    if not a.smoke:
        print(f"wrote {write_json(a.out, res)}")
    print(f"total {res['wall_s']:.0f} s, load average {res['environment']['load_average']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
