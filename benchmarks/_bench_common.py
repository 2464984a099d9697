"""Shared helpers of the benchmark scripts: environment record (device, versions, CPU, load) and JSON output."""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str = "cpu") -> dict:
    """Device, package versions, UTC date, CPU model, thread counts and the 1/5/15-min load average."""
    import openmm
    import torch

    import openmm_mlcg
    env = dict(device=device, date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               cpu_model=cpu_model(), cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
               python=platform.python_version(), torch=torch.__version__, openmm=openmm.__version__,
               openmm_mlcg=getattr(openmm_mlcg, "__version__", "unknown"), load_average=list(os.getloadavg()))
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def _clean(x):
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "tolist"):
        return _clean(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_json(path, data: dict) -> Path:
    """Write ``data`` as indented JSON atomically (NaN/inf -> null, numpy -> lists)."""
    from openmm_mlcg.util.io_utils import atomic_write
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as fh:
        json.dump(_clean(data), fh, indent=1)
        fh.write("\n")
    return path


def median_time(fn, repeats: int, device, warmup: int = 1) -> float:
    """Median wall time (s) of ``fn()`` over ``repeats`` calls after ``warmup`` calls (CUDA synchronised)."""
    import time

    import torch

    def sync():
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def named_bundles(items, flag: str) -> dict:
    """{NAME: BUNDLE path} from repeated ``NAME=BUNDLE`` command-line values of ``flag``.

    Raises:
        SystemExit: an item without ``=``, with an empty name, or naming a bundle file that does not exist.
    """
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not Path(path).is_file():
            raise SystemExit(f"{flag}: expected NAME=BUNDLE with an existing bundle file, got {item!r}")
        out[name] = path
    return out


def train_once(trajectories, mappings, config: dict, out_dir) -> tuple:
    """(bundle path, training wall s): train with ``openmm_mlcg.train.train_on_trajectories`` into ``out_dir``
    (``config['training']['out_dir']`` is set to it), or reuse a finished bundle with its recorded wall time.
    Without the bundle but with a finished checkpoint (the bundle deleted to refit a post-training fit whose rule
    changed) the trainer resumes and refits; the wall time is then the recorded one plus the refit's."""
    import time

    from openmm_mlcg.train import train_on_trajectories

    out_dir = Path(out_dir)
    bundle, record = out_dir / "model.mlcg", out_dir / "training_time.json"
    if bundle.is_file() and record.is_file():
        return bundle, float(json.loads(record.read_text())["wall_s"])
    config = dict(config, training=dict(config.get("training", {}), out_dir=str(out_dir)))
    before = json.loads(record.read_text()) if record.is_file() and (out_dir / "checkpoint.pt").is_file() else None
    t0 = time.perf_counter()
    path = Path(train_on_trajectories(list(trajectories), list(mappings), config))
    wall = time.perf_counter() - t0
    if before is not None:   # a refit of a finished run: the training's wall time plus the refit's
        write_json(record, dict(before, wall_s=float(before["wall_s"]) + wall,
                                refits_s=list(before.get("refits_s", [])) + [wall]))
        return path, float(before["wall_s"]) + wall
    write_json(record, dict(wall_s=wall, steps=config["training"].get("n_steps")))
    return path, wall


def device_and_threads(ap, args) -> tuple:
    """(torch device, environment record) of a benchmark with ``--device`` and ``--threads``: the device resolved
    (argparse error naming ``--device`` when it is not available), ``OMP_NUM_THREADS`` and torch's thread count
    set to ``--threads``, the environment (load average, GPU name) taken at the start."""
    import os

    import torch

    from openmm_mlcg.util.sanity import resolve_device

    try:
        device = resolve_device(args.device, "--device")
    except ValueError as exc:
        ap.error(str(exc))
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    return device, environment(str(device))
