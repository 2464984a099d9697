"""``openmm-mlcg run``: a trained bundle as an OpenMM simulation from the command line, with checkpoints.

What it does is the README's "ordinary OpenMM script" (section 3) and its resume recipe (section 6):
``LearnedIntegrator`` in an ``app.Simulation`` of the CG System, a ``DCDReporter`` and a
``CGStateDataReporter``, an OpenMM checkpoint every ``--checkpoint-interval`` model steps and at the end.
Files in ``--out``: ``cg.pdb`` (CG topology + start positions), ``cg.dcd``, ``cg.csv``, ``cg.chk`` and
``run.json`` (what was run: bundle, mapping, start, box, intervals, seed, platform).

``--resume`` continues the run in ``--out`` from ``cg.chk`` to the new total ``--steps`` / ``--time-ps``: the
DCD and CSV are cut back to the checkpoint first (:func:`openmm_mlcg.openmm.resume_simulation`), so a killed
run restarted with ``--resume`` has every frame exactly once. Runtime only: never imports the trainer.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

__all__ = ["RUN_FILES", "format_run_summary", "run_command", "run_length"]

#: output files in ``--out``
RUN_FILES = {"pdb": "cg.pdb", "dcd": "cg.dcd", "csv": "cg.csv", "checkpoint": "cg.chk", "record": "run.json"}
#: defaults of the options that a resumed run takes from run.json when not given
DEFAULTS = {"dcd_interval": 10, "csv_interval": 10, "checkpoint_interval": 1000, "seed": 0,
            "platform": "Reference"}


def _positive_int(value, option: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{option}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def run_length(steps, time_ps, model_dt_ps: float) -> int:
    """Total model steps from ``--steps`` or ``--time-ps`` (exactly one given).

    Raises:
        ValueError: neither or both given, a non-positive value, or ``--time-ps`` not a whole number of model steps.
    """
    if (steps is None) == (time_ps is None):
        raise ValueError(f"--steps/--time-ps: expected exactly one (model steps, or ps in multiples of the model step "
                         f"{model_dt_ps:.6g} ps), got --steps {steps} --time-ps {time_ps}")
    if steps is not None:
        return _positive_int(steps, "--steps")
    t = float(time_ps)
    n = round(t / model_dt_ps) if math.isfinite(t) else 0
    if not (t > 0 and n >= 1 and math.isclose(n * model_dt_ps, t, rel_tol=1e-6)):
        raise ValueError(f"--time-ps: expected a positive multiple of the model step {model_dt_ps:.6g} ps (e.g. "
                         f"{model_dt_ps * 100:.6g}), got {time_ps}")
    return int(n)


def _platform(name: str):
    import openmm

    names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
    for n in names:
        if n.lower() == str(name).lower():
            return openmm.Platform.getPlatformByName(n)
    raise ValueError(f"--platform: expected one of the available OpenMM platforms {names}, got {name!r}")


def _settings(args, record: dict | None) -> dict:
    """Report intervals, seed and platform: the options given, else the recorded run's (resume), else defaults.
    A given value that differs from the recorded run's is refused (it would corrupt the DCD or the RNG stream)."""
    out = {}
    for key, default in DEFAULTS.items():
        given = getattr(args, key, None)
        recorded = None if record is None else record.get(key)
        if given is not None and recorded is not None and given != recorded:
            raise ValueError(f"--{key.replace('_', '-')}: the run being resumed used {recorded!r}, got {given!r}; "
                             "drop the option or start a new run in another --out")
        out[key] = given if given is not None else recorded if recorded is not None else default
    for key in ("dcd_interval", "csv_interval"):
        _positive_int(out[key], f"--{key.replace('_', '-')}")
    _positive_int(out["checkpoint_interval"], "--checkpoint-interval", 0)
    if not 0 <= int(out["seed"]) < 2 ** 53:
        raise ValueError(f"--seed: expected an integer in [0, 2**53), got {out['seed']}")
    return out


def _check_outputs(out: Path, resume: bool) -> dict | None:
    """The recorded run (resume) or None; refuses a resume without one and a new run over an old one."""
    from ..io.readers import read_json

    files = {k: out / v for k, v in RUN_FILES.items()}
    if resume:
        for key in ("checkpoint", "record"):
            if not files[key].is_file():
                raise FileNotFoundError(f"--resume: {files[key]} does not exist (expected a run started by "
                                        "`openmm-mlcg run` in this --out); run without --resume to start one")
        return read_json(files["record"], "run record", "--out")
    old = [str(p) for k, p in files.items() if p.exists()]
    if old:
        raise FileExistsError(f"--out: {out} already holds a run ({', '.join(old)}); pass --resume to continue it "
                              "or choose another --out")
    return None


