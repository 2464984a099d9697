"""`analyze` uses each run's own recorded frame interval (metadata.json, DCD header); a flag only fills gaps."""
import json
import math

import mdtraj as md
import numpy as np
import pytest
from openmm import app, unit

from openmm_mlcg import analysis as A
from openmm_mlcg.io.frame_interval import recorded_frame_intervals, resolve_frame_interval
from openmm_mlcg.app.cli import main

N, F, D = 30, 40, 0.05          # particles, frames, nm^2/ps


def _brownian(dt_ps, seed=0):
    rng = np.random.default_rng(seed)
    steps = rng.normal(scale=math.sqrt(2 * D * dt_ps), size=(F - 1, N, 3))
    return np.concatenate([np.zeros((1, N, 3)), np.cumsum(steps, 0)]) + 1.5


def _topology():
    top = app.Topology()
    res = top.addResidue("AR", top.addChain())
    for _ in range(N):
        top.addAtom("Ar", app.element.argon, res)
    return top


def _openmm_dcd(path, x, step_ps, interval):
    """A DCD exactly as openmm.app.DCDReporter writes it (DCDFile with the integrator step and interval)."""
    top = _topology()
    with open(path, "wb") as fh:
        dcd = app.DCDFile(fh, top, step_ps * unit.picosecond, interval, interval)
        for frame in x:
            dcd.writeModel(frame * unit.nanometer)
    with open(path.with_suffix(".pdb"), "w") as fh:
        app.PDBFile.writeFile(top, x[0] * 10 * unit.angstrom, fh)


def _mdtraj_dcd(path, x):
    top = md.Topology.from_openmm(_topology())
    md.Trajectory(x, top).save_dcd(str(path))
    md.Trajectory(x[:1], top).save_pdb(str(path.with_suffix(".pdb")))


def _d(res, label):
    return res["observables"]["msd"][label]["type:Ar"]["D_nm2_per_ps"]


def test_dcd_header_gives_time_step_times_save_interval(tmp_path):
    x = _brownian(0.1)
    _openmm_dcd(tmp_path / "run.dcd", x, 0.002, 50)           # 2 fs x 50 = 0.1 ps per frame
    rec = recorded_frame_intervals(tmp_path / "run.dcd")
    assert list(rec.values()) == [pytest.approx(0.1, rel=1e-6)]
    res = A.analyze_files({"md": str(tmp_path / "run.dcd")}, tmp_path / "a", topology=str(tmp_path / "run.pdb"),
                          observables=["msd"], plot=False)
    assert _d(res, "md") == pytest.approx(D, rel=0.3)       # with 1 ps per frame it would be 10x smaller
    assert res["provenance"]["frame_interval"]["md"]["source"].startswith("DCD header")
    # CLI, no --frame-interval-ps: read from the header; a disagreeing flag is an error naming both values
    assert main(["analyze", f"md={tmp_path / 'run.dcd'}:{tmp_path / 'run.pdb'}", "--observables", "msd",
                 "--out", str(tmp_path / "cli")]) == 0
    doc = json.loads((tmp_path / "cli" / "analysis.json").read_text())
    assert doc["provenance"]["frame_interval"]["md"]["frame_interval_ps"] == pytest.approx(0.1, rel=1e-6)
    with pytest.raises(ValueError, match=r"records 0\.1 ps.*\b2 ps was given"):
        resolve_frame_interval("md", tmp_path / "run.dcd", 2.0)


def test_each_run_keeps_its_own_interval_and_flag_fills_gaps(tmp_path, capsys):
    ref_dir, plain = tmp_path / "reference", tmp_path / "plain"
    ref_dir.mkdir(), plain.mkdir()
    _mdtraj_dcd(ref_dir / "trajectory.dcd", _brownian(1.0, seed=1))     # placeholder header, 1 ps in metadata
    (ref_dir / "metadata.json").write_text(json.dumps({"frame_interval_ps": 1.0}))
    _mdtraj_dcd(plain / "traj.dcd", _brownian(0.5, seed=2))             # nothing recorded: the flag is used
    assert recorded_frame_intervals(plain / "traj.dcd") == {}            # mdtraj's header is a placeholder
    trajs = {"reference MD": (str(ref_dir / "trajectory.dcd"), str(ref_dir / "trajectory.pdb")),
             "plain": (str(plain / "traj.dcd"), str(plain / "traj.pdb"))}
    res = A.analyze_files(trajs, tmp_path / "a", frame_interval_ps={"plain": 0.5}, observables=["msd"],
                          plot=False)
    assert _d(res, "reference MD") == pytest.approx(D, rel=0.3)
    assert _d(res, "plain") == pytest.approx(D, rel=0.3)
    prov = res["provenance"]["frame_interval"]
    assert prov["reference MD"]["frame_interval_ps"] == 1.0 and "metadata.json" in prov["reference MD"]["source"]
    assert prov["plain"]["source"].startswith("given")
    # one flag for all runs: the reference's own 1 ps disagrees with 0.5 -> error naming both, exit status 2
    args = ["analyze", *(f"{k}={v[0]}:{v[1]}" for k, v in trajs.items()), "--observables", "msd",
            "--frame-interval-ps", "0.5", "--out", str(tmp_path / "cli")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "1 ps" in err and "0.5 ps" in err and "reference MD" in err
    # no flag and nothing recorded for "plain": an error that says what to pass
    with pytest.raises(ValueError, match="frame-interval-ps"):
        A.analyze_files(trajs, tmp_path / "b", observables=["msd"], plot=False)


def test_two_records_that_disagree_are_an_error(tmp_path):
    _openmm_dcd(tmp_path / "trajectory.dcd", _brownian(0.1), 0.002, 50)
    (tmp_path / "metadata.json").write_text(json.dumps({"frame_interval_ps": 1.0}))
    with pytest.raises(ValueError, match=r"1 ps .*metadata\.json.*0\.1 ps .*DCD header"):
        resolve_frame_interval("run", tmp_path / "trajectory.dcd")


def test_coarse_grain_reads_dcd_header_and_refuses_a_disagreeing_value(tmp_path):
    from openmm_mlcg.data import coarse_grain_trajectory
    from openmm_mlcg.cg.mapping import CGMapping
    from openmm_mlcg.cg.topology import FineGraph

    x = _brownian(0.1)
    _openmm_dcd(tmp_path / "run.dcd", x, 0.002, 50)           # 2 fs x 50 = 0.1 ps per frame
    mapping = CGMapping.from_graph(FineGraph.from_file(tmp_path / "run.pdb"), group_size=1)
    cg = coarse_grain_trajectory(tmp_path / "run.dcd", tmp_path / "run.pdb", mapping, periodic=False)
    assert cg.frame_interval_ps == pytest.approx(0.1, rel=1e-6)
    assert cg.time_ps[-1] == pytest.approx(0.1 * (F - 1), rel=1e-6)
    with pytest.raises(ValueError, match=r"0\.1 ps.*DCD header|DCD header.*0\.1"):
        coarse_grain_trajectory(tmp_path / "run.dcd", tmp_path / "run.pdb", mapping, frame_interval_ps=1.0,
                                periodic=False)
