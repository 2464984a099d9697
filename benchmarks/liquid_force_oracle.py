"""Oracle: Brownian dynamics with the EXACT LJ force, N sub-steps per 2 ps model step (issue 9).

If an overdamped integrator with the true force keeps g(r) and D of the reference at N <= 20 force
evaluations per model step, a learned force (the Score GNN's small-noise score, trained by denoising score
matching on equilibrium configurations) can do the same at N GNN passes. This measures that upper bound:
OpenMM's ``BrownianIntegrator`` on the benchmark's LJ system, sub-step 2 ps / N, friction chosen so the
bare diffusivity D0 = kT / (m gamma) is ``d0_factor`` x the reference D.

Usage: python benchmarks/liquid_force_oracle.py [--work-dir benchmarks/work/liquid/full] [--ps 1000]
Writes <out>/liquid_force_oracle.json (default out: benchmarks/results/current).
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
from bench_liquid import SCALES, box_of  # noqa: E402

KT_PER_AMU = 0.0083144626 * 120.0 / 39.948  # nm^2/ps^2, argon at 120 K


def run(kind, n_atoms, start, box, n_sub, gamma, ps, seed=1, threads=2):
    """Positions every 2 ps (frames, n, 3) from ``start``, sub-step 2/n_sub ps, friction gamma 1/ps; None if it
    diverged."""
    import openmm
    from openmm import unit

    from openmm_mlcg.systems import lj

    _, system, _ = lj.build_lj_system(n_atoms)
    cls = openmm.BrownianIntegrator if kind == "brownian" else openmm.LangevinMiddleIntegrator
    integ = cls(120.0 * unit.kelvin, gamma / unit.picosecond, (2.0 / n_sub) * unit.picosecond)
    integ.setRandomNumberSeed(seed)
    ctx = openmm.Context(system, integ, openmm.Platform.getPlatformByName("CPU"), {"Threads": str(threads)})
    ctx.setPeriodicBoxVectors(*[openmm.Vec3(*row) for row in box])
    ctx.setPositions(start * unit.nanometer)
    ctx.setVelocitiesToTemperature(120.0 * unit.kelvin, seed)
    out = [start]
    try:
        for _ in range(int(ps / 2.0)):
            integ.step(n_sub)
            out.append(ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    except openmm.OpenMMException:
        return None
    x = np.asarray(out)
    return x if np.isfinite(x).all() and np.abs(x).max() < 1e3 else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work-dir", default=str(HERE / "work" / "liquid" / "full"))
    ap.add_argument("--out", default=str(HERE / "results" / "current"))
    ap.add_argument("--ps", type=float, default=600.0)
    ap.add_argument("--grid", default="langevin:15,langevin:20,langevin:40,brownian:20:1.5,brownian:40:1.5")
    ap.add_argument("--friction", type=float, default=0.42, help="Langevin friction, 1/ps (the cg_langevin fit)")
    args = ap.parse_args()
    from openmm_mlcg.data import load_run
    from openmm_mlcg.experiments import liquid as L

    sc = SCALES["full"]
    mapping, ref_cg = load_run(Path(args.work_dir) / "train", group_size=1)
    frames = ref_cg.positions[::2]
    box = box_of(ref_cg)
    masses = np.asarray(mapping.bead_masses, dtype=np.float64)
    ref = L.reference_summary(frames, np.arange(len(frames)) * 2.0, box, masses, sc["fit"])
    msd1 = float(((frames[1:] - frames[:-1]) ** 2).sum(-1).mean())
    rows = []
    for item in args.grid.split(","):
        kind, n_sub, *fac = item.split(":")
        n_sub = int(n_sub)
        fac = float(fac[0]) if fac else None
        gamma = KT_PER_AMU / (fac * ref["D_nm2_per_ps"]) if kind == "brownian" else args.friction
        t0 = time.perf_counter()
        x = run(kind, sc["n_atoms"], frames[-1], box, n_sub, gamma, args.ps)
        row = dict(integrator=kind, n_sub=n_sub, force_evaluations_per_model_step=n_sub, d0_factor=fac,
                   friction_per_ps=gamma, sub_step_ps=2.0 / n_sub, diverged=x is None)
        if x is not None:
            t = np.arange(len(x)) * 2.0
            m = L.rollout_metrics(x, t, box, masses, ref, sc["fit"], burn_in=len(x) // 10)
            row.update(gr_error=m["gr_error"], peak_height=m["peak_height"], D_ratio=m["D_ratio"],
                       nn_below_ref_q001=m["nn_below_ref_q001"],
                       one_step_msd_ratio=float(((x[1:] - x[:-1]) ** 2).sum(-1).mean()) / msd1)
        row["wall_s"] = time.perf_counter() - t0
        rows.append(row)
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    write_json(Path(args.out) / "liquid_force_oracle.json",
               dict(benchmark="liquid_force_oracle", created=datetime.datetime.now().isoformat(timespec="seconds"),
                    environment=environment(), ps=args.ps, reference_peak_height=ref["peak_height"],
                    reference_D_nm2_per_ps=ref["D_nm2_per_ps"], rows=rows))


if __name__ == "__main__":
    main()