def _mapping(bundle, mapping_path):
    from ..cg.mapping import CGMapping

    if mapping_path is not None:
        return CGMapping.load(mapping_path)
    if getattr(bundle, "mapping", None) is None:
        raise ValueError("--mapping: the bundle has no bound mapping; give the mapping.npz of the simulated system "
                         "(openmm-mlcg coarse-grain), got None")
    return bundle.mapping


def _simulation(args, out: Path, record, settings, mapping, bundle, device):
    """(simulation, step it starts at, start description) for a new or resumed run."""
    from openmm import app, unit

    from ..openmm import (
        LearnedIntegrator,
        create_cg_system,
        create_simulation,
        resume_simulation,
    )
    from ..util.io_utils import atomic_write
    from .run_start import load_start_frames

    try:
        integrator = LearnedIntegrator(bundle, mapping, seed=int(settings["seed"]), refine=not args.no_refine,
                                       device=device, transfer=args.transfer)
    except ValueError as exc:
        if not str(exc).startswith("mapping:"):
            raise
        text = str(exc).removeprefix("mapping").replace(" (or mapping=None)", "").replace("transfer=True", "--transfer")
        if "--transfer" not in text:
            text += "; or pass --transfer to run the bundle on another system of the same atom types"
        raise ValueError(f"--mapping{text}") from None
    platform = _platform(settings["platform"])
    if record is not None:
        box = None if record.get("box_nm") is None else np.asarray(record["box_nm"], dtype=np.float64)
        topology, system = create_cg_system(mapping, box)
        simulation = create_simulation(topology, system, integrator, platform)
        outputs = [out / RUN_FILES[k] for k in ("dcd", "csv")]
        dcd, csv = [[p] if p.is_file() and p.stat().st_size > 0 else [] for p in outputs]
        step = resume_simulation(simulation, out / RUN_FILES["checkpoint"], dcd=dcd, csv=csv)
        return simulation, step, record.get("start", "")
    if not args.start:
        raise ValueError("--start: expected the start frames (a CG PDB, or a trajectory with --topology) for a new "
                         "run, got none")
    start = load_start_frames(args.start, mapping, integrator.history_length, integrator.model_time_step,
                              topology=args.topology, frame_interval_ps=args.frame_interval_ps)
    topology, system = create_cg_system(mapping, start.box)
    simulation = create_simulation(topology, system, integrator, platform)
    if not start.from_rest:
        integrator.initialize_history(start.frames)
    simulation.context.setPositions(start.frames[-1])
    with atomic_write(out / RUN_FILES["pdb"], "w") as fh:
        app.PDBFile.writeFile(topology, start.frames[-1] * unit.nanometer, fh, keepIds=True)
    record = dict(bundle=str(Path(args.bundle).resolve()),
                  mapping=None if args.mapping is None else str(Path(args.mapping).resolve()),
                  start=start.source, from_rest=start.from_rest,
                  box_nm=None if start.box is None else start.box.tolist(),
                  model_time_step_ps=integrator.model_time_step, refine=not args.no_refine, **settings)
    with atomic_write(out / RUN_FILES["record"], "w") as fh:
        json.dump(record, fh, indent=1)
    return simulation, 0, start.source


def _flush(simulation) -> None:
    """Push every reporter's buffered output to its file (so a checkpoint never runs ahead of the DCD/CSV)."""
    for r in simulation.reporters:
        f = getattr(r, "_out", None)
        if f is not None and hasattr(f, "flush") and not getattr(f, "closed", False):
            f.flush()


def _save_checkpoint(simulation, path: Path) -> None:
    from ..util.io_utils import atomic_write

    _flush(simulation)
    data = simulation.context.createCheckpoint()
    with atomic_write(path, "wb") as fh:
        fh.write(data)


