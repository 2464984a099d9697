"""Kill and rerun (issue 11): ``generate --workers 2`` killed with SIGKILL, and a reported LearnedIntegrator run
killed after its checkpoint and resumed with ``resume_simulation``. No duplicated or missing frame."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in state


def _csv_steps(path):
    return [int(line.split(",")[0]) for line in Path(path).read_text().splitlines() if line and not line.startswith("#")]


GEN = dict(kind="class2", length=5, n_steps=20000, frame_interval=0.5, equilibration_steps=100, platform="CPU",
           progress_bar=False, threads=1)


def _frames_so_far(path, dcd_frame_count) -> int:
    """Frames a DCD being written holds now (0 while the file or its header does not exist yet)."""
    try:
        return dcd_frame_count(path)
    except (FileNotFoundError, ValueError):
        return 0


def test_generate_workers_killed_and_rerun(tmp_path):
    from openmm_mlcg.util.locks import LOCK_NAME
    from openmm_mlcg.systems import polymer as P
    from openmm_mlcg.systems.md import dcd_frame_count

    out = tmp_path / "gen"
    code = f"from openmm_mlcg.systems import polymer as P; P.generate(2, {str(out)!r}, n_workers=2, **{GEN!r})"
    proc = subprocess.Popen([sys.executable, "-c", code], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    dirs = [out / "class2_0000", out / "class2_0001"]
    deadline = time.time() + 120
    while time.time() < deadline:
        if all(_frames_so_far(d / "trajectory.dcd", dcd_frame_count) > 5 for d in dirs):
            break
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.2)
    else:
        pytest.fail("generate did not start writing frames")
    pids = [int((d / (LOCK_NAME + ".pid")).read_text()) for d in dirs]
    assert not any((d / "DONE").exists() for d in dirs)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while any(_alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids), "workers outlived their killed parent"
    P.generate(2, out, n_workers=1, **GEN)  # rerun resumes both systems
    expected = GEN["n_steps"] // 50
    for d in dirs:
        assert (d / "DONE").read_text().strip() == f"frames={expected}"
        assert dcd_frame_count(d / "trajectory.dcd") == expected
        steps = _csv_steps(d / "state_data.csv")
        assert len(steps) == expected and len(set(steps)) == expected and steps == sorted(steps)


RUN = textwrap.dedent("""
    import os, signal, sys
    import numpy as np, openmm
    from openmm import app
    from openmm_mlcg.cg.mapping import CGMapping
    from openmm_mlcg.openmm import LearnedIntegrator, create_cg_system
    bundle, mapping, frames, out, kill_at = sys.argv[1:6]
    mapping = CGMapping.load(mapping)
    frames = np.load(frames)
    top, system = create_cg_system(mapping, None)
    sim = app.Simulation(top, system, LearnedIntegrator(bundle, history=frames, device="cpu", seed=3),
                         openmm.Platform.getPlatformByName("Reference"))
    sim.integrator.attach(sim)
    sim.context.setPositions(frames[-1])
    sim.reporters.append(app.DCDReporter(out + "/cg.dcd", 1, enforcePeriodicBox=False))
    sim.reporters.append(app.StateDataReporter(out + "/cg.csv", 1, step=True, time=True))
    sim.reporters.append(app.CheckpointReporter(out + "/cg.chk", 4))
    for i in range(10):
        sim.step(1)
        if sim.currentStep == int(kill_at):
            os.kill(os.getpid(), signal.SIGKILL)
