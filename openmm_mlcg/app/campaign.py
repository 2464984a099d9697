"""``openmm-mlcg campaign CAMPAIGN.yaml``: the workflow of many systems as Dask tasks, gathered into one table.

A campaign file names, per system, the ``openmm-mlcg`` command lines of its workflow (reference MD, coarse-
graining, learned runs, analysis), run in order; systems run in parallel as tasks on ``dask.distributed``
(:mod:`openmm_mlcg.util.parallel`: a LocalCluster by default, or ``--scheduler tcp://host:8786``)::

    out: campaign                 # campaign.csv + campaign.json, and each system's progress (default: campaign)
    systems:
      peo:
        - generate spe --polymer PEO --scale smoke --out runs/peo
        - coarse-grain runs/peo/spe_000_PEO/topology.pdb --trajectory runs/peo/spe_000_PEO/trajectory.dcd
          --out runs/peo/mapping.npz
      ppo:
        - generate spe --polymer PPO --scale smoke --seed 1 --out runs/ppo

Relative paths resolve against the campaign file's folder (each task works there; workers of a remote cluster
must see it at the same path, and run one task per process at a time: ``--nthreads 1``).

Resumable and locked per system: a system's task holds the lock of ``OUT/systems/NAME`` (util/locks.py) and
records each finished command there, so a rerun (or Dask's rerun of a killed worker's task) skips them; the
interrupted command resumes by itself (``generate`` from its checkpoint; ``run`` is given ``--resume`` when its
``--out`` holds a checkpoint), so no frame is written twice. A user error (bad option, missing file) fails that
system's row at once; any other exception is retried ``retries`` times.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shlex
import socket
import time
from pathlib import Path

__all__ = ["load_campaign", "run_campaign", "run_system", "TABLE_COLUMNS"]

#: columns of campaign.csv (campaign.json holds the same rows)
TABLE_COLUMNS = ("system", "status", "commands", "done", "output", "error", "wall_s", "worker")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _parse(line: list, where: str):
    """The parsed ``openmm-mlcg`` arguments of ``line``; ValueError naming ``where`` on a bad line."""
    from .commands import build_parser  # the workflow subcommands: a campaign line cannot be a campaign

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = build_parser().parse_args(line)
    except SystemExit:
        msg = (err.getvalue().strip().splitlines() or ["invalid"])[-1]
        raise ValueError(f"{where}: expected an openmm-mlcg command line, got {shlex.join(line)!r} ({msg})") from None
    return args


def _check_systems(systems) -> dict:
    """``{name: [argv, ...]}`` from ``{name: [line, ...]}`` (a line: a string, shell-split, or a list)."""
    if not isinstance(systems, dict) or not systems:
        raise ValueError(f"systems: expected a mapping of system name -> list of command lines, got {systems!r}")
    out = {}
    for name, lines in systems.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"systems: expected names of letters, digits, '_', '.', '-', got {name!r}")
        if not isinstance(lines, list) or not lines:
            raise ValueError(f"systems.{name}: expected a non-empty list of command lines, got {lines!r}")
        argvs = [shlex.split(x) if isinstance(x, str) else [str(a) for a in x] for x in lines]
        for i, argv in enumerate(argvs):
            _parse(argv, f"systems.{name}[{i}]")
        out[name] = argvs
    return out


def load_campaign(path) -> dict:
    """Read a campaign YAML file (strict: unknown keys rejected).

    Returns:
        dict: ``systems`` ({name: [argv, ...]}), ``out`` (Path of the table folder), ``base_dir`` (the file's folder).

    Raises:
        FileNotFoundError: no such file. ValueError: bad YAML, an unknown key, a bad system name or command line.
    """
    from ..util.yaml_strict import load_yaml

    p = Path(path)
    doc = load_yaml(p)
    if not isinstance(doc, dict) or set(doc) - {"out", "systems"}:
        extra = sorted(set(doc) - {"out", "systems"}) if isinstance(doc, dict) else doc
        raise ValueError(f"campaign: expected the keys 'out' and 'systems' in {p}, got {extra!r}")
    base = p.resolve().parent
    return dict(systems=_check_systems(doc.get("systems")), out=base / str(doc.get("out", "campaign")), base_dir=base)


@contextlib.contextmanager
def _working_dir(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _worker_threads():
    """Torch threads of a task: its Dask worker's thread count (None outside a worker: the usual default)."""
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return None


def _run_line(argv: list, where: str) -> str:
    """Run one command line in this process; its stdout, as text."""
    from ..util.threads import set_threads
    from .run_command import RUN_FILES

    args = _parse(argv, where)
    if args.command == "run" and not args.resume and (Path(args.out) / RUN_FILES["checkpoint"]).exists():
        args.resume = True  # interrupted earlier: continue from the checkpoint (the DCD/CSV are cut back to it)
    set_threads(args.threads if args.threads is not None else _worker_threads())
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        args.func(args)
    return buf.getvalue()


def run_system(name: str, argvs: list, base_dir, state_dir) -> dict:
    """Run one system's command lines in order (a Dask task); returns its row of the table.

    Commands recorded as finished in ``state_dir/progress.json`` are skipped. Holds the lock of ``state_dir``.

    Raises:
        OutputLockedError: another task runs this system. Exceptions other than user errors (which give a
        ``failed`` row) propagate, for Dask to retry.
    """
    from ..util.io_utils import atomic_write
    from ..util.locks import output_lock
    from .cli_errors import USER_ERRORS

    t0 = time.perf_counter()
    row = dict(system=name, status="done", commands=len(argvs), done=0, output="", error="",
               worker=f"{socket.gethostname()}:{os.getpid()}")
    with output_lock(state_dir, "campaign", f"systems.{name}") as d:
        progress = d / "progress.json"
        state = json.loads(progress.read_text()) if progress.exists() else dict(done=0, lines=[], outputs=[])
        if state["lines"] != argvs[:state["done"]]:
            row.update(status="failed", error=f"{progress} records other commands than the campaign's first "
                                              f"{state['done']}; delete {d} to run the system again")
            argvs = argvs[:0]
        with _working_dir(Path(base_dir)):
            for i in range(state["done"], len(argvs)):
                try:
                    text = _run_line(argvs[i], f"systems.{name}[{i}]")
                except USER_ERRORS as exc:
                    row.update(status="failed", error=f"{shlex.join(argvs[i])}: {' '.join(str(exc).split())}")
                    break
                state = dict(done=i + 1, lines=argvs[:i + 1], outputs=state["outputs"] + [text.strip()])
                with atomic_write(progress, "w") as fh:
                    json.dump(state, fh, indent=1)
    outputs = [o for o in state["outputs"] if o]
    row.update(done=state["done"], output=outputs[-1].splitlines()[-1] if outputs else "",
               wall_s=round(time.perf_counter() - t0, 3))
    return row


def _write_table(out: Path, rows: list) -> None:
    from ..util.io_utils import atomic_write

    with atomic_write(out / "campaign.json", "w") as fh:
        json.dump(rows, fh, indent=1)
        fh.write("\n")
    with atomic_write(out / "campaign.csv", "w") as fh:
        writer = csv.DictWriter(fh, fieldnames=TABLE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def run_campaign(systems: dict, out_dir, base_dir=".", n_workers: int | None = None, scheduler: str | None = None,
                 retries: int | None = None) -> list:
    """Run every system's command lines (systems in parallel as Dask tasks) and write the results table.

    Args:
        systems: ``{name: [command line, ...]}``; a line is an ``openmm-mlcg`` command line without the program
            name (a string, shell-split, or a list of arguments), e.g. ``"generate polymer --out runs/a"``.
        out_dir: gets ``campaign.csv`` and ``campaign.json`` (written atomically; one row per system, columns
            :data:`TABLE_COLUMNS`; ``wall_s`` in s) and ``systems/NAME/progress.json``.
        base_dir: folder that relative paths of the command lines resolve against.
        n_workers: LocalCluster worker processes (None: one per CPU; 1 without ``scheduler``: in this process,
            no Dask).  scheduler: a running Dask cluster's address (``tcp://host:8786``).
        retries: times a task that raised a non-user error is run again (None: ``util.parallel.DEFAULT_RETRIES``).

    Returns:
        the rows (dicts), in the order of ``systems``; ``status`` is ``done`` or ``failed`` (with ``error``).

    Raises:
        ValueError: bad ``systems`` (names the system and line), ``n_workers``, ``scheduler`` or ``retries``.
        OutputLockedError: another campaign writes into ``out_dir``.
    """
    from ..util.locks import output_lock
    from ..util.parallel import DEFAULT_RETRIES, check_cluster, map_tasks

    argvs = _check_systems(systems)
    check_cluster(n_workers, scheduler)
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 0):
        raise ValueError(f"retries: expected an integer >= 0 (or None), got {retries!r}")
    base = Path(base_dir).resolve()
    if not base.is_dir():
        raise ValueError(f"base_dir: expected an existing folder, got {base_dir}")
    with output_lock(out_dir, "campaign", "out_dir") as out:
        out = out.resolve()
        jobs = [(n, a, str(base), str(out / "systems" / n)) for n, a in argvs.items()]
        if n_workers == 1 and scheduler is None:
            rows = [run_system(*job) for job in jobs]
        else:
            rows = map_tasks(_run_job, jobs, n_workers, scheduler,
                             DEFAULT_RETRIES if retries is None else retries, name="campaign")
        _write_table(out, rows)
    return rows


def _run_job(job: tuple) -> dict:
    return run_system(*job)
