"""Independent replicas inside OpenMM, stepped together as one batched graph.

As openmmtools' ``MultiStateSampler`` does, each replica keeps its own ``app.Simulation`` (Context, integrator,
reporters, time and step count); what is shared is the model step: :func:`step_replicas` advances all of them in
lockstep with one :class:`openmm_mlcg.model.replicas.ReplicaSimulator` call per stretch between reports, then lets
every Simulation's reporters write what ``Simulation.step`` would have written at those steps (DCDReporter,
StateDataReporter, ... unchanged formats). Each replica draws from its own integrator's counter-based seeds
(:func:`openmm_mlcg.openmm.state.step_seed` of its ``seed`` and step), so replica r is the run
``Simulation.step`` gives alone with its seed, to float rounding (the batched GNN sums in another order).

:func:`run_replicas` is :func:`openmm_mlcg.app.workflow.simulate_learned` for R seeds: one output folder per
replica with ``cg_topology.pdb``, ``learned.dcd`` and ``learned.csv``, read back in the same dict format.

Usage::

    runs = run_replicas("model.mlcg", mapping, frames, box, n_steps=1000, out_dirs=["rep0", "rep1"], seeds=[0, 1])
    # or, with Simulations built as usual (LearnedIntegrator attached, reporters appended):
    step_replicas([simulation_0, simulation_1], 1000)

Not supported (ValueError): replicas whose System has forces besides the model's (restraints, fields: step
those alone), or replicas with different ``refine`` / ``deterministic`` settings or bundles.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..model.replicas import ReplicaNonFiniteError, ReplicaSimulator
from . import checks as _checks, state as _st
from .integrator import LearnedIntegrator

__all__ = ["step_replicas", "run_replicas"]


def _replica_start(r: int, integ: LearnedIntegrator):
    """Replica r's :class:`~openmm_mlcg.openmm.integrator.StepStart`, checked as ``LearnedIntegrator.step`` checks
    it; System forces besides the model's are refused (the batch does not integrate them)."""
    start = integ.begin_step(f"step_replicas (replica {r})")
    if start.forces.active:
        raise ValueError(f"simulations: replica {r}'s System has forces besides the model's "
                         f"({start.forces.active[0][1]}); batched replicas do not integrate them, step it alone")
    return start


def _advance(simulations, integrators, batched: ReplicaSimulator, steps: int) -> None:
    """``steps`` model steps of every replica in one batched call; the Contexts and records updated."""
    starts = [_replica_start(r, integ) for r, integ in enumerate(integrators)]
    dev = batched.device
    gens = [[torch.Generator(device=dev).manual_seed(_st.step_seed(integ.seed, s.step0 + i)) for i in range(steps)]
            for integ, s in zip(integrators, starts)]
    as_t = (lambda a: None if a is None else torch.as_tensor(a, dtype=torch.float64, device=dev))
    done, failed = [steps] * len(starts), None
    try:
        xs, hs = batched.step([as_t(s.positions) for s in starts], [as_t(s.history) for s in starts],
                              [as_t(s.box) for s in starts], steps, integrators[0].refine, gens,
                              deterministic=integrators[0].deterministic)
    except ReplicaNonFiniteError as exc:      # every replica's last finite state
        xs, hs, failed = exc.positions, exc.history, exc.first_bad_steps
        done = [steps if b < 0 else b for b in failed]
    for integ, start, x, h, n in zip(integrators, starts, xs, hs, done):
        integ.finish_step(start, x, h, n)
    if failed is not None:
        named = ", ".join(f"replica {r} at step {starts[r].step0 + b + 1}" for r, b in enumerate(failed) if b >= 0)
        raise RuntimeError(f"step_replicas: the model produced non-finite positions ({named}); those Contexts "
                           "keep their last finite state, the others ran all steps")


def _next_reports(simulation) -> list:
    """(reporter, report dict) of each reporter (``Simulation._simulate``'s conversion of the old tuple form)."""
    out = []
    for reporter in simulation.reporters:
        report = reporter.describeNextReport(simulation)
        if isinstance(report, tuple):
            include = ["positions", "velocities", "forces", "energy"]
            report = {"steps": report[0], "periodic": report[5] if len(report) > 5 else None,
                      "include": [include[i] for i in range(4) if report[i + 1]]}
        out.append((reporter, report))
    return out


