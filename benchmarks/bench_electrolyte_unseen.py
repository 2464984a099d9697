"""Electrolyte with a polymer the model never saw: trained on PEO, PPO and PTMO boxes, judged on a PCL box.

Data: ``benchmarks/data/spe_unseen_polymer`` (``benchmarks/spe_unseen_polymer.py``): SPE boxes (polymer + LiTFSI,
GAFF2, 353 K, METIS group size 7) of three training polymers, 200 ps of NVT each (CG frames every 2 ps), and one test
polymer (PCL) with 2 ns of NVT, its own long reference. Most of the test box's bead types never occur in training
(listed in the output): whatever the model knows of them comes from the chemistry (the Embedding GNN on the atom
graph), not from a table keyed by bead type. No MD is rerun.

One model on the three training boxes together, with the **trainer's defaults** (the benchmark sets only scale: the
SPE demo model sizes and the training steps; the model step is one frame, 2 ps). ``--replicas`` learned runs of
``--learned-ps`` start from the test box's first k+1 frames. Judged against the test box's reference:

- D of Li+ and of the TFSI- centres of mass over the reference's lag window (100-400 ps), learned replicas as
  segments vs the reference's blocks (``experiments.spe_judge.judge_diffusivity``: ratio, uncertainty, PASS / FAIL /
  within noise at 1.5x).
- RDF error (mean over bead-type pairs of the mean |g - g_ref|, 0-1.0 nm, as ``bench_electrolyte.py``): learned (all
  replicas' frames after the first 100 ps); short MD = the test box's first 200 ps (as long as a training box: what a
  user would get by running the new polymer's MD as long as the training data); the judge's noise = a 400-ps piece of
  the reference (1200-1600 ps) against the whole.
- Speed: learned simulated ns per wall hour.

Usage: python benchmarks/bench_electrolyte_unseen.py [--train-steps 1600] [--replicas 4] [--learned-ps 1000]
       [--seed 0] [--quick] [--threads 1] [--out benchmarks/results/current]
``--quick``: 600 training steps, 2 replicas of 600 ps.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _bench_common import environment, write_json  # noqa: E402
from bench_electrolyte import JUDGE_NOISE_PS, R_MAX_NM, learned_runs, load_data, rdf_error, train  # noqa: E402

DATA = HERE / "data" / "spe_unseen_polymer"
SHORT_MD_PS = 200.0


def boxes(data: Path) -> tuple[list, str]:
    """(training box names, test box name) from the recipes' ``role``."""
    roles = {d.name: json.loads((d / "recipe.json").read_text()).get("role") for d in sorted(data.iterdir())
             if (d / "recipe.json").is_file()}
    train_names = [n for n, r in roles.items() if r == "train"]
    test = [n for n, r in roles.items() if r == "test"]
    if not train_names or len(test) != 1:
        raise ValueError(f"--data-dir: expected training boxes and one test box (recipe.json 'role'), got {roles}")
    return train_names, test[0]


