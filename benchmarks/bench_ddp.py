"""Data-parallel training on CPU: training samples per second of 1 process against N gloo processes (torchrun).

The same run (the trainer end to end, ``python -m openmm_mlcg.train CONFIG``) once as one process and once as
``torchrun --nproc_per_node N`` at the same global batch (``optim.batch_size``; each rank takes batch/N windows),
every process with one thread (OMP_NUM_THREADS=1). The system: a synthetic demo-size box (158 beads: 70 chains of
14 atoms cut in 2 beads each + 18 Li ions, the SPE bead density of bench_model, an anti-persistent walk of 51
frames); the model: the demo's sizes (examples/train_spe_cpu.yaml: 32/64-wide networks of 3-4 layers, history
4), with the ``ode`` score sampler (the same score-matching loss pass as the default, without the
post-training fits, which are not distributed). The rate of a run: the median over its logged steps after
``--warmup`` of ``samples_per_s`` (global batch / rank 0's wall time of the step, all-reduces included).
Runs alternate (1, N, 1, N, ...) ``--repeats`` times so a change of the machine's load hits both.

Usage: python benchmarks/bench_ddp.py [--nproc 2] [--steps 40] [--warmup 8] [--batch 4] [--repeats 2]
Writes <out>/ddp_cpu.json (environment record of _bench_common, one row per run, the speed-up of the medians).
"""
from __future__ import annotations

import argparse
import csv
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import environment, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHAIN = ("C", "C", "O", "C", "C", "O", "C") * 2  # 14 atoms: 2 beads of 7 (METIS, group size 7)


def demo_system(out: Path, n_chains: int = 70, n_ions: int = 18, n_frames: int = 51, seed: int = 0) -> dict:
    """Write a synthetic demo-size CG trajectory and its mapping under ``out``; the ``data.systems`` entry."""
    from openmm_mlcg.cg.mapping import CGMapping
    from openmm_mlcg.cg.topology import FineGraph
    from openmm_mlcg.data import CGTrajectory

    types, masses, bonds, res = [], [], [], []
    for _ in range(n_chains):
        o = len(types)
        types += list(CHAIN)
        masses += [{"C": 12.011, "O": 15.999}[a] for a in CHAIN]
        bonds += [(o + k, o + k + 1) for k in range(len(CHAIN) - 1)]
        res += ["PEO"] * len(CHAIN)
    types += ["Li"] * n_ions
    masses += [6.94] * n_ions
    res += ["LI"] * n_ions
    mapping = CGMapping.from_graph(FineGraph.from_arrays(types, masses, bonds, residue_names=res), 7)
    n = mapping.n_beads
    box_nm = (n / (900 / 4.05 ** 3)) ** (1 / 3)  # the SPE bead density of bench_model
    rng = np.random.default_rng(seed)
    x = np.zeros((n_frames, n, 3))
    x[0] = rng.uniform(0, box_nm, size=(n, 3))
    v = rng.normal(0, 0.02, size=(n, 3))
    for t in range(1, n_frames):
        v = -0.6 * v + rng.normal(0, 0.02, size=(n, 3))
        x[t] = x[t - 1] + v
    traj = CGTrajectory(x, np.tile(np.eye(3) * box_nm, (n_frames, 1, 1)), np.arange(n_frames) * 2.0, 2.0,
                        mapping.hash)
    out.mkdir(parents=True, exist_ok=True)
    traj.save(out / "cg.npz")
    mapping.save(out / "mapping.npz")
    return {"cg_trajectory": str(out / "cg.npz"), "mapping": str(out / "mapping.npz"), "n_beads": n}


def config(system: dict, out_dir: Path, steps: int, batch: int) -> dict:
    """The demo sizes of examples/train_spe_cpu.yaml on ``system`` (no validation, one checkpoint at the end)."""
    return dict(
        data=dict(systems=[{k: system[k] for k in ("cg_trajectory", "mapping")}], history=4, val_fraction=0.0,
                  temperature_K=353.0),
        model=dict(embedding_hidden=32, embedding_layers=3, dynamics_hidden=64, dynamics_layers=4, score_hidden=64,
                   score_layers=3, cutoff_nm=0.6),
        score=dict(sampler="ode", n_levels=10),
        optim=dict(batch_size=batch),
        training=dict(n_steps=steps, eval_every=steps, checkpoint_every=steps, out_dir=str(out_dir), progress=False))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cfg_path: Path, nproc: int, warmup: int) -> dict:
    """One training run with ``nproc`` processes; its median samples/s after ``warmup`` steps and its wall time."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr",
                 "127.0.0.1", "--master_port", str(_free_port())] if nproc > 1 else [sys.executable])
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    r = subprocess.run([*launcher, "-m", "openmm_mlcg.train", str(cfg_path)], env=env, capture_output=True, text=True,
                       check=False)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{nproc}-process run failed:\n{r.stderr[-3000:]}")
    out = Path(yaml.safe_load(cfg_path.read_text())["training"]["out_dir"])
    with open(out / "log.csv", newline="") as fh:
        rates = [float(row["samples_per_s"]) for row in csv.DictReader(fh)][warmup:]
    return dict(processes=nproc, samples_per_s=statistics.median(rates), steps_timed=len(rates),
                samples_per_s_quartiles=[float(q) for q in np.percentile(rates, [25, 75])], wall_s=wall,
                load_average_before=load)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nproc", type=int, default=2, help="processes of the data-parallel run (default: 2)")
    ap.add_argument("--steps", type=int, default=40, help="optimisation steps per run (default: 40)")
    ap.add_argument("--warmup", type=int, default=8, help="first steps left out of the rate (default: 8)")
    ap.add_argument("--batch", type=int, default=4, help="global batch, windows per step (default: 4, the demo's)")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each kind, alternating (default: 2)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "current"), help="output folder")
    args = ap.parse_args(argv)
    if args.batch % args.nproc:
        raise ValueError(f"--batch: expected a multiple of --nproc={args.nproc}, got {args.batch}")
    with tempfile.TemporaryDirectory(prefix="bench_ddp_") as tmp:
        tmp = Path(tmp)
        system = demo_system(tmp / "data")
        rows = []
        for rep in range(args.repeats):
            for nproc in (1, args.nproc):
                cfg_path = tmp / f"run_{rep}_{nproc}.yaml"
                cfg_path.write_text(yaml.safe_dump(config(system, tmp / f"run_{rep}_{nproc}", args.steps, args.batch)))
                rows.append(dict(repeat=rep, **run(cfg_path, nproc, args.warmup)))
                print(rows[-1], flush=True)
    one = statistics.median(r["samples_per_s"] for r in rows if r["processes"] == 1)
    many = statistics.median(r["samples_per_s"] for r in rows if r["processes"] == args.nproc)
    result = dict(benchmark="ddp_cpu", environment=environment("cpu"), n_beads=system["n_beads"],
                  global_batch=args.batch, steps=args.steps, warmup=args.warmup, threads_per_process=1,
                  samples_per_s_1=one, **{f"samples_per_s_{args.nproc}": many}, speedup=many / one, target=1.6,
                  runs=rows)
    path = write_json(Path(args.out) / "ddp_cpu.json", result)
    print(f"1 process {one:.2f} samples/s, {args.nproc} processes {many:.2f} samples/s: speed-up {many / one:.2f}x "
          f"(load average {os.getloadavg()}); {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
