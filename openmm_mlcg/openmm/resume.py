"""Resume a reported ``LearnedIntegrator`` run from an OpenMM checkpoint without duplicated frames.

The usual OpenMM recipe (``loadCheckpoint`` + reporters with ``append=True``) appends after *everything*
the killed run wrote, including the frames it wrote after its last checkpoint; the resumed run then writes
those steps again. :func:`resume_simulation` loads the checkpoint and cuts every DCD / StateDataReporter CSV
back to the checkpoint's step first::

    simulation = create_simulation(topology, system, LearnedIntegrator(bundle))
    resume_simulation(simulation, "run.chk", dcd=["cg.dcd"], csv=["cg.csv"])
    simulation.reporters.append(app.DCDReporter("cg.dcd", 10, append=True, enforcePeriodicBox=False))
    simulation.reporters.append(app.StateDataReporter("cg.csv", 10, step=True, time=True, append=True))
    simulation.step(n_total - simulation.currentStep)

The CSV needs a ``Step`` or ``Time (ps)`` column (``step=True`` or ``time=True``).
"""
from __future__ import annotations

from pathlib import Path

from openmm import unit

from ..util.io_utils import atomic_write

__all__ = ["resume_simulation", "truncate_outputs"]


def _truncate_dcd_to_step(path: Path, step: int) -> int:
    from ..io.dcd import dcd_frame_count, read_dcd_header, truncate_dcd

    head = read_dcd_header(path)
    have = dcd_frame_count(path)
    first, interval = int(head["first_step"]), max(1, int(head["interval"]))
    keep = 0 if step < first else (step - first) // interval + 1
    if keep > have:
        raise ValueError(f"dcd: {path} holds {have} frames (steps {first}..{first + (have - 1) * interval}) but the "
                         f"checkpoint is at step {step}, which needs {keep}; frames before the checkpoint are missing")
    truncate_dcd(path, keep)
    return keep


def _truncate_csv_to_step(path: Path, step: int, step_size_ps: float | None) -> int:
    lines = path.read_text().splitlines()
    if not lines or not lines[0].startswith("#"):
        raise ValueError(f"csv: {path} has no StateDataReporter header line (expected '#\"Step\",...')")
    header = lines[0][1:]
    sep = next((s for s in (",", "\t", ";", " ") if s in header), ",")
    cols = [c.strip().strip('"') for c in header.split(sep)]
    if "Step" in cols:
        idx, to_step = cols.index("Step"), lambda v: int(round(float(v)))
    elif "Time (ps)" in cols and step_size_ps:
        idx, to_step = cols.index("Time (ps)"), lambda v: int(round(float(v) / step_size_ps))
    else:
        raise ValueError(f"csv: {path} needs a 'Step' or 'Time (ps)' column to be cut at step {step}, found {cols}")
    kept = [lines[0]]
    for line in lines[1:]:
        fields = line.split(sep)
        try:
            if len(fields) != len(cols) or to_step(fields[idx]) > step:
                break  # a torn last row or the first row after the checkpoint
        except ValueError:
            break
        kept.append(line)
    with atomic_write(path, "w") as fh:
        fh.write("\n".join(kept) + "\n")
    return len(kept) - 1


def truncate_outputs(step: int, dcd=(), csv=(), step_size_ps: float | None = None) -> dict:
    """Cut DCD files (by their header's first step and interval) and StateDataReporter CSVs to the frames of
    steps <= ``step``. Missing files are skipped. Returns {path: frames kept}.

    Raises:
        ValueError: a file that is not a DCD / StateDataReporter CSV, or that lacks frames before ``step``.
    """
    kept = {}
    for p in map(Path, [dcd] if isinstance(dcd, (str, Path)) else dcd):
        if p.is_file():
            kept[str(p)] = _truncate_dcd_to_step(p, int(step))
    for p in map(Path, [csv] if isinstance(csv, (str, Path)) else csv):
        if p.is_file():
            kept[str(p)] = _truncate_csv_to_step(p, int(step), step_size_ps)
    return kept


def resume_simulation(simulation, checkpoint, dcd=(), csv=()) -> int:
    """``simulation.loadCheckpoint(checkpoint)`` (a path or the bytes of ``createCheckpoint``), then cut the
    reporter outputs ``dcd`` / ``csv`` to the checkpoint's step, ready for reporters with ``append=True``.
    A LearnedIntegrator of ``simulation`` is attached to its Context (``integrator.attach(simulation)``).

    Returns:
        the step count restored from the checkpoint.

    Raises:
        FileNotFoundError: missing checkpoint. ValueError: see :func:`truncate_outputs`.
    """
    if callable(getattr(simulation.integrator, "attach", None)):
        simulation.integrator.attach(simulation)
    if isinstance(checkpoint, (bytes, bytearray)):
        simulation.context.loadCheckpoint(bytes(checkpoint))
    else:
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint: file {path} does not exist")
        simulation.loadCheckpoint(str(path))
    step = int(simulation.context.getStepCount())
    dt = simulation.integrator.getStepSize().value_in_unit(unit.picosecond)
    truncate_outputs(step, dcd, csv, dt)
    return step
