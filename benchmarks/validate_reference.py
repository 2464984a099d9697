"""Validate the SPE reference-MD builder: density, temperature and speed of a demo PEO/LiTFSI system.

Builds the "demo" PEO/LiTFSI system of ``openmm_mlcg.systems.spe`` (9 chains CH3O-(CH2CH2O)12-CH3 +
8 LiTFSI, ~1000 atoms, 1.5 mol/kg, GAFF2), runs the package protocol (minimise -> NPT 1 bar -> NVT, 353 K,
2 fs, PME) with a density reporter during NPT, and writes ``benchmarks/results/current/validate_reference.json``:

* density: mean over the second half of NPT vs the reference values in ``systems/data/spe_ions.json``
  (PEO melt at 353 K; PEO + 1.5 mol/kg LiTFSI estimate), pass if within 10 %;
* temperature: mean/std of the NVT production (StateDataReporter), pass if within 5 K of the target;
* NaN check over the trajectory; speed (ns/day) of NPT and NVT on this machine, and optionally a short
  speed-only run on further platforms (``--platforms CUDA``).

Usage: ``python benchmarks/validate_reference.py [--npt-ps 200] [--nvt-ps 50] [--platform CPU]``
"""
from __future__ import annotations

import argparse
import json
import os
import platform as _platform
import time
from pathlib import Path

import numpy as np
import openmm
from openmm import unit

from openmm_mlcg.util.io_utils import atomic_write
from openmm_mlcg.systems import spe
from openmm_mlcg.systems.packing import DATA_DIR

HERE = Path(__file__).resolve().parent


class DensityReporter:
    """Records (time_ps, density g/cm^3, wall s) every ``interval`` steps; density = mass / box volume."""

    def __init__(self, interval: int, mass_amu: float):
        self.interval, self.mass, self.rows, self.t0 = interval, mass_amu, [], time.perf_counter()

    def describeNextReport(self, simulation):
        steps = self.interval - simulation.currentStep % self.interval
        return {"steps": steps, "periodic": None, "include": []}

    def report(self, simulation, state):
        vol = state.getPeriodicBoxVolume().value_in_unit(unit.nanometer ** 3)
        self.rows.append((state.getTime().value_in_unit(unit.picosecond), self.mass * 1.66053906660e-3 / vol,
                          time.perf_counter() - self.t0))


