"""Single-chain polymer experiment (Fu et al., TMLR 2023, section 4.1 and appendix B), scaled down.

Protocol: simulate class-I chains (regular copolymers; short trajectories, a frame every 5 tau) for training and
class-II chains (random copolymers, unseen in training; longer trajectories) as reference; coarse-grain each
with METIS; train one model on all class-I CG trajectories; for every class-II chain start the learned
simulator from the first k+1 CG frames of its reference and run it as long as the reference.  Compared per
chain: mean squared radius of gyration <R_g^2> (CG level, mass-weighted), the R_g^2 distribution (EMD) and the
R_g^2 relaxation time (1/e crossing of the ACF) of the learned run and of "short MD" (the reference cut to the
training length) against the full reference; across chains r^2 and MAE of <R_g^2> (paper Table 2, Fig. 3, 5).

Units: reduced LJ units mapped onto OpenMM units, sigma = 1 nm, tau = 1 ps, m = 1 amu, so R_g^2 is in
sigma^2 = nm^2 and times in tau = ps.  Scales (``SCALES``): "smoke" (seconds, CI), "demo" (a 2-core CPU in
~6 min: 24-CU chains of ~50 beads, group_size 5 -> ~10 CG beads, about the paper's ~9 CG beads per chain at
100 beads per CG bead for ~890-bead chains; 4 training chains x 800 tau, 4 test chains x 2500 tau, i.e. ~30
R_g^2 relaxation times), "paper" (appendix B sizes: 400 CUs, 100 x 50k tau, 40 x 5M tau).
Deviations from the paper at demo scale: short class-II references (a few relaxation times, not 100x the
training length); reference frames every 5 tau (= the model step, so the k+1 starting frames come from the
reference itself; at "paper" scale frames are every 500 tau and the starting frames come from a short
separate run of the same chain); a small model trained for minutes; no FG-R_g^2 offset MLP (we compare at
the CG level).  Unlike the paper (appendix C: no refinement for polymers) the default runs the project's default
generator (``cg_langevin``, Score GNN trained): on the polymer benchmark it halves the Dynamics-only error.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np

from ..util.io_utils import atomic_write
from .scales import POLYMER

__all__ = ["SCALES", "polymer_settings", "generate_reference", "train_polymer_model", "chain_observables",
           "classical_ns_per_hour", "run_polymer_experiment"]

SCALES = POLYMER  #: the presets (``experiments.scales.POLYMER``), re-exported


def polymer_settings(scale: str = "demo", **overrides) -> dict:
    """Settings of a scale (see ``SCALES``) with ``overrides`` applied (None values ignored).

    Raises:
        ValueError: unknown ``scale`` or override key; test/training lengths not multiples of the frame times.
    """
    if scale not in SCALES:
        raise ValueError(f"scale: expected one of {sorted(SCALES)}, got {scale!r}")
    s = dict(SCALES[scale], scale=scale)
    for key, value in overrides.items():
        if key not in s:
            raise ValueError(f"{key}: unknown setting; expected one of {sorted(s)}")
        if value is not None:
            s[key] = value
    model_dt = s["frame_tau"] * s["stride"]
    for key, unit_tau in (("train_tau", s["frame_tau"]), ("test_frame_tau", model_dt),
                          ("test_tau", s["test_frame_tau"])):
        ratio = s[key] / unit_tau
        if not (s[key] > 0 and abs(ratio - round(ratio)) < 1e-9):
            raise ValueError(f"{key}: expected a positive multiple of {unit_tau} tau, got {s[key]}")
    if s["test_tau"] < (s["history"] + 2) * model_dt:
        raise ValueError(f"test_tau: expected >= (history+2) model steps = {(s['history'] + 2) * model_dt} tau, "
                         f"got {s['test_tau']}")
    return s


def _gen(s, out, kind, n, tau, frame_tau, platform, seed, n_workers, progress):
    from ..systems import polymer
    return polymer.generate(n, out, kind=kind, length=s["length"], seed=seed, platform=platform, scale="demo",
                            production_tau=tau, frame_interval=frame_tau, n_workers=n_workers,
                            equilibration_steps=int(round(s["equil_tau"] / 0.01)), progress_bar=progress)


def generate_reference(s: dict, work_dir, platform=None, seed: int = 0, n_workers: int = 1,
                       progress: bool = False, train: bool = True) -> dict:
    """Reference MD run directories (resumable; finished runs are reused).

    Returns:
        dict(class1=[Path] (empty if ``train`` is False), class2=[Path], class2_start=[Path] or None).
        ``class2_start`` (only when ``test_frame_tau`` differs from the model step) are short runs of the same
        class-II chains (same seeds -> same sequences) recorded every model step, giving the k+1 start frames.
    """
    work = Path(work_dir)
    model_dt = s["frame_tau"] * s["stride"]
    out = dict(class1=[], class2_start=None)
    if train:
        out["class1"] = _gen(s, work / "md_train", "class1", s["n_train"], s["train_tau"], s["frame_tau"],
                             platform, seed, n_workers, progress)
    out["class2"] = _gen(s, work / "md_test", "class2", s["n_test"], s["test_tau"], s["test_frame_tau"],
                         platform, seed, n_workers, progress)
    if abs(s["test_frame_tau"] - model_dt) > 1e-9:
        out["class2_start"] = _gen(s, work / "md_test_start", "class2", s["n_test"], (s["history"] + 1) * model_dt,
                                   model_dt, platform, seed, n_workers, progress)
    return out


def _reduced_temperature_K() -> float:
    """K of the polymers' reduced temperature kT = epsilon = 1 kJ/mol (:func:`systems.polymer.reduced_temperature_K`)."""
    from ..systems.polymer import reduced_temperature_K

    return reduced_temperature_K(1.0)


