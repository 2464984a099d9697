"""Solid polymer electrolyte experiment (paper section 4, "Li-ion polymer electrolytes"), end to end.

One PEO/LiTFSI system is built (GAFF2, 353 K) and simulated with OpenMM: NPT equilibration, then one NVT
production run of ``(1 + judge_factor) * training_ps``. Its first ``training_ps`` is the short MD the model is
trained on (also the "short MD" baseline); the following ``judge_factor * training_ps`` is the long reference.
The learned model starts from the last k+1 CG frames of the training part (its history; the state the reference
continues from) and runs as long as the reference inside an ordinary ``app.Simulation`` with
``LearnedIntegrator``; only frames after the last training frame are judged (:func:`spe_split`, the shared
``protocol.train_judge_split``). Scale presets: ``SCALES`` = ``experiments.scales.SPE``.
Compared: Li+ and TFSI- diffusivity (MSD fit, cm^2/s), RDFs per bead-type pair, bead collisions, and
simulated ns per wall-hour for learned vs classical MD. The summary ends with a verdict per target (PASS / FAIL /
within noise / not judged, :func:`.spe_judge.judge_targets`); :func:`redraw_figures` draws every figure again from
the saved outputs (summary and analysis.json), :func:`refresh_outputs` also recomputes the targets.

Every stage is resumable: the reference run continues from its checkpoint, the trained bundle is reused.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from ..io.quiet import quiet_c_stdout
from .scales import SPE
from .spe_figures import _bead_fields, _write_summary, redraw_figures, refresh_outputs
from .spe_judge import judge_diffusivity, judge_targets, load_long_reference, species_labels
from .spe_summary import format_summary

__all__ = [
    "SCALES",
    "format_summary",
    "md_simulation",
    "redraw_figures",
    "refresh_outputs",
    "run_spe_experiment",
    "spe_split",
    "species_diffusivities",
    "species_labels",
]

SCALES = SPE  #: the presets (``experiments.scales.SPE``), re-exported


def spe_split(s: dict, n_frames: int | None = None):
    """The train / judge split (:func:`.protocol.train_judge_split`) of the SPE reference run of settings ``s``.

    Args:
        s: one ``SCALES`` preset (``training_ps``, ``frame_interval_ps``, ``judge_factor``, ``history``, ``stride``).
        n_frames: saved CG frames of the reference run (default: what the experiment's production run writes,
            ``n_train * (1 + judge_factor) + 1`` with ``n_train = training_ps / frame_interval_ps``).

    Returns:
        :class:`.protocol.TrainJudgeSplit`: training frames ``0..n_train``; the rollout starts from the last k+1
        training frames (its history) and every judged frame comes strictly after the last training frame.

    Raises:
        ValueError: naming the argument, when the run is too short for a history or for a judged window.
    """
    from .protocol import train_judge_split

    n_train = int(round(s["training_ps"] / s["frame_interval_ps"]))
    if n_frames is None:
        n_frames = n_train * (1 + s["judge_factor"]) + 1
    return train_judge_split(n_frames, n_train, s["history"], s["stride"])


def _train_config(s: dict, out_dir: Path, seed: int, device: str, temperature_K=None, systems=()) -> dict:
    return dict(
        data=dict(history=s["history"], stride=s["stride"], group_size=7, val_fraction=s["val_fraction"],
                  temperature_K=temperature_K, systems=list(systems)),
        model=dict(s["model"]),
        score=dict(s["score"]),
        optim=dict(batch_size=s["batch_size"]),
        training=dict(n_steps=s["train_steps"], eval_every=max(1, s["train_steps"] // 5),
                      checkpoint_every=max(1, s["train_steps"] // 5), seed=seed, device=device,
                      out_dir=str(out_dir), progress=True))


def _classical_ns_per_hour(run_dir: Path) -> float | None:
    """Mean 'Speed (ns/day)' of the reference run's StateDataReporter, ns/hour (indicative: another moment)."""
    csv = run_dir / "state_data.csv"
    if not csv.is_file():
        return None
    lines = csv.read_text().splitlines()
    cols = [c.strip('#" ') for c in lines[0].split(",")]
    idx = next((i for i, c in enumerate(cols) if c.startswith("Speed")), None)
    vals = []
    for line in lines[1:]:
        parts = line.split(",")
        try:
            vals.append(float(parts[idx]))
        except (TypeError, ValueError, IndexError):
            continue
    vals = vals[len(vals) // 10:] or vals  # the first rows include start-up cost
    return float(np.mean(vals)) / 24.0 if vals else None


#: the best-practice classical baseline of the speed comparison: H-bond constraints (the reference's), hydrogen
#: mass repartitioning to 3 amu and a 4 fs LangevinMiddleIntegrator step
BEST_PRACTICE_MD = dict(time_step_ps=0.004, hydrogen_mass_amu=3.0)


def md_simulation(spe_system, ref_dir, platform=None, seed: int = 0, frame: int = -1, time_step_ps=None,
                  hydrogen_mass_amu=None):
    """NVT ``app.Simulation`` of the reference system at one saved reference frame, velocities drawn anew.

    Args:
        spe_system: the ``systems.spe.build_spe`` system of the run (same seed and build settings).
        ref_dir: the reference run directory (``metadata.json``, ``topology.pdb``, ``trajectory.dcd``).
        platform: OpenMM platform name or None (fastest).  seed: integrator and velocity seed.
        frame: index of the saved production frame (default the last): its positions and box.
        time_step_ps: None (the reference's) or ps. hydrogen_mass_amu: None (element masses) or the repartitioned
            hydrogen mass (``BEST_PRACTICE_MD``: 3 amu at 4 fs).

    Raises:
        FileNotFoundError: missing run files; IndexError: ``frame`` outside the trajectory.
    """
    import mdtraj
    import openmm

    meta = json.loads((ref_dir / "metadata.json").read_text())
    temperature = float(meta.get("temperature_K", 353.0))
    dt = float(meta.get("time_step_ps", 0.002)) if time_step_ps is None else float(time_step_ps)
    sim = spe_system.make_simulation(temperature=temperature, time_step=dt, pressure=None, platform=platform,
                                     seed=seed, hydrogen_mass=hydrogen_mass_amu)
    ref_dir = Path(ref_dir)
    with quiet_c_stdout():  # mdtraj's DCD plugin prints on C stdout
        last = mdtraj.load(str(ref_dir / "trajectory.dcd"), top=str(ref_dir / "topology.pdb"))[frame]
    if last.unitcell_vectors is not None:
        sim.context.setPeriodicBoxVectors(*[openmm.Vec3(*row) for row in last.unitcell_vectors[0].tolist()])
    sim.context.setPositions(last.xyz[0].astype(np.float64))
    sim.context.setVelocitiesToTemperature(temperature, seed + 3)
    return sim


def _learned_simulation(bundle_path, mapping, start, box, refine, deterministic, seed, device, transfer=False):
    import openmm

    from ..openmm import LearnedIntegrator, create_cg_system, create_simulation

    topology, system = create_cg_system(mapping, box)
    integrator = LearnedIntegrator(bundle_path, mapping=mapping, history=start, refine=refine, seed=seed,
                                   device=device, deterministic=deterministic, transfer=transfer)
    sim = create_simulation(topology, system, integrator, openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(start[-1])
    return sim


def _side_by_side_speed(spe_system, ref_dir, platform, seed, seconds, learned_args) -> dict:
    """The learned run against the best-practice classical baseline (``BEST_PRACTICE_MD``), and against the
    reference protocol's 2 fs step, timed alternately in this process."""
    from .speed import side_by_side

    best = md_simulation(spe_system, ref_dir, platform, seed, time_step_ps=BEST_PRACTICE_MD["time_step_ps"],
                         hydrogen_mass_amu=BEST_PRACTICE_MD["hydrogen_mass_amu"])
    side = side_by_side(best, _learned_simulation(*learned_args), seconds=seconds,
                        baselines={"reference protocol": md_simulation(spe_system, ref_dir, platform, seed)})
    side["md_setup"] = (f"HBonds, hydrogen mass {BEST_PRACTICE_MD['hydrogen_mass_amu']:g} amu, "
                        f"{1000 * BEST_PRACTICE_MD['time_step_ps']:g} fs, platform "
                        f"{best.context.getPlatform().getName()}")
    return side


def species_diffusivities(msd: dict, label: str, species: dict) -> dict:
    """Li+ (bead type) and TFSI- (molecule COM species) diffusivities, cm^2/s, from analyze()['msd'][label].

    Args:
        msd: ``analysis.analyze(...)["observables"]["msd"]``.  label: a trajectory label in it.
        species: :func:`species_labels` of the mapping.

    Returns:
        {"Li+": D, "TFSI-": D} (cm^2/s), each present only where the analysis measured it.
    """
    per = msd.get(label, {})
    out = {}
    if species["li_type"] is not None and f"type:{species['li_type']}" in per:
        out["Li+"] = per[f"type:{species['li_type']}"]["D_cm2_per_s"]
    for key, val in per.items():
        if key.startswith("mol:") and any(t in key for t in species["tfsi_types"]):
            out["TFSI-"] = val["D_cm2_per_s"]
    return out


def _mean_collisions(collisions: dict) -> dict:
    """Mean number of non-bonded bead pairs closer than each cutoff, per label."""
    return {label: {rc: float(np.mean(v["count"])) for rc, v in per.items()} for label, per in collisions.items()}


def _score_check(bundle_path, train_part, mapping) -> dict | None:
    """``openmm-mlcg check`` of a ``cg_langevin`` bundle at the training frames: contact_nm and the flagged
    bead-type pairs {pair: dict(n, difference, se, z)}, 1/nm; None for another sampler."""
    from ..bundle import load_model
    from ..train.check import check_model
    from ..train.fits.pair_correction import require_equilibrium_score

    model = load_model(bundle_path)
    try:
        require_equilibrium_score(model.metadata)
    except ValueError:
        return None
    res = check_model(model, [train_part], [mapping])
    return dict(contact_nm=res["contact_nm"],
                flagged={k: {f: res["pairs"][k][f] for f in ("n", "difference", "se", "z")} for k in res["flagged"]})


def _reference_md(s: dict, ref_dir: Path, build: dict, seed: int, platform, progress: bool):
    """Build the system and run the reference MD (training part + ``judge_factor`` x longer continuation) unless
    ``ref_dir`` holds a finished run; the built system, or None when the run was there already."""
    from ..systems import spe
    from ..systems.md import is_done

    n_train_frames = int(round(s["training_ps"] / s["frame_interval_ps"]))
    production_ps = (n_train_frames * (1 + s["judge_factor"]) + 1) * s["frame_interval_ps"]  # frame 0 = t0 + fi
    if is_done(ref_dir):
        return None
    system = spe.build_spe(seed=seed, **build)
    spe.simulate(system, ref_dir, equilibration_ps=s["equilibration_ps"], production_ps=production_ps,
                 frame_interval_ps=s["frame_interval_ps"], platform=platform, seed=seed, desc="reference MD",
                 progress_bar=progress)
    return system


def _trained_bundle(s: dict, train_dir: Path, train_part, mapping, ref_dir: Path, seed: int, device) -> Path:
    """The bundle trained on the training part (``train_dir/model.mlcg``, trained unless it exists). The training
    data are written beside it and named in its resolved_config.yaml, so the config is complete (``openmm-mlcg
    train`` / ``check`` on it read the same frames)."""
    from ..data import read_run_metadata
    from ..train import train_on_trajectories  # the trainer is only needed here

    bundle_path = train_dir / "model.mlcg"
    if bundle_path.is_file():
        return bundle_path
    source = dict(cg_trajectory=str(train_dir / "training_cg.npz"), mapping=str(train_dir / "mapping.npz"))
    train_dir.mkdir(parents=True, exist_ok=True)
    train_part.save(source["cg_trajectory"])
    mapping.save(source["mapping"])
    return train_on_trajectories([train_part], [mapping],
                                 _train_config(s, train_dir, seed, device,
                                               read_run_metadata(ref_dir).get("temperature_K"), systems=[source]))


def _long_steps(long_ref, model_dt: float) -> int:
    """Model steps of one block of the long reference (each learned replica is judged like one block); 0 without."""
    if long_ref is None:
        return 0
    t = long_ref["time_ps"]
    return int(math.ceil(float(t[-1] - t[0]) / int(long_ref["recipe"]["blocks"]) / model_dt))


def _judged_trajectories(runs: list, train_part, judge_part, n_steps: int):
    """({label: (positions, time ps)} of the learned replicas (R, F, n, 3) pooled, the first alone when there are
    several, short MD and reference MD; the reference's times ps). The learned runs are cut to ``n_steps`` (the
    judging window; a long-time judgement may have run them longer). Time origin: the last training frame, the
    rollouts' frame 0, dropped (a training frame, not judged)."""
    learned = runs[0]
    ref_t = judge_part.time_ps - float(train_part.time_ps[-1])
    learned_t = learned["time_ps"][1:n_steps + 1] - learned["time_ps"][0]
    trajectories = {"learned": (np.stack([r["positions"][1:n_steps + 1] for r in runs]), learned_t),  # (R, F, n, 3)
                    **({"learned, one replica": (learned["positions"][1:n_steps + 1], learned_t)}
                       if len(runs) > 1 else {}),
                    "short MD": (train_part.positions, train_part.time_ps - train_part.time_ps[0]),
                    "reference MD": (judge_part.positions, ref_t)}
    return trajectories, ref_t


def _summary(s, scale, build, mapping, bundle_path, refine, deterministic, device, learned, runs, split, ref_t,
             result, side, ref_dir, timings, score_check, out, tag, trajectories) -> dict:
    """The summary dict of a run (written to ``summary_<tag>.json``): diffusivities, metrics, speed, timings,
    bead types (:func:`_bead_fields`); the caller adds the judgements and the figures."""
    species = species_labels(mapping)
    diffusivity = {label: species_diffusivities(result["observables"]["msd"], label, species) for label in trajectories}
    ref_protocol = side.get("baselines", {}).get("reference protocol", {})
    speed = {"learned_ns_per_hour": side["learned_ns_per_hour"], "classical_ns_per_hour": side["md_ns_per_hour"],
             "speed_up": side["ratio"], "classical_setup": side.get("md_setup"),
             "classical_2fs_ns_per_hour": ref_protocol.get("ns_per_hour"),
             "speed_up_vs_2fs": ref_protocol.get("ratio"), "side_by_side": side,
             # indicative only: whole runs timed at different moments, under whatever load there was
             "learned_run_ns_per_hour": learned["ns_per_hour"],
             "reference_run_ns_per_hour": _classical_ns_per_hour(ref_dir)}
    summary = dict(
        scale=scale, system=build, n_atoms=int(mapping.graph.n_atoms), n_beads=int(mapping.n_beads),
        model=str(bundle_path), refine=refine, deterministic=deterministic, device=device,
        model_time_step_ps=learned["model_time_step_ps"], training_ps=s["training_ps"],
        train_frames=list(split.train), rollout_start_frames=split.start_frames.tolist(),
        judged_frames=list(split.judge),
        reference_ps=float(ref_t[-1]), learned_replicas=len(runs),
        learned_ps=float(learned["time_ps"][min(split.n_steps, len(learned["time_ps"]) - 1)] - learned["time_ps"][0]),
        diffusivity_cm2_per_s=diffusivity, metrics=result["metrics"], speed=speed, timings_s=timings,
        mean_collisions=_mean_collisions(result["observables"]["collisions"]), score_check=score_check,
        analysis_dir=str(out / f"analysis_{tag}"), **_bead_fields(mapping, build.get("polymer")))
    return summary


def run_spe_experiment(out_dir, scale: str = "demo", model=None, platform: str | None = None,
                       device: str | None = None, seed: int = 0, refine: bool = True,
                       deterministic: bool = False, polymer: str | None = None, progress: bool = True,
                       transfer: bool = False, replicas: int | None = None, long_reference=None) -> dict:
    """Build, simulate, coarse-grain, train, run ``LearnedIntegrator`` and compare with reference MD.

    Args:
        out_dir: working/output directory (``reference/``, ``train/``, ``learned/``, ``analysis/``, summary.json).
        scale: ``"smoke"`` (seconds, CI), ``"demo"`` (~1000 atoms, <= 20 min on 2 CPU cores), ``"paper"`` (GPU).
        model: existing bundle path (skip training); it must have been trained with this scale's settings.
        transfer: ``model`` was trained on another box (another seed's packing): run it on this box's mapping.
        platform: OpenMM platform for the reference MD (None: fastest available).
        device: torch device for training and the learned run (None: CUDA if available, else CPU).
        seed: seeds packing, MD, training and the learned run.
        refine: use the Score GNN annealed-Langevin refinement.  deterministic: mean dynamics (baseline).
        polymer: override the polymer spec (e.g. "PPO", "PEO/PTMO", "PEO:0.7,PTMO:0.3"), see ``systems.spe.parse_polymer``.
        replicas: learned runs from the common start (seeds ``seed``, ``seed + 1``, ...; default the scale's
            ``learned_replicas``). The "learned" observables pool them (:mod:`openmm_mlcg.analysis.replicas`);
            with more than one, "learned, one replica" is the first run alone.
        long_reference: directory of a shipped long reference of this system (``benchmarks/data/spe_demo_long``);
            the learned runs are extended to one of its blocks and D is judged against it
            (:mod:`.spe_judge`, ``long_time_targets`` in the summary). None: no long-time judgement.

    Returns:
        summary dict (also written to ``out_dir/summary_<tag>.json``), with "targets"
        (:func:`.spe_judge.judge_targets`: PASS / FAIL / within noise / not judged per target) and "figures"
        (:func:`redraw_figures`, which redraws them later from the saved outputs).

    Raises:
        ValueError: unknown ``scale``, ``replicas`` < 1, a ``long_reference`` of another system;
        FileNotFoundError: ``model`` or ``long_reference`` path missing.
    """
    import torch

    from ..data import load_run
    from ..systems import spe
    from ..openmm.replicas import run_replicas
    from ..analysis import analyze

    if scale not in SCALES:
        raise ValueError(f"scale: expected one of {sorted(SCALES)}, got {scale!r}")
    if model is not None and not Path(model).is_file():
        raise FileNotFoundError(f"model: bundle {model} does not exist")
    s = SCALES[scale]
    n_rep = s["learned_replicas"] if replicas is None else replicas
    if isinstance(n_rep, bool) or not isinstance(n_rep, (int, np.integer)) or n_rep < 1:
        raise ValueError(f"replicas: expected an integer >= 1, got {n_rep!r}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings = {}

    # 1. reference MD: one production run = training part + judge_factor x longer continuation
    t0 = time.perf_counter()
    ref_dir = out / "reference"
    build = dict(s["build"], **({"polymer": polymer} if polymer else {}))
    system = _reference_md(s, ref_dir, build, seed, platform, progress)
    timings["reference_md_s"] = time.perf_counter() - t0

    # 2. coarse-grain once (METIS mapping + unwrapped bead trajectory, cached)
    t0 = time.perf_counter()
    mapping, cg = load_run(ref_dir, group_size=7, seed=seed)
    split = spe_split(s, cg.n_frames)  # judged frames all come after the last training frame
    train_part, judge_part = cg.slice(*split.train), cg.slice(*split.judge)
    long_ref = None if long_reference is None else load_long_reference(long_reference, mapping)
    timings["coarse_grain_s"] = time.perf_counter() - t0

    # 3. train (or reuse) the Embedding/Dynamics/Score GNNs on the short trajectory
    t0 = time.perf_counter()
    bundle_path = Path(model) if model is not None else _trained_bundle(s, out / "train", train_part, mapping,
                                                                        ref_dir, seed, device)
    timings["training_s"] = time.perf_counter() - t0
    score_check = _score_check(bundle_path, train_part, mapping)

    # 4. learned simulation inside app.Simulation, from the end of the training part
    start = np.asarray(cg.positions)[split.start_frames]  # the history: last k+1 training frames, one step apart
    n_steps = max(split.n_steps, _long_steps(long_ref, cg.frame_interval_ps * s["stride"]))
    box = judge_part.box[0] if judge_part.box is not None else None
    tag = ("refined" if refine else "norefine") + ("_mean" if deterministic else "")
    # the replicas stepped together as one batched graph (openmm_mlcg.openmm.replicas): each one is the run
    # simulate_learned gives alone with its seed, written to its own folder in the same formats
    runs = run_replicas(bundle_path, mapping, start, box, n_steps,
                        [out / (f"learned_{tag}" + (f"_replica{i}" if i else "")) for i in range(int(n_rep))],
                        [seed + i for i in range(int(n_rep))], refine=refine, deterministic=deterministic,
                        device=device, progress=progress, transfer=transfer, desc=f"learned runs ({n_rep} replicas)")
    learned = runs[0]
    timings["learned_s"] = sum(r["wall_s"] for r in runs)

    # 4b. speed: classical MD of the same system and the learned integrator, alternately in this process
    t0 = time.perf_counter()
    system = system or spe.build_spe(seed=seed, **build)  # deterministic for a seed
    side = _side_by_side_speed(system, ref_dir, platform, seed, s["speed_s"],
                               (bundle_path, mapping, start, box, refine, deterministic, seed, device, transfer))
    timings["speed_s"] = time.perf_counter() - t0

    # 5. observables: learned vs short MD (training length) vs long reference, same time origin conventions
    t0 = time.perf_counter()
    trajectories, ref_t = _judged_trajectories(runs, train_part, judge_part, split.n_steps)
    if progress:
        print("analysis: MSD, RDF and collisions of learned, short MD and reference MD ...", flush=True)
    result = analyze(trajectories, box, list(mapping.bead_types), mapping.bead_masses, mapping.bead_molecules,
                     mapping.cg_bonds, out / f"analysis_{tag}", observables=["msd", "rdf", "collisions"],
                     reference="reference MD", progress=progress, plot=False)  # figures: redraw_figures below
    judgement = None if long_ref is None else judge_diffusivity(
        np.stack([r["positions"] for r in runs]), runs[0]["time_ps"] - runs[0]["time_ps"][0], long_ref, mapping)
    timings["analysis_s"] = time.perf_counter() - t0
    summary = _summary(s, scale, build, mapping, bundle_path, refine, deterministic, device, learned, runs, split,
                       ref_t, result, side, ref_dir, timings, score_check, out, tag, trajectories)
    summary["long_time_targets"] = judgement
    summary["targets"] = judge_targets(summary)
    summary["figures"] = redraw_figures(out, tag, summary)
    _write_summary(out, tag, summary)
    return summary
