"""Resumable reference-MD protocol runner shared by the system builders (SPE, single-chain polymers).

A protocol is a list of :class:`Stage` objects (minimise / equilibrate / produce) run on an ordinary
``openmm.app.Simulation``.  Everything needed to continue after a kill is on disk in ``out_dir``::

    trajectory.dcd     production frames (DCDReporter), every ``report_interval_steps`` steps
    state_data.csv     StateDataReporter rows, one per production frame
    checkpoint.chk     Simulation checkpoint, written atomically at frame boundaries
    progress.json      stage, steps done, number of frames (informative; the checkpoint step count is the truth)
    metadata.json      caller metadata + frame_interval_ps, time_step_ps, temperature_K, openmm_version,
                       platform, seed, integrator_seed, n_particles, stages, box_nm (box at the start of
                       production as 3 row vectors in nm, or None without periodic boundaries)
    topology.pdb       PDB with CONECT records, written just before the first production stage
    DONE               marker written last

Resume rule: the integrator step count stored in the checkpoint identifies the exact position in the
protocol (every stage starts at a multiple of ``report_interval_steps``), so a kill between writing the
checkpoint and ``progress.json`` is harmless.  On resume the DCD and CSV are truncated to the number of
frames the checkpoint has seen, so frames written after the last checkpoint are dropped and regenerated.
A checkpoint is specific to platform, OpenMM version and hardware (OpenMM docs); resume with the same ones.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import openmm
from openmm import app, unit

from ..io.dcd import dcd_frame_count, truncate_dcd  # re-exported (MD outputs)
from ..util.io_utils import atomic_write

__all__ = ["Stage", "run_protocol", "make_platform", "is_done", "ensure_writable_dir", "truncate_dcd",
           "dcd_frame_count"]

_BAROSTATS = ("MonteCarloBarostat", "MonteCarloAnisotropicBarostat", "MonteCarloMembraneBarostat",
              "MonteCarloFlexibleBarostat")


@dataclass(frozen=True)
class Stage:
    """One protocol stage.

    Attributes:
        name: label written to progress.json.
        n_steps: integrator steps (>= 0; a multiple of ``report_interval_steps`` when ``reporters``).
        reporters: attach the DCD/CSV reporters (True only for production).
        barostat: enable (True) or disable (False) every MonteCarlo*Barostat already in the system
            (via ``setFrequency``; no-op when the system has none).
        minimize: run ``Simulation.minimizeEnergy`` before the stage's steps, then redraw velocities
            at the integrator temperature (seeded with ``metadata["seed"]`` when given).
    """

    name: str
    n_steps: int
    reporters: bool = False
    barostat: bool = False
    minimize: bool = False


def make_platform(name: str | None = None) -> openmm.Platform:
    """Return an OpenMM platform by name ('CPU', 'CUDA', 'OpenCL', 'HIP', 'Reference').

    ``None`` picks the fastest available platform (largest ``Platform.getSpeed()``).

    Raises:
        ValueError: ``name`` is not an available platform (message lists the available ones).
    """
    available = [openmm.Platform.getPlatform(i) for i in range(openmm.Platform.getNumPlatforms())]
    if name is None:
        return max(available, key=lambda p: p.getSpeed())
    names = [p.getName() for p in available]
    for p in available:
        if p.getName().lower() == str(name).lower():
            return p
    raise ValueError(f"platform: expected one of {names} (or None for the fastest), got {name!r}")


def is_done(out_dir) -> bool:
    """True when ``out_dir`` holds a finished protocol (its ``DONE`` marker exists)."""
    return (Path(out_dir) / "DONE").is_file()


def ensure_writable_dir(path, name: str = "out_dir") -> Path:
    """Create directory ``path`` (with parents) and check a file can be written in it.

    Raises:
        ValueError: the directory cannot be created or written (message names ``name``).
    """
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write_test.{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"{name}: cannot create/write directory {out}: {exc}") from None
    return out


def _truncate_csv(path: Path, n_rows: int) -> None:
    """Keep the header line and the first ``n_rows`` data rows of a StateDataReporter CSV."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    keep = lines[: 1 + n_rows] if lines and lines[0].startswith("#") else lines[:n_rows]
    with atomic_write(path, "w") as fh:
        fh.writelines(line if line.endswith("\n") else line + "\n" for line in keep)