def train_polymer_model(trajectories, mappings, s: dict, out_dir, device=None, train_score: bool = False,
                        progress: bool = False) -> Path:
    """Train (or resume; reuse a finished ``out_dir/model.mlcg``) one small model on all training chains.

    With several distinct chains the bundle is not bound to a mapping, so it transfers to unseen chains.
    ``train_score`` trains the Score GNN too (needed only for refinement; the paper does not refine polymers).

    Returns: path of the bundle.
    """
    from ..train import train_on_trajectories

    bundle = Path(out_dir) / "model.mlcg"
    if bundle.is_file():
        return bundle
    h, n, steps = s["hidden"], s["layers"], s["train_steps"]
    cfg = dict(
        data=dict(history=s["history"], stride=s["stride"], group_size=s["group_size"],
                  mapping_seed=s["mapping_seed"], val_fraction=s["val_fraction"],
                  temperature_K=_reduced_temperature_K()),
        model=dict(embedding_hidden=h, embedding_layers=n, dynamics_hidden=h, dynamics_layers=n, score_hidden=h,
                   score_layers=n, cutoff_nm=s["cutoff_nm"]),
        score=dict(enabled=bool(train_score), n_levels=s["score_levels"], sigma_max_nm=1.0, sigma_min_nm=0.01,
                   langevin=dict(steps_per_level=s["score_steps_per_level"], step_size_nm2=1e-5)),
        optim=dict(batch_size=s["batch_size"], lr=s["lr"], lr_final=s["lr_final"]),
        training=dict(n_steps=steps, eval_every=max(1, steps // 5), checkpoint_every=max(1, steps // 10),
                      device=str(device or "cpu"), out_dir=str(out_dir), progress=progress))
    t0 = time.perf_counter()
    path = Path(train_on_trajectories(trajectories, mappings, cfg))
    with atomic_write(Path(out_dir) / "training_time.json", "w") as fh:  # wall time of this (last) call
        json.dump(dict(training_wall_s=time.perf_counter() - t0, train_steps=steps), fh)
    return path


def chain_observables(positions, dt_ps: float, masses) -> dict:
    """R_g^2 series (F,) nm^2, its mean, ACF (lags 0..F//2, spacing ``dt_ps``) and 1/e relaxation time (ps, NaN
    if the ACF does not decay within F//2 frames).  Source: paper appendix B."""
    from ..analysis import autocorrelation, radius_of_gyration_squared, relaxation_time
    rg2 = np.asarray(radius_of_gyration_squared(np.asarray(positions), masses), dtype=np.float64)
    acf = autocorrelation(rg2, max_lag=max(1, len(rg2) // 2)) if len(rg2) >= 3 and rg2.std() > 0 else np.ones(2)
    return dict(rg2=rg2, rg2_mean=float(rg2.mean()), acf=acf, lag_ps=np.arange(len(acf)) * float(dt_ps),
                tau_ps=float(relaxation_time(acf, dt_ps)))


def classical_ns_per_hour(run_dir) -> float:
    """Classical MD speed of a run: median of the ``Speed (ns/day)`` column of ``state_data.csv`` / 24
    (simulated ns per wall hour, 1 tau = 1 ps); NaN if not recorded."""
    path = Path(run_dir) / "state_data.csv"
    if not path.is_file():
        return float("nan")
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return float("nan")
    col = next((i for i, c in enumerate(rows[0]) if "Speed" in c), None)
    vals = [float(r[col]) for r in rows[1:] if col is not None and len(r) > col and r[col] not in ("", "--")]
    return float(np.median(vals)) / 24.0 if vals else float("nan")


def _rollout(bundle, mapping, frames, n_steps, report, out_dir: Path, variant, device, seed, platform):
    """Learned trajectory (cached in ``out_dir/rollout.npz``): positions (F, n, 3) nm, time_ps, wall_s;
    (None, None, nan) if the model produced non-finite positions (not cached)."""
    from ..app.workflow import simulate_learned
    cache = out_dir / "rollout.npz"
    if cache.is_file():
        z = np.load(cache)
        return z["positions"], z["time_ps"], float(z["wall_s"])
    try:
        r = simulate_learned(bundle, mapping, frames, None, n_steps, out_dir, report_interval=report,
                             refine=variant["refine"], deterministic=variant["deterministic"], seed=seed,
                             device=device, platform=platform)
    except (RuntimeError, FloatingPointError) as exc:  # the model diverged: a result, not a crash
        if "non-finite" not in str(exc):
            raise
        return None, None, float("nan")
    with atomic_write(cache, "wb") as fh:
        np.savez(fh, positions=r["positions"], time_ps=r["time_ps"], wall_s=r["wall_s"])
    return r["positions"], r["time_ps"], float(r["wall_s"])


def _metrics(ref: dict, pred: dict) -> dict:
    from ..analysis import mean_absolute_error, r2_score
    a, b = np.asarray(ref["rg2_mean"]), np.asarray(pred["rg2_mean"])
    ok = np.isfinite(b)
    ta, tb = np.asarray(ref["tau_ps"]), np.asarray(pred["tau_ps"])
    tok = np.isfinite(ta) & np.isfinite(tb)
    return dict(rg2_r2=r2_score(a[ok], b[ok]) if ok.sum() >= 2 else float("nan"),
                rg2_mae_nm2=mean_absolute_error(a[ok], b[ok]) if ok.any() else float("nan"),
                rg2_emd_nm2=float(np.nanmean(pred["emd_nm2"])) if np.isfinite(pred["emd_nm2"]).any() else float("nan"),
                relaxation_time_mae_ps=mean_absolute_error(ta[tok], tb[tok]) if tok.any() else float("nan"),
                n_chains=int(ok.sum()), n_relaxation_times=int(tok.sum()))


def _plots(out: Path, per: dict, curves: list, labels: list) -> list:
    from ..analysis import plots
    ref = per["reference MD"]
    files = [plots.plot_parity(ref["rg2_mean"], {k: per[k]["rg2_mean"] for k in labels}, out / "rg2_parity.png",
                               r"$\langle R_g^2\rangle$ (nm$^2$)", "class-II chains (unseen)")]
    if np.isfinite(ref["tau_ps"]).any():
        files.append(plots.plot_parity(ref["tau_ps"], {k: per[k]["tau_ps"] for k in labels},
                                       out / "rg2_relaxation_parity.png", r"$t_{R_g^2}$ (ps = $\tau$)"))
    for i, c in enumerate(curves):
        files.append(plots.plot_distributions({k: v["rg2"] for k, v in c.items()},
                                              out / f"rg2_distribution_chain{i}.png", title=f"class-II chain {i}"))
        files.append(plots.plot_acf({k: (v["lag_ps"], v["acf"]) for k, v in c.items()}, out / f"rg2_acf_chain{i}.png",
                                    title=rf"$R_g^2$ ACF, class-II chain {i}"))
    return [f.name for f in files]


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _model_bundle(model, runs: dict, s: dict, out: Path, device, variants: dict, progress: bool, cg):
    """(bundle path, training wall s): trained on the class-I chains (``out/model``; a re-run reuses it and
    reports the original training time), or the given ``model`` checked against the experiment's model step
    (``s["history"]`` set from it).

    Raises:
        ValueError: the model's time step differs from ``frame_tau * stride``.
    """
    t1 = time.perf_counter()
    if model is None:
        train = [cg(r) for r in runs["class1"]]
        bundle = train_polymer_model([t for _, t in train], [m for m, _ in train], s, out / "model", device,
                                     train_score=any(v["refine"] for v in variants.values()), progress=progress)
    else:
        from ..bundle.export import load_bundle
        bundle, meta = Path(model), load_bundle(model).metadata
        if not math.isclose(float(meta["model_time_step_ps"]), s["frame_tau"] * s["stride"], rel_tol=1e-9):
            raise ValueError(f"model: bundle time step {meta['model_time_step_ps']} ps differs from the experiment's "
                             f"model step frame_tau*stride = {s['frame_tau'] * s['stride']} ps")
        s["history"] = int(meta["history"])
    t_train = time.perf_counter() - t1
    record = bundle.parent / "training_time.json"
    if model is None and record.is_file():  # a re-run reuses the bundle: report the original training time
        t_train = max(t_train, float(json.loads(record.read_text())["training_wall_s"]))
    return bundle, t_train


def _timing(runs: dict, variants: dict, sim_ps: dict, walls: dict, t_train: float, t_md: float, device) -> dict:
    """Simulated ns per wall hour, learned (per variant) and classical (the class-II runs' reporter speed)."""
    md_speed = [classical_ns_per_hour(r) for r in runs["class2"]]
    return dict(classical_md_ns_per_hour=float(np.nanmedian(md_speed)) if np.isfinite(md_speed).any()
                else float("nan"),
                learned_ns_per_hour={v: sim_ps[v] / 1000.0 / (walls[v] / 3600.0) if walls[v] > 0 else float("nan")
                                     for v in variants},
                rollout_wall_s=walls, training_wall_s=t_train, reference_md_wall_s=t_md,
                note="simulated time per wall hour (1 tau = 1 ps); learned: OpenMM LearnedIntegrator steps on "
                     f"device {device or 'cpu'}; classical: StateDataReporter speed of the class-II runs "
                     "(0.01 tau Langevin steps on the fine bead model); wall times of a resumed run cover only "
                     "the work done in this call")


def _chain_observables_all(i: int, run, runs: dict, cg, s: dict, variants: dict, bundle: Path, out: Path, device,
                           seed: int, model_id: str, walls: dict, sim_ps: dict, log):
    """Observables of test chain ``i`` for the reference MD, short MD and every learned variant (rolled out from
    the chain's start, cached per bundle; a diverged rollout gives None), and (atoms, beads) of the chain; the
    rollouts' wall and simulated time are added to ``walls`` / ``sim_ps``."""
    k, st, model_dt = s["history"], s["stride"], s["frame_tau"] * s["stride"]
    report = int(round(s["test_frame_tau"] / model_dt))
    n_short = int(round(s["train_tau"] / s["test_frame_tau"]))  # MD writes no frame at t = 0
    mapping, traj = cg(run)
    pos, dt, masses = np.asarray(traj.positions), float(traj.frame_interval_ps), np.asarray(mapping.bead_masses)
    if runs["class2_start"] is None:
        start = pos[:(k + 1) * st:st]
    else:
        _, straj = cg(runs["class2_start"][i])
        start = np.asarray(straj.positions)[:(k + 1) * st:st]
    n_steps = (len(pos) - 1) * report
    obs = {"reference MD": chain_observables(pos, dt, masses),
           "short MD": chain_observables(pos[:n_short], dt, masses)}
    for v, opts in variants.items():
        tag = f"{v.replace(' ', '_')}_r{int(opts['refine'])}d{int(opts['deterministic'])}_s{seed}_{model_id}"
        lp, lt, wall = _rollout(bundle, mapping, start, n_steps, report, out / "rollouts" / f"chain{i:04d}" / tag,
                                opts, device, seed + i, "Reference")
        if lp is None:
            log(f"chain {i}: {v} rollout diverged (non-finite positions)")
            obs[v] = None
            continue
        walls[v] += wall
        sim_ps[v] += n_steps * model_dt
        obs[v] = chain_observables(lp, float(lt[1] - lt[0]), masses)
    return obs, (int(mapping.graph.n_atoms), int(mapping.n_beads))


def run_polymer_experiment(out_dir, scale: str = "demo", model=None, platform=None, device=None, seed: int = 0,
                           refine: bool = True, deterministic: bool = False, n_train=None, n_test=None,
                           variants: dict | None = None, n_workers: int = 1, n_plot_chains: int = 3,
                           torch_threads: int | None = None, progress: bool = False, log=print,
                           **overrides) -> dict:
    """Run the polymer experiment end to end and write ``out_dir/summary.json`` + PNGs (resumable).

    Args:
        out_dir: working/output directory; reference MD (``md_train``, ``md_test``), CG caches (``cg``), the model
            (``model/model.mlcg``) and learned rollouts (``rollouts``) already there are reused.
        scale: "smoke", "demo" or "paper" (see ``SCALES``); ``overrides`` change single settings (e.g.
            ``length=40, train_steps=3000``).
        model: existing bundle path: skip generating training data and training.
        platform: OpenMM platform of the reference MD (None: ``systems.polymer.default_platform``).  device: torch
            device of model/training.
        seed: master seed of the reference MD and the learned rollouts.
        refine, deterministic: the default learned variant. ``refine=True`` (default) trains the Score GNN and
            runs the project's default generator (``cg_langevin``); False is the Dynamics GNN's independent
            Gaussian alone, the paper's polymer setting (appendix C), which scores r^2 -0.39 +- 0.39 against
            0.29 +- 0.23 on ``benchmarks/bench_polymer.py`` (issue 37).
        n_train, n_test: numbers of class-I / class-II chains (default by scale).
        variants: ``{label: dict(refine=bool, deterministic=bool)}`` learned variants to compare (overrides
            ``refine``/``deterministic``), e.g. for benchmarks.
        n_workers: reference MD chains simulated in parallel processes.
        n_plot_chains: chains with R_g^2 distribution / ACF plots.
        torch_threads: ``torch.set_num_threads`` for training and rollouts (None: leave as is); 1 is fastest for
            the small demo models, especially on a busy machine.
        log: callable for progress messages (None: silent).

    Returns:
        the summary dict (also in ``summary.json``): ``settings``, ``metrics`` {label: rg2_r2, rg2_mae_nm2,
        rg2_emd_nm2, relaxation_time_mae_ps, ...} for every learned variant and "short MD", ``per_chain``
        {label: rg2_mean (nm^2), tau_ps, emd_nm2, n_frames}, ``timing`` (simulated ns per wall hour learned vs
        classical, training and rollout wall s), ``plots``.  Non-finite numbers are written as null.

    Raises:
        ValueError: bad scale/settings (see :func:`polymer_settings`), or a ``model`` whose atom types or time
            step do not fit the chains; FileNotFoundError: ``model`` missing.
        A learned rollout that diverges (non-finite positions) is not an error: its chain gets null values and
        ``n_frames`` 0, and the metrics use the other chains.
    """
    from ..analysis import earth_movers_distance
    from ..data import load_run

    log = log or (lambda *a: None)
    if torch_threads is not None:
        import torch
        torch.set_num_threads(int(torch_threads))
    s = polymer_settings(scale, n_train=n_train, n_test=n_test, **overrides)
    variants = variants or {"learned": dict(refine=bool(refine), deterministic=bool(deterministic))}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if model is not None and not Path(model).is_file():
        raise FileNotFoundError(f"model: bundle {model} does not exist")
    t0 = time.perf_counter()
    runs = generate_reference(s, out, platform, seed, n_workers, progress, train=model is None)
    t_md = time.perf_counter() - t0
    log(f"reference MD ready: {len(runs['class1'])} class-I, {len(runs['class2'])} class-II chains ({t_md:.0f} s)")
    cg = lambda run: load_run(run, s["group_size"], s["mapping_seed"], cache_dir=out / "cg")  # noqa: E731
    bundle, t_train = _model_bundle(model, runs, s, out, device, variants, progress, cg)
    log(f"model ready: {bundle} ({t_train:.0f} s)")

    model_dt = s["frame_tau"] * s["stride"]
    labels = list(variants) + ["short MD"]
    per = {lab: dict(rg2_mean=[], tau_ps=[], emd_nm2=[], n_frames=[]) for lab in ["reference MD"] + labels}
    model_id = hashlib.sha256(bundle.read_bytes()).hexdigest()[:10]  # rollouts are cached per bundle
    curves, walls, sim_ps, n_beads = [], {v: 0.0 for v in variants}, {v: 0.0 for v in variants}, []
    for i, run in enumerate(runs["class2"]):
        obs, beads = _chain_observables_all(i, run, runs, cg, s, variants, bundle, out, device, seed, model_id,
                                            walls, sim_ps, log)
        n_beads.append(beads)
        for lab, o in obs.items():
            per[lab]["rg2_mean"].append(o["rg2_mean"] if o else float("nan"))
            per[lab]["tau_ps"].append(o["tau_ps"] if o else float("nan"))
            per[lab]["n_frames"].append(len(o["rg2"]) if o else 0)
            per[lab]["emd_nm2"].append(earth_movers_distance(obs["reference MD"]["rg2"], o["rg2"]) if o
                                       else float("nan"))
        if i < n_plot_chains:
            curves.append({lab: o for lab, o in obs.items() if o is not None})
        log(f"chain {i}: <Rg^2> ref {per['reference MD']['rg2_mean'][-1]:.3f} nm^2, "
            + ", ".join(f"{v} {per[v]['rg2_mean'][-1]:.3f}" for v in labels))
    metrics = {lab: _metrics(per["reference MD"], per[lab]) for lab in labels}
    timing = _timing(runs, variants, sim_ps, walls, t_train, t_md, device)
    settings = dict(s, seed=seed, variants=variants, model_time_step_ps=model_dt, bundle=str(bundle),
                    training_frames_per_chain=int(round(s["train_tau"] / s["frame_tau"])),
                    reference_frames_per_chain=per["reference MD"]["n_frames"],
                    beads_per_chain_fine_cg=n_beads, units="reduced: sigma = 1 nm, tau = 1 ps, m = 1 amu")
    summary = dict(experiment="polymer", source="Fu et al., TMLR 2023, section 4.1 / appendix B", settings=settings,
                   metrics=metrics, per_chain=per, timing=timing, plots=_plots(out, per, curves, labels))
    summary = _jsonable(summary)
    with atomic_write(out / "summary.json", "w") as fh:
        json.dump(summary, fh, indent=1)
    return summary
