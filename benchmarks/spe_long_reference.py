"""A reference that can judge diffusivity: long MD of the main job's SPE box, coarse-grained and shipped.

The main job's reference is the 200 ps after its 40 ps of training; there the MSD is still subdiffusive, so its
"D" says nothing about long-time dynamics (issue 37). This script runs the same system (the demo preset's build,
seed 0: the same molecules and packing as ``python examples/run_spe.py``) for ``--production-ps`` of NVT after the
preset's NPT equilibration, coarse-grains it with the main job's mapping rule (METIS, group size 7, seed 0) and
writes the CG-level data to ``--data-dir`` (committed: positions, box, mapping, recipe), so no benchmark or test
reruns the MD; with them goes the last all-atom frame (``final_frame.pdb``), from which a longer reference can
continue. The all-atom run stays in ``--work-dir`` (not committed; resumable from its checkpoint).

Then it measures, per species (Li+ beads, TFSI- molecule centres of mass; the periodic system's centre-of-mass
drift removed): the MSD with all time origins, its log-log slope over lag windows, and D from a linear fit over
one fixed lag window with a block-average uncertainty (the trajectory cut into ``--blocks`` equal blocks, D fitted
in each over the same window; uncertainty = standard error over blocks). Written to
``benchmarks/results/current/spe_long_reference.json``; the window and the block count go into the data's
recipe.json, where the main job's judge (:mod:`openmm_mlcg.experiments.spe_judge`) reads them.

Usage: python benchmarks/spe_long_reference.py [--production-ps 2000] [--frame-interval-ps 2] [--blocks 4]
       [--fit-window-ps 100 400] [--work-dir benchmarks/work/spe_long] [--data-dir benchmarks/data/spe_demo_long]
       [--out benchmarks/results/current] [--threads 2] [--analyse-only]
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

from _bench_common import environment  # noqa: E402

from openmm_mlcg.util.io_utils import atomic_write  # noqa: E402

SEED = 0
GROUP_SIZE = 7
DEMO_SYSTEM = "SPE demo box of examples/run_spe.py (openmm_mlcg.experiments.scales.SPE['demo'])"


def run_md(work_dir: Path, production_ps: float, frame_interval_ps: float, platform=None, build=None,
           equilibration_ps=None, name: str = "reference", desc: str = "long reference MD") -> Path:
    """The all-atom reference run ``work_dir / name`` (resumable): ``build`` (``spe.build_spe`` kwargs; default the
    demo build), seed 0, NPT equilibration (``equilibration_ps``; default the demo preset's), then NVT."""
    from openmm_mlcg.experiments.scales import SPE
    from openmm_mlcg.systems import spe
    from openmm_mlcg.systems.md import is_done

    demo = SPE["demo"]
    run = work_dir / name
    if not is_done(run):
        system = spe.build_spe(seed=SEED, **(demo["build"] if build is None else build))
        spe.simulate(system, run, equilibration_ps=demo["equilibration_ps"] if equilibration_ps is None
                     else equilibration_ps, production_ps=production_ps, frame_interval_ps=frame_interval_ps,
                     platform=platform, seed=SEED, desc=desc)
    return run


def ship(run: Path, data_dir: Path, production_ps: float, frame_interval_ps: float, fit_window_ps, blocks,
         system: str | None = None, build: dict | None = None, equilibration_ps=None, command: str | None = None,
         extra: dict | None = None) -> dict:
    """Coarse-grain the run and write the CG-level data (trajectory npz, mapping npz, all-atom topology, last
    all-atom frame, recipe).

    The recipe describes the demo box of this script unless ``system`` (text), ``build`` (``spe.build_spe``
    kwargs), ``equilibration_ps`` and ``command`` describe another run; ``fit_window_ps``/``blocks`` None leaves
    the judge's window out of the recipe (a run too short for it); ``extra`` entries are appended to it."""
    import shutil

    import openmm

    from openmm_mlcg.data import load_run, read_run_metadata
    from openmm_mlcg.experiments.scales import SPE

    import mdtraj

    mapping, cg = load_run(run, group_size=GROUP_SIZE, seed=SEED)
    data_dir.mkdir(parents=True, exist_ok=True)
    cg.save(data_dir / "cg_trajectory.npz")
    mapping.save(data_dir / "mapping.npz")
    shutil.copyfile(run / "topology.pdb", data_dir / "topology.pdb")
    # the last all-atom frame (with its box): a longer reference continues from it on any platform (the OpenMM
    # checkpoint is platform-specific), with velocities drawn at the run's temperature
    last = mdtraj.load_dcd(str(run / "trajectory.dcd"), top=str(run / "topology.pdb"))[-1]
    last.save_pdb(str(data_dir / "final_frame.pdb"))
    meta = read_run_metadata(run)
    demo = SPE["demo"]
    if command is None:
        command = ("python benchmarks/spe_long_reference.py "
                   f"--production-ps {production_ps:g} --frame-interval-ps {frame_interval_ps:g} "
                   f"--blocks {blocks} --fit-window-ps {fit_window_ps[0]:g} {fit_window_ps[1]:g}")
    recipe = dict(system=DEMO_SYSTEM if system is None else system, build=demo["build"] if build is None else build,
                  build_seed=SEED, md_seed=SEED,
                  equilibration_ps=demo["equilibration_ps"] if equilibration_ps is None else equilibration_ps,
                  production_ps=production_ps, frame_interval_ps=frame_interval_ps,
                  mapping=dict(group_size=GROUP_SIZE, seed=SEED), n_frames=int(cg.n_frames),
                  n_beads=int(mapping.n_beads), openmm_version=openmm.__version__)
    if fit_window_ps is not None:   # what the judge uses
        recipe.update(fit_window_ps=[float(v) for v in fit_window_ps], blocks=int(blocks))
    recipe.update(md_metadata={k: meta.get(k) for k in ("temperature_K", "time_step_ps", "force_field",
                                                        "composition", "platform") if k in meta},
                  command=command, **(extra or {}))
    with atomic_write(data_dir / "recipe.json", "w") as fh:
        json.dump(recipe, fh, indent=1, default=str)
    return recipe


def slopes(lag: np.ndarray, msd: np.ndarray, edges_ps) -> list:
    """Log-log slope of the MSD over consecutive lag windows ``edges_ps``
    (:func:`openmm_mlcg.analysis.diffusion.loglog_slope`)."""
    from openmm_mlcg.analysis.diffusion import loglog_slope

    return [dict(window_ps=[float(a), float(b)], slope=loglog_slope(lag, msd, (a, b)))
            for a, b in zip(edges_ps[:-1], edges_ps[1:])]


def analyse(data_dir: Path, fit_window_ps, n_blocks: int) -> dict:
    """Per species: MSD and its log-log slopes over the whole run, and D over the fit window with its
    block-average uncertainty (:func:`openmm_mlcg.analysis.block_diffusivity`; the judge of the main job,
    :mod:`openmm_mlcg.experiments.spe_judge`, reads the same data, window and blocks)."""
    from openmm_mlcg.analysis.diffusion import block_diffusivity, fit_diffusivity, mean_squared_displacement
    from openmm_mlcg.cg.mapping import CGMapping
    from openmm_mlcg.data import CGTrajectory
    from openmm_mlcg.experiments.spe_judge import species_tracks

    mapping = CGMapping.load(data_dir / "mapping.npz")
    traj = CGTrajectory.load(data_dir / "cg_trajectory.npz", mapping)
    t = np.asarray(traj.time_ps) - float(traj.time_ps[0])
    out = {}
    for name, x in species_tracks(mapping, traj.positions).items():
        lag, msd_per_particle = mean_squared_displacement(x, t, max_lag_ps=float(t[-1]) / 2)
        msd = msd_per_particle.mean(1)
        step = max(1, len(lag) // 200)
        out[name] = dict(
            n_particles=int(x.shape[1]), whole_run=fit_diffusivity(lag, msd, fit_window_ps),
            blocks=block_diffusivity(np.array_split(x, n_blocks), t, fit_window_ps),
            loglog_slopes=slopes(lag, msd, [2, 10, 50, 100, 200, 400, 800, float(t[-1]) / 2]),
            slope_in_fit_window=slopes(lag, msd, list(fit_window_ps))[0]["slope"],
            msd_lag_ps=lag[::step].tolist(), msd_nm2=msd[::step].tolist())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--production-ps", type=float, default=2000.0)
    ap.add_argument("--frame-interval-ps", type=float, default=2.0)
    ap.add_argument("--blocks", type=int, help="blocks of the uncertainty (default 4; given: written to the recipe)")
    ap.add_argument("--fit-window-ps", type=float, nargs=2,
                    help="lag window of D (default 100 400; given: written to the recipe)")
    ap.add_argument("--work-dir", default=str(HERE / "work" / "spe_long"))
    ap.add_argument("--data-dir", default=str(HERE / "data" / "spe_demo_long"))
    ap.add_argument("--out", default=str(HERE / "results" / "current"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--platform", default=None)
    ap.add_argument("--analyse-only", action="store_true", help="use the shipped CG data, run no MD")
    a = ap.parse_args(argv)
    import os

    os.environ.setdefault("OPENMM_CPU_THREADS", str(a.threads))
    t0 = time.perf_counter()
    data_dir = Path(a.data_dir)
    if not a.analyse_only:
        run = run_md(Path(a.work_dir), a.production_ps, a.frame_interval_ps, a.platform)
        ship(run, data_dir, a.production_ps, a.frame_interval_ps, a.fit_window_ps or (100.0, 400.0), a.blocks or 4)
    recipe = json.loads((data_dir / "recipe.json").read_text())
    if a.fit_window_ps or a.blocks:   # a new window or block count: the judge reads it from the recipe
        recipe.update(fit_window_ps=[float(v) for v in (a.fit_window_ps or recipe["fit_window_ps"])],
                      blocks=int(a.blocks or recipe["blocks"]))
        with atomic_write(data_dir / "recipe.json", "w") as fh:
            json.dump(recipe, fh, indent=1, default=str)
    species = analyse(data_dir, recipe["fit_window_ps"], recipe["blocks"])
    doc = dict(benchmark="spe_long_reference", recipe=recipe, data_dir=str(data_dir.relative_to(HERE.parent))
               if data_dir.is_relative_to(HERE.parent) else str(data_dir), species=species,
               targets=dict(relative_uncertainty_at_most=0.15, loglog_slope_within=0.1),
               verdict={k: dict(uncertainty_ok=v["blocks"]["relative_uncertainty"] <= 0.15,
                                diffusive_in_fit_window=abs(v["slope_in_fit_window"] - 1.0) <= 0.1)
                        for k, v in species.items()},
               environment=environment(), wall_s=time.perf_counter() - t0)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "spe_long_reference.json", "w") as fh:
        json.dump(doc, fh, indent=1)
    for k, v in species.items():
        b = v["blocks"]
        print(f"{k}: D {b['D_cm2_per_s']:.3g} cm^2/s (block mean; whole run {v['whole_run']['D_cm2_per_s']:.3g}), "
              f"block s.e. {100 * b['relative_uncertainty']:.0f} %, slope in {b['fit_window_ps']} ps "
              f"{v['slope_in_fit_window']:.2f}; slopes "
              + ", ".join(f"{s['window_ps'][0]:g}-{s['window_ps'][1]:g}: {s['slope']:.2f}" for s in v["loglog_slopes"]))
    print(f"wrote {out / 'spe_long_reference.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
