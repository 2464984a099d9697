"""Why do the polymers fail? Controlled checks beside ``bench_polymer.py`` (issue 38).

1. **The simplest baseline**: <Rg^2> of a chain predicted from its length alone, a power law <Rg^2> = a N^b
   (N = number of CUs) fitted by least squares in log-log on the training chains' own <Rg^2> (their 800 tau of MD),
   judged on the 16 unseen class-II chains with bench_polymer's measures (r^2 and MAE of <Rg^2>). It knows nothing
   of the sequence; a learned model that does not beat it has learned no transferable chemistry.
2. **Seen and unseen chains, per trained variant**: bundles trained by ``bench_polymer.py`` (work folder tags, e.g.
   ``h48l3s3000`` = the benchmark's scale; ``h48l3s10000`` = 10000 steps; ``h48l3s3000c4.5`` = cutoff 4.5 sigma;
   ``h48l3s3000_score_energy-True`` = energy-based Score GNN) rolled out with the default generator (4000 tau at
   the 5 tau step from each chain's first k+1 frames) on the 8 **training** chains they were trained on (scored
   against the chains' 800 tau of training data) and on the 16 unseen test chains (bench_polymer's rollouts, reused
   from its work folder). If a model misses chains it was trained on, the failure is in what it learned or how it
   samples, not in transfer. (The noise of an 800-tau reference: short MD against the 8000-tau reference on the
   test chains, r^2 0.78, from ``polymer.json``.)
3. **Is the learned score right at a chain's own frames? (the radial Stein identity)** For the smoothed density
   p_sigma of a chain's frames (x plus the sampler's noise sigma_i z_i) and f_i = x_i - mean_j x_j, Stein's identity
   gives E[sum_i s_i . (x_i - mean x)] = -3 (N - 1) for the exact score s of p_sigma (N beads). The sampler's score
   (learned + its score terms, at the sampler's sigma) is evaluated on noisy frames (``--draws`` per frame) of the
   training chains and of the test chains' reference: a virial V more negative than -3 (N - 1) means that the score
   pulls the chain inwards harder than the chain's own density does, which shrinks <Rg^2> in a rollout. Reported as
   the ratio V / (-3 (N - 1)) per chain (1 = exact), its median |log| per variant, and on the test chains the rank
   correlation of log(ratio) with the rollout's log(<Rg^2> learned / reference) (negative: a too strong pull
   goes with a too small chain).
5. **Interaction range**: per training chain, the fraction of CG bead pairs with some atom pair inside the MD's
   nonbonded cutoff (``polymer_params.json``, 2.5 sigma) whose bead centres are beyond the benchmark's graph cutoff
   (3 sigma), over every 4th frame of the all-atom trajectory (mdtraj).
4. **One chain alone** (``--single-chain I``): a model trained with the benchmark's scale and defaults on training
   chain I only, then the identity and a rollout on that chain. If it fits one chain, the 8-chain model's failure
   is in telling the chains apart; if not, the objective or its optimisation cannot fit the balance.

Usage: python benchmarks/polymer_diagnostics.py [--variants h48l3s3000:0,1,2 h48l3s10000:0] [--single-chain 6]
       [--out benchmarks/results/current]
Writes polymer_diagnostics.json. The bundles come from ``bench_polymer.py`` (e.g. ``--train-steps 10000``,
``--cutoff-sigma 4.5``, ``--model-option score_energy=true``; its own JSON written elsewhere with ``--out``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _bench_common import environment, write_json  # noqa: E402
from bench_polymer import BENCHMARK_SCALE, CUTOFF_SIGMA, DATA, load_set, observables, rollout, scores, train  # noqa: E402


def power_law(n_train, rg2_train):
    """(a, b) of <Rg^2> = a N^b, least squares in log-log."""
    b, log_a = np.polyfit(np.log(n_train), np.log(rg2_train), 1)
    return float(np.exp(log_a)), float(b)


def radial_identity(model, traj, mapping, draws: int, seed: int) -> dict:
    """Radial Stein identity of the sampler's score on one chain's noisy frames (module docstring, part 3):
    dict(n_beads, exact (-3 (N - 1)), network (mean virial of the sampler's score), network_se (over the noisy
    frames; they are correlated, so a lower bound), ratio (network / exact))."""
    from openmm_mlcg.train.fits.pair_correction import noisy_frames

    virial = []
    for d in noisy_frames(model, [traj], [mapping], draws, seed, max_frames=400):
        c = d["positions"] - d["positions"].mean(dim=0, keepdim=True)
        virial.append(float((d["score"] * c).sum()))
    n = len(mapping.bead_masses)
    exact = -3.0 * (n - 1)
    v = np.array(virial)
    return dict(n_beads=n, exact=exact, network=float(v.mean()), network_se=float(v.std(ddof=1) / np.sqrt(len(v))),
                ratio=float(v.mean() / exact))


def beyond_cutoff_fraction(run_dir: Path, mapping, cg_positions, md_cutoff_nm: float, graph_cutoff_nm: float) -> float:
    """Fraction of interacting bead pairs (an atom pair closer than ``md_cutoff_nm``) whose centres (the CG
    trajectory) are farther apart than ``graph_cutoff_nm``; every 4th frame."""
    import mdtraj

    fine = mdtraj.load(str(run_dir / "trajectory.dcd"), top=str(run_dir / "topology.pdb")).xyz
    bead_of = np.asarray(mapping.atom_to_bead)
    n = int(bead_of.max()) + 1
    upper = np.triu_indices(n, 1)
    n_int = n_far = 0
    for f in range(0, min(len(fine), len(cg_positions)), 4):
        r = np.linalg.norm(fine[f][:, None] - fine[f][None], axis=-1)
        i, j = np.nonzero((r < md_cutoff_nm) & (bead_of[:, None] != bead_of[None, :]))
        inter = np.zeros((n, n), dtype=bool)
        inter[bead_of[i], bead_of[j]] = True
        centres = np.linalg.norm(cg_positions[f][:, None] - cg_positions[f][None], axis=-1)
        m = inter[upper]
        n_int += int(m.sum())
        n_far += int((m & (centres[upper] > graph_cutoff_nm)).sum())
    return n_far / max(n_int, 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", nargs="+", default=["h48l3s3000:0,1,2"],
                    help="TAG:SEEDS of bench_polymer work folders (TAG = h<hidden>l<layers>s<steps>[...]; with a '/', "
                         "a folder under benchmarks/work, e.g. polymer_learning_curve/n32_h48l3s10000)")
    ap.add_argument("--single-chain", type=int, default=None, help="train on this training chain alone (part 4)")
    ap.add_argument("--draws", type=int, default=4, help="noise draws per frame of the Stein identity")
    ap.add_argument("--learned-tau", type=float, default=4000.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work-dir", type=Path, default=HERE / "work" / "bench_polymer")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "current")
    a = ap.parse_args(argv)
    import torch

    from openmm_mlcg.bundle import load_model
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    train_set, test_set, recipe = load_set(DATA, a.work_dir / "cg")
    frame = float(recipe["frame_tau"])
    n_steps = int(round(a.learned_tau / frame))

    def obs(pos, mapping):
        return observables(np.asarray(pos), frame, np.asarray(mapping.bead_masses))

    train_ref = [obs(t.positions, m) for _, m, t in train_set]
    test_ref = [obs(t.positions, m) for _, m, t in test_set]
    n_train = np.array([e["n_units"] for e, _, _ in train_set], dtype=float)
    n_test = np.array([e["n_units"] for e, _, _ in test_set], dtype=float)

    # 1. length-only baseline
    coef_a, coef_b = power_law(n_train, [r["rg2_mean"] for r in train_ref])
    pred = [dict(rg2_mean=coef_a * n ** coef_b, rg2=np.array([coef_a * n ** coef_b]), tau_ps=float("nan"))
            for n in n_test]
    base = scores(test_ref, pred)
    baseline = dict(rule="<Rg^2> = a N^b fitted on the 8 training chains' <Rg^2> (800 tau each), N = CUs",
                    a_nm2=coef_a, b=coef_b, rg2_r2=base["rg2_r2"], rg2_mae_nm2=base["rg2_mae_nm2"],
                    predictions=[p["rg2_mean"] for p in pred])
    print(f"length-only power law: a {coef_a:.3g} nm^2, b {coef_b:.3f}; on the unseen chains r^2 "
          f"{base['rg2_r2']:.3f}, MAE {base['rg2_mae_nm2']:.3g} nm^2", flush=True)

    # 5. interaction range
    from openmm_mlcg.systems.polymer import PARAMS_PATH
    md_cutoff = float(json.loads(Path(PARAMS_PATH).read_text())["nonbonded"]["cutoff"])    # sigma = 1 nm
    beyond = [beyond_cutoff_fraction(DATA / e["dir"], m, np.asarray(t.positions), md_cutoff, CUTOFF_SIGMA)
              for e, m, t in train_set]
    print(f"interacting bead pairs beyond the {CUTOFF_SIGMA} sigma graph cutoff: {np.round(beyond, 2).tolist()}",
          flush=True)

    # 2 and 3, per variant and seed
    variants = {}
    for spec in a.variants:
        tag, seeds = spec.split(":") if ":" in spec else (spec, "0")
        rows = {}
        for seed in [int(s) for s in seeds.split(",")]:
            d = (HERE / "work" / tag if "/" in tag else a.work_dir / tag) / f"seed{seed}"
            bundle = d / "model.mlcg"
            if not bundle.is_file():
                raise FileNotFoundError(f"--variants {spec}: no trained bundle {bundle}; train it with "
                                        f"bench_polymer.py (see this script's docstring)")
            model = load_model(bundle)
            k = int(model.metadata.history)
            row = {}
            for part, chains, ref, folder, seed0 in (("training", train_set, train_ref, "seen_refine", 7000),
                                                     ("test", test_set, test_ref, "refine", 0)):
                preds = []
                for i, (_, mapping, traj) in enumerate(chains):
                    lp, _ = rollout(bundle, mapping, np.asarray(traj.positions)[:k + 1], n_steps,
                                    d / f"{folder}_{n_steps}" / f"chain{i:02d}", True, seed0 + 1000 * seed + i)
                    preds.append(None if lp is None else obs(lp[1:], mapping))
                ident = [radial_identity(model, t, m, a.draws, 100 + seed) for _, m, t in chains]
                ratio = np.array([x["ratio"] for x in ident])
                learned = [None if p is None else p["rg2_mean"] for p in preds]
                ok = [i for i, x in enumerate(learned) if x is not None and ratio[i] > 0]
                row[part] = dict(scores=scores(ref, preds), rg2_mean_learned=learned, identity=ident,
                                 identity_median_abs_log_ratio=float(np.median(np.abs(np.log(np.abs(ratio))))),
                                 rank_correlation_log_ratio_vs_log_rg2_error=float(spearmanr(
                                     np.log(ratio[ok]), [np.log(learned[i] / ref[i]["rg2_mean"]) for i in ok])[0]))
                s = row[part]["scores"]
                print(f"{tag} seed {seed}, {part} chains: r^2 {s['rg2_r2']:.3f}, MAE {s['rg2_mae_nm2']:.3g} nm^2; "
                      f"virial / exact {np.round(ratio, 2).tolist()} (median |log| "
                      f"{row[part]['identity_median_abs_log_ratio']:.3f}, rank corr. with the Rg^2 error "
                      f"{row[part]['rank_correlation_log_ratio_vs_log_rg2_error']:.2f})", flush=True)
            rows[str(seed)] = row
        summary = {part: {m: dict(mean=float(np.mean([r[part]["scores"][m] for r in rows.values()])),
                                  std=float(np.std([r[part]["scores"][m] for r in rows.values()], ddof=1))
                                  if len(rows) > 1 else None)
                          for m in ("rg2_r2", "rg2_mae_nm2")} for part in ("training", "test")}
        variants[tag] = dict(seeds=rows, summary=summary)

    # 4. one chain alone
    single = None
    if a.single_chain is not None:
        i, sc = a.single_chain, BENCHMARK_SCALE
        tag = f"h{sc['hidden']}l{sc['layers']}s{sc['train_steps']}"
        entry, mapping, traj = train_set[i]
        d = a.work_dir / f"single_chain{i:02d}_{tag}" / "seed0"
        bundle, wall = train([train_set[i]], d, 0, sc["train_steps"], sc["hidden"], sc["layers"])
        model = load_model(bundle)
        k = int(model.metadata.history)
        lp, _ = rollout(bundle, mapping, np.asarray(traj.positions)[:k + 1], n_steps, d / f"seen_refine_{n_steps}",
                        True, 9000 + i)
        learned = None if lp is None else obs(lp[1:], mapping)["rg2_mean"]
        single = dict(chain=i, n_units=entry["n_units"], scale=tag, seed=0, training_wall_s=wall,
                      rg2_mean_data=train_ref[i]["rg2_mean"], rg2_mean_learned=learned,
                      identity=radial_identity(model, traj, mapping, a.draws, 100))
        print(f"one chain alone (chain {i}, {entry['n_units']} CUs): <Rg^2> learned {learned} against the data's "
              f"{train_ref[i]['rg2_mean']:.3g}; virial / exact {single['identity']['ratio']:.3f}", flush=True)

    poly = json.loads((HERE / "results" / "current" / "polymer.json").read_text())
    res = dict(benchmark="polymer diagnostics (issue 38)", data=str(DATA.relative_to(HERE.parent)),
               learned_tau=a.learned_tau, draws=a.draws,
               length_only_baseline=baseline,
               training_chains=dict(n_units=n_train.tolist(), rg2_mean_800tau=[r["rg2_mean"] for r in train_ref],
                                    t_rg2_800tau=[r["tau_ps"] for r in train_ref]),
               test_reference=dict(n_units=n_test.tolist(), rg2_mean=[r["rg2_mean"] for r in test_ref]),
               variants=variants, single_chain=single,
               interaction_range=dict(md_cutoff_sigma=md_cutoff, graph_cutoff_sigma=CUTOFF_SIGMA,
                                      fraction_of_interacting_pairs_beyond_graph_cutoff=beyond),
               short_md_800tau_vs_reference=poly["metrics"]["short MD"],
               judge_noise=poly["metrics"]["judge noise (reference halves)"],
               wall_s=time.perf_counter() - t0, command="python " + " ".join(sys.argv))
    res.update(environment("cpu"))
    print(f"wrote {write_json(a.out / 'polymer_diagnostics.json', res)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
