"""SPE replicas (issue 9): the learned RDF error against the number of replicas pooled from the common start.

On every box of the SPE ensemble (``bench_spe_ensemble.py``'s work dir), one bundle is rolled out ``--replicas``
times from the box's rollout start (the last training frames) with other seeds, as long as the judging window
(seeds 200 + 10 box + r, the protocol of ablations 10-12), and once for ``--long-ps`` (one run as long as all
replicas together, seed 200 + 10 box). For n = 1 .. R the RDF of n replicas is pooled (the mean g(r) of equal
frame counts, what ``analysis.analyze`` does with (R, F, n, 3) positions), its error against the judging window
is averaged over every subset of n replicas, and paired per box with the error of short MD (the box's training
part, from the ensemble run's summary). The long run tells sampling apart from memory: it has the same number
of learned frames as R replicas, but forgets the start state that the judging window still remembers. Where
the work dir holds exact MD continuations from the same start (``bench_spe_ensemble.py --continuations``), they
are pooled alike: the perfect simulator's numbers, and the learned minus the exact at equal runs. As a
control, every other bundle with two rollouts per box in the work dir (the ablations' variants) is scored with
one replica and with two pooled: pooling must keep their order.

Usage: python benchmarks/spe_replicas.py --bundle B [--name pairlib] [--replicas 8] [--long-ps 800]
       [--work-dir benchmarks/work/spe_ensemble] [--out benchmarks/results/current]
Writes <out>/spe_replicas.json. Cost: ~20 s per 200-ps replica and ~1.5 min per long run and box on 2 CPU
cores; rollouts already in the work dir (``analysis_<name>_rollout_seed<S>/analysis.json``) are reused.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _bench_common import environment, write_json  # noqa: E402
from bench_spe_ensemble import _errors, _mean_se, other_rollout  # noqa: E402


def _rdf(out: Path, tag: str, label: str = "learned") -> dict:
    """{"learned": {pair: g}, "reference MD": {pair: g}} of one judged run's analysis (``label``: its label)."""
    doc = json.loads((out / f"analysis_{tag}" / "analysis.json").read_text())["observables"]["rdf"]
    return {key: {k: np.asarray(v["g"]) for k, v in doc[label_].items()}
            for key, label_ in (("learned", label), ("reference MD", "reference MD"))}


def _rollout(out: Path, summary: dict, seed: int, mapping, cg, bundle: str, name: str, length_ps: float) -> dict:
    """The RDFs of one rollout (run and judged unless its analysis is already in ``out``)."""
    tag = f"{name}_rollout_seed{seed}"
    if not (out / f"analysis_{tag}" / "analysis.json").is_file():
        other_rollout(out, dict(summary, learned_ps=length_ps), seed, True, mapping, cg, bundle, name)
    return _rdf(out, tag)


def pooled_errors(replicas: list, reference: dict) -> dict:
    """{n: {"all", "li_pairs", "other_pairs"}}: the RDF error of n pooled replicas, averaged over all subsets."""
    pairs = sorted(reference)
    g = np.stack([[r[k] for k in pairs] for r in replicas])          # (R, pairs, bins)
    ref = np.stack([reference[k] for k in pairs])
    out = {}
    for n in range(1, len(replicas) + 1):
        per_pair = np.mean([np.abs(g[list(c)].mean(0) - ref).mean(1)
                            for c in itertools.combinations(range(len(replicas)), n)], axis=0)
        out[n] = _errors(dict(zip(pairs, per_pair.tolist())))
    return out


