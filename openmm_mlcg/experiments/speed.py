"""Side-by-side speed of classical MD and the learned integrator: same process, same moment, same system.

Timings taken at different moments on a shared machine are not comparable (the same files once gave a ratio
of 1.72 and, rerun, 27.3). :func:`side_by_side` alternates the two simulations in short rounds of a fixed wall
time each, after three warm-up steps each, so both see the same load; the ratio is of the summed rates.
"""
from __future__ import annotations

import time

from openmm import unit

__all__ = ["time_steps", "side_by_side", "side_by_side_many"]


def time_steps(simulation, seconds: float) -> tuple[int, float]:
    """Step ``simulation`` in growing blocks (1, 2, 4, ...) until ``seconds`` of wall time have passed.

    Returns:
        (steps taken, wall seconds).
    """
    steps, block, t0 = 0, 1, time.perf_counter()
    while True:
        simulation.step(block)
        steps += block
        wall = time.perf_counter() - t0
        if wall >= seconds:
            return steps, wall
        block = min(block * 2, max(1, int(steps * (seconds - wall) / max(wall, 1e-9))))


def side_by_side_many(simulations: dict, seconds: float = 10.0, rounds: int = 2) -> dict:
    """Simulated ns per wall-hour of several ``app.Simulation`` objects, timed alternately in one process.

    Args:
        simulations: {name: Simulation} (each integrator's step size is its time step).
        seconds: wall time per simulation in total (split over ``rounds``).  rounds: alternations.

    Returns:
        {name: dict(ns_per_hour, steps, time_step_ps, wall_s)}.

    Raises:
        ValueError: ``seconds`` <= 0, ``rounds`` < 1, or no simulation.
    """
    if not seconds > 0 or int(rounds) < 1 or not simulations:
        raise ValueError(f"seconds/rounds/simulations: expected > 0 s, >= 1 round and >= 1 simulation, got "
                         f"{seconds}/{rounds}/{len(simulations)}")
    dt = {k: s.integrator.getStepSize().value_in_unit(unit.picosecond) for k, s in simulations.items()}
    for s in simulations.values():  # warm-up: context creation, TorchScript profiling runs, first neighbour list
        s.step(3)
    steps = dict.fromkeys(simulations, 0)
    wall = dict.fromkeys(simulations, 0.0)
    for _ in range(int(rounds)):
        for k, s in simulations.items():
            n, w = time_steps(s, seconds / int(rounds))
            steps[k] += n
            wall[k] += w
    return {k: dict(ns_per_hour=steps[k] * dt[k] / 1000.0 / (wall[k] / 3600.0), steps=steps[k], time_step_ps=dt[k],
                    wall_s=wall[k]) for k in simulations}


def side_by_side(md_simulation, learned_simulation, seconds: float = 10.0, rounds: int = 2, baselines=None) -> dict:
    """Simulated ns per wall-hour of classical MD and the learned run, timed alternately in one process.

    Args:
        md_simulation: classical MD (its integrator's step size is the MD time step): the baseline of ``ratio``.
        learned_simulation: the learned run (its integrator's step size is the model step).
        seconds: wall time per simulation in total (split over ``rounds``).  rounds: alternations.
        baselines: optional {name: Simulation} of further classical set-ups timed in the same rounds (e.g. the
            reference protocol's 2 fs step beside the best-practice 4 fs one).

    Returns:
        dict(md_ns_per_hour, learned_ns_per_hour, ratio, md_steps, learned_steps, md_time_step_ps,
        model_time_step_ps, seconds_each, rounds, method) where ratio = learned / md; with ``baselines`` also
        ``baselines: {name: dict(ns_per_hour, time_step_ps, steps, ratio = learned / it)}``.

    Raises:
        ValueError: ``seconds`` <= 0 or ``rounds`` < 1.
    """
    extra = dict(baselines or {})
    rates = side_by_side_many({"md": md_simulation, "learned": learned_simulation, **extra}, seconds, rounds)
    md, learned = rates["md"], rates["learned"]
    out = dict(md_ns_per_hour=md["ns_per_hour"], learned_ns_per_hour=learned["ns_per_hour"],
               ratio=learned["ns_per_hour"] / md["ns_per_hour"], md_steps=md["steps"], learned_steps=learned["steps"],
               md_time_step_ps=md["time_step_ps"], model_time_step_ps=learned["time_step_ps"],
               seconds_each=float(seconds), rounds=int(rounds),
               method="measured side by side: same process, alternating rounds")
    if extra:
        out["baselines"] = {k: dict(ns_per_hour=rates[k]["ns_per_hour"], time_step_ps=rates[k]["time_step_ps"],
                                    steps=rates[k]["steps"], ratio=learned["ns_per_hour"] / rates[k]["ns_per_hour"])
                            for k in extra}
    return out