def _report(simulation, due: list) -> None:
    """Write the due reports of one Simulation as ``Simulation.step`` does (wrapped / unwrapped groups)."""
    uses_pbc = simulation.system.usesPeriodicBoundaryConditions()
    groups = {True: [], False: [], None: []}
    for reporter, report in due:
        wrap = None if "positions" not in report["include"] else \
            (uses_pbc if report.get("periodic") is None else bool(report["periodic"]))
        groups[wrap].append((reporter, report))
    either = groups.pop(None)
    groups[len(groups[True]) > len(groups[False])] += either
    for periodic, items in groups.items():
        if items:
            include = {k: True for _, rep in items for k in rep["include"]}
            state = simulation.context.getState(groups=simulation.integrator.getIntegrationForceGroups(),
                                                enforcePeriodicBox=periodic, parameters=True, **include)
            for reporter, _ in items:
                reporter.report(simulation, state)


def step_replicas(simulations: Sequence, steps: int, chunk: Optional[int] = None, callback=None) -> None:
    """Advance R Simulations (each with an attached :class:`LearnedIntegrator`) by ``steps`` model steps together.

    Args:
        simulations: R >= 1 ``app.Simulation`` of one bundle, with the same ``refine`` and ``deterministic``;
            each keeps its own Context, seed, time, step count and reporters (module docstring).
        steps: model steps (>= 0). chunk: at most this many steps per batched call (None: from report to report).
        callback: called as ``callback(steps_done)`` after each batched call (e.g. a progress bar), or None.

    Raises:
        ValueError: no simulations, an integrator that is not a LearnedIntegrator, other bundles / settings than
            replica 0's, System forces besides the model's, or what ``LearnedIntegrator.step`` refuses.
        RuntimeError: not attached; non-finite positions (named replicas keep their last finite state).
    """
    sims = list(simulations)
    if not sims:
        raise ValueError("simulations: expected at least one app.Simulation, got none")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps: expected an integer >= 0, got {steps!r}")
    integs = [s.integrator for s in sims]
    for r, integ in enumerate(integs):
        if not isinstance(integ, LearnedIntegrator):
            raise ValueError(f"simulations: replica {r} runs a {type(integ).__name__}, expected a LearnedIntegrator")
        same = (integ.fingerprint, integ.refine, integ.deterministic)
        if same != (integs[0].fingerprint, integs[0].refine, integs[0].deterministic):
            raise ValueError(f"simulations: replica {r} differs from replica 0 in bundle, refine or deterministic "
                             f"({same[1:]} vs {(integs[0].refine, integs[0].deterministic)})")
    batched = ReplicaSimulator.from_simulators([integ.simulator for integ in integs])
    done = 0
    while done < steps:
        reports = [_next_reports(s) for s in sims]
        n = min([steps - done] + [rep["steps"] for rs in reports for _, rep in rs if rep["steps"] > 0]
                + ([int(chunk)] if chunk else []))
        _advance(sims, integs, batched, n)
        done += n
        for s, rs in zip(sims, reports):
            due = [(reporter, rep) for reporter, rep in rs if rep["steps"] == n]
            if due:
                _report(s, due)
        if callback is not None:
            callback(done)


