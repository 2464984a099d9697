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
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from openmm import unit

from ..model.replicas import ReplicaNonFiniteError, ReplicaSimulator
from . import checks as _checks, state as _st
from .integrator import _POSITION_TOLERANCE_NM, LearnedIntegrator

__all__ = ["step_replicas", "run_replicas"]


def _replica_state(r: int, integ: LearnedIntegrator):
    """(context, x (n, 3), box or None, history (k, n, 3), step0, t0) of replica r, checked as
    ``LearnedIntegrator.step`` checks them."""
    ctx = integ._require_context()
    if integ._checked[1].active:
        raise ValueError(f"simulations: replica {r}'s System has forces besides the model's "
                         f"({integ._checked[1].active[0][1]}); batched replicas do not integrate them, step it alone")
    state = ctx.getState(getPositions=True)
    x = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer), dtype=np.float64)
    box = None
    if ctx.getSystem().usesPeriodicBoundaryConditions():
        box = np.asarray(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer))
    history, x_last, ready = integ._read_vars()
    moved = ready and np.max(np.abs(x - x_last), initial=0.0) > _POSITION_TOLERANCE_NM
    if moved or (box is not None and not np.array_equal(box, integ._checked[2])):
        _checks.check_state(integ.bundle.metadata, x, box, integ.mapping)
        integ._checked = integ._checked[:2] + (box,)
    if moved:
        warnings.warn(f"step_replicas: replica {r}'s Context positions changed since its last step; keeping its "
                      "stored history velocities", stacklevel=3)
    if not ready:
        history = np.zeros((integ.history_length, x.shape[0], 3))
    return ctx, x, box, history, ctx.getStepCount(), state.getTime().value_in_unit(unit.picosecond)


def _advance(simulations, integrators, batched: ReplicaSimulator, steps: int) -> None:
    """``steps`` model steps of every replica in one batched call; the Contexts and records updated."""
    states = [_replica_state(r, integ) for r, integ in enumerate(integrators)]
    dev = batched.device
    gens = [[torch.Generator(device=dev).manual_seed(_st.step_seed(integ.seed, s[4] + i)) for i in range(steps)]
            for integ, s in zip(integrators, states)]
    as_t = (lambda a: None if a is None else torch.as_tensor(a, dtype=torch.float64, device=dev))
    done, failed = [steps] * len(states), None
    try:
        xs, hs = batched.step([as_t(s[1]) for s in states], [as_t(s[3]) for s in states],
                              [as_t(s[2]) for s in states], steps, integrators[0].refine, gens,
                              deterministic=integrators[0].deterministic)
    except ReplicaNonFiniteError as exc:      # every replica's last finite state
        xs, hs, failed = exc.positions, exc.history, exc.first_bad_steps
        done = [steps if b < 0 else b for b in failed]
    for integ, (ctx, _, _, _, step0, t0), x, h, n in zip(integrators, states, xs, hs, done):
        if not n:
            continue
        x = x.detach().to("cpu", torch.float64).numpy()
        h = h.detach().to("cpu", torch.float64).numpy()
        ctx.setPositions(x)
        ctx.setVelocities(h[-1] / integ.model_time_step if integ.history_length else np.zeros_like(x))
        integ._write_vars(h, x, True)
        ctx.setTime(t0 + n * integ.model_time_step)
        ctx.setStepCount(step0 + n)
    if failed is not None:
        named = ", ".join(f"replica {r} at step {states[r][4] + b + 1}" for r, b in enumerate(failed) if b >= 0)
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
        same = (integ._fingerprint, integ.refine, integ.deterministic)
        if same != (integs[0]._fingerprint, integs[0].refine, integs[0].deterministic):
            raise ValueError(f"simulations: replica {r} differs from replica 0 in bundle, refine or deterministic "
                             f"({same[1:]} vs {(integs[0].refine, integs[0].deterministic)})")
    batched = ReplicaSimulator.from_simulators([integ._simulator for integ in integs])
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
