"""Data of the "unseen polymer electrolyte" benchmark (issue 37 item 2): SPE boxes of three training polymers and
one test polymer that no training box contains, all-atom MD, coarse-grained and shipped at the CG level.

Recipe (the same rule for every polymer, no per-polymer tuning; written into each box's recipe.json):

- boxes: training polymers PEO, PPO, PTMO (``--polymers-train``), test polymer PCL (``--polymer-test``; never in
  training); each a homopolymer + LiTFSI built by ``openmm_mlcg.systems.spe.build_spe`` (GAFF2, packmol);
- 9 methyl-capped chains of ``round(36 / backbone atoms per unit)`` units (``spe_monomers.json``), so every chain
  has ~36 backbone heavy atoms like the demo's PEO 12-mer: PEO 12, PPO 12, PTMO 9, PCL 5; salt by the builder's
  default molality (1.5 mol/kg polymer); build seed 0 and MD seed 0 for every box;
- MD as the demo preset (``openmm_mlcg.experiments.scales.SPE['demo']``, ``examples/run_spe.py``): 353 K, 2 fs,
  minimisation, 40 ps NPT (1 bar) then NVT production, frames every 2 ps (``--frame-interval-ps``);
  training boxes ``--train-production-ps`` (default 200 ps) each, the test box ``--test-production-ps``
  (default 2000 ps); the PEO training box is the demo box itself (same build, same seed);
- mapping: METIS, group size 7, seed 0 (``openmm_mlcg.data.load_run``; as ``spe_long_reference.py``);
- order: the training boxes first, then the test box (a partial run is already useful); each box resumable
  (checkpoint) and skipped when done; its CG data shipped as soon as it is done.

Per box ``--data-dir/<NAME>/`` (committed): cg_trajectory.npz, mapping.npz, topology.pdb, final_frame.pdb,
recipe.json (``spe_long_reference.ship``); the all-atom run stays in ``--work-dir/<NAME>/`` (not committed).
After the test box: ``spe_long_reference.analyse`` on it (Li+ and TFSI-: MSD log-log slopes, D over the fit
window 100-400 ps with a 4-block uncertainty) and ``--out/spe_unseen_polymer.json`` with, per box, atoms, beads,
bead types, density after NPT, MD wall time, and the bead types of the test box that no training box has (the
point of the benchmark: a model trained on the training boxes has never seen them).

Usage: python benchmarks/spe_unseen_polymer.py [--train-production-ps 200] [--test-production-ps 2000]
       [--frame-interval-ps 2] [--polymers-train PEO PPO PTMO] [--polymer-test PCL] [--blocks 4]
       [--fit-window-ps 100 400] [--work-dir benchmarks/work/spe_unseen_polymer]
       [--data-dir benchmarks/data/spe_unseen_polymer] [--out benchmarks/results/current] [--threads 1]
       [--platform CPU] [--analyse-only]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _bench_common import environment, write_json  # noqa: E402
from spe_long_reference import analyse, run_md, ship  # noqa: E402

N_CHAINS = 9
BACKBONE_ATOMS_PER_CHAIN = 36   # the demo's PEO 12-mer: 12 units x 3 backbone atoms
TRAIN = ("PEO", "PPO", "PTMO")
TEST = "PCL"
_AMU_TO_G = 1.66053906660e-24


def chain_length(polymer: str) -> int:
    """Units per chain: ``round(36 / backbone atoms per unit)`` (at least 1)."""
    from openmm_mlcg.systems.packing import _data

    return max(1, round(BACKBONE_ATOMS_PER_CHAIN / _data("spe_monomers.json")["monomers"][polymer]["backbone_atoms"]))


def box_build(polymer: str) -> dict:
    """``spe.build_spe`` kwargs of one box (salt: the builder's default molality; seed added by ``run_md``)."""
    return dict(polymer=polymer, n_chains=N_CHAINS, chain_length=chain_length(polymer))


def density_after_npt(run: Path):
    """g/cm^3 from the run metadata: total mass over the box at the start of production (None if unknown)."""
    import numpy as np

    from openmm_mlcg.data import read_run_metadata

    meta = read_run_metadata(run)
    box, mass = meta.get("box_nm"), meta.get("composition", {}).get("total_mass_amu")
    if box is None or mass is None:
        return None
    return float(mass * _AMU_TO_G / (abs(np.linalg.det(np.asarray(box, dtype=float))) * 1e-21))


def _wall_file(run: Path) -> Path:
    return run / "md_wall_s.json"


def md_box(work_dir: Path, name: str, build: dict, production_ps: float, frame_interval_ps: float, platform,
           equilibration_ps, arg: str) -> Path:
    """Build and run one box (resumable, skipped when done); accumulate its wall time in ``md_wall_s.json``.

    Raises:
        ValueError: a finished run in the work dir has another production length or frame interval (``arg``)."""
    from openmm_mlcg.data import read_run_metadata
    from openmm_mlcg.systems.md import is_done

    run = work_dir / name
    if not is_done(run):
        print(f"[{name}] MD: build {build}, {production_ps:g} ps NVT, frames every {frame_interval_ps:g} ps", flush=True)
        t0 = time.perf_counter()
        try:
            run_md(work_dir, production_ps, frame_interval_ps, platform, build=build,
                   equilibration_ps=equilibration_ps, name=name, desc=f"{name} MD")
        finally:   # a session ended by an exception or SIGTERM counts too (SIGKILL does not)
            if run.is_dir():
                wf = _wall_file(run)
                prev = json.loads(wf.read_text())["md_wall_s"] if wf.is_file() else 0.0
                write_json(wf, dict(md_wall_s=prev + time.perf_counter() - t0))
    meta = read_run_metadata(run)
    for key, want, flag in (("production_ps", production_ps, arg), ("frame_interval_ps", frame_interval_ps,
                                                                     "--frame-interval-ps")):
        if abs(float(meta[key]) - want) > 1e-6 * max(1.0, want):
            raise ValueError(f"{flag}: {want:g} ps, but the finished run {run} has {key} {float(meta[key]):g} ps; "
                             "pass that value, or another --work-dir for a new run")
    return run


def ship_box(run: Path, data_dir: Path, name: str, role: str, build: dict, production_ps: float,
             frame_interval_ps: float, equilibration_ps, fit_window_ps, blocks, command: str) -> dict:
    """Ship the CG data of a finished box (skipped when ``recipe.json``, written last, already matches)."""
    from openmm_mlcg.data import read_run_metadata

    out = data_dir / name
    rf = out / "recipe.json"
    if rf.is_file():
        old = json.loads(rf.read_text())
        if (old.get("build") == build and old.get("production_ps") == production_ps
                and old.get("frame_interval_ps") == frame_interval_ps and old.get("equilibration_ps") == equilibration_ps
                and old.get("fit_window_ps") == (None if fit_window_ps is None else [float(v) for v in fit_window_ps])):
            return old
    wf = _wall_file(run)
    meta = read_run_metadata(run)
    extra = dict(benchmark="spe_unseen_polymer", role=role, polymer=build["polymer"],
                 chain_rule=f"{N_CHAINS} chains of round({BACKBONE_ATOMS_PER_CHAIN} / backbone atoms per unit) units",
                 temperature_K=meta.get("temperature_K"), time_step_ps=meta.get("time_step_ps"),
                 n_atoms=int(meta.get("n_particles") or meta["composition"]["n_atoms"]),
                 box_nm_after_npt=meta.get("box_nm"), density_after_npt_g_cm3=density_after_npt(run),
                 md_wall_s=json.loads(wf.read_text())["md_wall_s"] if wf.is_file() else None)
    recipe = ship(run, out, production_ps, frame_interval_ps, fit_window_ps, blocks,
                  system=f"SPE box {name} ({role} polymer) of the unseen-polymer benchmark (issue 37 item 2): "
                         f"{build['polymer']} + LiTFSI, openmm_mlcg.systems.spe.build_spe, GAFF2",
                  build=build, equilibration_ps=equilibration_ps, command=command, extra=extra)
    print(f"[{name}] shipped {out} ({recipe['n_frames']} frames, {recipe['n_beads']} beads)", flush=True)
    return recipe


def box_summary(data_dir: Path) -> dict:
    """Atoms, beads, bead types (with counts), density, wall time and data size of one shipped box."""
    from openmm_mlcg.cg.mapping import CGMapping

    recipe = json.loads((data_dir / "recipe.json").read_text())
    mapping = CGMapping.load(data_dir / "mapping.npz")
    wall = recipe.get("md_wall_s")
    total_ps = recipe["equilibration_ps"] + recipe["production_ps"]
    return dict(role=recipe.get("role"), polymer=recipe.get("polymer"), build=recipe["build"],
                n_atoms=int(mapping.graph.n_atoms), n_beads=int(mapping.n_beads), n_frames=recipe["n_frames"],
                n_li=recipe["md_metadata"]["composition"]["n_li"], production_ps=recipe["production_ps"],
                bead_types=dict(sorted(Counter(str(t) for t in mapping.bead_types).items())),
                density_after_npt_g_cm3=recipe.get("density_after_npt_g_cm3"), md_wall_s=wall,
                md_ns_per_day=(total_ps / 1000.0) / (wall / 86400.0) if wall else None,
                data_bytes=sum(f.stat().st_size for f in data_dir.iterdir() if f.is_file()))


def _args(argv):
    from openmm_mlcg.systems.spe import known_monomers

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-production-ps", type=float, default=200.0, help="NVT ps of each training box")
    ap.add_argument("--test-production-ps", type=float, default=2000.0, help="NVT ps of the test box")
    ap.add_argument("--frame-interval-ps", type=float, default=2.0)
    ap.add_argument("--polymers-train", nargs="+", default=list(TRAIN), metavar="NAME")
    ap.add_argument("--polymer-test", default=TEST, metavar="NAME")
    ap.add_argument("--blocks", type=int, default=4, help="blocks of the test box's D uncertainty")
    ap.add_argument("--fit-window-ps", type=float, nargs=2, default=[100.0, 400.0], help="lag window of D")
    ap.add_argument("--work-dir", default=str(HERE / "work" / "spe_unseen_polymer"))
    ap.add_argument("--data-dir", default=str(HERE / "data" / "spe_unseen_polymer"))
    ap.add_argument("--out", default=str(HERE / "results" / "current"))
    ap.add_argument("--threads", type=int, default=1, help="OpenMM CPU threads")
    ap.add_argument("--platform", default=None)
    ap.add_argument("--analyse-only", action="store_true", help="use the shipped CG data, run no MD")
    ap.add_argument("--equilibration-ps", type=float, default=None, help=argparse.SUPPRESS)  # smoke tests only
    a = ap.parse_args(argv)
    known = known_monomers()
    for flag, names in (("--polymers-train", a.polymers_train), ("--polymer-test", [a.polymer_test])):
        for name in names:
            if name not in known:
                ap.error(f"{flag}: unknown polymer {name!r}; expected one of {known}")
    if len(set(a.polymers_train)) != len(a.polymers_train):
        ap.error(f"--polymers-train: expected distinct names, got {a.polymers_train}")
    if a.polymer_test in a.polymers_train:
        ap.error(f"--polymer-test: {a.polymer_test} is also a training polymer; the test polymer must be unseen")
    for flag in ("train_production_ps", "test_production_ps", "frame_interval_ps"):
        if not getattr(a, flag) > 0:
            ap.error(f"--{flag.replace('_', '-')}: expected > 0 ps, got {getattr(a, flag)}")
    if a.equilibration_ps is not None and a.equilibration_ps < 0:
        ap.error(f"--equilibration-ps: expected >= 0 ps, got {a.equilibration_ps}")
    if a.threads < 1:
        ap.error(f"--threads: expected >= 1, got {a.threads}")
    if a.blocks < 1:
        ap.error(f"--blocks: expected >= 1, got {a.blocks}")
    t0, t1 = a.fit_window_ps
    if not 0 <= t0 < t1:
        ap.error(f"--fit-window-ps: expected 0 <= start < end, got {a.fit_window_ps}")
    prod, fi = a.test_production_ps, a.frame_interval_ps
    if min(prod / a.blocks - fi, (prod - fi) / 2) < t1 - 1e-9:
        ap.error(f"--test-production-ps: {prod:g} ps is too short for the fit window ending at {t1:g} ps in "
                 f"{a.blocks} blocks (each block, and half the run, must span it); lengthen it or pass "
                 "--fit-window-ps/--blocks")
    return a


def main(argv=None) -> int:
    a = _args(argv)
    os.environ["OPENMM_CPU_THREADS"] = str(a.threads)   # before OpenMM creates its CPU platform
    if not a.analyse_only:
        import signal

        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # so the MD wall time of this session is kept
    t_start = time.perf_counter()
    work_dir, data_dir, out = Path(a.work_dir), Path(a.data_dir), Path(a.out)
    boxes = [(name, "train", a.train_production_ps, "--train-production-ps") for name in a.polymers_train]
    boxes.append((a.polymer_test, "test", a.test_production_ps, "--test-production-ps"))
    cmd = ("python benchmarks/spe_unseen_polymer.py "
           f"--train-production-ps {a.train_production_ps:g} --test-production-ps {a.test_production_ps:g} "
           f"--frame-interval-ps {a.frame_interval_ps:g} --polymers-train {' '.join(a.polymers_train)} "
           f"--polymer-test {a.polymer_test} --blocks {a.blocks} "
           f"--fit-window-ps {a.fit_window_ps[0]:g} {a.fit_window_ps[1]:g}"
           + (f" --equilibration-ps {a.equilibration_ps:g}" if a.equilibration_ps is not None else ""))
    if not a.analyse_only:
        from openmm_mlcg.experiments.scales import SPE

        eq = SPE["demo"]["equilibration_ps"] if a.equilibration_ps is None else a.equilibration_ps
        for name, role, prod, flag in boxes:
            build = box_build(name)
            run = md_box(work_dir, name, build, prod, a.frame_interval_ps, a.platform, eq, flag)
            window = (a.fit_window_ps, a.blocks) if role == "test" else (None, None)
            ship_box(run, data_dir, name, role, build, prod, a.frame_interval_ps, eq, *window, command=cmd)
    for name, _, _, _ in boxes:
        if not (data_dir / name / "recipe.json").is_file():
            raise FileNotFoundError(f"--data-dir: {data_dir / name} holds no shipped box (recipe.json); "
                                    "run without --analyse-only first")
    summary = {name: box_summary(data_dir / name) for name, _, _, _ in boxes}
    seen = set().union(*(summary[n]["bead_types"] for n in a.polymers_train))
    test = summary[a.polymer_test]
    unseen = {t: c for t, c in test["bead_types"].items() if t not in seen}
    test_recipe = json.loads((data_dir / a.polymer_test / "recipe.json").read_text())
    species = analyse(data_dir / a.polymer_test, test_recipe["fit_window_ps"], test_recipe["blocks"])
    total_bytes = sum(s["data_bytes"] for s in summary.values())
    rel = (lambda p: str(p.relative_to(HERE.parent)) if p.resolve().is_relative_to(HERE.parent) else str(p))
    doc = dict(benchmark="spe_unseen_polymer", command=cmd, data_dir=rel(data_dir.resolve()),
               polymers_train=a.polymers_train, polymer_test=a.polymer_test, boxes=summary,
               test_bead_types_unseen_in_training=unseen,
               test_beads_of_unseen_types=int(sum(unseen.values())),
               test_species=species, fit_window_ps=test_recipe["fit_window_ps"], blocks=test_recipe["blocks"],
               shipped_data_bytes=total_bytes, environment=environment(), wall_s=time.perf_counter() - t_start)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "spe_unseen_polymer.json", doc)   # atomic (openmm_mlcg.util.io_utils.atomic_write)
    for name, s in summary.items():
        dens = s["density_after_npt_g_cm3"]
        print(f"{name} ({s['role']}): {s['n_atoms']} atoms, {s['n_beads']} beads of {len(s['bead_types'])} types, "
              f"{s['n_li']} LiTFSI, density after NPT " + (f"{dens:.3f} g/cm^3" if dens else "n/a"), end="")
        print(f", MD {s['md_wall_s'] / 3600:.2f} h ({s['md_ns_per_day']:.1f} ns/day)" if s["md_wall_s"] else "",
              f", {s['data_bytes'] / 1e6:.2f} MB", sep="")
    print(f"{a.polymer_test} bead types never in training ({len(unseen)} of {len(test['bead_types'])} types, "
          f"{sum(unseen.values())} of {test['n_beads']} beads): {unseen}")
    for k, v in species.items():
        b = v["blocks"]
        print(f"{a.polymer_test} {k}: D {b['D_cm2_per_s']:.3g} cm^2/s (block mean; whole run "
              f"{v['whole_run']['D_cm2_per_s']:.3g}), block s.e. {100 * b['relative_uncertainty']:.0f} %, slope in "
              f"{b['fit_window_ps']} ps {v['slope_in_fit_window']:.2f}")
    print(f"shipped data {total_bytes / 1e6:.2f} MB in {data_dir}; wrote {out / 'spe_unseen_polymer.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
