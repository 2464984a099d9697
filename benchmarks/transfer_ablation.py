"""Which fitted table limits the transfer to an unseen polymer: an ablation and an oracle on the PCL test box.

The model of ``bench_electrolyte_unseen.py`` (trained on PEO, PPO and PTMO with the trainer's defaults; trained
here with the same call when its work folder lacks it) is run on the PCL box, where 6 of 10 bead types (126 of 167
beads) never occur in training, with only its bead-type tables changed (no retraining):

- ``none``: unseen types get the global friction and no excluded-volume wall (the behaviour before the rule);
- ``walls``: unseen type pairs take the wall of the nearest seen chemistry (:mod:`openmm_mlcg.cg.similarity`), the
  friction as ``none``;
- ``friction``: unseen types take the friction of the nearest seen chemistry, walls as ``none``;
- ``nearest_composition``: both (the default rule, ``ModelMetadata.unseen_bead_types``);
- ``oracle_walls``: the walls of the unseen pairs fitted on the PCL box's own first 200 ps (what a user with that
  MD would fit; the ceiling of any wall-transfer rule), friction as ``none``.

Each variant: ``--replicas`` runs of ``--learned-ps`` from the test box's first k+1 frames, judged as
``bench_electrolyte_unseen.py`` (RDF error over bead-type pairs, split into pairs with and without an unseen type;
D of Li+ and TFSI- against the PCL reference's blocks). Per-variant results are cached in the work folder, so two
processes may run disjoint ``--variants`` side by side and a last call collects them.

Usage: python benchmarks/transfer_ablation.py [--variants none walls friction nearest_composition oracle_walls]
       [--replicas 4] [--learned-ps 1000] [--threads 1] [--out benchmarks/results/current]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _bench_common import environment, write_json  # noqa: E402
from bench_electrolyte import JUDGE_NOISE_PS, R_MAX_NM, learned_runs, load_data, train  # noqa: E402
from bench_electrolyte_unseen import DATA, SHORT_MD_PS, boxes  # noqa: E402

VARIANTS = ("none", "walls", "friction", "nearest_composition", "oracle_walls")


def variant_metadata(meta, variant: str, types, graph, oracle_walls: dict):
    """The bundle metadata of one variant (module docstring) for a system of bead types ``types`` (its
    SystemGraph ``graph``)."""
    from openmm_mlcg.priors.excluded_volume import ExcludedVolume

    if variant == "nearest_composition":
        return replace(meta, unseen_bead_types="nearest_composition")
    off = replace(meta, unseen_bead_types="none")
    on = replace(meta, unseen_bead_types="nearest_composition")
    ev = meta.score_terms["excluded_volume"]
    if variant == "none":
        return off
    if variant == "walls":
        return off.with_score_term("excluded_volume",
                                   ExcludedVolume.transferred(ev, types, on.bead_type_transfer(types, graph)))
    if variant == "friction":
        full = on.cg_langevin_frictions(types, graph)
        return replace(off, cg_langevin_friction_by_type={**meta.cg_langevin_friction_by_type, **dict(zip(types, full))})
    if variant == "oracle_walls":
        return off.with_score_term("excluded_volume", {**ev, "r0_nm": {**oracle_walls, **ev["r0_nm"]}})
    raise ValueError(f"--variants: expected names from {VARIANTS}, got {variant!r}")


def rdf_errors(positions, box, types, reference: dict, unseen: set) -> dict:
    """Mean |g - g_ref| per bead-type pair, averaged over all pairs, the pairs with an unseen type and the rest."""
    from openmm_mlcg.analysis import rdf_by_type

    g = rdf_by_type(positions, box, types, r_max_nm=R_MAX_NM, n_bins=60)
    per = {k: float(np.mean(np.abs(g[k]["g"] - v["g"]))) for k, v in reference.items() if k in g}
    new = [v for k, v in per.items() if set(k.split("-")) & unseen]
    old = [v for k, v in per.items() if not set(k.split("-")) & unseen]
    return dict(all=float(np.mean(list(per.values()))), with_unseen_type=float(np.mean(new)),
                seen_types_only=float(np.mean(old)), n_pairs=[len(per), len(new), len(old)])


def main(argv=None) -> int:
    from openmm_mlcg.analysis import rdf_by_type
    from openmm_mlcg.bundle.export import load_model, save_model
    from openmm_mlcg.experiments.spe_judge import judge_diffusivity, species_tracks
    from openmm_mlcg.priors.excluded_volume import closest_approach

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--train-steps", type=int, default=1600)
    ap.add_argument("--replicas", type=int, default=4)
    ap.add_argument("--learned-ps", type=float, default=1000.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", type=Path, default=DATA)
    ap.add_argument("--work-dir", type=Path, default=HERE / "work" / "bench_electrolyte_unseen")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "current")
    a = ap.parse_args(argv)
    import torch
    torch.set_num_threads(a.threads)
    t_all = time.perf_counter()
    train_names, test_name = boxes(a.data_dir)
    train_data = [load_data(a.data_dir / n) for n in train_names]
    mapping, traj, recipe = load_data(a.data_dir / test_name)
    x, t = np.asarray(traj.positions), np.asarray(traj.time_ps) - float(traj.time_ps[0])
    dt = float(recipe["frame_interval_ps"])
    box = np.asarray(traj.box[0] if np.ndim(traj.box) == 3 else traj.box)
    types = [str(b) for b in mapping.bead_types]
    seen = {str(b) for m, _, _ in train_data for b in m.bead_types}
    unseen = sorted(set(types) - seen)
    tag = f"{'_'.join(train_names)}_s{a.train_steps}_seed{a.seed}"
    bundle, _ = train([m for m, _, _ in train_data], [tr for _, tr, _ in train_data], a.work_dir / tag,
                      a.seed, a.train_steps, float(recipe["md_metadata"]["temperature_K"]))
    model = load_model(bundle)
    meta = model.metadata
    n_short = int(round(SHORT_MD_PS / dt)) + 1
    short = SimpleNamespace(positions=x[:n_short], box=traj.box if np.ndim(traj.box) == 2 else traj.box[:n_short])
    oracle = {k: v for k, v in closest_approach([short], [mapping], float(meta.cutoff_nm)).items()
              if any(u in k.split("|") for u in unseen)}
    ref_rdf = rdf_by_type(x, box, np.asarray(types), r_max_nm=R_MAX_NM, n_bins=60)
    lo, hi = (int(round(v / dt)) for v in JUDGE_NOISE_PS)
    reference = dict(tracks=species_tracks(mapping, x), time_ps=t, recipe=recipe)
    burn = int(round(100.0 / dt))
    n_steps = int(round(a.learned_ps / dt))
    k = int(meta.history)
    rows = {}
    for v in a.variants:
        d = a.work_dir / tag / f"transfer_{v}_{test_name}_{n_steps}"
        cached = d / "result.json"
        if cached.is_file():
            rows[v] = json.loads(cached.read_text())
            continue
        vmeta = variant_metadata(meta, v, types, model.system_graph(mapping), oracle)
        model.metadata = vmeta
        d.mkdir(parents=True, exist_ok=True)
        vb = save_model(model, d / "model.mlcg")
        lx, lt, wall = learned_runs(vb, mapping, x[:k + 1], box, n_steps, a.replicas, d, a.seed)
        judged = judge_diffusivity(lx, lt, reference, mapping)
        row = dict(rdf_error=rdf_errors(lx[:, burn:].reshape(-1, *lx.shape[2:]), box, types, ref_rdf, set(unseen)),
                   rdf_error_per_replica=[rdf_errors(r[burn:], box, types, ref_rdf, set(unseen))["all"] for r in lx],
                   diffusivity={sp: dict(ratio=j["ratio"], ratio_relative_se=j["ratio_relative_se"],
                                         verdict=j["verdict"]) for sp, j in judged.items() if sp in ("Li+", "TFSI-")},
                   frictions_of_unseen_types=dict(zip(types, vmeta.cg_langevin_frictions(types, model.system_graph(
                       mapping)))),
                   ns_per_hour=a.replicas * a.learned_ps / 1000.0 / (wall / 3600.0) if wall > 0 else None)
        cached.write_text(json.dumps(row, indent=1) + "\n")
        rows[v] = row
        print(f"{v}: RDF error {row['rdf_error']['all']:.3f} (unseen pairs {row['rdf_error']['with_unseen_type']:.3f},"
              f" seen {row['rdf_error']['seen_types_only']:.3f}); " + ", ".join(
                  f"{sp} D x{j['ratio']:.2f} {j['verdict']}" for sp, j in row["diffusivity"].items()), flush=True)
    if set(rows) != set(VARIANTS):
        print(f"collected {sorted(rows)}; run the other variants, then again without --variants to write the table")
        return 0
    res = dict(benchmark="transfer ablation, unseen polymer electrolyte", training_boxes=train_names,
               test_box=test_name, unseen_types=unseen, bundle=str(Path(bundle).relative_to(HERE.parent)),
               scale=dict(train_steps=a.train_steps, replicas=a.replicas, learned_ps=a.learned_ps, model_step_ps=dt),
               short_md=rdf_errors(x[:n_short], box, types, ref_rdf, set(unseen)),
               judge_noise_400ps=rdf_errors(x[lo:hi], box, types, ref_rdf, set(unseen)),
               oracle_walls_from=f"{test_name} MD, first {SHORT_MD_PS:g} ps", variants=rows,
               wall_s=time.perf_counter() - t_all, command="python " + " ".join(sys.argv))
    res.update(environment("cpu"))
    write_json(a.out / "transfer_ablation.json", res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
