"""Campaigns on Dask (app/campaign.py, util/parallel.py): many systems' command lines as tasks, one results table.

Tiny systems: smoke-scale CG polymer chains (8 beads, a few thousand 0.01-tau steps). On a LocalCluster of two
worker processes (one thread each) the table equals the sequential one; a worker killed in the middle of its MD
is replaced and the task rerun, resuming from the checkpoint with no duplicated or missing frame.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[1]
SYSTEM = "class1_0000"  # the one chain each `generate polymer --n-systems 1` writes


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", OPENMM_CPU_THREADS="1")


def _systems(n: int, production_tau: float = 50, analyze: bool = True) -> dict:
    """n tiny polymer systems: reference MD, then (optionally) its Rg^2 analysis."""
    out = {}
    for i in range(n):
        run = f"runs/s{i}"
        lines = [f"generate polymer --scale smoke --seed {i} --production-ps {production_tau:g} --platform CPU "
                 f"--out {run}"]
        if analyze:
            lines.append(f"analyze ref={run}/{SYSTEM}/trajectory.dcd:{run}/{SYSTEM}/topology.pdb --observables rg2 "
                         f"--out {run}/analysis")
        out[f"s{i}"] = lines
    return out


def _frames(dcd: Path, top: Path):
    import mdtraj

    t = mdtraj.load(str(dcd), top=str(top))
    return t.xyz, t.time


def _comparable(rows):
    return [{k: v for k, v in r.items() if k not in ("wall_s", "worker")} for r in rows]


def test_two_workers_equal_sequential(tmp_path, monkeypatch):
    from distributed import LocalCluster

    from openmm_mlcg.app.campaign import TABLE_COLUMNS, run_campaign

    monkeypatch.setenv("OPENMM_CPU_THREADS", "1")
    systems = _systems(4)
    seq, par = tmp_path / "seq", tmp_path / "par"
    seq.mkdir()
    par.mkdir()
    rows_seq = run_campaign(systems, seq / "campaign", base_dir=seq, n_workers=1)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        rows_par = run_campaign(systems, par / "campaign", base_dir=par, scheduler=cluster.scheduler_address)
    assert [r["system"] for r in rows_par] == ["s0", "s1", "s2", "s3"]
    assert all(r["status"] == "done" and r["done"] == 2 and not r["error"] for r in rows_par), rows_par
    assert _comparable(rows_par) == _comparable(rows_seq)
    assert len({r["worker"] for r in rows_par}) == 2  # both workers ran systems
    assert len({r["worker"] for r in rows_seq}) == 1
    table = json.loads((par / "campaign" / "campaign.json").read_text())
    assert _comparable(table) == _comparable(rows_par)
    csv_lines = (par / "campaign" / "campaign.csv").read_text().splitlines()
    assert csv_lines[0] == ",".join(TABLE_COLUMNS) and len(csv_lines) == 5
    for i in range(4):
        a, b = (d / f"runs/s{i}" / SYSTEM for d in (seq, par))
        xa, ta = _frames(a / "trajectory.dcd", a / "topology.pdb")
        xb, tb = _frames(b / "trajectory.dcd", b / "topology.pdb")
        assert xa.shape[0] == 10 and np.array_equal(xa, xb) and np.array_equal(ta, tb)
        ra, rb = (json.loads((d / f"runs/s{i}/analysis/analysis.json").read_text())["observables"]["rg2"] for d in (seq, par))
        assert ra == rb
    seeds = {json.loads((seq / f"runs/s{i}" / SYSTEM / "metadata.json").read_text())["seed"] for i in range(4)}
    assert len(seeds) == 4  # four different systems

    # rerun: every command is recorded as finished and skipped (the trajectories are not touched)
    before = (par / "runs/s0" / SYSTEM / "trajectory.dcd").stat().st_mtime_ns
    again = run_campaign(systems, par / "campaign", base_dir=par, n_workers=1)
    assert _comparable(again) == _comparable(rows_par)
    assert (par / "runs/s0" / SYSTEM / "trajectory.dcd").stat().st_mtime_ns == before


def _alive(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def test_killed_worker_task_is_rerun_without_duplicated_frames(tmp_path):
    import yaml

    from openmm_mlcg.systems.md import dcd_frame_count
    from openmm_mlcg.util.locks import LOCK_NAME

    production = 600  # tau: 60k steps of 0.01 tau, 120 frames every 5 tau, checkpoints every 2 frames
    (tmp_path / "campaign.yaml").write_text(yaml.safe_dump(
        dict(out="table", systems=_systems(2, production_tau=production, analyze=False))))
    proc = subprocess.Popen([sys.executable, "-m", "openmm_mlcg.app.cli", "campaign", "campaign.yaml", "--workers",
                             "2"], cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run = tmp_path / "runs/s0" / SYSTEM
    deadline = time.time() + 50
    try:
        while time.time() < deadline:
            try:
                if dcd_frame_count(run / "trajectory.dcd") >= 10 and (run / "checkpoint.chk").exists():
                    break
            except (FileNotFoundError, ValueError):
                pass
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        else:
            pytest.fail("the campaign did not start writing frames")
        pid = int((run / (LOCK_NAME + ".pid")).read_text())  # the worker running s0's MD
        assert pid != proc.pid and not (run / "DONE").exists()
        os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert not _alive(pid)
    rows = {r["system"]: r for r in json.loads((tmp_path / "table" / "campaign.json").read_text())}
    assert set(rows) == {"s0", "s1"} and all(r["status"] == "done" for r in rows.values()), rows
    assert rows["s0"]["worker"].rsplit(":", 1)[1] != str(pid)  # the rerun finished it on another process
    n = production // 5
    for i in range(2):
        d = tmp_path / f"runs/s{i}" / SYSTEM
        assert (d / "DONE").read_text().strip() == f"frames={n}"
        assert dcd_frame_count(d / "trajectory.dcd") == n
        x, _ = _frames(d / "trajectory.dcd", d / "topology.pdb")
        assert x.shape[0] == n and not any(np.array_equal(a, b) for a, b in zip(x[:-1], x[1:]))
        rows_csv = [line.split(",") for line in (d / "state_data.csv").read_text().splitlines()[1:]]
        steps, times = [int(r[0]) for r in rows_csv], np.array([float(r[1]) for r in rows_csv])
        assert len(steps) == n and steps == sorted(set(steps))
        assert np.allclose(np.diff(times), 5.0)  # every frame once, 5 tau (ps) apart, in order


def test_user_error_fails_its_row_only(tmp_path, monkeypatch):
    from openmm_mlcg.app.campaign import run_campaign

    monkeypatch.setenv("OPENMM_CPU_THREADS", "1")
    systems = _systems(1, analyze=False)
    systems["bad"] = ["analyze ref=missing.dcd:missing.pdb --out bad_analysis"]
    rows = run_campaign(systems, tmp_path / "table", base_dir=tmp_path, n_workers=1)
    assert [r["status"] for r in rows] == ["done", "failed"]
    assert "missing" in rows[1]["error"] and rows[1]["done"] == 0


@pytest.mark.parametrize("kw, match", [
    (dict(systems={}), "systems"),
    (dict(systems={"a b": ["generate polymer --out x"]}), "systems: expected names"),
    (dict(systems={"a": []}), r"systems\.a"),
    (dict(systems={"a": ["generate polymer --out x", "frobnicate"]}), r"systems\.a\[1\]"),
    (dict(systems={"a": ["campaign other.yaml"]}), r"systems\.a\[0\].*invalid choice: .campaign."),
    (dict(n_workers=0), "n_workers"),
    (dict(scheduler="localhost:8786"), "scheduler"),
    (dict(retries=-1), "retries"),
])
def test_bad_arguments(tmp_path, kw, match):
    from openmm_mlcg.app.campaign import run_campaign

    args = dict(systems={"a": ["generate polymer --scale smoke --out runs/a"]}, out_dir=tmp_path / "t",
                base_dir=tmp_path)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        run_campaign(**args)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "t").exists()


def test_campaign_file_and_generate_scheduler_errors(tmp_path, capsys):
    from openmm_mlcg.app.campaign import load_campaign
    from openmm_mlcg.app.cli import main

    f = tmp_path / "c.yaml"
    f.write_text("out: t\nsystems:\n  a:\n    - generate polymer --out x\nworkers: 2\n")
    with pytest.raises(ValueError, match="'workers'"):
        load_campaign(f)
    f.write_text("systems:\n  a:\n    - generate polymer --out x\n")
    spec = load_campaign(f)
    assert spec["out"] == tmp_path / "campaign" and spec["systems"] == {"a": [["generate", "polymer", "--out", "x"]]}
    assert main(["generate", "polymer", "--out", str(tmp_path / "g"), "--scheduler", "localhost"]) == 2
    assert "--scheduler" in capsys.readouterr().err


from test_cli import tiny_run_inputs  # noqa: E402,F401  (fixture: a tiny bundle, its mapping and start frames)


def test_interrupted_learned_run_is_resumed_not_refused(tiny_run_inputs, tmp_path):
    """A `run` line whose --out already holds a checkpoint (its task was killed) continues with --resume: the
    DCD then has every frame once, instead of `run` refusing to start over an old run."""
    from openmm_mlcg.app.campaign import run_campaign
    from openmm_mlcg.app.cli import main
    from openmm_mlcg.openmm import load_dcd

    i = tiny_run_inputs
    line = ["run", i["bundle"], "--mapping", i["mapping"], "--start", i["dcd"], "--topology", i["pdb"], "--device",
            "cpu", "--dcd-interval", "2", "--csv-interval", "2", "--checkpoint-interval", "4", "--out",
            str(tmp_path / "learned")]
    assert main(line + ["--steps", "8"]) == 0  # a run "killed" after its checkpoint at step 8
    (row,) = run_campaign({"a": [line + ["--steps", "16"]]}, tmp_path / "table", base_dir=tmp_path, n_workers=1)
    assert row["status"] == "done", row
    traj = load_dcd(tmp_path / "learned" / "cg.dcd", str(tmp_path / "learned" / "cg.pdb"))
    assert traj.n_frames == 8 and np.all(np.abs(np.diff(traj.xyz, axis=0)).max(axis=(1, 2)) > 0)
    steps = [int(x.split(",")[0]) for x in (tmp_path / "learned" / "cg.csv").read_text().splitlines()[1:]]
    assert steps == list(range(2, 17, 2))
