"""Side-by-side speed of classical MD and the learned integrator: same process, same moment, same system.

Timings taken at different moments on a shared machine are not comparable (the same files once gave a ratio
of 1.72 and, rerun, 27.3). :func:`side_by_side` alternates the two simulations in short rounds of a fixed wall
time each, after three warm-up steps each, so both see the same load; the ratio is of the summed rates.
"""
from __future__ import annotations

import time

from openmm import unit

__all__ = ["time_steps", "side_by_side"]


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


def side_by_side(md_simulation, learned_simulation, seconds: float = 10.0, rounds: int = 2) -> dict:
    """Simulated ns per wall-hour of two ``app.Simulation`` objects, timed alternately in one process.

    Args:
        md_simulation: classical MD (its integrator's step size is the MD time step).
        learned_simulation: the learned run (its integrator's step size is the model step).
        seconds: wall time per simulation in total (split over ``rounds``).  rounds: alternations.

    Returns:
        dict(md_ns_per_hour, learned_ns_per_hour, ratio, md_steps, learned_steps, seconds_each, rounds,
        method) where ratio = learned / md.

    Raises:
        ValueError: ``seconds`` <= 0 or ``rounds`` < 1.
    """
    if not seconds > 0 or int(rounds) < 1:
        raise ValueError(f"seconds/rounds: expected > 0 s and >= 1 round, got {seconds}/{rounds}")
    sims = {"md": md_simulation, "learned": learned_simulation}
    dt = {k: s.integrator.getStepSize().value_in_unit(unit.picosecond) for k, s in sims.items()}
    for s in sims.values():  # warm-up: context creation, TorchScript profiling runs, first neighbour list
        s.step(3)
    steps = dict.fromkeys(sims, 0)
    wall = dict.fromkeys(sims, 0.0)
    for _ in range(int(rounds)):
        for k, s in sims.items():
            n, w = time_steps(s, seconds / int(rounds))
            steps[k] += n
            wall[k] += w
    rate = {k: steps[k] * dt[k] / 1000.0 / (wall[k] / 3600.0) for k in sims}
    return dict(md_ns_per_hour=rate["md"], learned_ns_per_hour=rate["learned"],
                ratio=rate["learned"] / rate["md"], md_steps=steps["md"], learned_steps=steps["learned"],
                md_time_step_ps=dt["md"], model_time_step_ps=dt["learned"], seconds_each=float(seconds),
                rounds=int(rounds), method="measured side by side: same process, alternating rounds")
