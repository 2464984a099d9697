"""Campaign on Dask vs one system after another (issue 42): wall time of the same 4-system campaign.

Each system is one ``openmm-mlcg generate polymer --scale smoke`` line (an 8-bead CG chain, ``--production-tau``
of 0.01-tau steps, one OpenMM CPU thread) followed by its Rg^2 analysis. The campaign is run by
:func:`openmm_mlcg.app.campaign.run_campaign` twice into fresh folders: sequentially in this process
(``n_workers=1``) and on a new ``LocalCluster`` of ``--workers`` processes of one thread each (its start and
the workers' imports included in the time). Target: parallel <= 0.6 x sequential with 2 workers on 2 free cores.
Also checks that both tables agree (same rows but wall time and worker) and the trajectories are identical.

Usage: python benchmarks/bench_campaign.py [--systems 4] [--workers 2] [--production-tau 1000] [--smoke]
Writes <out>/campaign_cpu.json (``--smoke``: campaign_cpu_smoke.json), environment record of _bench_common
(taken after the runs, so the sequential run pays its imports like the workers) with the 1/5/15-min load average
at the start (``load_average``) and the end (``load_average_end``).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENMM_CPU_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import environment, write_json  # noqa: E402

HERE = Path(__file__).resolve().parent
SYSTEM = "class1_0000"


def systems(n: int, production_tau: float) -> dict:
    """``n`` tiny polymer systems: reference MD, then its Rg^2 analysis."""
    out = {}
    for i in range(n):
        run = f"runs/s{i}"
        out[f"s{i}"] = [f"generate polymer --scale smoke --seed {i} --production-ps {production_tau:g} "
                        f"--platform CPU --out {run}",
                        f"analyze ref={run}/{SYSTEM}/trajectory.dcd:{run}/{SYSTEM}/topology.pdb --observables rg2 "
                        f"--out {run}/analysis"]
    return out


def timed(spec: dict, base: Path, n_workers: int) -> tuple:
    """(wall s, rows) of the campaign ``spec`` run in the fresh folder ``base``."""
    from openmm_mlcg.app.campaign import run_campaign

    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    t0 = time.perf_counter()
    rows = run_campaign(spec, base / "table", base_dir=base, n_workers=n_workers)
    return time.perf_counter() - t0, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--production-tau", type=float, default=1000.0, help="production per system, tau (= ps)")
    ap.add_argument("--smoke", action="store_true", help="50 tau per system: checks the script, not a result")
    ap.add_argument("--out", default=str(HERE / "results" / "current"))
    ap.add_argument("--work", default=str(HERE / "work" / "campaign"))
    a = ap.parse_args()
    tau = 50.0 if a.smoke else a.production_tau
    spec = systems(a.systems, tau)
    load_start = list(os.getloadavg())
    work = Path(a.work)
    t_seq, rows_seq = timed(spec, work / "sequential", 1)  # pays the imports (openmm, torch, ...) once, as
    t_par, rows_par = timed(spec, work / "dask", a.workers)  # each worker does: nothing is imported before
    import mdtraj
    import numpy as np

    env = environment("cpu")
    env["load_average_end"] = env.pop("load_average")
    env["load_average"] = load_start

    def strip(rows):
        return [{k: v for k, v in r.items() if k not in ("wall_s", "worker")} for r in rows]

    same_traj = all(np.array_equal(*(mdtraj.load(str(work / m / f"runs/s{i}" / SYSTEM / "trajectory.dcd"),
                                                 top=str(work / m / f"runs/s{i}" / SYSTEM / "topology.pdb")).xyz
                                     for m in ("sequential", "dask"))) for i in range(a.systems))
    result = dict(
        what=f"{a.systems} smoke polymer systems (generate, {tau:g} tau = {int(tau / 0.01)} steps, + rg2 analysis): "
             f"sequential in one process vs a Dask LocalCluster of {a.workers} worker processes x 1 thread "
             "(cluster start and worker imports included)",
        environment=env, systems=a.systems, workers=a.workers, production_tau=tau,
        sequential_s=round(t_seq, 2), dask_s=round(t_par, 2), ratio=round(t_par / t_seq, 3), target_ratio=0.6,
        meets_target=bool(t_par / t_seq <= 0.6), tables_equal=strip(rows_seq) == strip(rows_par),
        trajectories_identical=bool(same_traj), all_done=all(r["status"] == "done" for r in rows_seq + rows_par),
        per_system_wall_s=dict(sequential=[r["wall_s"] for r in rows_seq], dask=[r["wall_s"] for r in rows_par]),
        workers_used=sorted({r["worker"] for r in rows_par}))
    path = write_json(Path(a.out) / ("campaign_cpu_smoke.json" if a.smoke else "campaign_cpu.json"), result)
    print(f"sequential {t_seq:.1f} s, Dask {a.workers} workers {t_par:.1f} s, ratio {t_par / t_seq:.2f} "
          f"(target <= 0.6); tables equal {result['tables_equal']}, trajectories identical {same_traj}; "
          f"load {env['load_average']} -> {env['load_average_end']}; wrote {path}")


if __name__ == "__main__":
    main()