def main(argv=None) -> int:
    from openmm_mlcg.analysis import rdf_by_type
    from openmm_mlcg.bundle.export import load_bundle
    from openmm_mlcg.experiments.spe_judge import judge_diffusivity, species_tracks

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-steps", type=int, default=1600)
    ap.add_argument("--replicas", type=int, default=4)
    ap.add_argument("--learned-ps", type=float, default=1000.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", type=Path, default=DATA)
    ap.add_argument("--work-dir", type=Path, default=HERE / "work" / "bench_electrolyte_unseen")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "current")
    a = ap.parse_args(argv)
    if a.quick:
        a.train_steps, a.replicas, a.learned_ps = min(a.train_steps, 600), 2, 600.0
    import torch
    torch.set_num_threads(a.threads)
    t_all = time.perf_counter()
    train_names, test_name = boxes(a.data_dir)
    train_data = [load_data(a.data_dir / n) for n in train_names]
    mapping, traj, recipe = load_data(a.data_dir / test_name)
    if "fit_window_ps" not in recipe:
        raise ValueError(f"{a.data_dir / test_name / 'recipe.json'}: expected the test box's fit_window_ps and "
                         f"blocks (a finished spe_unseen_polymer.py run), got none")
    x, t = np.asarray(traj.positions), np.asarray(traj.time_ps) - float(traj.time_ps[0])
    dt = float(recipe["frame_interval_ps"])
    box = np.asarray(traj.box[0] if np.ndim(traj.box) == 3 else traj.box)
    types = np.asarray([str(b) for b in mapping.bead_types])
    seen = {str(b) for m, _, _ in train_data for b in m.bead_types}
    unseen = Counter(str(b) for b in mapping.bead_types if str(b) not in seen)
    ref_rdf = rdf_by_type(x, box, types, r_max_nm=R_MAX_NM, n_bins=60)
    lo, hi = (int(round(v / dt)) for v in JUDGE_NOISE_PS)
    judge_noise = rdf_error(x[lo:hi], box, types, ref_rdf)
    n_short = int(round(SHORT_MD_PS / dt)) + 1
    tag = f"{'_'.join(train_names)}_s{a.train_steps}_seed{a.seed}"
    bundle, train_wall = train([m for m, _, _ in train_data], [tr for _, tr, _ in train_data], a.work_dir / tag,
                               a.seed, a.train_steps, float(recipe["md_metadata"]["temperature_K"]))
    meta = load_bundle(bundle).metadata
    k = int(meta["history"])
    n_steps = int(round(a.learned_ps / dt))
    lx, lt, wall = learned_runs(bundle, mapping, x[:k + 1], box, n_steps, a.replicas,
                                a.work_dir / tag / f"{test_name}_learned_{n_steps}", a.seed)
    reference = dict(tracks=species_tracks(mapping, x), time_ps=t, recipe=recipe)
    judged = judge_diffusivity(lx, lt, reference, mapping)
    burn = int(round(100.0 / dt))
    fc = meta.get("friction_calibration") or {}
    res = dict(
        benchmark="electrolyte, unseen polymer", data=str(a.data_dir.relative_to(HERE.parent))
        if a.data_dir.is_relative_to(HERE.parent) else str(a.data_dir), training_boxes=train_names,
        test_box=test_name, test_bead_types_never_in_training=dict(unseen),
        test_beads_of_unseen_types=f"{sum(unseen.values())} of {len(types)}", fit_window_ps=judged["fit_window_ps"],
        quick=a.quick, seed=a.seed, scale=dict(train_steps=a.train_steps, replicas=a.replicas,
                                                learned_ps=a.learned_ps, model_step_ps=dt),
        training_wall_s=train_wall, friction_calibration_lag=fc.get("lag"),
        diffusivity={sp: dict(ratio=j["ratio"], ratio_relative_se=j["ratio_relative_se"], verdict=j["verdict"],
                              learned_D_cm2_per_s=j["learned"]["D_cm2_per_s"],
                              reference_D_cm2_per_s=j["reference"]["D_cm2_per_s"],
                              reference_relative_se=j["reference"]["relative_uncertainty"],
                              reference_loglog_slope=j["reference"]["loglog_slope"])
                     for sp, j in judged.items() if sp in ("Li+", "TFSI-")},
        short_md_diffusivity=f"n/a: {SHORT_MD_PS:g} ps of MD is shorter than 2x the window end",
        rdf_error=dict(learned=rdf_error(lx[:, burn:].reshape(-1, *lx.shape[2:]), box, types, ref_rdf),
                       short_md=rdf_error(x[:n_short], box, types, ref_rdf), judge_noise_400ps=judge_noise),
        learned_ns_per_hour=a.replicas * a.learned_ps / 1000.0 / (wall / 3600.0) if wall > 0 else None,
        wall_s=time.perf_counter() - t_all, command="python " + " ".join(sys.argv))
    res.update(environment("cpu"))
    print(f"trained on {', '.join(train_names)}; test {test_name} ({res['test_beads_of_unseen_types']} beads of types "
          f"never in training): " + ", ".join(f"{sp} D x{v['ratio']:.2f} +- {100 * v['ratio_relative_se']:.0f}% "
                                              f"{v['verdict']}" for sp, v in res["diffusivity"].items())
          + f"; RDF error learned {res['rdf_error']['learned']:.3f}, short MD {res['rdf_error']['short_md']:.3f}, "
            f"judge noise {judge_noise:.3f}; {res['learned_ns_per_hour']:.0f} ns/h", flush=True)
    write_json(a.out / ("electrolyte_unseen" + ("_quick" if a.quick else "") + ".json"), res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