def _speed_only(spe_sys, platform_name: str, n_steps: int = 2000) -> dict:
    try:
        sim = spe_sys.make_simulation(platform=platform_name, seed=1)
    except Exception as exc:  # platform not available here
        return {"platform": platform_name, "error": str(exc).splitlines()[0]}
    sim.minimizeEnergy(maxIterations=200)
    sim.context.setVelocitiesToTemperature(353 * unit.kelvin, 1)
    sim.step(100)
    t = time.perf_counter()
    sim.step(n_steps)
    sim.context.getState(getEnergy=True)
    wall = time.perf_counter() - t
    return {"platform": platform_name, "ns_per_day": n_steps * 0.002e-3 / (wall / 86400.0), "steps": n_steps}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--npt-ps", type=float, default=200.0, help="NPT equilibration length, ps")
    ap.add_argument("--nvt-ps", type=float, default=50.0, help="NVT production length, ps")
    ap.add_argument("--platform", default="CPU", help="OpenMM platform for the validation run")
    ap.add_argument("--platforms", nargs="*", default=[], help="extra platforms for a speed-only run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=str(HERE / "work" / "validate_reference"))
    ap.add_argument("--out", default=str(HERE / "results" / "current" / "validate_reference.json"))
    args = ap.parse_args(argv)

    ref = json.loads((DATA_DIR / "spe_ions.json").read_text())["reference_density"]
    t0 = time.perf_counter()
    system = spe.build_spe("PEO", n_chains=9, chain_length=12, seed=args.seed)
    t_build = time.perf_counter() - t0
    rep = DensityReporter(500, system.composition["total_mass_amu"])  # every 1 ps
    work = Path(args.work)
    if work.exists():
        import shutil

        shutil.rmtree(work)
    t1 = time.perf_counter()
    spe.simulate(system, work, equilibration_ps=args.npt_ps, production_ps=args.nvt_ps, frame_interval_ps=2.0,
                 platform=args.platform, seed=args.seed, reporters=[rep], progress_bar=False)
    t_md = time.perf_counter() - t1

    rows = np.array(rep.rows)
    npt = rows[rows[:, 0] <= args.npt_ps + 1e-6]
    half = npt[npt[:, 0] > args.npt_ps / 2]
    dens = float(half[:, 1].mean())
    blocks = np.array_split(half[:, 1], 5)
    dens_err = float(np.std([b.mean() for b in blocks], ddof=1) / np.sqrt(len(blocks)))
    npt_wall = float(npt[-1, 2] - npt[0, 2]) if len(npt) > 1 else float("nan")
    npt_speed = (npt[-1, 0] - npt[0, 0]) * 1e-3 / (npt_wall / 86400.0)
    nvt = rows[rows[:, 0] > args.npt_ps + 1e-6]
    nvt_wall = float(nvt[-1, 2] - npt[-1, 2]) if len(nvt) else float("nan")
    nvt_speed = (nvt[-1, 0] - npt[-1, 0]) * 1e-3 / (nvt_wall / 86400.0) if len(nvt) else float("nan")

    import csv

    with open(work / "state_data.csv") as fh:
        data = list(csv.DictReader(fh))
    temp = np.array([float(r["Temperature (K)"]) for r in data])
    import mdtraj

    traj = mdtraj.load(str(work / "trajectory.dcd"), top=str(work / "topology.pdb"))
    comp = system.composition
    result = dict(
        system=dict(polymer="PEO", n_chains=comp["n_chains"], chain_length=comp["chain_length"],
                    n_li=comp["n_li"], n_atoms=comp["n_atoms"], molality_mol_kg=comp["salt_molality_mol_kg"],
                    temperature_K=353.0, pressure_bar=1.0, time_step_fs=2.0, force_field="GAFF2 + CL&P TFSI "
                    "charges + Joung-Cheatham Li+, ions scaled 0.8, MMFF94 polymer charges"),
        density=dict(npt_ps=args.npt_ps, mean_second_half_g_cm3=dens, std_error_g_cm3=dens_err,
                     trace_ps_g_cm3=[[round(a, 1), round(b, 4)] for a, b in npt[::10, :2]],
                     references={k: v for k, v in ref.items() if not k.startswith("_")},
                     deviation_vs_litfsi_estimate=dens / ref["peo_litfsi_1p5molkg_353K"]["value"] - 1.0,
                     deviation_vs_peo_melt=dens / ref["peo_melt_353K"]["value"] - 1.0),
        temperature=dict(nvt_mean_K=float(temp.mean()), nvt_std_K=float(temp.std()), n_rows=len(temp)),
        no_nan=bool(np.all(np.isfinite(traj.xyz))) and bool(np.all(np.isfinite(temp))),
        speed=dict(platform=args.platform, npt_ns_per_day=float(npt_speed), nvt_ns_per_day=float(nvt_speed),
                   build_s=t_build, md_wall_s=t_md, cpu_count=os.cpu_count(), machine=_platform.processor() or
                   _platform.machine(), demo_estimate_s=t_build + (spe.SCALES["demo"]["equilibration_ps"] +
                                                                   spe.SCALES["demo"]["training_ps"]) * 1e-3
                   / float(nvt_speed) * 86400.0),
        extra_platforms=[_speed_only(system, p) for p in args.platforms],
        openmm_version=openmm.version.full_version)
    result["checks"] = dict(
        density_within_10pct_of_litfsi_estimate=abs(result["density"]["deviation_vs_litfsi_estimate"]) < 0.10,
        temperature_within_5K=abs(result["temperature"]["nvt_mean_K"] - 353.0) < 5.0, no_nan=result["no_nan"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, "w") as fh:
        json.dump(result, fh, indent=2)
    os.chmod(out, 0o644)  # atomic_write's temp file is private (0600)
    summary = {k: result[k] for k in ("checks", "temperature", "speed")}
    summary["density"] = {k: v for k, v in result["density"].items() if k != "trace_ps_g_cm3"}
    print(json.dumps(summary, indent=2))
    return result


if __name__ == "__main__":
    main()
