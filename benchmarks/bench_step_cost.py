"""Cost of the default model step (``cg_langevin``: 16 Score GNN passes) with the skin neighbour list of
``openmm_mlcg.nn.skin`` against a full neighbour search at every pass.

Systems: random beads at the SPE bead density of ``bench_neighbors.py`` (13.5 beads/nm^3) in a cubic box, chain
dimers as CG bonds, bead masses cycled through the SPE demo's, for 158 (the SPE demo's size), 1,000 and 10,000
beads, with an untrained model of the SPE demo size (``experiments.scales.SPE["demo"]["model"]``: Score GNN hidden
64, 3 layers, scripted as in a bundle; cutoff 0.6 nm) and the SPE demo bundle's ``cg_langevin`` settings
(``DEMO_META``: 2 ps model step, 15 sub-steps, 353 K, sigma 0.0124 nm at 150 amu, mass floor 150 amu, friction
18.5 /ps, velocity_std 0.0633 nm). Unless ``--no-trained``, also the trained SPE demo bundle on its own 158-bead
training frame with its score terms (``examples/output/spe_demo/train``, when present): the realistic motion.

Per system, from the same state and seed, the two paths alternating ``--repeats`` times (the fastest run of
each: on a shared machine, the least disturbed): ms per model step and per pass, the neighbour-list time per pass and its share
of the step, searches per step, and the largest position difference of the two trajectories (0: the edges are
the same bit for bit). Then the neighbour lists alone, replayed on the recorded positions of every pass of the
full-search run (``replay``), for the rule's skin and the ``--skins`` sweep: the data of the skin rule.

Usage: python benchmarks/bench_step_cost.py [--device cpu|cuda] [--sizes 158 1000 10000] [--steps 4 2 1]
       [--repeats 3 3 1] [--skins 0.2 0.4] [--threads 1] [--no-trained] [--out benchmarks/results/current]
Writes <out>/step_cost_<cpu|cuda>.json (environment record of _bench_common, with the GPU's name on CUDA; one
record per system). ``--device cuda`` without CUDA is an error; the trained bundle runs on CPU only (its score
terms are bound there), and CUDA timings end with ``torch.cuda.synchronize``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import device_and_threads, write_json

from openmm_mlcg.experiments.scales import SPE
from openmm_mlcg.model import CGDynamicsModel
from openmm_mlcg.nn.skin import default_skin_nm

DENSITY = 900 / 4.05 ** 3                                       # beads / nm^3 (bench_neighbors.py, bench_model.py)
SPE_DEMO_MASSES = [6.9, 28.1, 30.0, 44.1, 45.1, 69.0, 142.1]   # amu, the SPE demo's bead masses
#: the SPE demo bundle's metadata (examples/output/spe_demo/train/model.mlcg), for untrained networks
DEMO_META = {"model_time_step_ps": 2.0, "history": 4, "cutoff_nm": 0.6, "velocity_std": 0.06332778,
             "acceleration_std": 0.1012, "sampler": "cg_langevin", "temperature_K": 353.0, "cg_langevin_steps": 15,
             "cg_langevin_sigma_nm": 0.01243387, "cg_langevin_sigma_mass_amu": 150.0,
             "cg_langevin_mass_floor_amu": 150.0, "cg_langevin_friction_per_ps": 18.462, "sigmas_nm": [0.0373, 0.0041]}
TRAINED = Path(__file__).resolve().parents[1] / "examples" / "output" / "spe_demo" / "train"


def untrained_model() -> CGDynamicsModel:
    """An untrained ``cg_langevin`` model of the SPE demo size, its Score GNN scripted (as in a bundle)."""
    from openmm_mlcg.train.config import ModelConfig
    from openmm_mlcg.train.model_step import N_BOND_TYPES, build_modules

    torch.manual_seed(0)
    cfg = ModelConfig(**SPE["demo"]["model"])
    vocab = [f"T{i}" for i in range(8)]
    mods = build_modules(cfg, len(vocab), DEMO_META["history"], "cg_langevin")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score = torch.jit.script(mods["score"].eval())
    meta = {**DEMO_META, "cutoff_nm": cfg.cutoff_nm, "atom_type_vocabulary": vocab, "n_bond_types": N_BOND_TYPES}
    return CGDynamicsModel(mods["embedding"], mods["dynamics"], score, meta).eval()


def random_system(model: CGDynamicsModel, n: int, seed: int = 0) -> dict:
    """Random beads at ``DENSITY`` in a cubic box: the keyword arguments of ``CGDynamicsModel.step``."""
    g = torch.Generator().manual_seed(seed)
    edge = (n / DENSITY) ** (1 / 3)
    masses = torch.tensor([SPE_DEMO_MASSES[i % len(SPE_DEMO_MASSES)] for i in range(n)], dtype=torch.float64)
    return {"positions": torch.rand(n, 3, generator=g, dtype=torch.float64) * edge,
            "history": torch.zeros(n, model.history_length, 3, dtype=torch.float64),
            "box": torch.eye(3, dtype=torch.float64) * edge,
            "bead_embedding": torch.randn(n, int(model.embedding.out_dim), generator=g), "bead_masses": masses,
            "cg_bonds": torch.stack([torch.arange(0, n - 1, 2), torch.arange(1, n, 2)])}


def trained_system():
    """(model, step keyword arguments) of the trained SPE demo bundle on its last training frame; None without."""
    import numpy as np

    from openmm_mlcg.bundle import load_model
    from openmm_mlcg.cg.mapping import CGMapping
    from openmm_mlcg.model.simulator import LearnedSimulator

    if not (TRAINED / "model.mlcg").is_file():
        return None
    sim = LearnedSimulator(load_model(TRAINED / "model.mlcg"), CGMapping.load(TRAINED / "mapping.npz"))
    data = np.load(TRAINED / "training_cg.npz")
    x, hist = sim.history_from_positions(data["positions"][-(sim.history_length + 1):])
    return sim.model, {"positions": x, "history": sim.model.node_major(hist), "box": torch.tensor(data["box"][-1]),
                       "bead_embedding": sim.bead_embedding, "bead_masses": sim.bead_masses,
                       "cg_bonds": sim.cg_bonds, "bead_friction": sim.bead_friction, "score_terms": sim.score_terms}


class _Timed:
    """Wraps a callable, summing its wall time (s) and counting its calls; ``record`` keeps the first argument."""

    def __init__(self, fn, record: bool = False):
        self.fn, self.seconds, self.calls, self.args = fn, 0.0, 0, ([] if record else None)

    def __call__(self, *args, **kwargs):
        if self.args is not None:
            self.args.append(args[0].clone())
        t = time.perf_counter()
        out = self.fn(*args, **kwargs)
        self.seconds += time.perf_counter() - t
        self.calls += 1
        return out


def run(model: CGDynamicsModel, kw: dict, skin: float, n_steps: int, seed: int = 1, record: bool = False) -> dict:
    """``n_steps`` model steps at ``skin`` nm (0: a full search at every pass) from ``kw``: final positions, wall
    seconds per step, neighbour-list seconds and calls, searches per step and, with ``record``, the positions of
    every pass of the full-search path."""
    model.neighbor_skin_nm = skin
    edges_t = _Timed(model.edges, record)
    lists, timed = [], []

    def neighbor_list(box, cg_bonds):
        nl = CGDynamicsModel.neighbor_list(model, box, cg_bonds)
        if nl is None:
            return None
        lists.append(nl)
        timed.append(_Timed(nl))
        return timed[-1]

    model.edges, model.neighbor_list = edges_t, neighbor_list
    x, h = kw["positions"], kw["history"]
    g = torch.Generator(device=x.device).manual_seed(seed)
    cuda = x.device.type == "cuda"
    rest = {k: v for k, v in kw.items() if k not in ("positions", "history")}
    try:
        with torch.no_grad():
            if cuda:
                torch.cuda.synchronize(x.device)
            t0 = time.perf_counter()
            for _ in range(n_steps):
                x, h = model.step(x, h, generator=g, **rest)
            if cuda:
                torch.cuda.synchronize(x.device)
            wall = time.perf_counter() - t0
    finally:
        del model.edges, model.neighbor_list
    calls = edges_t.calls + sum(t.calls for t in timed)
    return {"x": x, "step_s": wall / n_steps, "neighbour_s": edges_t.seconds + sum(t.seconds for t in timed),
            "passes_per_step": calls / n_steps, "passes": edges_t.args,
            "searches_per_step": (sum(nl.n_builds for nl in lists) if lists else calls) / n_steps}


def replay(model: CGDynamicsModel, kw: dict, passes: list, per_step: int, skins: list, repeats: int) -> list:
    """The neighbour lists alone on recorded pass positions: per skin (0: ``build_edges`` at every pass) a new list
    per model step of ``per_step`` passes; fastest ms per model step of ``repeats`` interleaved rounds and searches
    per step. Raises AssertionError where the edges differ from the full search's."""
    steps = [passes[i:i + per_step] for i in range(0, len(passes), per_step)]
    box, bonds = kw["box"], kw["cg_bonds"]

    def full(y):
        return model.edges(y, box, bonds, validate=False)

    ref = [[full(x) for x in step] for step in steps]
    times, searches = {s: [] for s in skins}, {}
    for _ in range(repeats):
        for s in skins:
            model.neighbor_skin_nm = s
            builds, t0 = 0, time.perf_counter()
            for step in steps:
                nl = model.neighbor_list(box, bonds)
                for x in step:
                    (nl or full)(x)
                builds += nl.n_builds if nl is not None else len(step)
            times[s].append((time.perf_counter() - t0) / len(steps))
            searches[s] = builds / len(steps)
    for s in skins:
        model.neighbor_skin_nm = s
        for step, edges in zip(steps, ref):
            nl = model.neighbor_list(box, bonds)
            for x, e in zip(step, edges):
                assert all(torch.equal(a, b) for a, b in zip((nl or full)(x), e)), f"skin {s}: the edges differ"
    base = min(times[skins[0]])
    return [{"skin_nm": s, "neighbour_ms_per_step": 1e3 * min(times[s]), "searches_per_step": searches[s],
             "speedup": base / min(times[s])} for s in skins]


