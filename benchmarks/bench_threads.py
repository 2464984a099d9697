"""Measure the torch thread default: training-step time against threads, on an idle and on a loaded machine.

One real training step of the trainer (``bench_model.bench_training``: loss, backward, clipping, Adam) on the
demo SPE's size (158 beads, small model, 4 windows), timed in a fresh process per setting with 1, 2, ... threads,
first with the machine as it is, then next to ``--busy`` processes that each keep one core busy (a Python loop:
what another job on a shared machine does). ``openmm_mlcg.util.threads.default_threads`` is judged against it:
the thread count it picks in each case, and the step time it costs against the best count.

Usage: python benchmarks/bench_threads.py [--threads 1 2] [--busy 1] [--beads 158] [--repeats 5]
Writes <out>/threads_cpu.json (environment record of _bench_common, one row per load and thread count).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import environment, write_json  # noqa: E402

_CHILD = """
import json, sys
sys.path.insert(0, {bench!r})
from openmm_mlcg.util.threads import set_threads, default_threads
import torch
from bench_model import bench_training
set_threads({threads})
r = bench_training(torch.device("cpu"), {beads}, {box}, 0.6, 3, 4, {repeats}, model="small")
print(json.dumps(dict(train_step_s=r["train_step_s"], default_threads=default_threads(),
                      load=__import__("os").getloadavg()[0])))
"""


def time_step(threads: int, beads: int, repeats: int) -> dict:
    """Median training-step time (s) with ``threads`` torch threads, in a fresh process."""
    box = (beads / (900 / 4.05 ** 3)) ** (1 / 3)  # the SPE bead density of bench_model
    code = _CHILD.format(bench=str(Path(__file__).resolve().parent), threads=threads, beads=beads, box=box,
                         repeats=repeats)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to time")
    p.add_argument("--busy", type=int, default=1, help="busy processes started for the loaded case")
    p.add_argument("--beads", type=int, default=158, help="beads per training window (demo SPE: 158)")
    p.add_argument("--repeats", type=int, default=5, help="timed training steps per setting (median)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "current"))
    a = p.parse_args(argv)
    rows = []
    for busy in (0, a.busy):
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        try:
            if busy:
                time.sleep(20)  # let the 1-minute load average see the busy processes
            for n in a.threads:
                r = time_step(n, a.beads, a.repeats)
                rows.append(dict(busy_processes=busy, threads=n, **r))
                print(f"busy {busy}  threads {n}  {r['train_step_s']:.3f} s/step  (load {r['load']:.2f}, "
                      f"default_threads would pick {r['default_threads']})", flush=True)
        finally:
            for h in hogs:
                h.kill()
    summary = {}
    for busy in sorted({r["busy_processes"] for r in rows}):
        case = [r for r in rows if r["busy_processes"] == busy]
        best = min(case, key=lambda r: r["train_step_s"])
        picked = [r for r in case if r["threads"] == case[-1]["default_threads"]]
        summary[f"busy_{busy}"] = dict(best_threads=best["threads"], best_s=best["train_step_s"],
                                       default_picks=case[-1]["default_threads"],
                                       default_s=picked[0]["train_step_s"] if picked else None)
    doc = dict(environment=environment(), beads=a.beads, rows=rows, summary=summary)
    path = write_json(Path(a.out) / "threads_cpu.json", doc)
    print(json.dumps(summary, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
