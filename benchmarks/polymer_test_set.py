"""The polymer test set of the paper's Table 2 (Fu et al., TMLR 2023, section 4.1), at a size a CPU can make.

Issue 37: the demo polymer experiment's 4 test chains of one length span 12.8-14.4 nm^2 in <Rg^2>, so r^2 across
them measures noise. This script makes a set whose chains differ in sequence *and* size:

- training: ``N_TRAIN`` class-I chains (a random pattern of four CUs repeated), lengths ``TRAIN_LENGTHS`` CUs,
  ``--train-tau`` tau each (frames every 5 tau = the paper's model step);
- testing: ``N_PER_LENGTH`` unseen class-II chains (random sequence over four random CUs) at each of
  ``TEST_LENGTHS`` CUs, ``--test-tau`` tau each, frames every 5 tau; "short MD" of a test chain is its first
  ``--train-tau`` (as long as a training chain).

Every chain has its own seed stream (``SeedSequence([seed, length, kind])``); MD is the package's
(``systems.polymer.generate``: Langevin, 0.01 tau, friction 1/tau, kT = epsilon). The MD runs in
``--work-dir`` (resumable, not committed); the trajectories (bead level, which for this implicit-solvent bead
model is the "all-atom" level, ~30-110 beads per chain) with topology and metadata are copied to ``--data-dir``
(committed, ~20 MB) so no benchmark reruns the MD. Then each reference chain's <Rg^2> (CG level, the benchmark's
mapping: METIS group size 5, seed 0) gets a block-average uncertainty (``--blocks`` blocks) and its Rg^2 relaxation
time (1/e of the ACF); written to ``benchmarks/results/current/polymer_test_set.json``.

Usage: python benchmarks/polymer_test_set.py [--train-tau 800] [--test-tau 8000] [--workers 2]
       [--work-dir benchmarks/work/polymer_test_set] [--data-dir benchmarks/data/polymer_test_set] [--analyse-only]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _bench_common import environment, write_json  # noqa: E402

SEED = 0
TRAIN_LENGTHS = (12, 17, 22, 27, 32, 37, 42, 48)   #: one class-I chain per length (CUs)
TEST_LENGTHS = (12, 24, 36, 48)                     #: N_PER_LENGTH class-II chains per length (CUs)
N_PER_LENGTH = 4
FRAME_TAU = 5.0            #: frame interval = the paper's model step (tau)
EQUIL_TAU = 500.0          #: equilibration before recording (tau; ~2 Rg^2 relaxation times of a 48-CU chain)
GROUP_SIZE = 5             #: METIS beads per CG bead of the benchmark's mapping
KEEP = ("topology.pdb", "trajectory.dcd", "metadata.json")


def _chain_seed(length: int, kind: str) -> int:
    return int(np.random.SeedSequence([SEED, int(length), ("class1", "class2").index(kind)]).generate_state(1)[0])


def run_md(work: Path, train_tau: float, test_tau: float, workers: int) -> dict:
    """All chains (resumable): {"class1": [run dirs], "class2": [run dirs]} in a fixed order."""
    from openmm_mlcg.systems import polymer

    eq = int(round(EQUIL_TAU / 0.01))
    runs = dict(class1=[], class2=[])
    for length in TRAIN_LENGTHS:
        runs["class1"] += polymer.generate(1, work / "train" / f"L{length:02d}", kind="class1", length=length,
                                           seed=_chain_seed(length, "class1"), production_tau=train_tau,
                                           frame_interval=FRAME_TAU, equilibration_steps=eq, progress_bar=False)
    for length in TEST_LENGTHS:
        t0 = time.perf_counter()
        runs["class2"] += polymer.generate(N_PER_LENGTH, work / "test" / f"L{length:02d}", kind="class2",
                                           length=length, seed=_chain_seed(length, "class2"),
                                           production_tau=test_tau, frame_interval=FRAME_TAU,
                                           equilibration_steps=eq, n_workers=workers, progress_bar=False)
        print(f"test chains of {length} CUs ready ({time.perf_counter() - t0:.0f} s)", flush=True)
    return runs


def ship(runs: dict, data: Path) -> dict:
    """Copy topology, trajectory and metadata of every run to ``data/<train|test>/<name>``; the index file."""
    index = dict(train=[], test=[])
    for part, kind in (("train", "class1"), ("test", "class2")):
        for run in runs[kind]:
            run = Path(run)
            name = f"{run.parent.name}_{run.name}"
            dest = data / part / name
            dest.mkdir(parents=True, exist_ok=True)
            for f in KEEP:
                shutil.copy2(run / f, dest / f)
            meta = json.loads((run / "metadata.json").read_text())
            index[part].append(dict(dir=f"{part}/{name}", n_units=meta["n_units"], n_beads=meta["n_beads"],
                                    sequence=meta["sequence"]))
    return index


def block_mean(x: np.ndarray, blocks: int) -> tuple[float, float]:
    """Mean and its standard error from ``blocks`` contiguous blocks (x: (F,))."""
    parts = np.array_split(np.asarray(x, dtype=np.float64), blocks)
    means = np.array([p.mean() for p in parts])
    return float(np.mean(x)), float(means.std(ddof=1) / np.sqrt(blocks))


def analyse(data: Path, blocks: int, train_tau: float) -> dict:
    """Per test chain: <Rg^2> (CG level) +- block SE, t_Rg2, and short MD's <Rg^2>; the set's span."""
    from openmm_mlcg.data import load_run
    from openmm_mlcg.experiments.polymer import chain_observables

    index = json.loads((data / "index.json").read_text())
    chains = []
    for entry in index["test"]:
        mapping, traj = load_run(data / entry["dir"], GROUP_SIZE, 0, cache_dir=data.parent.parent / "work" / "cg")
        pos, dt = np.asarray(traj.positions), float(traj.frame_interval_ps)
        obs = chain_observables(pos, dt, np.asarray(mapping.bead_masses))
        mean, se = block_mean(obs["rg2"], blocks)
        n_short = int(round(train_tau / dt))
        chains.append(dict(dir=entry["dir"], n_units=entry["n_units"], n_beads=entry["n_beads"],
                           n_cg_beads=int(mapping.n_beads), n_frames=len(pos), rg2_mean_nm2=mean, rg2_se_nm2=se,
                           rg2_relative_se=se / mean, tau_rg2_ps=obs["tau_ps"],
                           length_in_tau_rg2=len(pos) * dt / obs["tau_ps"],
                           short_md_rg2_mean_nm2=float(obs["rg2"][:n_short].mean())))
    rg = np.array([c["rg2_mean_nm2"] for c in chains])
    return dict(chains=chains, rg2_span_ratio=float(rg.max() / rg.min()),
                max_relative_se=float(max(c["rg2_relative_se"] for c in chains)),
                min_length_in_tau_rg2=float(min(c["length_in_tau_rg2"] for c in chains)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-tau", type=float, default=800.0)
    ap.add_argument("--test-tau", type=float, default=8000.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--work-dir", type=Path, default=HERE / "work" / "polymer_test_set")
    ap.add_argument("--data-dir", type=Path, default=HERE / "data" / "polymer_test_set")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "current")
    ap.add_argument("--analyse-only", action="store_true")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    if not a.analyse_only:
        runs = run_md(a.work_dir, a.train_tau, a.test_tau, a.workers)
        index = ship(runs, a.data_dir)
        recipe = dict(source="benchmarks/polymer_test_set.py", seed=SEED, train_lengths_cu=TRAIN_LENGTHS,
                      test_lengths_cu=TEST_LENGTHS, n_per_length=N_PER_LENGTH, train_tau=a.train_tau,
                      test_tau=a.test_tau, frame_tau=FRAME_TAU, equilibration_tau=EQUIL_TAU,
                      md="systems.polymer.generate: LangevinMiddle, 0.01 tau, friction 1/tau, kT = 1 epsilon",
                      group_size=GROUP_SIZE, blocks=a.blocks)
        (a.data_dir / "index.json").write_text(json.dumps(dict(index, recipe=recipe), indent=1) + "\n")
    res = analyse(a.data_dir, a.blocks, a.train_tau)
    res.update(environment("cpu"), wall_s=time.perf_counter() - t0, command="python " + " ".join(sys.argv))
    write_json(a.out / "polymer_test_set.json", res)
    for c in res["chains"]:
        print(f"{c['dir']:28s} {c['n_units']:3d} CU  <Rg2> {c['rg2_mean_nm2']:7.2f} +- {c['rg2_se_nm2']:.2f} nm2  "
              f"t_Rg2 {c['tau_rg2_ps']:6.1f} tau ({c['length_in_tau_rg2']:.0f}x)  short MD {c['short_md_rg2_mean_nm2']:.2f}")
    print(f"span {res['rg2_span_ratio']:.2f}x, max relative SE {res['max_relative_se']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