def run_command(args, log=print) -> dict:
    """Run (or resume) a learned simulation for parsed CLI ``args``; returns a summary dict.

    Raises:
        FileNotFoundError / FileExistsError / ValueError: bad inputs, options or outputs, named in the message
        (checked before the run writes anything).
    """
    from openmm import app

    from ..bundle.export import load_bundle
    from ..io.readers import check_input_file
    from ..openmm import CGStateDataReporter
    from ..util.locks import output_lock
    from ..util.outputs import check_output_dir
    from ..util.sanity import resolve_device

    check_input_file(args.bundle, "a model bundle (.mlcg)", "bundle")
    if args.mapping is not None:
        check_input_file(args.mapping, "a CG mapping (.npz)", "--mapping")
    out = check_output_dir(args.out, "--out")
    with output_lock(out, "run", "--out"):
        record = _check_outputs(out, bool(args.resume))
        settings = _settings(args, record)
        device = str(resolve_device(args.device, "--device"))
        bundle = load_bundle(args.bundle, device=device)
        mapping = _mapping(bundle, args.mapping)
        dt = float(bundle.metadata["model_time_step_ps"])
        n_total = run_length(args.steps, args.time_ps, dt)
        if record is not None and record.get("model_time_step_ps") is not None \
                and not math.isclose(float(record["model_time_step_ps"]), dt, rel_tol=1e-9):
            raise ValueError(f"bundle: its model step {dt:.6g} ps differs from the resumed run's "
                             f"{record['model_time_step_ps']:.6g} ps; resume with the bundle it was started with")
        simulation, step0, start = _simulation(args, out, record, settings, mapping, bundle, device)
        if record is None:  # a checkpoint at step 0: a run that fails early can be resumed, not only restarted
            _save_checkpoint(simulation, out / RUN_FILES["checkpoint"])
        if step0 > n_total:
            raise ValueError(f"--steps/--time-ps: the run in {out} is already at step {step0} "
                             f"({step0 * dt:.6g} ps), beyond the requested total {n_total}; give a larger total")
        append = step0 > 0
        files = {k: out / v for k, v in RUN_FILES.items()}
        simulation.reporters.append(app.DCDReporter(str(files["dcd"]), settings["dcd_interval"],
                                                    append=append and files["dcd"].is_file()
                                                    and files["dcd"].stat().st_size > 0, enforcePeriodicBox=False))
        simulation.reporters.append(CGStateDataReporter(
            str(files["csv"]), settings["csv_interval"], step=True, time=True, speed=True, elapsedTime=True,
            append=append and files["csv"].is_file() and files["csv"].stat().st_size > 0))
        every = settings["checkpoint_interval"] or n_total
        t0 = time.perf_counter()
        step = step0
        while step < n_total:
            chunk = min(n_total, (step // every + 1) * every) - step
            simulation.step(chunk)
            step += chunk
            _save_checkpoint(simulation, files["checkpoint"])
            if step < n_total:
                log(f"step {step}/{n_total} ({step * dt:.6g} ps), checkpoint {files['checkpoint']}")
        wall = time.perf_counter() - t0
        if step0 == n_total:
            _save_checkpoint(simulation, files["checkpoint"])
        for r in simulation.reporters:  # close the files so they can be read at once
            f = getattr(r, "_out", None)
            if f is not None and hasattr(f, "close"):
                f.close()
    from ..io.dcd import dcd_frame_count

    n_frames = dcd_frame_count(files["dcd"]) if files["dcd"].is_file() and files["dcd"].stat().st_size else 0
    steps_run = n_total - step0
    return dict(out=str(out), start=start, resumed_from_step=step0, steps=n_total, model_time_step_ps=dt,
                simulated_ps=n_total * dt, steps_run=steps_run, wall_s=wall,
                ns_per_hour=(steps_run * dt / 1000.0) / (wall / 3600.0) if steps_run and wall > 0 else None,
                dcd=str(files["dcd"]), dcd_frames=n_frames, csv=str(files["csv"]),
                checkpoint=str(files["checkpoint"]), topology_pdb=str(files["pdb"]), **settings)


def format_run_summary(s: dict) -> str:
    """Human-readable lines for a :func:`run_command` summary (numbers rounded for display)."""
    dt = s["model_time_step_ps"]
    lines = []
    if s["resumed_from_step"]:
        lines.append(f"resumed at step {s['resumed_from_step']} ({s['resumed_from_step'] * dt:.6g} ps)")
    speed = "" if s["ns_per_hour"] is None else f": {s['ns_per_hour']:.3g} simulated ns per wall-hour"
    lines.append(f"ran {s['steps_run']} model steps of {dt:.6g} ps in {s['wall_s']:.3g} s{speed}; now at step "
                 f"{s['steps']} ({s['simulated_ps']:.6g} ps)")
    lines.append(f"wrote {s['dcd']} ({s['dcd_frames']} frames, every {s['dcd_interval']} steps), {s['csv']}, "
                 f"{s['checkpoint']}, {s['topology_pdb']}")
    return "\n".join(lines)
