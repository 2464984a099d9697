"""The user workflow in a few calls: coarse-grain a reference run, run the learned model inside an ordinary
OpenMM ``app.Simulation`` with stock reporters, and time it. Used by the examples and the benchmarks.

Runtime only: this module never imports the trainer.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np

from ..data.runs import load_run as coarse_grain_run

__all__ = ["coarse_grain_run", "simulate_learned", "ns_per_hour"]


def ns_per_hour(simulated_ps: float, wall_s: float) -> float:
    """Simulated nanoseconds per wall-clock hour.

    Raises:
        ValueError: ``wall_s`` is not positive.
    """
    if not wall_s > 0:
        raise ValueError(f"wall_s: expected > 0 s, got {wall_s}")
    return float(simulated_ps) / 1000.0 / (float(wall_s) / 3600.0)


def _step_with_progress(simulation, n_steps: int, progress: bool, desc: str) -> None:
    """``simulation.step(n_steps)``, in chunks under a tqdm bar when ``progress``."""
    if not progress:
        simulation.step(n_steps)
        return
    from openmm import unit
    from tqdm.auto import tqdm

    dt_ps = simulation.integrator.getStepSize().value_in_unit(unit.picosecond)
    chunk = max(1, n_steps // 100)
    t0 = time.perf_counter()
    with tqdm(total=n_steps, desc=desc, unit="step", dynamic_ncols=True) as bar:
        done = 0
        while done < n_steps:
            k = min(chunk, n_steps - done)
            simulation.step(k)
            done += k
            bar.update(k)
            rate = ns_per_hour(done * dt_ps, max(time.perf_counter() - t0, 1e-9))
            bar.set_postfix(ns=f"{done * dt_ps / 1000:.3g}", ns_per_h=f"{rate:.3g}")


def simulate_learned(bundle, mapping, initial_frames, box, n_steps: int, out_dir, report_interval: int = 1,
                     refine: bool = True, deterministic: bool = False, seed: int = 0, device=None,
                     platform: Optional[str] = "Reference", progress: bool = False,
                     desc: str = "learned run", transfer: bool = False) -> dict:
    """Run ``LearnedIntegrator`` inside ``app.Simulation`` with DCDReporter + StateDataReporter and read it back.

    Args:
        bundle: bundle path or loaded Bundle.  mapping: CGMapping of the system.
        initial_frames: (k+1, n_beads, 3) nm, the last k+1 CG frames one model step apart (unwrapped);
            the simulation starts at the last one.
        box: (3, 3) nm reduced box vectors, or None for a non-periodic system.
        n_steps: model steps to run.  out_dir: gets ``cg_topology.pdb``, ``learned.dcd``, ``learned.csv``.
        report_interval: model steps between saved frames.
        refine / deterministic / seed / device / transfer: passed to :class:`LearnedIntegrator` (``transfer``:
            the bundle may be bound to another system's mapping).
        platform: OpenMM platform of the Context (the model runs on ``device`` regardless); the CG System has
            no real forces, so the Reference platform costs nothing.
        progress: show a tqdm progress bar (model steps, simulated ns, ns/h); ``desc`` is its label. The run
            is split into ~100 ``simulation.step`` calls for it, which changes nothing (counter-based RNG).

    Returns:
        dict: ``positions`` (F, n_beads, 3) nm unwrapped (first frame = start), ``time_ps`` (F,),
        ``wall_s`` (the ``simulation.step`` call only), ``ns_per_hour``, ``dcd``, ``topology_pdb``.

    Raises:
        ValueError: bad ``n_steps``/``report_interval``, or errors from the integrator (mapping mismatch, ...).
        RuntimeError: the model produced NaN (the message names the step).
    """
    import openmm
    from openmm import app

    from ..openmm import CGStateDataReporter, LearnedIntegrator, create_cg_system, create_simulation, load_dcd

    if int(n_steps) < 1 or int(report_interval) < 1 or int(n_steps) % int(report_interval):
        raise ValueError(f"n_steps/report_interval: expected positive integers with n_steps a multiple of "
                         f"report_interval, got {n_steps}/{report_interval}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames = np.asarray(initial_frames, dtype=np.float64)
    topology, system = create_cg_system(mapping, box)
    integrator = LearnedIntegrator(bundle, mapping=mapping, history=frames, refine=refine, seed=seed,
                                   device=device, deterministic=deterministic, transfer=transfer)
    plat = openmm.Platform.getPlatformByName(platform) if platform else None
    simulation = create_simulation(topology, system, integrator, plat)
    simulation.context.setPositions(frames[-1])
    pdb = out / "cg_topology.pdb"
    with open(pdb, "w") as fh:
        app.PDBFile.writeFile(topology, frames[-1] * 10.0 * openmm.unit.angstrom, fh, keepIds=True)
    dcd = out / "learned.dcd"
    simulation.reporters.append(app.DCDReporter(str(dcd), int(report_interval), enforcePeriodicBox=False))
    simulation.reporters.append(CGStateDataReporter(str(out / "learned.csv"), int(report_interval), step=True,
                                                    time=True, speed=True, elapsedTime=True))
    t0 = time.perf_counter()
    _step_with_progress(simulation, int(n_steps), progress, desc)
    wall = time.perf_counter() - t0
    for r in simulation.reporters:  # close the DCD file so it can be read back
        if hasattr(r, "_out") and hasattr(r._out, "close"):
            r._out.close()
    traj = load_dcd(dcd, topology)
    dt = integrator.model_time_step
    positions = np.concatenate([frames[-1:], traj.xyz.astype(np.float64)], axis=0)
    time_ps = np.concatenate([[0.0], traj.time]) if traj.n_frames else np.zeros(1)
    return dict(positions=positions, time_ps=time_ps, wall_s=wall, ns_per_hour=ns_per_hour(n_steps * dt, wall),
                dcd=dcd, topology_pdb=pdb, model_time_step_ps=dt)
