"""Are the polymers data-limited? The polymer benchmark with 4x the training chains, everything else equal.

``bench_polymer.py`` trains on the committed test set's 8 class-I chains (one per length of 12-48 CUs, 800 tau
each) and misses its targets (r^2 of <Rg^2> 0.27 +- 0.27 over 3 seeds against short MD's 0.78). The paper trains on
far more chains. Here ``--extra-per-length`` more class-I chains per training length (new random CU patterns, their
own seed streams ``SeedSequence([0, length, 0, 1])``, the same MD protocol, 800 tau each) are simulated into the work
folder (not committed: they are regenerated bit for bit from the seeds), and the model is trained on the 8 committed
chains plus these with **bench_polymer's scale and the trainer's defaults** (hidden 48, 3 layers, 3000 steps, the
same number of optimisation steps: the data axis at fixed compute), then judged on the same 16 unseen class-II
chains as ``bench_polymer.py`` (4000 tau at the 5 tau step, the default generator). The 8-chain numbers of the same
seeds come from ``benchmarks/results/current/polymer.json``.

Per-seed results are cached in the work folder, so seeds can run as separate processes side by side; a last call
with all seeds writes the JSON.

Usage: python benchmarks/polymer_learning_curve.py [--extra-per-length 3] [--seeds 0 1] [--generate-only]
       [--workers 2] [--out benchmarks/results/current]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _bench_common import environment, write_json  # noqa: E402
from bench_polymer import DATA, GROUP_SIZE, load_set, observables, rollout, scores, train  # noqa: E402
from polymer_test_set import EQUIL_TAU, FRAME_TAU, TRAIN_LENGTHS  # noqa: E402


def extra_chains(work: Path, per_length: int, train_tau: float, workers: int) -> list:
    """(entry, mapping, trajectory) of the extra class-I chains (simulated once, resumable)."""
    from openmm_mlcg.data import load_run
    from openmm_mlcg.systems import polymer

    out = []
    for length in TRAIN_LENGTHS:
        seed = int(np.random.SeedSequence([0, length, 0, 1]).generate_state(1)[0])
        runs = polymer.generate(per_length, work / "extra" / f"L{length:02d}", kind="class1", length=length,
                                seed=seed, production_tau=train_tau, frame_interval=FRAME_TAU,
                                equilibration_steps=int(round(EQUIL_TAU / 0.01)), n_workers=workers,
                                progress_bar=False)
        for run in runs:
            mapping, traj = load_run(run, GROUP_SIZE, 0, cache_dir=work / "cg")
            out.append((dict(dir=str(run), n_units=length), mapping, traj))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--extra-per-length", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--train-steps", type=int, default=3000)
    ap.add_argument("--hidden", type=int, default=48)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--learned-tau", type=float, default=4000.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--work-dir", type=Path, default=HERE / "work" / "polymer_learning_curve")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "current")
    a = ap.parse_args(argv)
    import torch
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    train_set, test_set, recipe = load_set(DATA, HERE / "work" / "bench_polymer" / "cg")
    extra = extra_chains(a.work_dir, a.extra_per_length, float(recipe["train_tau"]), a.workers)
    if a.generate_only:
        print(f"{len(extra)} extra training chains ready ({time.perf_counter() - t0:.0f} s)")
        return 0
    frame = float(recipe["frame_tau"])
    ref = [observables(np.asarray(t.positions), frame, np.asarray(m.bead_masses)) for _, m, t in test_set]
    n_steps = int(round(a.learned_tau / frame))
    chains = train_set + extra
    rows = {}
    for seed in a.seeds:
        d = a.work_dir / f"n{len(chains)}_h{a.hidden}l{a.layers}s{a.train_steps}" / f"seed{seed}"
        cached = d / "result.json"
        if not cached.is_file():
            bundle, wall = train(chains, d, seed, a.train_steps, a.hidden, a.layers)
            from openmm_mlcg.bundle.export import load_bundle
            k = int(load_bundle(bundle).metadata["history"])
            preds = []
            for i, (_, mapping, traj) in enumerate(test_set):
                lp, _ = rollout(bundle, mapping, np.asarray(traj.positions)[:k + 1], n_steps,
                                d / f"refine_{n_steps}" / f"chain{i:02d}", True, 1000 * seed + i)
                preds.append(None if lp is None else observables(lp[1:], frame, np.asarray(mapping.bead_masses)))
            cached.write_text(json.dumps(dict(scores=scores(ref, preds), training_wall_s=wall), indent=1) + "\n")
        rows[seed] = json.loads(cached.read_text())
        print(f"seed {seed}, {len(chains)} training chains: " + ", ".join(
            f"{m} {x:.3g}" for m, x in rows[seed]["scores"].items()), flush=True)
    base = json.loads((HERE / "results" / "current" / "polymer.json").read_text())
    eight = base["metrics"]["learned (default generator)"]
    base_seeds = base["seeds"]
    res = dict(benchmark="polymer learning curve in training chains", data=str(DATA.relative_to(HERE.parent)),
               extra_chains=dict(per_length=a.extra_per_length, lengths=list(TRAIN_LENGTHS),
                                 seeds="SeedSequence([0, length, 0, 1]) per length", train_tau=recipe["train_tau"]),
               scale=dict(train_steps=a.train_steps, hidden=a.hidden, layers=a.layers, learned_tau=a.learned_tau),
               n_training_chains={"committed": len(train_set), "with_extra": len(chains)},
               with_extra={str(s): r for s, r in rows.items()},
               committed_8_chains={str(s): {m: eight[m]["values"][base_seeds.index(s)] for m in eight}
                                   for s in a.seeds if s in base_seeds},
               short_md=base["metrics"]["short MD"], judge_noise=base["metrics"]["judge noise (reference halves)"],
               wall_s=time.perf_counter() - t0, command="python " + " ".join(sys.argv))
    res.update(environment("cpu"))
    write_json(a.out / "polymer_learning_curve.json", res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