def _write_json(path: Path, data: dict) -> None:
    with atomic_write(path, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)


def _stage_starts(stages, interval: int) -> list[int]:
    """Step count at which each stage starts; each start is a multiple of ``interval``."""
    starts, step = [], 0
    for st in stages:
        step = -(-step // interval) * interval
        starts.append(step)
        step += st.n_steps
    return starts


def _position(step: int, stages, starts) -> tuple[int, int]:
    """(stage index, steps done in it) for a checkpoint taken at integrator step ``step``."""
    for k in range(len(stages) - 1, -1, -1):
        if starts[k] < step <= starts[k] + stages[k].n_steps:
            return k, step - starts[k]
    raise ValueError(f"checkpoint: step count {step} does not fall inside the protocol {starts}")


def _frames_at(stage_idx: int, done: int, stages, interval: int) -> int:
    n = sum(st.n_steps // interval for st in stages[:stage_idx] if st.reporters)
    return n + (done // interval if stages[stage_idx].reporters else 0)


def _set_barostat(system: openmm.System, enabled: bool, frequencies: dict) -> None:
    for i, force in enumerate(system.getForces()):
        if type(force).__name__ in _BAROSTATS:
            force.setFrequency(frequencies[i] if enabled else 0)


def _check_args(simulation, stages, report_interval_steps, metadata, checkpoint_interval_steps):
    if not isinstance(simulation, app.Simulation):
        raise TypeError(f"simulation: expected openmm.app.Simulation, got {type(simulation).__name__}")
    if not isinstance(report_interval_steps, int) or report_interval_steps <= 0:
        raise ValueError(f"report_interval_steps: expected a positive int, got {report_interval_steps!r}")
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata: expected dict, got {type(metadata).__name__}")
    if checkpoint_interval_steps <= 0 or checkpoint_interval_steps % report_interval_steps:
        raise ValueError("checkpoint_interval_steps: expected a positive multiple of report_interval_steps="
                         f"{report_interval_steps}, got {checkpoint_interval_steps}")
    if not stages:
        raise ValueError("stages: expected at least one Stage, got an empty list")
    for st in stages:
        if not isinstance(st, Stage):
            raise TypeError(f"stages: expected Stage objects, got {type(st).__name__}")
        if not isinstance(st.n_steps, int) or st.n_steps < 0:
            raise ValueError(f"stages: stage {st.name!r} n_steps must be an int >= 0, got {st.n_steps!r}")
        if st.reporters and st.n_steps % report_interval_steps:
            raise ValueError(f"stages: production stage {st.name!r} n_steps={st.n_steps} is not a multiple "
                             f"of report_interval_steps={report_interval_steps}")


def _full_metadata(simulation, metadata, interval, stages) -> dict:
    integ = simulation.integrator
    dt = integ.getStepSize().value_in_unit(unit.picosecond)
    meta = dict(metadata)
    meta.update(time_step_ps=dt, frame_interval_ps=dt * interval, report_interval_steps=interval,
                openmm_version=openmm.version.full_version,
                platform=simulation.context.getPlatform().getName(),
                n_particles=simulation.system.getNumParticles(),
                stages=[asdict(s) for s in stages])
    if hasattr(integ, "getTemperature"):
        meta["temperature_K"] = integ.getTemperature().value_in_unit(unit.kelvin)
    if hasattr(integ, "getRandomNumberSeed"):
        meta.setdefault("integrator_seed", integ.getRandomNumberSeed())
    meta.setdefault("seed", meta.get("integrator_seed"))
    if simulation.system.usesPeriodicBoundaryConditions():
        box = simulation.system.getDefaultPeriodicBoxVectors()
        meta["box_nm"] = [[float(x) for x in v.value_in_unit(unit.nanometer)] for v in box]
    else:
        meta["box_nm"] = None
    return meta


def _write_pdb(simulation, path: Path, meta: dict) -> None:
    """PDB (with CONECT) of the current state; the topology box and ``meta['box_nm']`` take the current box."""
    state = simulation.context.getState(getPositions=True)
    if simulation.system.usesPeriodicBoundaryConditions():
        box = state.getPeriodicBoxVectors()
        simulation.topology.setPeriodicBoxVectors(box)
        meta["box_nm"] = [[float(x) for x in v.value_in_unit(unit.nanometer)] for v in box]
    with atomic_write(path, "w") as fh:
        app.PDBFile.writeFile(simulation.topology, state.getPositions(), fh, keepIds=True)


def run_protocol(simulation: app.Simulation, out_dir, stages: list[Stage], report_interval_steps: int,
                 metadata: dict, desc: str = "", checkpoint_interval_steps: int | None = None,
                 progress_bar: bool = True) -> Path:
    """Run ``stages`` on ``simulation``, writing a resumable reference trajectory into ``out_dir``.

    Call it with a freshly built Simulation (same System/platform) to start or to resume; a directory
    holding ``DONE`` is skipped.  Extra reporters already on ``simulation.reporters`` are kept.

    Args:
        simulation: the Simulation (positions set; velocities are drawn after a minimising stage).
        out_dir: output directory (created).
        stages: protocol; production stages have ``reporters=True``.
        report_interval_steps: steps between DCD frames / CSV rows; frame interval = this x time step.
        metadata: JSON-serialisable dict merged into metadata.json (e.g. bead types, masses, seed).
        desc: tqdm label.
        checkpoint_interval_steps: steps between checkpoints, a multiple of ``report_interval_steps``
            (default: the smallest multiple >= 1000 steps).
        progress_bar: show a tqdm bar over all steps.

    Returns:
        ``Path(out_dir)``.

    Raises:
        ValueError/TypeError: bad arguments (named in the message); ValueError if ``out_dir`` is not
            writable or a checkpoint does not match the protocol.
    """
    if checkpoint_interval_steps is None:
        checkpoint_interval_steps = report_interval_steps * max(1, -(-1000 // max(report_interval_steps, 1)))
    _check_args(simulation, stages, report_interval_steps, metadata, checkpoint_interval_steps)
    out = ensure_writable_dir(out_dir)
    if is_done(out):
        return out
    from ..util.locks import output_lock

    with output_lock(out, "reference MD run", "out_dir"):  # a second writer fails instead of adding frames
        if is_done(out):
            return out
        return _run_protocol(simulation, out, stages, report_interval_steps, metadata, desc,
                             checkpoint_interval_steps, progress_bar)


def _check_frame_counts(paths: dict, frames: int) -> None:
    """Before DONE: the DCD and CSV hold exactly the frames the protocol recorded."""
    have = dcd_frame_count(paths["dcd"]) if paths["dcd"].exists() else 0
    rows = 0
    if paths["csv"].exists():
        rows = sum(1 for line in paths["csv"].read_text().splitlines() if line and not line.startswith("#"))
    for f, n in ((paths["dcd"], have), (paths["csv"], rows)):
        if (f.exists() or frames) and n != frames:
            raise ValueError(f"out_dir: {f} holds {n} frames but the protocol recorded {frames}; another process "
                             "wrote into this directory (or a file was edited); delete the directory and rerun")


# 112 lines: one MD protocol read top to bottom (resume or start, minimise, NPT, NVT with reporters and
# checkpoints, frame-count check, DONE); its steps share the Simulation and the checkpoint state.
def _run_protocol(simulation, out: Path, stages, report_interval_steps, metadata, desc, checkpoint_interval_steps,
                  progress_bar) -> Path:
    interval = report_interval_steps
    paths = {k: out / f for k, f in dict(dcd="trajectory.dcd", csv="state_data.csv", chk="checkpoint.chk",
                                            progress="progress.json", meta="metadata.json",
                                            pdb="topology.pdb").items()}
    starts = _stage_starts(stages, interval)
    total = starts[-1] + stages[-1].n_steps
    system = simulation.system
    baro_freq = {i: (f.getFrequency() or 25) for i, f in enumerate(system.getForces())
                 if type(f).__name__ in _BAROSTATS}

    if paths["chk"].exists():
        try:
            simulation.loadCheckpoint(str(paths["chk"]))
        except Exception as exc:  # OpenMMException: other system, platform, OpenMM version or hardware
            raise ValueError(f"out_dir: cannot resume from {paths['chk']} (a checkpoint needs the same System, "
                             f"platform, OpenMM version and hardware): {exc}") from None
        k, done = _position(simulation.context.getStepCount(), stages, starts)
        frames = _frames_at(k, done, stages, interval)
        if paths["dcd"].exists():
            truncate_dcd(paths["dcd"], frames)
        elif frames:
            raise ValueError(f"out_dir: {paths['chk']} expects {frames} frames but trajectory.dcd is missing")
        _truncate_csv(paths["csv"], frames)
        if done == stages[k].n_steps:
            k, done = k + 1, 0
    else:
        for key in ("dcd", "csv", "pdb"):
            if paths[key].exists():
                paths[key].unlink()
        simulation.context.setStepCount(0)
        k, done, frames = 0, 0, 0
    meta = _full_metadata(simulation, metadata, interval, stages)
    if paths["pdb"].exists() and paths["meta"].exists():  # keep the production-start box recorded earlier
        from ..io.readers import read_json

        meta["box_nm"] = read_json(paths["meta"], "run metadata", "out_dir").get("box_nm", meta["box_nm"])
    _write_json(paths["meta"], meta)

    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=simulation.context.getStepCount(), desc=desc or str(out), unit="step",
               disable=not progress_bar, leave=False)
    own_reporters, handles = [], []
    try:
        while k < len(stages):
            st = stages[k]
            _set_barostat(system, st.barostat, baro_freq)
            if done == 0:
                simulation.context.setStepCount(starts[k])
                bar.n = starts[k]
                if st.minimize:
                    simulation.minimizeEnergy()
                    if "temperature_K" in meta:
                        seed = meta.get("seed")
                        extra = () if seed is None else (int(seed) % 2**31,)
                        simulation.context.setVelocitiesToTemperature(meta["temperature_K"], *extra)
            if st.reporters:
                if not paths["pdb"].exists():
                    _write_pdb(simulation, paths["pdb"], meta)
                    _write_json(paths["meta"], meta)
                resume = paths["dcd"].exists() and frames > 0
                csv_fh = open(paths["csv"], "a" if resume and paths["csv"].exists() else "w")
                dcd_rep = app.DCDReporter(str(paths["dcd"]), interval, append=resume)
                handles += [dcd_rep._out, csv_fh]  # DCDReporter opens the path itself; we close it
                own_reporters = [dcd_rep,
                                 app.StateDataReporter(csv_fh, interval, step=True, time=True,
                                                       potentialEnergy=True, kineticEnergy=True,
                                                       temperature=True, speed=True,
                                                       volume=system.usesPeriodicBoundaryConditions(),
                                                       separator=",", append=resume)]
                simulation.reporters.extend(own_reporters)
            while done < st.n_steps:
                step = simulation.context.getStepCount()
                target = min((step // checkpoint_interval_steps + 1) * checkpoint_interval_steps,
                             starts[k] + st.n_steps)
                simulation.step(target - step)
                done = target - starts[k]
                bar.update(target - step)
                for fh in handles:  # trajectory on disk before the checkpoint that counts its frames
                    fh.flush()
                    os.fsync(fh.fileno())
                frames = _frames_at(k, done, stages, interval)
                with atomic_write(paths["chk"], "wb") as fh:
                    fh.write(simulation.context.createCheckpoint())
                _write_json(paths["progress"], dict(stage=st.name, stage_index=k, steps_done_in_stage=done,
                                                    step_count=target, frames=frames, total_steps=total))
            for rep in own_reporters:
                simulation.reporters.remove(rep)
            own_reporters = []
            for fh in handles:
                fh.close()
            handles = []
            k, done = k + 1, 0
    finally:
        for rep in own_reporters:
            if rep in simulation.reporters:
                simulation.reporters.remove(rep)
        for fh in handles:
            fh.close()
        bar.close()
    if not paths["pdb"].exists():
        _write_pdb(simulation, paths["pdb"], meta)
        _write_json(paths["meta"], meta)
    _write_json(paths["progress"], dict(stage="done", stage_index=len(stages), steps_done_in_stage=0,
                                        step_count=simulation.context.getStepCount(), frames=frames,
                                        total_steps=total))
    _check_frame_counts(paths, frames)
    with atomic_write(out / "DONE", "w") as fh:
        fh.write(f"frames={frames}\n")
    return out
