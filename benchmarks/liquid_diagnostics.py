"""Why the learned step misses the liquid's structure: controlled experiments on the bench_liquid model (issue 9).

Runs on what ``bench_liquid.py`` left in its work dir (reference MD and one or more trained model dirs) and
measures, one model step from true MD states of the judging run:

1. **Score fit per noise level**: held-out denoising loss of the Gaussian prior alone vs prior + Score GNN, and
   the small-sigma ideal gain ``sigma^2 E|beta F|^2 / 2`` (the linear-regime gain of the exact equilibrium
   score, beta F from OpenMM's forces). Tells at which noise levels the network under-fits.
2. **Sampler sweep** at <= 20 GNN passes: probability-flow ODE and ancestral (+ Langevin corrector) with
   several level counts and signal-to-noise ratios: g(r) error, first peak, nearest-neighbour overlaps and
   the one-step MSD (which must stay at the reference's for D to be right).
3. **Oracle corrector**: after the model's step, K Langevin steps ``x += alpha beta F + sqrt(2 alpha) z`` with
   the EXACT LJ force from OpenMM (displacement per step capped at 0.02 nm). Tells how much a perfect
   equilibrium corrector could restore, and what it costs in passes and extra MSD (diffusion).

Usage: python benchmarks/liquid_diagnostics.py [--work-dir benchmarks/work/liquid/full] [--models model]
       [--train-variant NAME '{"score_hidden": 128, "score_layers": 6}'] [--threads 2]
       [--out benchmarks/results/current] [--quick]
``--train-variant`` first trains ``<work-dir>/NAME`` with bench_liquid's config and these ``model`` keys (skipped
when NAME/model.mlcg exists) and adds it to ``--models``. The committed results: ``--models model
--train-variant model_big '{"score_hidden": 128, "score_layers": 6}'``.
Writes <out>/liquid_diagnostics.json.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _bench_common import environment, write_json  # noqa: E402
from bench_liquid import SCALES, box_of, training_config  # noqa: E402

SAMPLER_GRID = [  # (sampler, n_levels, corrector_steps, snr)
    ("ode", 10, 0, 0.16), ("ode", 5, 0, 0.16), ("ancestral", 10, 0, 0.16), ("ancestral", 10, 1, 0.16),
    ("ancestral", 10, 1, 0.5), ("ancestral", 7, 2, 0.3), ("ancestral", 5, 3, 0.3)]
ORACLE_GRID = [  # (refine with the bundle's sampler, K, alpha nm^2)
    (False, 10, 2e-5), (False, 40, 5e-5), (True, 10, 2e-5), (True, 40, 5e-5)]


class ExactLJScore:
    """beta F of the reference LJ system from an OpenMM Context (CPU platform), (n, 3) 1/nm."""

    def __init__(self, run_dir: Path, threads: int):
        import json

        import openmm
        from openmm import unit

        from openmm_mlcg.systems.lj import LJSpecies, build_lj_system

        meta = json.loads((run_dir / "metadata.json").read_text())
        _, system, _ = build_lj_system(int(meta["n_atoms"]), float(meta["density_per_nm3"]),
                                       LJSpecies(meta["species"]))
        plat = openmm.Platform.getPlatformByName("CPU")
        self.ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), plat, {"Threads": str(threads)})
        self.beta = 1.0 / (unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)
                           * float(meta["temperature_K"]))
        self._unit = unit

    def __call__(self, x: np.ndarray) -> np.ndarray:
        u = self._unit
        self.ctx.setPositions(np.asarray(x, dtype=np.float64) * u.nanometer)
        f = self.ctx.getState(getForces=True).getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / u.nanometer)
        return self.beta * np.asarray(f, dtype=np.float64)


def _structure(pred, frames, starts, box, ref, L):
    from openmm_mlcg.analysis import nearest_neighbour_distances

    g = L.gr(pred, box, len(ref["g"]))[1]
    nn = nearest_neighbour_distances(pred, box)
    return dict(gr_error=L.gr_error(g, ref["g"]), peak_height=float(g.max()),
                nn_below_ref_q001=float(np.mean(nn < ref["nn_q001"])),
                msd_nm2=float(((pred - frames[starts]) ** 2).sum(-1).mean()))


def score_fit(sim, frames, starts, box, score_fn):
    """Held-out DSM loss per noise level: prior only vs prior + Score GNN, and the small-sigma ideal gain."""
    import torch

    from openmm_mlcg.generators import score_samplers as S

    boxt = torch.as_tensor(box)
    gen = torch.Generator().manual_seed(0)
    f2 = float(np.mean([(score_fn(frames[t + 1]) ** 2).sum(-1).mean() for t in starts]))
    rows = []
    with torch.no_grad():
        for s in [float(v) for v in sim.sigmas_nm]:
            lp, lm = [], []
            for t in starts:
                x, h = sim.history_from_positions(frames[t - sim.history_length:t + 1])
                mean, std, lat = sim.predict(x, h, boxt)
                z = torch.randn(x.shape, generator=gen, dtype=x.dtype)
                nx = torch.as_tensor(frames[t + 1]) + s * z
                ei, ev, et = sim._edges(nx, boxt)
                sg = torch.full((x.shape[0], 1), s, dtype=x.dtype)
                g = S.model_gns(sim.score, lat, nx, x, mean, std, sg, ei, ev, et, sim.cutoff_nm, sim.velocity_std)
                p = S.gaussian_prior_gns(nx, mean, std, sg)
                lm.append(float(0.5 * ((g + z) ** 2).sum(-1).mean()))
                lp.append(float(0.5 * ((p + z) ** 2).sum(-1).mean()))
            rows.append(dict(sigma_nm=s, prior_loss=float(np.mean(lp)), model_loss=float(np.mean(lm)),
                             gain=float(np.mean(lp) - np.mean(lm)),
                             small_sigma_ideal_gain=0.5 * s * s * f2 if 0.5 * s * s * f2 < 0.5 else None))
    return rows


def one_step_preds(sim, frames, starts, box, refine, seed=1):
    import torch

    gen = torch.Generator().manual_seed(seed)
    out = []
    for t in starts:
        x, h = sim.history_from_positions(frames[t - sim.history_length:t + 1])
        out.append(sim.step(x, h, box, 1, refine=refine, generator=gen)[0].numpy())
    return np.stack(out)


def corrector(x, score_fn, k, alpha, rng, cap=0.02):
    """K Langevin steps with drift capped at ``cap`` nm per bead and step; the centre of mass is kept."""
    x0 = x.copy()
    for _ in range(k):
        d = alpha * score_fn(x)
        norm = np.linalg.norm(d, axis=-1, keepdims=True)
        d = d * np.minimum(1.0, cap / np.maximum(norm, 1e-12))
        x = x + d + np.sqrt(2 * alpha) * rng.standard_normal(x.shape)
    return x - (x - x0).mean(0, keepdims=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work-dir", default=str(HERE / "work" / "liquid" / "full"))
    ap.add_argument("--models", nargs="+", default=["model"])
    ap.add_argument("--out", default=str(HERE / "results" / "current"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="score fit and the default sampler only")
    ap.add_argument("--train-variant", nargs=2, metavar=("NAME", "JSON"), action="append", default=[],
                    help="train <work-dir>/NAME with bench_liquid's config and these model keys first")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from openmm_mlcg.data import load_run
    from openmm_mlcg.model.dynamics import geometric_sigmas
    from openmm_mlcg.experiments import liquid as L
    from openmm_mlcg.bundle.export import load_bundle
    from openmm_mlcg.model.simulator import LearnedSimulator

    work = Path(args.work_dir)
    mapping, ref_cg = load_run(work / "ref", group_size=1)
    for name, overrides in args.train_variant:
        import json

        from openmm_mlcg.train.loop import train_on_trajectories

        if not (work / name / "model.mlcg").is_file():
            train_map, train_cg = load_run(work / "train", group_size=1)
            train_on_trajectories([train_cg], [train_map], training_config(SCALES["full"], work / name,
                                                                             json.loads(overrides)))
        if name not in args.models:
            args.models.append(name)
    frames = ref_cg.positions[::2].astype(np.float64)           # 2 ps model step, as bench_liquid
    box = box_of(ref_cg)
    ref = L.structure_summary(frames, box, 80)
    ref["nn_q001"] = float(np.quantile(ref.pop("nn"), 0.001))
    starts = np.linspace(5, len(frames) - 2, 10).round().astype(int)
    score_fn = ExactLJScore(work / "ref", args.threads)
    results = dict(benchmark="liquid_diagnostics", created=datetime.datetime.now().isoformat(timespec="seconds"),
                   environment=environment(), reference=dict(peak_height=ref["peak_height"],
                   one_step_msd_nm2=float(((frames[starts + 1] - frames[starts]) ** 2).sum(-1).mean())), models={})
    for name in args.models:
        t0 = time.perf_counter()
        bundle = load_bundle(work / name / "model.mlcg")
        sim = LearnedSimulator(bundle, mapping)
        row = dict(training_steps=int(bundle.metadata.get("config", {}).get("training", {}).get("n_steps", 0) or 0),
                   val_nll=bundle.metadata.get("val_nll"))
        row["score_fit"] = score_fit(sim, frames, starts, box, score_fn)
        sig = bundle.metadata["sigmas_nm"]
        row["samplers"] = []
        for sampler, n_levels, c, snr in (SAMPLER_GRID[:1] if args.quick else SAMPLER_GRID):
            levels = [float(v) for v in geometric_sigmas(sig[0], sig[-1], n_levels)]
            bb = L.override_sampler(bundle, sampler=sampler, corrector_steps=c, snr=snr, sigmas_nm=levels)
            s = LearnedSimulator(bb, mapping)
            pred = one_step_preds(s, frames, starts, box, True)
            row["samplers"].append(dict(sampler=sampler, n_levels=n_levels, corrector_steps=c, snr=snr,
                                        gnn_passes=1 + s.score_passes, **_structure(pred, frames, starts, box, ref, L)))
            print(name, row["samplers"][-1], flush=True)
        row["oracle_corrector"] = []
        for refine, k, alpha in ([] if args.quick else ORACLE_GRID):
            rng = np.random.default_rng(2)
            base = one_step_preds(sim, frames, starts, box, refine)
            pred = np.stack([corrector(x, score_fn, k, alpha, rng) for x in base])
            row["oracle_corrector"].append(dict(base=sim.sampler if refine else "none", K=k, alpha_nm2=alpha,
                                                gnn_passes=1 + (sim.score_passes if refine else 0),
                                                **_structure(pred, frames, starts, box, ref, L)))
            print(name, row["oracle_corrector"][-1], flush=True)
        row["wall_s"] = time.perf_counter() - t0
        results["models"][name] = row
        for r in row["score_fit"]:
            print(name, {k: (round(v, 4) if v is not None else None) for k, v in r.items()}, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "liquid_diagnostics.json", results)
    print(f"wrote {out / 'liquid_diagnostics.json'}")


if __name__ == "__main__":
    main()
