"""Benchmark the three GNNs at paper sizes on an SPE-like CG system.

~900 beads (SPE: ~6000 atoms, METIS groups of 7) in a periodic cubic box at SPE-like density
(~1.2 g/cm^3 -> 4.05 nm box), cutoff 0.6 nm, history k = 20. Reports parameter counts, neighbour-list build
time, one Dynamics GNN pass and one Score GNN pass (eager and TorchScript), and the implied cost of one model
step with refinement (20 levels x 10 Langevin steps, each = edges on the noisy positions + one Score pass).

Usage: python benchmarks/bench_model.py [--beads 900] [--box 4.05] [--repeats 5]
Writes benchmarks/results/model_<device>.json (device, torch version, date, numbers).
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
import warnings
from pathlib import Path

import torch

from openmm_mlcg.nn import DynamicsGNN, EmbeddingGNN, ScoreGNN, build_edges


def _timeit(fn, repeats, device):
    fn()  # warm-up (TorchScript profiling runs)
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def n_params(m):
    return sum(p.numel() for p in m.parameters())


# model sizes: hidden widths (embedding / dynamics / score) and message-passing layers
MODEL_SIZES = {
    "paper": dict(embedding_hidden=64, dynamics_hidden=128, score_hidden=128, layers=7),  # Fu et al. app. C
    "small": dict(embedding_hidden=32, dynamics_hidden=64, score_hidden=64, layers=3),
}


def make_modules(model: str = "paper", n_atom_types: int = 16, history: int = 20, n_bond_types: int = 6):
    """Untrained (eager) Embedding, Dynamics and Score GNNs of a named size (``MODEL_SIZES``).

    Returns: dict(embedding=..., dynamics=..., score=...). Raises: ValueError for an unknown ``model``.
    """
    if model not in MODEL_SIZES:
        raise ValueError(f"model: expected one of {sorted(MODEL_SIZES)}, got {model!r}")
    z = MODEL_SIZES[model]
    emb = EmbeddingGNN(n_atom_types, n_bond_types, hidden=z["embedding_hidden"], layers=z["layers"])
    dyn = DynamicsGNN(z["embedding_hidden"], history=history, hidden=z["dynamics_hidden"], layers=z["layers"])
    sco = ScoreGNN(z["dynamics_hidden"], z["score_hidden"], z["layers"])
    return {"embedding": emb, "dynamics": dyn, "score": sco}


def synthetic_system(n_beads: int, box_nm: float, device, seed: int = 0):
    """Uniform random beads in a cubic box (row-vector box (3,3) nm) with CG bonds (2i, 2i+1)."""
    g = torch.Generator().manual_seed(seed)
    box = torch.eye(3, dtype=torch.float64) * box_nm
    x = torch.rand(n_beads, 3, dtype=torch.float64, generator=g) * box_nm
    bonds = torch.stack([torch.arange(0, n_beads - 1, 2), torch.arange(1, n_beads, 2)])
    return x.to(device), box.to(device), bonds.to(device)


def bench(device: torch.device, n_beads: int, box_nm: float, cutoff: float, history: int, repeats: int,
          model: str = "paper", eager: bool = True):
    """Median wall time (s) of one neighbour-list build, one Dynamics and one Score pass (TorchScript, and
    eager if ``eager``) on a synthetic system; plus the implied model-step costs. Returns a JSON-able dict."""
    torch.manual_seed(0)
    mods = make_modules(model, history=history)
    emb = mods["embedding"]
    dyn, sco = mods["dynamics"].to(device).eval(), mods["score"].to(device).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s_dyn, s_sco = torch.jit.script(dyn), torch.jit.script(sco)
    x, box, bonds = synthetic_system(n_beads, box_nm, device)
    ei, ev, et = build_edges(x, box, cutoff, bonds)
    emb_dim = MODEL_SIZES[model]["embedding_hidden"]
    bead_emb = torch.randn(n_beads, emb_dim, device=device)
    masses = torch.rand(n_beads, device=device) * 100 + 10
    hist = torch.randn(n_beads, history, 3, device=device)
    evf = ev.float()
    sigma = torch.full((n_beads, 1), 0.1, device=device)
    disp = torch.randn(n_beads, 3, device=device) * 0.05
    out = {"model": model, "n_beads": n_beads, "box_nm": box_nm, "cutoff_nm": cutoff, "history": history,
           "n_edges": int(ei.shape[1]), "mean_neighbours": ei.shape[1] / n_beads,
           "params": {"embedding": n_params(emb), "dynamics": n_params(dyn), "score": n_params(sco)}}
    with torch.no_grad():
        _, _, lat = dyn(bead_emb, masses, hist, ei, evf, et, cutoff)
        t = {"neighbour_list_s": _timeit(lambda: build_edges(x, box, cutoff, bonds), repeats, device),
             "dynamics_script_s": _timeit(lambda: s_dyn(bead_emb, masses, hist, ei, evf, et, cutoff), repeats, device),
             "score_script_s": _timeit(lambda: s_sco(lat, disp, ei, evf, et, sigma, cutoff, 0.05), repeats, device)}
        if eager:
            t["dynamics_eager_s"] = _timeit(lambda: dyn(bead_emb, masses, hist, ei, evf, et, cutoff), repeats, device)
            t["score_eager_s"] = _timeit(lambda: sco(lat, disp, ei, evf, et, sigma, cutoff, 0.05), repeats, device)
    t["model_step_no_refine_s"] = t["neighbour_list_s"] + t["dynamics_script_s"]
    t["model_step_refine_200_s"] = t["model_step_no_refine_s"] + 200 * (t["neighbour_list_s"] + t["score_script_s"])
    out["timings"] = t
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--beads", type=int, default=900)
    p.add_argument("--box", type=float, default=4.05, help="cubic box edge, nm")
    p.add_argument("--cutoff", type=float, default=0.6, help="nm")
    p.add_argument("--history", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--model", choices=sorted(MODEL_SIZES), default="paper")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args(argv)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for dev in devices:
        res = bench(dev, args.beads, args.box, args.cutoff, args.history, args.repeats, args.model)
        res.update(device=str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
                   cpu=platform.processor() or platform.machine(), torch_threads=torch.get_num_threads(),
                   torch_version=torch.__version__,
                   date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
        print(json.dumps(res, indent=1))
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"model_{dev.type}.json").write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
