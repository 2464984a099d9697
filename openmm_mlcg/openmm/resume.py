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

Every file is checked before any is cut (a DCD of another system, a binary file given as CSV, a checkpoint cut
short): a refused call changes no file, and :func:`resume_simulation` leaves the Context as it found it.
"""
from __future__ import annotations

import math
from pathlib import Path

import openmm
from openmm import unit

from ..io.dcd import dcd_frame_count, read_dcd_header, truncate_dcd
from ..util.io_utils import atomic_write, describe_file, read_text_file

__all__ = ["resume_simulation", "truncate_outputs"]

_CSV_WHAT = "a StateDataReporter CSV"


# ------------------------------------------------------------------------------------------- checks (no writes)
def _frames_to_keep(name: str, path: Path, first: int, interval: int, have: int, step: int) -> int:
    """How many of ``have`` frames (steps ``first``, ``first + interval``, ...) lie at or before ``step``.

    Raises:
        ValueError: the file starts more than one interval after ``step`` (written by a later run or another
            simulation), or it ends before ``step`` (frames before the checkpoint are missing).
    """
    if step < first - interval:
        raise ValueError(f"{name}: {path} starts at step {first} (every {interval} steps), expected a file that "
                         f"starts at or before the checkpoint's step {step} + {interval}; it was written by a later "
                         "run or another simulation: move it away or leave it out")
    keep = 0 if step < first else (step - first) // interval + 1
    if keep > have:
        raise ValueError(f"{name}: {path} holds {have} frames (steps {first}..{first + (have - 1) * interval}) but the "
                         f"checkpoint is at step {step}, which needs {keep}; frames before the checkpoint are missing")
    return keep


def _dcd_frames_to_keep(path: Path, step: int, n_particles: int | None, step_size_ps: float | None) -> int:
    """Frames of the DCD ``path`` at steps <= ``step``, after checking it belongs to the simulation.

    Raises:
        ValueError: not a DCD, another particle count, a header interval < 1 or another time step, or frames
            that do not reach ``step`` (:func:`_frames_to_keep`).
    """
    try:
        head, have = read_dcd_header(path), dcd_frame_count(path)
    except ValueError:
        raise ValueError(f"dcd: {path} is {describe_file(path)}, expected a DCD trajectory written by "
                         "DCDReporter") from None
    if n_particles is not None and head["n_atoms"] != n_particles:
        raise ValueError(f"dcd: {path} holds {head['n_atoms']} particles per frame, expected {n_particles} (the "
                         "simulation's particles); a trajectory of another system?")
    interval = int(head["interval"])
    if interval < 1:
        raise ValueError(f"dcd: {path} records {interval} steps between frames in its header, expected >= 1")
    dt = head["timestep_ps"]
    if step_size_ps and dt > 0 and not math.isclose(dt, step_size_ps, rel_tol=1e-4):
        raise ValueError(f"dcd: {path} was written with a time step of {dt:.6g} ps, expected {step_size_ps:.6g} ps "
                         "(the simulation's step size); a trajectory of another run?")
    return _frames_to_keep("dcd", path, int(head["first_step"]), interval, have, step)


def _csv_columns(path: Path, lines: list, step: int, step_size_ps: float | None):
    """(separator, number of columns, column index, value -> step) of a StateDataReporter CSV header."""
    if not lines or not lines[0].startswith("#"):
        first = repr(lines[0][:40]) if lines else "nothing"
        raise ValueError(f"csv: {path} has no StateDataReporter header line (expected '#\"Step\",...', found "
                         f"{first})")
    header = lines[0][1:]
    sep = next((s for s in (",", "\t", ";", " ") if s in header), ",")
    cols = [c.strip().strip('"') for c in header.split(sep)]
    if "Step" in cols:
        return sep, len(cols), cols.index("Step"), lambda v: round(float(v))
    if "Time (ps)" in cols and step_size_ps:
        return sep, len(cols), cols.index("Time (ps)"), lambda v: round(float(v) / step_size_ps)
    raise ValueError(f"csv: {path} needs a 'Step' or 'Time (ps)' column to be cut at step {step}, found {cols}")


def _csv_rows(lines: list, sep: str, n_cols: int, idx: int, to_step) -> list:
    """Steps of the complete data rows, up to the first torn or unparseable one."""
    steps = []
    for line in lines[1:]:
        fields = line.split(sep)
        try:
            if len(fields) != n_cols:
                break  # a torn last row
            steps.append(to_step(fields[idx]))
        except (ValueError, OverflowError):
            break
    return steps


def _check_csv_reaches(path: Path, steps: list, step: int) -> None:
    """Refuse CSV rows that start more than one row spacing after ``step`` or end more than one before it.

    Raises:
        ValueError: as :func:`_frames_to_keep` for a DCD (rows written by a later run, or rows missing).
    """
    if len(steps) < 2:
        return
    first_gap, last_gap = steps[1] - steps[0], steps[-1] - steps[-2]
    if first_gap > 0 and steps[0] > step + first_gap:
        raise ValueError(f"csv: {path} starts at step {steps[0]} (rows every {first_gap} steps), expected a file that "
                         f"starts at or before the checkpoint's step {step} + {first_gap}; it was written by a later "
                         "run or another simulation: move it away or leave it out")
    if last_gap > 0 and steps[-1] < step - last_gap:
        raise ValueError(f"csv: {path} ends at step {steps[-1]} (rows every {last_gap} steps) but the checkpoint is "
                         f"at step {step}; rows before the checkpoint are missing")


def _csv_lines_to_keep(path: Path, step: int, step_size_ps: float | None) -> tuple[list, bool]:
    """(header and rows at steps <= ``step``, whether that differs from the file) of a StateDataReporter CSV.

    Raises:
        ValueError: a binary file (:func:`read_text_file`), no header or no step/time column, or rows that start
            after or end before the checkpoint (:func:`_check_csv_reaches`).
    """
    text = read_text_file(path, _CSV_WHAT, "csv")
    lines = text.splitlines()
    sep, n_cols, idx, to_step = _csv_columns(path, lines, step, step_size_ps)
    steps = _csv_rows(lines, sep, n_cols, idx, to_step)
    _check_csv_reaches(path, steps, step)
    keep = next((i for i, s in enumerate(steps) if s > step), len(steps))
    kept = lines[:1 + keep]
    return kept, "\n".join(kept) + "\n" != text


def _as_paths(files) -> list:
    """Existing files among ``files`` (one path or a list; missing ones are skipped)."""
    return [p for p in map(Path, [files] if isinstance(files, (str, Path)) else files) if p.is_file()]


# ------------------------------------------------------------------------------------------- public API
def truncate_outputs(step: int, dcd=(), csv=(), step_size_ps: float | None = None,
                     n_particles: int | None = None) -> dict:
    """Cut DCD files (by their header's first step and interval) and StateDataReporter CSVs to the frames of
    steps <= ``step``. Missing files are skipped. Every file is checked before any is changed.

    Args:
        step: the step to cut at (a checkpoint's step count).
        dcd, csv: a path or a list of paths.
        step_size_ps: the simulation's step size: cuts CSVs that only have a ``Time (ps)`` column, and checks the
            DCD headers' time step. None: neither.
        n_particles: the simulation's particle count, checked against every DCD (None: not checked).

    Returns:
        {path: frames kept}.

    Raises:
        ValueError: naming the argument (``dcd`` / ``csv``), the file, what was expected and what was found: a
            file that is not a DCD / StateDataReporter CSV (binary given as CSV included), a DCD of another
            particle count, interval or time step, or frames that do not reach ``step``. No file is changed then.
    """
    step = int(step)
    dcds = [(p, _dcd_frames_to_keep(p, step, n_particles, step_size_ps)) for p in _as_paths(dcd)]
    csvs = [(p, *_csv_lines_to_keep(p, step, step_size_ps)) for p in _as_paths(csv)]
    kept = {}  # every file checked: only now change any of them
    for p, keep in dcds:
        truncate_dcd(p, keep)
        kept[str(p)] = keep
    for p, lines, changed in csvs:
        if changed:
            with atomic_write(p, "w") as fh:
                fh.write("\n".join(lines) + "\n")
        kept[str(p)] = len(lines) - 1
    return kept


def _checkpoint_bytes(checkpoint) -> tuple[bytes, str]:
    """(the checkpoint's bytes, how messages name it)."""
    if isinstance(checkpoint, (bytes, bytearray)):
        return bytes(checkpoint), f"checkpoint ({len(checkpoint)} bytes given)"
    path = Path(checkpoint)
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint: expected an OpenMM checkpoint file, got the directory {path}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: file {path} does not exist")
    return path.read_bytes(), f"checkpoint {path}"


def _load_checkpoint(simulation, data: bytes, label: str, expected_bytes: int) -> None:
    """``loadCheckpoint`` of ``data`` after checking its length against a checkpoint of this Context
    (``expected_bytes``: the layout depends on the System, integrator and platform, not on the state), then check
    that the integrator's record is intact.

    Raises:
        ValueError: shorter or longer than a checkpoint of this Simulation (cut short, or another System); OpenMM
            refuses it; the LearnedIntegrator's record is corrupt or from another bundle.
    """
    if len(data) != expected_bytes:
        raise ValueError(f"{label}: holds {len(data)} bytes but a checkpoint of this Simulation takes "
                         f"{expected_bytes}: {'truncated' if len(data) < expected_bytes else 'trailing data'}, or "
                         "written for another System, integrator or platform")
    try:
        simulation.context.loadCheckpoint(data)
    except (openmm.OpenMMException, MemoryError) as exc:
        raise ValueError(f"{label}: OpenMM could not load it ({str(exc).strip()}); expected an OpenMM checkpoint "
                         f"of this System and platform ({expected_bytes} bytes)") from None
    check = getattr(simulation.integrator, "check_state", None)
    if callable(check):
        check(label)


def resume_simulation(simulation, checkpoint, dcd=(), csv=()) -> int:
    """``simulation.loadCheckpoint(checkpoint)`` (a path or the bytes of ``createCheckpoint``), then cut the
    reporter outputs ``dcd`` / ``csv`` to the checkpoint's step, ready for reporters with ``append=True``.
    A LearnedIntegrator of ``simulation`` is attached to its Context (``integrator.attach(simulation)``).

    The checkpoint is checked (the length of a checkpoint of this Simulation, the integrator's record intact,
    :meth:`LearnedIntegrator.check_state`) and every output file is checked
    (:func:`truncate_outputs`) before any file is cut; when something is refused, the Context is put back as it
    was and no file is changed.

    Returns:
        the step count restored from the checkpoint.

    Raises:
        FileNotFoundError: missing checkpoint. IsADirectoryError: a directory given as checkpoint.
        ValueError: a checkpoint OpenMM cannot load, one cut short or of another System, a LearnedIntegrator
            record that is corrupt or from another bundle (the message names the checkpoint); the output checks
            of :func:`truncate_outputs` (naming ``dcd`` / ``csv`` and the file).
    """
    if callable(getattr(simulation.integrator, "attach", None)):
        simulation.integrator.attach(simulation)
    data, label = _checkpoint_bytes(checkpoint)
    before = simulation.context.createCheckpoint()
    try:
        _load_checkpoint(simulation, data, label, len(before))
        step = int(simulation.context.getStepCount())
        dt = simulation.integrator.getStepSize().value_in_unit(unit.picosecond)
        truncate_outputs(step, dcd, csv, dt, simulation.context.getSystem().getNumParticles())
    except BaseException:
        simulation.context.loadCheckpoint(before)  # the Context as the caller left it
        raise
    return step
