"""Speed benchmark: classical OpenMM MD vs the learned CG integrator on one system and one device.

1. Classical MD of the real SPE demo system (``systems.spe.build_spe``: 9 PEO 12-mers + LiTFSI, ~1000 atoms,
   GAFF2, PME, 2 fs, HBonds constraints, NVT LangevinMiddle) on every OpenMM platform present among CPU and
   CUDA: ns/hour = steps/s * dt * 3600 / 1000.
2. The learned model on the same system's CG mapping (METIS, group size 7) inside OpenMM
   (``workflow.simulate_learned`` -> ``LearnedIntegrator``), with and without Score-GNN refinement (paper:
   20 levels x 10 Langevin steps; ``--refine-levels/--refine-steps`` reduce it and the refined cost is also
   extrapolated linearly to 200 passes): ns/hour = model steps/s * model_dt * 3600 / 1000. The bundle is
   UNTRAINED (random weights; speed does not depend on the weights, only on sizes and the graph). Its
   acceleration scale is set tiny so the beads stay near the real configuration and the neighbour count stays
   realistic. Ratio = learned ns/hour / MD ns/hour of the same device class.
3. Per-pass costs on the SPE CG system (``bench_model.bench``): one neighbour-list build, one Dynamics GNN
   pass, one Score GNN pass (TorchScript).
4. Scaling: the same per-pass costs and peak memory on synthetic periodic systems at the SPE CG bead density
   (13.5 beads/nm^3) for 1e2..1e5 beads, one subprocess per size (CPU: peak RSS increase from
   ``resource.getrusage().ru_maxrss``, since tracemalloc does not see torch; CUDA: ``torch.cuda.max_memory_allocated``).
   Sizes predicted (linear cost model) to overrun ``--time-budget-s`` are skipped and listed with the reason.

Usage: python benchmarks/bench_speed.py [--device cpu|cuda] [--model small|paper] [--sizes 100,1000,...]
       [--time-budget-s 600] [--smoke]
Writes benchmarks/results/current/speed_<device>.json ({'models': {<model>: result}}, merged across runs; environment incl.\nload average) and prints a table.
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
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _bench_common import environment, write_json  # noqa: E402

BEAD_DENSITY_PER_NM3 = 13.5  # SPE CG beads (group size 7) at ~1.2 g/cm^3
DEFAULT_SIZES = (100, 300, 1000, 3000, 10000, 30000, 100000)


def build_reference(seed=0, packing_density=0.6):
    """The SPE demo system (falls back to a demo polymer chain if the SPE builder fails). Returns a dict."""
    try:
        from openmm_mlcg.systems import spe
        s = spe.build_spe("PEO", n_chains=9, chain_length=12, seed=seed, packing_density=packing_density)
        mass = sum(s.system.getParticleMass(i)._value for i in range(s.n_atoms))
        dens = mass * 1.66053906660e-24 / (abs(np.linalg.det(s.box)) * 1e-21)
        return dict(name="SPE demo (PEO 9x12-mer + LiTFSI, GAFF2, PME)", kind="spe", obj=s, topology=s.topology,
                    system=s.system, positions=s.positions, box=s.box, dt_ps=0.002, density_g_cm3=dens,
                    make=lambda plat: s.make_simulation(time_step=0.002, pressure=None, platform=plat, seed=seed))
    except Exception as exc:  # noqa: BLE001 - documented fallback
        from openmm_mlcg.systems import polymer
        print(f"SPE builder failed ({exc!r}); using the polymer demo chain", file=sys.stderr)
        seq = polymer.class_one_sequence(60, rng=np.random.default_rng(seed))
        top, system, pos = polymer.build_polymer_system(seq, seed=seed)
        return dict(name="polymer demo chain (60 CUs)", kind="polymer", topology=top, system=system, positions=pos,
                    box=None, dt_ps=0.01, density_g_cm3=None,
                    make=lambda plat: polymer.make_simulation(top, system, pos, plat, seed + 1))


def md_speed(ref, platform_name, seconds=15.0, warmup=50):
    """Classical MD throughput on one OpenMM platform: steps/s and ns/hour (after a short minimisation)."""
    sim = ref["make"](platform_name)
    sim.minimizeEnergy(maxIterations=200)
    sim.step(warmup)
    n, t0, chunk = 0, time.perf_counter(), 50
    while time.perf_counter() - t0 < seconds:
        sim.step(chunk)
        n += chunk
    sim.context.getState(getPositions=True)  # synchronise
    wall = time.perf_counter() - t0
    sps = n / wall
    return dict(platform=platform_name, steps=n, wall_s=wall, steps_per_s=sps, time_step_ps=ref["dt_ps"],
                ns_per_hour=sps * ref["dt_ps"] * 3600.0 / 1000.0,
                threads=sim.context.getPlatform().getPropertyValue(sim.context, "Threads")
                if platform_name == "CPU" else None)


def untrained_bundle(mapping, model, history, dt_ps, levels, steps_per_level, path):
    """Export an untrained bundle of the named size bound to ``mapping`` (tiny acceleration scale)."""
    from bench_model import make_modules
    from openmm_mlcg.model.dynamics import geometric_sigmas
    from openmm_mlcg.bundle.export import save_bundle
    vocab = sorted(set(mapping.graph.atom_types))
    m = make_modules(model, n_atom_types=len(vocab), history=history)
    meta = dict(model_time_step_ps=dt_ps, history=history, cutoff_nm=0.6, velocity_std=1e-3, acceleration_std=1e-6,
                atom_type_vocabulary=vocab, sigmas_nm=[float(s) for s in geometric_sigmas(1.0, 0.001, levels)],
                langevin_steps_per_level=steps_per_level, langevin_step_size_nm2=5e-7, untrained=True)
    return save_bundle(path, m["embedding"], m["dynamics"], m["score"], meta, mapping=mapping)


def learned_speed(bundle, mapping, frames, box, n_steps, refine, device, out_dir):
    """Model steps through ``workflow.simulate_learned`` (OpenMM Simulation + DCD/State reporters)."""
    from openmm_mlcg.app.workflow import simulate_learned
    simulate_learned(bundle, mapping, frames, box, 1, out_dir / "warmup", refine=False, device=device)  # JIT warm-up
    r = simulate_learned(bundle, mapping, frames, box, n_steps, out_dir / f"refine{int(refine)}", refine=refine,
                         device=device)
    return dict(refine=refine, model_steps=n_steps, wall_s=r["wall_s"], s_per_model_step=r["wall_s"] / n_steps,
                model_time_step_ps=r["model_time_step_ps"], ns_per_hour=r["ns_per_hour"])


def _vm_kb(key):
    """Current (VmRSS) or peak (VmHWM) resident memory of this process in kB from /proc (Linux), else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def worker(n_beads, model, device, history, repeats):
    """Subprocess body: per-pass costs + peak memory for one synthetic size; prints one JSON line."""
    import torch
    from bench_model import bench
    dev = torch.device(device)
    bench(dev, 64, (64 / BEAD_DENSITY_PER_NM3) ** (1 / 3), 0.6, history, 1, model, eager=False)  # library init/JIT
    reset = _reset_peak_rss()
    base_kb = _vm_kb("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    box = (n_beads / BEAD_DENSITY_PER_NM3) ** (1.0 / 3.0)
    t0 = time.perf_counter()
    r = bench(dev, n_beads, box, 0.6, history, repeats, model, eager=False)
    r["wall_s"] = time.perf_counter() - t0
    peak_kb = (_vm_kb("VmHWM") if reset else None) or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r["peak_rss_reset_after_warmup"] = reset
    r["peak_rss_mb"] = peak_kb / 1024.0
    r["rss_before_mb"] = base_kb / 1024.0
    r["peak_rss_increase_mb"] = (peak_kb - base_kb) / 1024.0  # peak during the benchmark minus RSS before it
    if dev.type == "cuda":
        r["cuda_max_memory_allocated_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    print("RESULT " + json.dumps(r))


def scaling(sizes, model, device, history, budget_s, repeats):
    """Run :func:`worker` per size in a subprocess under a total time budget; returns (rows, skipped)."""
    rows, skipped, t_start, last = [], [], time.perf_counter(), None
    for n in sorted(sizes):
        left = budget_s - (time.perf_counter() - t_start)
        if last is not None:
            predicted = last["wall_s"] * n / last["n_beads"] * 1.1 + 10.0
            if predicted > left:
                skipped.append(dict(n_beads=n, reason=f"predicted {predicted:.0f} s (linear in beads from "
                                                      f"{last['n_beads']} beads) > {left:.0f} s left of the "
                                                      f"--time-budget-s {budget_s:.0f}"))
                continue
        cmd = [sys.executable, __file__, "--_worker", str(n), "--model", model, "--device", device,
               "--history", str(history), "--repeats", str(repeats)]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=max(left, 30.0))
        except subprocess.TimeoutExpired:
            skipped.append(dict(n_beads=n, reason=f"timed out after {left:.0f} s (time budget)"))
            continue
        line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
        if p.returncode != 0 or not line:
            skipped.append(dict(n_beads=n, reason=f"worker failed (rc {p.returncode}): {p.stderr.strip()[-300:]}"))
            continue
        last = json.loads(line[-1][7:])
        rows.append(last)
        t = last["timings"]
        print(f"  {n:>7} beads: edges {last['n_edges']:>9}  NL {t['neighbour_list_s']*1e3:9.2f} ms  dyn "
              f"{t['dynamics_script_s']*1e3:9.2f} ms  score {t['score_script_s']*1e3:9.2f} ms  "
              f"peak +{last['peak_rss_increase_mb']:.0f} MB", flush=True)
    return rows, skipped


def print_table(res):
    print(f"\n{res['system']['name']}: {res['system']['n_atoms']} atoms -> {res['system']['n_beads']} CG beads, "
          f"model {res['model']}, device {res['environment']['device']}")
    print(f"{'method':<36}{'ns/hour':>12}{'ratio to MD':>14}")
    for m in res["md"]:
        print(f"{'OpenMM MD (' + m['platform'] + ', 2 fs)':<36}{m['ns_per_hour']:>12.3g}{'1':>14}")
    for key, row in res["learned"].items():
        print(f"{'learned ' + key:<36}{row['ns_per_hour']:>12.3g}{res['ratio_to_md'][key]:>14.3g}")
    c = res["per_pass_on_system"]["timings"]
    print(f"per pass at {res['system']['n_beads']} beads: neighbour list {c['neighbour_list_s']*1e3:.2f} ms, Dynamics "
          f"{c['dynamics_script_s']*1e3:.2f} ms, Score {c['score_script_s']*1e3:.2f} ms")
    for s in res["scaling"]["skipped"]:
        print(f"skipped {s['n_beads']} beads: {s['reason']}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="torch device of the learned model: cpu or cuda")
    ap.add_argument("--model", choices=["small", "paper"], default="small")
    ap.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="comma-separated bead counts")
    ap.add_argument("--time-budget-s", type=float, default=600.0, help="budget of the bead-count sweep")
    ap.add_argument("--smoke", action="store_true", help="tiny settings (< 60 s): sizes 100,300, few steps")
    ap.add_argument("--history", type=int, default=20, help="k history velocities (paper SPE: 20)")
    ap.add_argument("--model-dt-ps", type=float, default=2.0, help="model time step of the learned side, ps")
    ap.add_argument("--learned-steps", type=int, default=20, help="model steps timed without refinement")
    ap.add_argument("--refine-model-steps", type=int, default=1, help="model steps timed with refinement")
    ap.add_argument("--refine-levels", type=int, default=20, help="noise levels (paper 20)")
    ap.add_argument("--refine-steps", type=int, default=10, help="Langevin steps per level (paper 10)")
    ap.add_argument("--md-seconds", type=float, default=15.0, help="wall seconds of timed MD per platform")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "results" / "current"))
    ap.add_argument("--_worker", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._worker is not None:
        return worker(a._worker, a.model, a.device, a.history, a.repeats)
    import openmm
    import torch
    from openmm_mlcg.cg.mapping import CGMapping
    from openmm_mlcg.cg.topology import FineGraph
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device: {a.device!r} requested but CUDA is not available")
    if a.smoke:
        a.sizes, a.learned_steps, a.md_seconds, a.history = "100,300", 3, 2.0, 5
        a.refine_levels, a.refine_steps, a.repeats, a.time_budget_s = 2, 2, 1, min(a.time_budget_s, 30.0)
    sizes = [int(s) for s in str(a.sizes).split(",") if s.strip()]
    if not sizes or min(sizes) < 2:
        raise ValueError(f"--sizes: expected comma-separated bead counts >= 2, got {a.sizes!r}")
    t0 = time.perf_counter()
    env = environment(a.device)
    ref = build_reference()
    names = {openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())}
    md = [md_speed(ref, p, a.md_seconds) for p in ("CPU", "CUDA") if p in names]
    graph = FineGraph.from_openmm(ref["topology"], ref["system"])
    mapping = CGMapping.from_graph(graph, 7, seed=0)
    box = None if ref["box"] is None else np.asarray(ref["box"], dtype=np.float64)
    x = mapping.map_positions(np.asarray(ref["positions"])[None], None if box is None else box[None])
    rng = np.random.default_rng(0)
    frames = x.repeat(a.history + 1, axis=0) + rng.normal(0, 1e-3, (a.history + 1,) + x.shape[1:])
    frames = np.cumsum(frames - x, axis=0) * 0.1 + x  # small random-walk history
    learned = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle = untrained_bundle(mapping, a.model, a.history, a.model_dt_ps, a.refine_levels, a.refine_steps,
                                  tmp / "untrained.mlcg")
        learned["no refinement"] = learned_speed(bundle, mapping, frames, box, a.learned_steps, False, a.device, tmp)
        r = learned_speed(bundle, mapping, frames, box, a.refine_model_steps, True, a.device, tmp)
        r.update(levels=a.refine_levels, steps_per_level=a.refine_steps)
        learned[f"refinement {a.refine_levels}x{a.refine_steps}"] = r
        if a.refine_levels * a.refine_steps != 200:  # linear extrapolation of the refinement cost to the paper's 200
            base, per = learned["no refinement"]["s_per_model_step"], r["s_per_model_step"]
            s200 = base + (per - base) * 200.0 / (a.refine_levels * a.refine_steps)
            learned["refinement 20x10 (extrapolated)"] = dict(refine=True, extrapolated=True, s_per_model_step=s200,
                                                              ns_per_hour=a.model_dt_ps / s200 * 3.6)
    from bench_model import bench
    per_pass = bench(torch.device(a.device), int(mapping.n_beads), float(box[0, 0]) if box is not None else 10.0,
                     0.6, a.history, a.repeats, a.model, eager=False)
    print("bead-count sweep:", flush=True)
    rows, skipped = scaling(sizes, a.model, a.device, a.history, a.time_budget_s, a.repeats)
    md_ref = {m["platform"]: m["ns_per_hour"] for m in md}
    same = md_ref.get("CUDA" if a.device.startswith("cuda") else "CPU") or next(iter(md_ref.values()))
    res = dict(benchmark="speed", environment=env, model=a.model, untrained_bundle=True,
               note="untrained bundle: speed depends on model size and graph, not on the weights",
               system=dict(name=ref["name"], n_atoms=int(graph.n_atoms), n_beads=int(mapping.n_beads),
                           box_nm=None if box is None else float(box[0, 0]), density_g_cm3=ref["density_g_cm3"],
                           group_size=7, md_time_step_ps=ref["dt_ps"], model_time_step_ps=a.model_dt_ps,
                           history=a.history),
               md=md, learned=learned, ratio_to_md={k: v["ns_per_hour"] / same for k, v in learned.items()},
               per_pass_on_system=per_pass,
               scaling=dict(bead_density_per_nm3=BEAD_DENSITY_PER_NM3, time_budget_s=a.time_budget_s,
                            requested_sizes=sizes, rows=rows, skipped=skipped,
                            memory_note=("CPU: peak RSS (ru_maxrss) of a fresh subprocess per size and "
                                         "its increase over the RSS after imports and model set-up; CUDA: torch.cuda.max_memory_allocated")),
               wall_s=time.perf_counter() - t0, load_average_end=list(os.getloadavg()))
    tag = "cuda" if a.device.startswith("cuda") else "cpu"
    path = Path(a.out) / (f"speed_{tag}_smoke.json" if a.smoke else f"speed_{tag}.json")
    merged = json.loads(path.read_text()) if path.is_file() else {}
    merged = merged if merged.get("benchmark") == "speed" else {"benchmark": "speed", "models": {}}
    merged["models"][a.model] = res  # one file per device, one entry per model size
    write_json(path, merged)
    print_table(res)
    print(f"wrote {path} ({res['wall_s']:.0f} s)")
    return res


if __name__ == "__main__":
    main()
