"""Benchmark the three GNNs at paper sizes on an SPE-like CG system.

~900 beads (SPE: ~6000 atoms, METIS groups of 7) in a periodic cubic box at SPE-like density
(~1.2 g/cm^3 -> 4.05 nm box), cutoff 0.6 nm, history k = 20. Reports parameter counts, neighbour-list build
time, one Dynamics GNN pass and one Score GNN pass (eager and TorchScript), and the implied cost of one model
step with refinement (20 levels x 10 Langevin steps, each = edges on the noisy positions + one Score pass).

Also times one real training step of the trainer (``CGDynamicsModel.loss`` with input noise and the
score loss, backward, gradient clipping, Adam) on a mini-batch of ``--batch-size`` windows of the same system,
whose fine graph is synthetic (``--atoms-per-bead`` atoms per bead in bonded chains), and reports training
samples (windows) per second.

Usage: python benchmarks/bench_model.py [--beads 900] [--box 4.05] [--repeats 5] [--batch-size 4]
Writes benchmarks/results/current/model_<device>.json (environment record of _bench_common, numbers).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import environment, median_time, write_json  # noqa: E402

from openmm_mlcg.nn import DynamicsGNN, EmbeddingGNN, ScoreGNN, build_edges  # noqa: E402


def _timeit(fn, repeats, device):
    return median_time(fn, repeats, device, warmup=2)  # TorchScript profiling runs


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
             "score_script_s": _timeit(lambda: s_sco(lat, disp / 0.05, disp, ei, evf, et, sigma, cutoff, 0.05), repeats, device)}
        if eager:
            t["dynamics_eager_s"] = _timeit(lambda: dyn(bead_emb, masses, hist, ei, evf, et, cutoff), repeats, device)
            t["score_eager_s"] = _timeit(lambda: sco(lat, disp / 0.05, disp, ei, evf, et, sigma, cutoff, 0.05), repeats, device)
    t["model_step_no_refine_s"] = t["neighbour_list_s"] + t["dynamics_script_s"]
    t["model_step_refine_200_s"] = t["model_step_no_refine_s"] + 200 * (t["neighbour_list_s"] + t["score_script_s"])
    out["timings"] = t
    return out


def bench_training(device: torch.device, n_beads: int, box_nm: float, cutoff: float, history: int,
                   batch_size: int, repeats: int, model: str = "paper", atoms_per_bead: int = 7) -> dict:
    """Median wall time of one optimisation step of the trainer and the implied training samples/s.

    The system: ``n_beads`` beads at random positions in a cubic box (:func:`synthetic_system`), each bead a
    bonded chain of ``atoms_per_bead`` atoms (random types/masses); windows with random history velocities
    (0.05 nm/step) and accelerations (0.01 nm/step^2). Paper loss: NLL + score loss, input noise on.
    """
    from openmm_mlcg.train.batching import SystemGraph, collate
    from openmm_mlcg.train.config import TrainConfig
    from openmm_mlcg.model.dynamics import geometric_sigmas
    from openmm_mlcg.model import CGDynamicsModel
    from openmm_mlcg.train.model_step import loss_options

    torch.manual_seed(0)
    z = MODEL_SIZES[model]
    cfg = TrainConfig()
    cfg.model.embedding_hidden, cfg.model.dynamics_hidden = z["embedding_hidden"], z["dynamics_hidden"]
    cfg.model.score_hidden = z["score_hidden"]
    cfg.model.embedding_layers = cfg.model.dynamics_layers = cfg.model.score_layers = z["layers"]
    cfg.model.cutoff_nm = cutoff
    cfg.optim.batch_size = batch_size
    mods = {k: m.to(device).train() for k, m in make_modules(model, history=history).items()}
    x, box, bonds = synthetic_system(n_beads, box_nm, torch.device("cpu"))
    n_atoms = n_beads * atoms_per_bead
    atom_to_bead = torch.arange(n_beads).repeat_interleave(atoms_per_bead)
    a = torch.arange(n_atoms)
    chain = a[(a % atoms_per_bead) != atoms_per_bead - 1]
    fine = torch.stack([chain, chain + 1])
    cross = torch.stack([bonds[0] * atoms_per_bead + atoms_per_bead - 1, bonds[1] * atoms_per_bead])
    fine = torch.cat([fine, cross], 1)
    graph = SystemGraph(atom_types=torch.randint(16, (n_atoms,)), masses=torch.rand(n_atoms) * 15 + 1,
                        bond_index=torch.cat([fine, fine.flip(0)], 1), bond_types=torch.randint(6, (2 * fine.shape[1],)),
                        atom_to_bead=atom_to_bead, n_beads=n_beads, bead_masses=torch.rand(n_beads) * 100 + 10,
                        cg_bonds=bonds).to(device)
    g = torch.Generator().manual_seed(1)
    items = []
    for _ in range(batch_size):
        hv = 0.05 * torch.randn(history, n_beads, 3, generator=g)
        acc = 0.01 * torch.randn(n_beads, 3, generator=g)
        items.append(dict(system=0, positions=x, history_velocities=hv, target_acceleration=acc,
                          next_positions=x + hv[-1] + acc, box=box))
    batch = collate(items, [graph]).to(device)
    stats = {"velocity_std": 0.05, "acceleration_std": 0.01}
    sigmas = cfg.score.resolved_sigmas(stats["velocity_std"])
    meta = dict(model_time_step_ps=1.0, history=history, cutoff_nm=cutoff, atom_type_vocabulary=[f"T{i}" for i in
                range(16)], sigmas_nm=[float(v) for v in geometric_sigmas(*sigmas, cfg.score.n_levels)], **stats)
    model = CGDynamicsModel(mods["embedding"], mods["dynamics"], mods["score"], meta).to(device)
    params = [p for m in mods.values() for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.optim.lr)
    gen = torch.Generator().manual_seed(2)

    def train_step():
        losses = model.loss(batch, [graph], gen, train=True, options=loss_options(cfg))
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        opt.step()

    t = _timeit(train_step, repeats, device)
    return {"batch_size": batch_size, "n_beads_per_window": n_beads, "n_atoms_per_window": n_atoms,
            "train_step_s": t, "training_samples_per_s": batch_size / t}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--beads", type=int, default=900)
    p.add_argument("--box", type=float, default=4.05, help="cubic box edge, nm")
    p.add_argument("--cutoff", type=float, default=0.6, help="nm")
    p.add_argument("--history", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--model", choices=sorted(MODEL_SIZES), default="paper")
    p.add_argument("--batch-size", type=int, default=4, help="windows per training step")
    p.add_argument("--no-training", action="store_true", help="skip the training-step timing")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "current"))
    args = p.parse_args(argv)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for dev in devices:
        res = {"benchmark": "model", "environment": environment(str(dev))}
        res.update(bench(dev, args.beads, args.box, args.cutoff, args.history, args.repeats, args.model))
        if not args.no_training:
            res["training"] = bench_training(dev, args.beads, args.box, args.cutoff, args.history,
                                             args.batch_size, max(3, args.repeats // 2), args.model)
        res["environment"]["load_average_end"] = list(os.getloadavg())
        print(json.dumps(res, indent=1))
        write_json(Path(args.out) / f"model_{dev.type}.json", res)


if __name__ == "__main__":
    main()
