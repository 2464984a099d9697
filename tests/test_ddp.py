"""Data-parallel training (issue 42): 2 gloo processes launched by ``torch.distributed.run`` (torchrun) train like
one process with the same global batch, and a 2-process run (ranks forked from the test, set up as torchrun
would) killed after its first checkpoint resumes to the bundle of an uninterrupted one. CPU only; small runs of
the tiny chain system of test_train."""
from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import yaml

from openmm_mlcg.bundle.export import load_bundle
from openmm_mlcg.openmm.state import bundle_fingerprint
from openmm_mlcg.train import train
from openmm_mlcg.train.distributed import Ranks

from test_train import _chain_system, _config

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with the gloo backend is not available")

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args, env_extra=None, timeout=120) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc_per_node 2`` on a free port, one CPU thread per process."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]), OMP_NUM_THREADS="1",
               **(env_extra or {}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _yaml_config(tmp_path: Path, name: str, two_systems: bool = False, **over) -> Path:
    """A YAML config of the tiny chain system (a cg_trajectory source; ``two_systems``: and a second one with
    other bead counts) training into ``tmp_path/name``."""
    data = tmp_path / "data"
    sizes = [(3, 2), (2, 5)][:2 if two_systems else 1]  # (chains, ions): 8 and 9 beads
    for i, (chains, ions) in enumerate(sizes):
        if not (data / f"cg{i}.npz").is_file():
            traj, mapping = _chain_system(n_chains=chains, n_ions=ions, seed=2 + i, n_frames=30)
            data.mkdir(exist_ok=True)
            traj.save(data / f"cg{i}.npz")
            mapping.save(data / f"m{i}.npz")
    raw = _config(tmp_path / name, **over).to_dict()
    raw["data"]["systems"] = [{"cg_trajectory": str(data / f"cg{i}.npz"), "mapping": str(data / f"m{i}.npz")}
                              for i in range(len(sizes))]
    raw["data"]["cache_dir"] = str(data / "cache")
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _log(out: Path) -> list:
    with open(out / "log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_two_gloo_processes_train_like_one_process_with_the_same_global_batch(tmp_path):
    # no input noise and no score matching: the loss is a deterministic function of the weights, so the
    # 2-process run must follow the 1-process curve (each rank 2 of the 4 windows, DDP-averaged gradients);
    # two systems of 8 and 9 beads: the ranks' shares hold different bead counts (the per-bead mean's weights)
    over = dict(input_noise=dict(enabled=False), score=dict(enabled=False),
                training=dict(n_steps=5, eval_every=5, checkpoint_every=5))
    one = train(_yaml_config(tmp_path, "one", two_systems=True, **over))
    r = _torchrun(["-m", "openmm_mlcg.train", str(_yaml_config(tmp_path, "two", two_systems=True, **over))])
    assert r.returncode == 0, r.stderr[-3000:]
    two = tmp_path / "two" / "model.mlcg"
    assert r.stdout.strip().splitlines()[-1] == str(two)  # rank 0 alone prints the bundle
    a, b = _log(tmp_path / "one"), _log(tmp_path / "two")
    assert [int(x["step"]) for x in b] == [1, 2, 3, 4, 5]
    for key in ("loss", "nll"):
        np.testing.assert_allclose([float(x[key]) for x in b], [float(x[key]) for x in a], rtol=1e-4)
    assert len({x["loss"] for x in a}) == 5  # a curve (other windows, updated weights), not one value
    np.testing.assert_allclose(float(b[-1]["val_nll"]), float(a[-1]["val_nll"]), rtol=1e-4)
    ma, mb = load_bundle(one), load_bundle(two)
    for name in ("embedding", "dynamics", "score"):
        sa, sb = getattr(ma, name).state_dict(), getattr(mb, name).state_dict()
        assert sa.keys() == sb.keys()
        for key in sa:
            torch.testing.assert_close(sb[key], sa[key], rtol=1e-4, atol=1e-6, msg=f"{name}.{key}")


def _rank_main(rank: int, world: int, port: int, config: str, kill_step: int, kill_rank: int) -> None:
    """One rank of a run forked from the test process (as torchrun's env:// launch sets it up): SIGKILLs itself
    after step ``kill_step`` when it is rank ``kill_rank``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1)

    def kill(step, row):
        if step == kill_step and rank == kill_rank:
            os.kill(os.getpid(), signal.SIGKILL)

    try:
        train(config, callback=kill)
    except BaseException as exc:  # what each rank raised, for the test to read
        Path(config).with_suffix(f".rank{rank}.err").write_text(f"{type(exc).__name__}: {exc}")
        raise


def _forked_run(config: Path, kill_step: int = -1, kill_rank: int = -1) -> None:
    """A 2-rank gloo run of ``config``, ranks forked from this process (no interpreter start-up per rank)."""
    import torch._dynamo  # noqa: F401  (imported by Adam, and the plots by the export: once, not per rank)
    import torch.multiprocessing as mp

    import openmm_mlcg.analysis.plots  # noqa: F401

    mp.start_processes(_rank_main, args=(2, _free_port(), str(config), kill_step, kill_rank), nprocs=2,
                       start_method="fork", join=True)


def test_two_process_run_killed_after_a_checkpoint_resumes_to_the_uninterrupted_bundle(tmp_path):
    import torch.multiprocessing as mp

    # input noise and score matching on: every rank draws its own noise, keyed by (seed, step, rank)
    over = dict(training=dict(n_steps=6, eval_every=3, checkpoint_every=3))
    killed = _yaml_config(tmp_path, "killed", **over)
    with pytest.raises(mp.ProcessExitedException, match="SIGKILL"):  # rank 0, the writer, dies after step 5
        _forked_run(killed, kill_step=5, kill_rank=0)
    out = tmp_path / "killed"
    assert (out / "checkpoint.pt").is_file() and not (out / "model.mlcg").exists()
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 3
    # the same run again resumes from rank 0's checkpoint (the killed rank 0's lock went with it)
    _forked_run(killed)
    assert [int(x["step"]) for x in _log(out)] == list(range(1, 7))
    _forked_run(_yaml_config(tmp_path, "ref", **over))
    resumed, ref = load_bundle(out / "model.mlcg"), load_bundle(tmp_path / "ref" / "model.mlcg")
    assert bundle_fingerprint(resumed) == bundle_fingerprint(ref)
    # rank 1 killed: the same
    with pytest.raises(mp.ProcessExitedException, match="SIGKILL"):
        _forked_run(_yaml_config(tmp_path, "killed1", **over), kill_step=4, kill_rank=1)
    _forked_run(tmp_path / "killed1.yaml")
    assert bundle_fingerprint(load_bundle(tmp_path / "killed1" / "model.mlcg")) == bundle_fingerprint(ref)


def test_rank_0_failing_to_take_the_lock_stops_every_rank_with_its_reason(tmp_path):
    import torch.multiprocessing as mp
    from filelock import FileLock

    from openmm_mlcg.util.locks import LOCK_NAME

    config = _yaml_config(tmp_path, "busy", training=dict(n_steps=2))
    (tmp_path / "busy").mkdir()
    with FileLock(str(tmp_path / "busy" / LOCK_NAME)):
        ctx = mp.start_processes(_rank_main, args=(2, _free_port(), str(config), -1, -1), nprocs=2,
                                 start_method="fork", join=False)
        for p in ctx.processes:  # both to their end (join() would stop rank 1 once rank 0 failed)
            p.join(60)
        for p in ctx.processes:
            if p.is_alive():  # hung: fail below, leave nothing behind
                p.kill()
    assert [p.exitcode for p in ctx.processes] == [1, 1]
    err = [config.with_suffix(f".rank{r}.err") for r in (0, 1)]
    assert err[0].read_text().startswith("OutputLockedError: training.out_dir: ")
    # rank 1 does not wait for a rank 0 that will never come: it stops, naming rank 0's error
    assert err[1].read_text().startswith("RuntimeError: training: rank 0 failed (OutputLockedError: ")
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == [LOCK_NAME]  # nothing written


def test_rank_share_and_step_generators():
    # contiguous disjoint shares covering the global batch; a batch the ranks cannot share is refused
    idx = [7, 3, 9, 1, 4, 4]
    shares = [Ranks(rank=r, world_size=3).shard(idx) for r in range(3)]
    assert shares == [[7, 3], [9, 1], [4, 4]]
    with pytest.raises(ValueError, match=r"optim.batch_size: expected a multiple of the world size 4 .* got 6"):
        Ranks(rank=0, world_size=4).shard(idx)
    from openmm_mlcg.train.distributed import step_generator

    a, b = step_generator(0, 3, 0), step_generator(0, 3, 1)
    assert not torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))
    # rank 0 keeps the generator of a single process (a 1-process run is unchanged)
    assert torch.equal(torch.rand(4, generator=step_generator(5, 2)), torch.rand(4, generator=step_generator(5, 2, 0)))


def test_bad_world_size_is_a_clear_error(monkeypatch):
    from openmm_mlcg.train.distributed import launched

    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match=r"WORLD_SIZE: expected a positive integer .* got 'two'"):
        launched()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not launched()
