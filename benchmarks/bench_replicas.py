"""Throughput of batched replicas (``openmm_mlcg.model.replicas.ReplicaSimulator``) against the same replicas
stepped one after another (``LearnedSimulator.step``), for R = 1, 2, 4, 8, 16, on the SPE demo-sized system.

Systems: the untrained SPE-demo-sized ``cg_langevin`` model of ``bench_step_cost.py`` on 158 random beads at the
SPE bead density (always: runs anywhere), and, unless ``--no-trained``, the trained SPE demo bundle on its own
158-bead training frame with its score terms (``examples/output/spe_demo/train``, when present; CPU only). Replica r has
seed r in both paths, so the final positions must agree to float rounding (recorded as
``max_position_difference_nm``). Per R the two paths alternate ``--repeats`` times; the fastest run of each
counts (on a shared machine, the least disturbed). Throughput = replica model steps per second
(R x ``--steps`` / wall s); ``speedup`` = batched / sequential throughput at the same R. On CUDA every timed
run ends with ``torch.cuda.synchronize``.

Usage: python benchmarks/bench_replicas.py [--device cpu|cuda] [--replicas 1 2 4 8 16] [--steps 2] [--repeats 2]
       [--threads 1] [--no-trained] [--out benchmarks/results/current]
Writes <out>/replicas_<cpu|cuda>.json (environment record of _bench_common with the GPU name on CUDA, the load
average at the start and the end, one record per system and R).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import device_and_threads, write_json
from bench_step_cost import DEMO_META, random_system, trained_system, untrained_model

from openmm_mlcg.experiments.scales import SPE
from openmm_mlcg.model.replicas import ReplicaSimulator
from openmm_mlcg.model.simulator import LearnedSimulator


class BoundSystem(LearnedSimulator):
    """A :class:`LearnedSimulator` bound to step inputs directly (no mapping: the benchmark's random system)."""

    def __init__(self, model, kw: dict, device):
        self.device, self.model = torch.device(device), model
        self.history_length, self.cutoff_nm = model.history_length, model.cutoff_nm
        self.n_beads = int(kw["positions"].shape[0])
        self.bead_embedding, self.bead_masses = kw["bead_embedding"], kw["bead_masses"]
        self.cg_bonds, self.bead_friction = kw["cg_bonds"], kw.get("bead_friction")
        self.score_terms = kw.get("score_terms")


def _on(kw: dict, device) -> dict:
    return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in kw.items()}


def _timed(fn, device) -> tuple:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t, out


def measure(name: str, model, kw: dict, device, replicas: list, n_steps: int, repeats: int) -> list:
    """Sequential and batched wall time per R (module docstring): one record per R."""
    sim = BoundSystem(model, kw, device)
    x, h = kw["positions"], model.node_major(kw["history"]).contiguous()
    box = kw["box"]
    gens = (lambda R: [torch.Generator(device=device).manual_seed(r) for r in range(R)])
    sim.step(x, h, box, 1, generator=gens(1)[0])                          # warm-up (TorchScript, allocator)
    rows = []
    for R in replicas:
        batched = ReplicaSimulator.from_simulators([sim] * R)
        seq_t, bat_t = [], []
        for _ in range(repeats):
            t, seq = _timed(lambda: [sim.step(x, h, box, n_steps, generator=g)[0] for g in gens(R)], device)
            seq_t.append(t)
            t, bat = _timed(lambda: batched.step([x] * R, [h] * R, box, n_steps, generators=gens(R))[0], device)
            bat_t.append(t)
        diff = max(float((a - b).abs().max()) for a, b in zip(seq, bat))
        s, b = min(seq_t), min(bat_t)
        row = {"system": name, "n_beads": sim.n_beads, "replicas": R, "n_steps": n_steps, "repeats": repeats,
               "sequential_s": s, "batched_s": b, "sequential_replica_steps_per_s": R * n_steps / s,
               "batched_replica_steps_per_s": R * n_steps / b, "speedup": s / b,
               "max_position_difference_nm": diff}
        print(f"{name:>16s} n={sim.n_beads} R={R:>2d}: sequential {row['sequential_replica_steps_per_s']:7.2f}, "
              f"batched {row['batched_replica_steps_per_s']:7.2f} replica steps/s, x{row['speedup']:.2f}, "
              f"|dx| {diff:.1e} nm", flush=True)
        rows.append(row)
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="torch device: cpu or cuda (an error without CUDA)")
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--steps", type=int, default=2, help="model steps per timed run")
    ap.add_argument("--repeats", type=int, default=2, help="alternating runs per R (the fastest counts)")
    ap.add_argument("--beads", type=int, default=158, help="beads of the random system (158: the SPE demo's)")
    ap.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads")
    ap.add_argument("--no-trained", action="store_true", help="skip the trained SPE demo bundle")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "current"))
    args = ap.parse_args(argv)
    device, env = device_and_threads(ap, args)   # the load average at the start; the GPU's name on CUDA
    systems = []
    trained = None if args.no_trained or device.type != "cpu" else trained_system()   # its score terms: CPU
    if trained is not None:
        systems.append(("spe_demo_trained", trained[0].to(device), _on(trained[1], device)))
    model = untrained_model().to(device)
    systems.append(("random_untrained", model, _on(random_system(model, args.beads), device)))
    with torch.no_grad():
        rows = [r for name, mdl, kw in systems
                for r in measure(name, mdl, kw, device, args.replicas, args.steps, args.repeats)]
    doc = {"environment": env, "threads": args.threads, "metadata": DEMO_META, "model_size": SPE["demo"]["model"],
           "rows": rows}
    doc["environment"]["load_average_end"] = list(os.getloadavg())
    path = write_json(Path(args.out) / f"replicas_{device.type}.json", doc)
    print(f"wrote {path}")
    return doc


if __name__ == "__main__":
    main()