def compare(name: str, model: CGDynamicsModel, kw: dict, n_steps: int, repeats: int, sweep: list) -> dict:
    """The full search at every pass against the skin list at the rule's skin on one system (module docstring)."""
    skin = default_skin_nm(model.cutoff_nm, float(model.metadata.velocity_std))
    runs = {"rebuild_every_pass": (0.0, []), "skin": (skin, [])}
    for r in range(repeats):
        for key, (s, rs) in runs.items():
            rs.append(run(model, kw, s, n_steps, record=(r == 0 and key == "rebuild_every_pass")))
    ref = runs["rebuild_every_pass"][1][0]
    out = {"system": name, "n_beads": int(kw["positions"].shape[0]), "n_steps": n_steps, "repeats": repeats,
           "rule_skin_nm": skin}
    for key, (s, rs) in runs.items():
        step = min(r["step_s"] for r in rs)
        passes = rs[0]["passes_per_step"]
        nl_step = min(r["neighbour_s"] for r in rs) / n_steps
        out[key] = {"skin_nm": s, "ms_per_step": 1e3 * step, "ms_per_pass": 1e3 * step / passes,
                    "neighbour_ms_per_pass": 1e3 * nl_step / passes, "neighbour_share": nl_step / step,
                    "other_ms_per_pass": 1e3 * (step - nl_step) / passes,
                    "searches_per_step": rs[0]["searches_per_step"], "passes_per_step": passes,
                    "max_position_difference_nm": float((rs[0]["x"] - ref["x"]).abs().max())}
        r = out[key]
        print(f"{name:>16s} n={out['n_beads']:>6d} {key:>18s} skin {s:.3f} nm: {r['ms_per_step']:9.1f} ms/step "
              f"{r['ms_per_pass']:8.2f} ms/pass, neighbours {r['neighbour_ms_per_pass']:6.2f} ms/pass "
              f"({100 * r['neighbour_share']:4.1f}%), {r['searches_per_step']:5.2f} searches/step, "
              f"|dx| {r['max_position_difference_nm']:.1e} nm", flush=True)
    out["speedup_per_step"] = out["rebuild_every_pass"]["ms_per_step"] / out["skin"]["ms_per_step"]
    skins = [0.0, skin] + [s for s in sweep if s != skin]
    out["neighbours_only"] = replay(model, kw, ref["passes"], int(ref["passes_per_step"]), skins, max(5, repeats))
    for r in out["neighbours_only"]:
        print(f"{'':>16s} neighbour lists alone, skin {r['skin_nm']:.3f} nm: {r['neighbour_ms_per_step']:8.1f} "
              f"ms/step, {r['searches_per_step']:5.2f} searches/step, x{r['speedup']:.2f}", flush=True)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="torch device: cpu or cuda (an error without CUDA)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[158, 1000, 10000])
    ap.add_argument("--steps", type=int, nargs="+", default=[4, 2, 1], help="model steps per run, per size")
    ap.add_argument("--repeats", type=int, nargs="+", default=[3, 3, 1], help="alternating runs per size")
    ap.add_argument("--skins", type=float, nargs="*", default=[0.2, 0.4], help="skins (nm) of the replay sweep")
    ap.add_argument("--threads", type=int, default=1, help="torch / OpenMP / vesin threads")
    ap.add_argument("--no-trained", action="store_true", help="skip the trained SPE demo bundle")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "current"))
    args = ap.parse_args(argv)
    device, env = device_and_threads(ap, args)   # the load average at the start; the GPU's name on CUDA

    def per_size(values, i):
        return values[min(i, len(values) - 1)]

    systems = []
    trained = None if args.no_trained or device.type != "cpu" else trained_system()
    if trained is not None:
        systems.append(("spe_demo_trained", *trained, per_size(args.steps, 0), per_size(args.repeats, 0)))
    model = untrained_model().to(device)
    for i, n in enumerate(args.sizes):
        kw = {k: v.to(device) if torch.is_tensor(v) else v for k, v in random_system(model, n).items()}
        systems.append(("random_untrained", model, kw, per_size(args.steps, i),
                        per_size(args.repeats, i)))
    rows = [compare(name, mdl, kw, n_steps, repeats, args.skins) for name, mdl, kw, n_steps, repeats in systems]
    doc = {"environment": env, "threads": args.threads, "density_per_nm3": DENSITY,
           "metadata": DEMO_META, "model_size": SPE["demo"]["model"], "rows": rows}
    doc["environment"]["load_average_end"] = list(os.getloadavg())
    path = write_json(Path(args.out) / f"step_cost_{device.type}.json", doc)
    print(f"wrote {path}")
    return doc


if __name__ == "__main__":
    main()