def variants(work: Path, seeds: list, short: dict) -> dict:
    """Every bundle with at least two judged rollouts on every box of ``work`` (earlier ablations): the paired
    RDF error (minus short MD) of one replica and of two pooled, mean +- se over boxes. Pooling is a control
    here: it must shift all bundles alike and keep their order, not let every bundle pass."""
    tags = {p.name[len("analysis_"):].rsplit("_rollout_seed", 1)[0]
            for p in (work / f"seed{seeds[0]}").glob("analysis_*_rollout_seed*")}
    out = {}
    for name in sorted(tags):
        one, two = [], []
        for box in seeds:
            dirs = sorted((work / f"seed{box}").glob(f"analysis_{name}_rollout_seed*"))[:2]
            if len(dirs) < 2:
                break
            runs = [_rdf(work / f"seed{box}", d.name[len("analysis_"):]) for d in dirs]
            if any(set(r["learned"]) != set(runs[0]["reference MD"]) for r in runs):
                break
            pooled = pooled_errors([r["learned"] for r in runs], runs[0]["reference MD"])
            one.append(pooled[1]["all"] - short[box]["all"])
            two.append(pooled[2]["all"] - short[box]["all"])
        else:
            out[name] = {"1 replica": _mean_se(one), "2 replicas": _mean_se(two)}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True, help="the bundle rolled out on every box (transferred)")
    ap.add_argument("--name", default="pairlib", help="tag of its rollout folders in the work dir")
    ap.add_argument("--replicas", type=int, default=8)
    ap.add_argument("--long-ps", type=float, default=800.0, help="length of the single long run, ps")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3], help="box seeds")
    ap.add_argument("--work-dir", default=str(HERE / "work" / "spe_ensemble"))
    ap.add_argument("--out", default=str(HERE / "results" / "current"))
    args = ap.parse_args()
    if not Path(args.bundle).is_file():
        raise SystemExit(f"--bundle: {args.bundle} does not exist")
    if args.replicas < 2:
        raise SystemExit(f"--replicas: expected at least 2, got {args.replicas}")

    from openmm_mlcg.util.threads import set_threads
    set_threads(2)
    from openmm_mlcg.data import load_run

    work, t0 = Path(args.work_dir), time.perf_counter()
    per_box = {}
    for box in args.seeds:
        out = work / f"seed{box}"
        summary_path = out / "summary_refined.json"
        if not summary_path.is_file():
            raise SystemExit(f"--work-dir: {summary_path} missing (run bench_spe_ensemble.py first)")
        summary = json.loads(summary_path.read_text())
        mapping, cg = load_run(out / "reference", group_size=7, seed=box)
        runs = [_rollout(out, summary, 200 + 10 * box + r, mapping, cg, args.bundle, args.name,
                         summary["learned_ps"]) for r in range(args.replicas)]
        long_run = _rollout(out, summary, 200 + 10 * box, mapping, cg, args.bundle, f"single{int(args.long_ps)}",
                            args.long_ps)
        reference = runs[0]["reference MD"]
        short = _errors(summary["metrics"]["short MD"]["rdf_mae"])
        pooled = pooled_errors([r["learned"] for r in runs], reference)
        long_err = _errors({k: float(np.abs(long_run["learned"][k] - v).mean()) for k, v in reference.items()})
        per_box[box] = dict(short_md=short, pooled=pooled, long_run=long_err)
        exact = [_rdf(out, d.name[len("analysis_"):], "MD continuation")
                 for d in sorted(out.glob("analysis_md_continuation_v*"))]
        if exact:   # bench_spe_ensemble.py --continuations: exact MD from the same start, new velocities
            per_box[box]["md_continuation"] = pooled_errors([r["learned"] for r in exact], reference)
        print(f"box {box}: short MD {short['all']:.4f}; pooled n=1..{args.replicas} "
              + " ".join(f"{v['all']:.4f}" for v in pooled.values()) + f"; one {args.long_ps:g}-ps run "
              f"{long_err['all']:.4f}", flush=True)
    keys = ("all", "li_pairs", "other_pairs")
    paired = {f"{n} replicas": {k: _mean_se([b["pooled"][n][k] - b["short_md"][k] for b in per_box.values()])
                                for k in keys} for n in range(1, args.replicas + 1)}
    paired[f"one {args.long_ps:g}-ps run"] = {k: _mean_se([b["long_run"][k] - b["short_md"][k]
                                                             for b in per_box.values()]) for k in keys}
    n_exact = min((len(b.get("md_continuation", {})) for b in per_box.values()), default=0)
    for n in range(1, n_exact + 1):   # the exact simulator from the same start: what a perfect model would give
        paired[f"MD continuation, {n} run{'s' if n > 1 else ''}"] = {
            k: _mean_se([b["md_continuation"][n][k] - b["short_md"][k] for b in per_box.values()]) for k in keys}
        paired[f"learned minus MD continuation, {n} run{'s' if n > 1 else ''} each"] = {
            k: _mean_se([b["pooled"][n][k] - b["md_continuation"][n][k] for b in per_box.values()]) for k in keys}
    others = variants(work, args.seeds, {b: v["short_md"] for b, v in per_box.items()})
    doc = dict(benchmark="spe_replicas", bundle=args.bundle, name=args.name, replicas=args.replicas,
               long_ps=args.long_ps, seeds=args.seeds, environment=environment("cpu"), per_box=per_box,
               paired_minus_short_md=paired, variants_paired_minus_short_md=others, wall_s=time.perf_counter() - t0)
    path = write_json(Path(args.out) / "spe_replicas.json", doc)
    print("learned minus short MD, paired per box, mean +- se over boxes (all / Li+ pairs / other pairs):")
    for label, v in paired.items():
        print(f"  {label:<44}" + " / ".join(f"{v[k]['mean']:+.4f} +- {v[k]['se']:.4f}" for k in keys))
    print("every bundle with >= 2 rollouts per box in the work dir (one replica / two pooled, minus short MD):")
    for name, v in others.items():
        print(f"  {name:<18}" + " / ".join(f"{v[k]['mean']:+.4f} +- {v[k]['se']:.4f}" for k in v))
    print("wrote", path)


if __name__ == "__main__":
    main()