""")


def _reported_run(bundle, mapping, frames, out, n_steps, resume=False):
    import openmm
    from openmm import app

    from openmm_mlcg.openmm import LearnedIntegrator, create_cg_system, create_simulation, resume_simulation

    top, system = create_cg_system(mapping, None)
    sim = create_simulation(top, system, LearnedIntegrator(bundle, history=frames, device="cpu", seed=3),
                            openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(frames[-1])
    if resume:
        resume_simulation(sim, out / "cg.chk", dcd=[out / "cg.dcd"], csv=[out / "cg.csv"])
    sim.reporters.append(app.DCDReporter(str(out / "cg.dcd"), 1, enforcePeriodicBox=False, append=resume))
    sim.reporters.append(app.StateDataReporter(str(out / "cg.csv"), 1, step=True, time=True, append=resume))
    sim.step(n_steps - sim.currentStep)
    for r in sim.reporters:
        r._out.close()


def test_learned_integrator_killed_and_resumed(tmp_path):
    import mdtraj
    import torch

    from openmm_mlcg.bundle.export import save_bundle
    from test_bad_inputs import META, _modules, _walk
    from conftest import linear_chain_graph
    from openmm_mlcg.cg.mapping import CGMapping

    torch.set_num_threads(1)
    mapping = CGMapping.from_graph(linear_chain_graph(12), 3)
    mapping.save(tmp_path / "m.npz")
    bundle = save_bundle(tmp_path / "b.mlcg", *_modules(), META, mapping=mapping)
    frames = _walk(mapping.n_beads, 3, 0.01)
    np.save(tmp_path / "frames.npy", frames)
    killed, ref = tmp_path / "killed", tmp_path / "ref"
    killed.mkdir()
    ref.mkdir()
    r = subprocess.run([sys.executable, "-c", RUN, str(bundle), str(tmp_path / "m.npz"), str(tmp_path / "frames.npy"),
                        str(killed), "6"], env=_env(), capture_output=True, timeout=120)
    assert r.returncode == -signal.SIGKILL, r.stderr.decode()[-2000:]
    assert _csv_steps(killed / "cg.csv") == list(range(1, 7))  # 2 steps past the checkpoint at 4
    _reported_run(str(bundle), mapping, frames, killed, 10, resume=True)
    _reported_run(str(bundle), mapping, frames, ref, 10)
    assert _csv_steps(killed / "cg.csv") == list(range(1, 11))
    top = str(tmp_path / "top.pdb")
    from openmm_mlcg.openmm import create_cg_system
    from openmm import app
    t, _ = create_cg_system(mapping, None)
    with open(top, "w") as fh:
        app.PDBFile.writeFile(t, frames[-1] * 10, fh)
    a, b = mdtraj.load_dcd(str(killed / "cg.dcd"), top=top), mdtraj.load_dcd(str(ref / "cg.dcd"), top=top)
    assert a.n_frames == b.n_frames == 10
    np.testing.assert_allclose(a.xyz, b.xyz, atol=1e-6)


def test_truncate_outputs_without_step_column(tmp_path):
    from openmm_mlcg.openmm import truncate_outputs

    p = tmp_path / "x.csv"
    p.write_text('#"Time (ps)","Speed (ns/day)"\n2.0,1\n4.0,1\n6.0,1\n8.0,1\n9')
    assert truncate_outputs(2, csv=[p], step_size_ps=2.0) == {str(p): 2}
    assert p.read_text().splitlines()[-1] == "4.0,1"
    q = tmp_path / "y.csv"
    q.write_text('#"Speed (ns/day)"\n1\n')
    with pytest.raises(ValueError, match=r"csv: .*y\.csv needs a 'Step' or 'Time \(ps\)' column"):
        truncate_outputs(2, csv=[q])


TRAIN = textwrap.dedent("""
    import json, os, signal, sys
    import torch
    torch.set_num_threads(1)
    from openmm_mlcg.data import CGTrajectory
    from openmm_mlcg.cg.mapping import CGMapping
    from openmm_mlcg.train import train_on_trajectories
    traj, mapping, cfg = sys.argv[1:4]
    mapping = CGMapping.load(mapping)
    def kill_at_5(step, row):
        if step == 5:
            os.kill(os.getpid(), signal.SIGKILL)
    train_on_trajectories([CGTrajectory.load(traj, mapping)], [mapping], json.loads(cfg), callback=kill_at_5)
""")


def test_train_killed_and_rerun_gives_the_same_bundle(tmp_path):
    import json

    import torch

    from openmm_mlcg.bundle.export import load_bundle
    from openmm_mlcg.openmm.state import bundle_fingerprint
    from openmm_mlcg.train import train_on_trajectories
    from test_train import _chain_system, _config

    torch.set_num_threads(1)
    traj, mapping = _chain_system(seed=2, n_frames=20)
    traj.save(tmp_path / "cg.npz")
    mapping.save(tmp_path / "m.npz")
    over = dict(training=dict(n_steps=6, eval_every=3, checkpoint_every=3))
    cfg_b = _config(tmp_path / "b", **over).to_dict()
    r = subprocess.run([sys.executable, "-c", TRAIN, str(tmp_path / "cg.npz"), str(tmp_path / "m.npz"),
                        json.dumps(cfg_b)], env=_env(), capture_output=True, timeout=300)
    assert r.returncode == -signal.SIGKILL, r.stderr.decode()[-2000:]
    assert (tmp_path / "b" / "checkpoint.pt").is_file() and not (tmp_path / "b" / "model.mlcg").exists()
    resumed = train_on_trajectories([traj], [mapping], cfg_b)
    ref = train_on_trajectories([traj], [mapping], _config(tmp_path / "a", **over))
    steps = [int(line.split(",")[0]) for line in (tmp_path / "b" / "log.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, 7))
    assert bundle_fingerprint(load_bundle(resumed)) == bundle_fingerprint(load_bundle(ref))
    first = resumed.read_bytes()
    again = train_on_trajectories([traj], [mapping], cfg_b)  # identical rerun: nothing changes
    assert again.read_bytes() == first
