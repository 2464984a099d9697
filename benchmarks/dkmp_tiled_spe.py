"""A large real topology through one DKMP* model step (issue 42 item 4): the SPE demo box's CG frame tiled
``--tiles`` (default 2x2x3 = 12 copies, 1896 beads) through one refined ``cg_langevin`` model step, radius graph
and DKMP*; wall time and peak RSS (VmHWM) of the step, each neighbourhood in its own subprocess, 1 thread.

The model is UNTRAINED (SPE demo sizes, ``experiments.scales.SPE['demo']['model']``; cost does not depend on the
weights) with the metadata of a ``cg_langevin`` bundle (15 sub-steps, one Score pass each). The bead embeddings of
the tiled system are the one box's tiled: the fine graph is a disjoint union of copies, so the Embedding GNN gives
each copy the same embeddings. Data: ``benchmarks/data/spe_demo_long`` (last frame).

Usage: python benchmarks/dkmp_tiled_spe.py [--tiles 2,2,3]; prints one JSON line per neighbourhood.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
DATA = HERE / "data" / "spe_demo_long"


def run(hood: str, tiles) -> dict:
    """One model step of the tiled box with ``hood`` ("radius" or "dkmp"); times and peak memory."""
    import torch
    from bench_speed import _reset_peak_rss, _vm_kb
    from openmm_mlcg.cg.mapping import CGMapping
    from openmm_mlcg.data import CGTrajectory
    from openmm_mlcg.experiments.scales import SPE
    from openmm_mlcg.model import CGDynamicsModel
    from openmm_mlcg.nn.dkmp import default_shells_nm
    from openmm_mlcg.train.config import ModelConfig
    from openmm_mlcg.train.model_step import build_modules

    torch.set_num_threads(1)
    torch.manual_seed(0)
    mapping = CGMapping.load(DATA / "mapping.npz")
    traj = CGTrajectory.load(DATA / "cg_trajectory.npz")
    mc = ModelConfig(**SPE["demo"]["model"])
    k = SPE["demo"]["history"]
    mods = build_modules(mc, len(set(mapping.graph.atom_types)), k, "cg_langevin")
    meta = dict(model_time_step_ps=2.0, history=k, cutoff_nm=mc.cutoff_nm, velocity_std=0.06, acceleration_std=0.06,
                atom_type_vocabulary=sorted(set(mapping.graph.atom_types)), sigmas_nm=[0.05, 0.005],
                sampler="cg_langevin", temperature_K=353.0, cg_langevin_sigma_nm=0.01, cg_langevin_steps=15,
                hyperparameters={n: m.hyperparameters() for n, m in mods.items()})
    if hood == "dkmp":
        meta.update(neighborhood="dkmp", dkmp_k=4,
                    dkmp_shells_nm={n: default_shells_nm(mc.cutoff_nm, getattr(mc, f"{n}_layers"))
                                    for n in ("dynamics", "score")})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = {n: torch.jit.script(m.eval()) for n, m in mods.items()}
    model = CGDynamicsModel(scripted["embedding"], scripted["dynamics"], scripted["score"], meta).eval()
    graph = model.system_graph(mapping)
    with torch.no_grad():
        emb = model.embed(graph)
    box1 = torch.as_tensor(traj.box[-1])
    x1 = torch.as_tensor(traj.positions[-1])
    shifts = [torch.tensor([a, b, c], dtype=torch.float64) @ box1 for a in range(tiles[0]) for b in range(tiles[1])
              for c in range(tiles[2])]
    n1, copies = x1.shape[0], len(shifts)
    x = torch.cat([x1 + s for s in shifts])
    box = box1 * torch.tensor(tiles, dtype=torch.float64)[:, None]
    bonds = torch.cat([graph.cg_bonds + i * n1 for i in range(copies)], 1)
    emb_t, masses = emb.repeat(copies, 1), graph.bead_masses.repeat(copies)
    hist = torch.zeros(x.shape[0], k, 3, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.step(x[:n1], hist[:n1], box1, emb, graph.bead_masses, graph.cg_bonds, generator=gen)   # warm-up
        reset = _reset_peak_rss()
        base = _vm_kb("VmRSS")
        t0 = time.perf_counter()
        x_new, _ = model.step(x, hist, box, emb_t, masses, bonds, generator=gen)
        wall = time.perf_counter() - t0
    peak = _vm_kb("VmHWM") if reset else None
    edges = model.edges(x, box, bonds)
    msgs = sum(int(t.numel()) for t in edges.layers("score")) if hood == "dkmp" else \
        edges[0].shape[1] * mc.score_layers
    return dict(neighborhood=hood, tiles=list(tiles), n_beads=int(x.shape[0]), box_nm=box.diagonal().tolist(),
                score_passes_per_step=model.score_passes, n_edges=int(edges[0].shape[1]),
                score_messages_per_pass=msgs, step_s=wall, finite=bool(torch.isfinite(x_new).all()),
                peak_rss_increase_mb=None if peak is None else (peak - base) / 1024.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", default="2,2,3")
    ap.add_argument("--_worker", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    tiles = [int(t) for t in a.tiles.split(",")]
    if a._worker:
        print("RESULT " + json.dumps(run(a._worker, tiles)))
        return 0
    for hood in ("radius", "dkmp"):
        p = subprocess.run([sys.executable, __file__, "--tiles", a.tiles, "--_worker", hood], capture_output=True,
                           text=True)
        line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
        print(line[-1][7:] if line else f"{hood}: failed (rc {p.returncode}) {p.stderr[-500:]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