def run_replicas(bundle, mapping, initial_frames, box, n_steps: int, out_dirs: Sequence, seeds: Sequence[int],
                 report_interval: int = 1, refine: bool = True, deterministic: bool = False, device=None,
                 platform: Optional[str] = "Reference", progress: bool = False, desc: str = "learned replicas",
                 transfer: bool = False) -> list:
    """R learned runs from one start, stepped together; each as :func:`openmm_mlcg.app.workflow.simulate_learned`.

    Args:
        bundle: bundle path or loaded Bundle (loaded once, shared). mapping: CGMapping of the system.
        initial_frames: (k+1, n_beads, 3) nm, the last k+1 CG frames one model step apart (unwrapped).
        box: (3, 3) nm or None. n_steps: model steps (a multiple of ``report_interval``).
        out_dirs: R folders, each gets ``cg_topology.pdb``, ``learned.dcd`` and ``learned.csv``.
        seeds: R integer seeds (replica r is the single run with ``seed=seeds[r]``).
        report_interval, refine, deterministic, device, platform, transfer: as ``simulate_learned``.
        progress: a tqdm bar over the model steps (about 100 batched calls); ``desc`` is its label.

    Returns:
        list of R dicts as ``simulate_learned``'s: ``positions`` (F, n, 3) nm (first frame = start), ``time_ps``,
        ``wall_s`` (this replica's share: the batched wall time / R), ``ns_per_hour`` (from that share), ``dcd``,
        ``topology_pdb``, ``model_time_step_ps``.

    Raises:
        ValueError: ``seeds`` and ``out_dirs`` not R >= 1 entries each, bad ``n_steps`` / ``report_interval``, or
            errors of :class:`LearnedIntegrator` and :func:`step_replicas`.
        RuntimeError: the model produced non-finite positions.
    """
    import openmm
    from openmm import app

    from .attach import create_simulation
    from .dcd_reader import load_dcd
    from .integrator import _load_bundle
    from .reporter import CGStateDataReporter
    from .system import create_cg_system

    seeds, out_dirs = list(seeds), [Path(d) for d in out_dirs]
    if not seeds:
        raise ValueError("seeds: expected one seed per replica (>= 1), got none")
    if len(out_dirs) != len(seeds):
        raise ValueError(f"out_dirs: expected one folder per seed ({len(seeds)}), got {len(out_dirs)}")
    if int(n_steps) < 1 or int(report_interval) < 1 or int(n_steps) % int(report_interval):
        raise ValueError(f"n_steps/report_interval: expected positive integers with n_steps a multiple of "
                         f"report_interval, got {n_steps}/{report_interval}")
    device = _checks.resolve_device(device, "device")
    bundle = _load_bundle(bundle, device, None if transfer else mapping)
    frames = np.asarray(initial_frames, dtype=np.float64)
    plat = openmm.Platform.getPlatformByName(platform) if platform else None
    sims = []
    for out, seed in zip(out_dirs, seeds):
        out.mkdir(parents=True, exist_ok=True)
        topology, system = create_cg_system(mapping, box)
        integ = LearnedIntegrator(bundle, mapping=mapping, history=frames, refine=refine, seed=seed, device=device,
                                  deterministic=deterministic, transfer=transfer)
        sim = create_simulation(topology, system, integ, plat)
        sim.context.setPositions(frames[-1])
        with open(out / "cg_topology.pdb", "w") as fh:
            app.PDBFile.writeFile(topology, frames[-1] * 10.0 * openmm.unit.angstrom, fh, keepIds=True)
        sim.reporters.append(app.DCDReporter(str(out / "learned.dcd"), int(report_interval), enforcePeriodicBox=False))
        sim.reporters.append(CGStateDataReporter(str(out / "learned.csv"), int(report_interval), step=True,
                                                 time=True, speed=True, elapsedTime=True))
        sims.append(sim)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=int(n_steps), desc=desc, unit="step", dynamic_ncols=True)
    seen = [0]

    def tick(done: int) -> None:
        """Advance the progress bar to ``done`` steps."""
        bar.update(done - seen[0])
        seen[0] = done

    t0 = time.perf_counter()
    try:
        step_replicas(sims, int(n_steps), max(1, int(n_steps) // 100) if progress else None,
                      tick if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    wall = (time.perf_counter() - t0) / len(sims)
    runs = []
    for sim, out in zip(sims, out_dirs):
        for r in sim.reporters:  # close the DCD file so it can be read back
            if hasattr(r, "_out") and hasattr(r._out, "close"):
                r._out.close()
        traj = load_dcd(out / "learned.dcd", sim.topology)
        dt = sim.integrator.model_time_step
        runs.append(dict(positions=np.concatenate([frames[-1:], traj.xyz.astype(np.float64)], axis=0),
                         time_ps=np.concatenate([[0.0], traj.time]) if traj.n_frames else np.zeros(1),
                         wall_s=wall, ns_per_hour=int(n_steps) * dt / 1000.0 / (wall / 3600.0), dcd=out / "learned.dcd",
                         topology_pdb=out / "cg_topology.pdb", model_time_step_ps=dt))
    return runs
