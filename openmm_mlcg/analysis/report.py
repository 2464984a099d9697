"""analyze(): every observable of the paper for several labelled CG trajectories -> JSON + PNG figures.

Source: Fu et al., TMLR 2023, section 4 and appendix B. File-based entry point: :mod:`.files` (analyze_files).
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from openmm import unit
from tqdm.auto import tqdm

from openmm_mlcg.util.io_utils import atomic_write
from openmm_mlcg.util.units import to_float

from ._validate import bonds_array, box_array, index_array, masses_array, time_array
from .collisions import count_collisions
from .correlation import autocorrelation, relaxation_time
from .diffusion import centre_of_mass_positions, fit_diffusivity, mean_squared_displacement, \
    remove_centre_of_mass_drift, single_interval_diffusivity
from .metrics import earth_movers_distance, finite_rdf_errors, mean_absolute_error, mean_rdf_errors, \
    worst_rdf_pairs  # noqa: F401  (re-exported)
from .observable_figures import msd_panel_groups, plot_observables, rdf_panel_pairs, same_bead_groups  # noqa: F401
from .rdf import rdf_by_type
from .replicas import frames_view, particles_view, replica_positions
from .structure import contact_map, distribution, mean_internal_distance, radius_of_gyration_squared

__all__ = ["OBSERVABLES", "analyze", "finite_rdf_errors", "load_analysis", "mean_rdf_errors", "msd_panel_groups",
           "plot_observables", "rdf_panel_pairs", "same_bead_groups", "worst_rdf_pairs"]

OBSERVABLES = ("rg2", "rg2_acf", "internal_distance", "contact_map", "msd", "rdf", "collisions")


def _jsonable(obj):
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _chain_order(beads: np.ndarray, bonds: np.ndarray) -> tuple[np.ndarray, bool]:
    """Order a molecule's beads along its CG bonds if they form a simple path; else index order (False)."""
    sub = bonds[np.isin(bonds[:, 0], beads) & np.isin(bonds[:, 1], beads)]
    if beads.size < 2 or sub.shape[0] != beads.size - 1:
        return beads, False
    nbr = {int(b): [] for b in beads}
    for i, j in sub:
        nbr[int(i)].append(int(j))
        nbr[int(j)].append(int(i))
    ends = [b for b, v in nbr.items() if len(v) == 1]
    if len(ends) != 2 or any(len(v) > 2 for v in nbr.values()):
        return beads, False
    order, prev = [min(ends)], None
    while len(order) < beads.size:
        nxt = [v for v in nbr[order[-1]] if v != prev]
        if not nxt:
            return beads, False
        prev = order[-1]
        order.append(nxt[0])
    return np.array(order), True


def _species(types: np.ndarray, mol: np.ndarray) -> dict:
    """Group molecules by their bead-type sequence -> {label: [molecule ids]}."""
    out: dict[str, list] = {}
    for m in np.unique(mol):
        seq = types[mol == m].tolist()
        label = "mol:" + ",".join(seq[:3]) + (f",...({len(seq)})" if len(seq) > 3 else "")
        out.setdefault(label, []).append(int(m))
    return out


def analyze(trajectories: Mapping, box, bead_types, bead_masses, bead_molecules, cg_bonds, out_dir,
            observables=None, reference: str | None = None, fit_window_ps=None, max_lag_ps=None,
            collision_cutoffs_nm=(0.05, 0.1, 0.2), contact_cutoff_nm=1.0, rdf_n_bins: int = 100, rdf_r_max_nm=None,
            histogram_bins: int = 50, plot: bool = True, provenance: Mapping | None = None,
            progress: bool = False) -> dict:
    """Compute observables for each labelled trajectory, compare with a reference, write JSON + PNGs.

    See :func:`_analyze` for the arguments, return value and errors. Holds the lock of ``out_dir``
    (``OutputLockedError`` for a second writer) and, on success, removes the figures an earlier analysis
    wrote there that this one does not produce (no stale PNGs beside the new JSON).
    """
    from openmm_mlcg.util.locks import output_lock

    with output_lock(out_dir, "analyze", "out_dir"):
        return _analyze(trajectories, box, bead_types, bead_masses, bead_molecules, cg_bonds, out_dir,
                        observables=observables, reference=reference, fit_window_ps=fit_window_ps,
                        max_lag_ps=max_lag_ps, collision_cutoffs_nm=collision_cutoffs_nm,
                        contact_cutoff_nm=contact_cutoff_nm, rdf_n_bins=rdf_n_bins, rdf_r_max_nm=rdf_r_max_nm,
                        histogram_bins=histogram_bins, plot=plot, provenance=provenance, progress=progress)


def _labelled_inputs(trajectories: Mapping, box, n: int, reference):
    """({label: (positions (R, F, n, 3), time (F,) ps, box or None)}, the reference label).

    Raises:
        ValueError: a malformed item, a particle count other than ``n``, an unknown ``reference``.
    """
    data = {}
    for label, item in trajectories.items():
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"trajectories[{label!r}]: expected (positions, time_ps), got {type(item).__name__}")
        x = replica_positions(item[0], f"trajectories[{label!r}] positions", min_frames=2)  # (R, F, n, 3)
        if x.shape[2] != n:
            raise ValueError(f"trajectories[{label!r}] positions: expected {n} particles (len(bead_types)), "
                             f"got {x.shape[2]}")
        t = time_array(item[1], x.shape[1], f"trajectories[{label!r}] time_ps")
        b = box.get(label) if isinstance(box, Mapping) else box
        data[label] = (x, t, box_array(b, x.shape[1], f"box[{label!r}]"))
    if reference is None and "reference MD" in data:
        reference = "reference MD"
    if reference is not None and reference not in data:
        raise ValueError(f"reference: expected one of {list(data)}, got {reference!r}")

    return data, reference


def _write_outputs(result: dict, out_dir: Path, previous: set) -> None:
    """analysis.json (contact maps in contact_maps.npz), and the stale outputs of an earlier analysis removed."""
    res, figs = result["observables"], result["figures"]
    doc = _jsonable({k: v for k, v in result.items() if k != "observables"})
    doc["observables"] = {k: v for k, v in result["observables"].items() if k != "contact_map"}
    doc = _jsonable(doc)
    if res.get("contact_map"):  # (M, M) maps go to an npz, not the JSON
        with atomic_write(out_dir / "contact_maps.npz", "wb") as fh:
            np.savez_compressed(fh, **{k: v["map"] for k, v in res["contact_map"].items()})
        doc["observables"]["contact_map"] = {k: {"file": "contact_maps.npz", "key": k, "cutoff_nm": v["cutoff_nm"]}
                                             for k, v in res["contact_map"].items()}
    with atomic_write(out_dir / "analysis.json", "w") as fh:
        json.dump(doc, fh, indent=1)
    written = {Path(f).name for f in figs} | ({"contact_maps.npz"} if res.get("contact_map") else set())
    for name in previous - written - {"analysis.json"}:  # stale outputs of an earlier analysis here
        (out_dir / name).unlink(missing_ok=True)


def _rg2_observables(xr, types, masses, mol, sel, obs, histogram_bins: int, max_lag_ps, dt: float) -> dict:
    """{"rg2": distribution and means, "rg2_acf": autocorrelation and relaxation times} of the molecules ``sel``
    of replicas ``xr`` (R, F, n, 3), the replicas as R n particles (each asked for in ``obs``; the ACF only with
    >= 4 frames and R_g^2 that varies)."""
    out = {}
    n_rep, n_frames = xr.shape[:2]
    x, _, masses_p, mol_p = particles_view(xr, types, masses, mol)   # replicas as R n particles
    sel_p = np.tile(sel, n_rep)
    rg2 = radius_of_gyration_squared(x[:, sel_p], masses_p[sel_p], mol_p[sel_p])  # (F, R n_multi)
    if "rg2" in obs:
        c, dens = distribution(rg2, histogram_bins)
        out["rg2"] = {"mean_nm2": rg2.mean(), "std_nm2": rg2.std(),
                      "mean_per_molecule_nm2": rg2.mean(0).reshape(n_rep, -1).mean(0),
                      "hist_centres_nm2": c, "hist_density": dens, "samples_nm2": rg2.ravel()}
    if "rg2_acf" in obs and n_frames >= 4 and np.all(rg2.std(0) > 0):
        lag = None if max_lag_ps is None else \
            min(n_frames - 1, max(1, int(to_float(max_lag_ps, unit.picosecond, "max_lag_ps") / dt)))
        acf = autocorrelation(rg2, lag).mean(1)
        out["rg2_acf"] = {"lag_ps": np.arange(acf.size) * dt, "acf": acf,
                          "relaxation_time_ps": relaxation_time(acf, dt),
                          "relaxation_time_fit_ps": relaxation_time(acf, dt, method="fit")}
    return out


def _analyze(trajectories: Mapping, box, bead_types, bead_masses, bead_molecules, cg_bonds, out_dir,
             observables=None, reference: str | None = None, fit_window_ps=None, max_lag_ps=None,
             collision_cutoffs_nm=(0.05, 0.1, 0.2), contact_cutoff_nm=1.0, rdf_n_bins: int = 100, rdf_r_max_nm=None,
             histogram_bins: int = 50, plot: bool = True, provenance: Mapping | None = None,
             progress: bool = False) -> dict:
    """Compute observables for each labelled trajectory, compare with a reference, write JSON + PNGs.

    Args:
        trajectories: {label: (positions (F, n, 3) nm UNWRAPPED, time_ps (F,) evenly spaced)}, e.g. labels
            "learned", "reference MD", "short MD". Positions (R, F, n, 3) are R independent replicas sharing
            the time axis (e.g. learned runs from one start with other seeds): every observable is pooled over
            them (:mod:`.replicas`: frames pooled for the RDF, R_g^2 distribution, R(s) and contact map,
            particles pooled for the MSD and R_g^2 ACF, collision counts averaged per frame).
        box: None, (3,)/(3, 3) nm shared by all, or {label: box ((3,), (3, 3) or (F, 3, 3))}.
        bead_types: (n,) labels; bead_masses: (n,) amu; bead_molecules: (n,) int; cg_bonds: (m, 2) int or None.
        out_dir: directory (created) receiving analysis.json and *.png.
        observables: subset of OBSERVABLES; None -> all that apply (the RDF is skipped when no box is given;
            requesting "rdf" explicitly without a box raises).
        reference: label compared against in "metrics" (default "reference MD" if present, else none).
        fit_window_ps: (t0, t1) ps MSD fit window for all trajectories; None -> (0.2, 1.0) x max lag per trajectory.
        max_lag_ps: MSD / ACF maximum lag, ps; None -> half of each trajectory.
        collision_cutoffs_nm: collision radii, nm; contact_cutoff_nm: contact-map distance, nm.
        rdf_n_bins, rdf_r_max_nm: RDF binning (default r_max: half the smallest box height).
        histogram_bins: bins of the R_g^2 distribution; plot: write PNG figures.
        provenance: optional dict stored as "provenance" in the result and JSON (e.g. where each frame
            interval came from, see :func:`openmm_mlcg.analysis.analyze_files`).
        progress: show a tqdm bar over the trajectories.

    Returns:
        dict {"observables": {name: {label: result}}, "metrics": {label: {...}}, "figures": [...], "units": {...},
        "replicas": {label: R}},
        also written to out_dir/analysis.json (NaN -> null). Rg2/ACF/R(s)/contact map use molecules with >= 2 beads;
        R(s) and the contact map use the largest molecule, ordered along its CG bonds when they form a path.

    Raises:
        ValueError: unknown observable, inconsistent shapes, NaN, too few frames for the MSD fit window,
            periodic observables (rdf) without a box.
    """
    explicit = observables is not None
    obs = tuple(OBSERVABLES if observables is None else [observables] if isinstance(observables, str) else observables)
    unknown = sorted(set(obs) - set(OBSERVABLES))
    if unknown:
        raise ValueError(f"observables: expected a subset of {OBSERVABLES}, got unknown {unknown}")
    if not isinstance(trajectories, Mapping) or not trajectories:
        raise ValueError("trajectories: expected a non-empty dict label -> (positions, time_ps), "
                         f"got {type(trajectories).__name__}")
    types = np.asarray(bead_types).astype(str)
    n = types.shape[0]
    masses = masses_array(bead_masses, n, "bead_masses")
    mol = index_array(bead_molecules, n, "bead_molecules")
    bonds = bonds_array(cg_bonds, n, "cg_bonds")
    out_dir = Path(out_dir)
    previous = _owned_outputs(out_dir)
    data, reference = _labelled_inputs(trajectories, box, n, reference)

    multi = [m for m in np.unique(mol) if np.count_nonzero(mol == m) >= 2]
    sel = np.isin(mol, multi)
    largest = max(multi, key=lambda m: np.count_nonzero(mol == m)) if multi else None
    chain, ordered = _chain_order(np.nonzero(mol == largest)[0], bonds) if largest is not None else (None, False)
    res: dict = {k: {} for k in obs}
    figs = []
    bar = tqdm(data.items(), total=len(data), desc="analysis", unit="trajectory", disable=not progress,
               dynamic_ncols=True)
    for label, (xr, t, b) in bar:
        bar.set_postfix_str(str(label))
        dt = float(t[1] - t[0])
        n_rep, n_frames = xr.shape[:2]
        if multi and ("rg2" in obs or "rg2_acf" in obs):
            for name, value in _rg2_observables(xr, types, masses, mol, sel, obs, histogram_bins, max_lag_ps,
                                                dt).items():
                res[name][label] = value
        if chain is not None and "internal_distance" in obs:   # frame averages: the R F frames pooled
            s, r = mean_internal_distance(frames_view(xr, b)[0], chain, kind="mean")
            res["internal_distance"][label] = {"s": s, "R_nm": r, "kind": "mean |r_i - r_{i+s}|",
                                               "chain_ordered_by_bonds": ordered}
        if chain is not None and "contact_map" in obs:
            xf, bf = frames_view(xr, b)
            res["contact_map"][label] = {"map": contact_map(xf, contact_cutoff_nm, bf, chain),
                                         "cutoff_nm": to_float(contact_cutoff_nm, unit.nanometer, "contact_cutoff_nm")}
        if "msd" in obs:
            xd = np.stack([remove_centre_of_mass_drift(xi, masses) for xi in xr]) if b is not None else xr  # COM frame
            res["msd"][label] = _diffusion(*particles_view(xd, types, masses, mol), t, fit_window_ps, max_lag_ps)
        if "rdf" in obs and (b is not None or explicit):
            if b is None:
                raise ValueError(f"box[{label!r}]: expected periodic box vectors for the RDF, got None")
            res["rdf"][label] = rdf_by_type(*frames_view(xr, b), types, r_max_nm=rdf_r_max_nm, n_bins=rdf_n_bins)
        if "collisions" in obs:
            res["collisions"][label] = {
                f"{float(rc):g}": {"time_ps": t, "count": np.mean([count_collisions(xi, rc, b, bonds) for xi in xr], 0)}
                for rc in collision_cutoffs_nm}
    metrics = _compare(res, reference) if reference is not None else {}
    if plot:
        figs = plot_observables(res, out_dir, reference, types, mol, metrics)
    result = {"observables": res, "metrics": metrics, "reference": reference, "figures": [str(f) for f in figs],
              "replicas": {label: int(v[0].shape[0]) for label, v in data.items()},
              "provenance": dict(provenance or {}),
              "units": {"length": "nm", "time": "ps", "rg2": "nm^2", "msd": "nm^2", "D": "nm^2/ps and cm^2/s"}}
    _write_outputs(result, out_dir, previous)
    return result


#: files ``analyze`` writes (figures named by observable); others in out_dir are never touched
OWNED_OUTPUTS = ("rg2_distribution.png", "rg2_acf.png", "internal_distance.png", "contact_map.png", "msd.png",
                 "rdf.png", "collisions.png", "contact_maps.npz")


def _owned_outputs(out_dir: Path) -> set:
    """Names of files in ``out_dir`` written by an earlier analysis (its JSON's figures, or the known names)."""
    owned = {n for n in OWNED_OUTPUTS if (out_dir / n).is_file()}
    try:
        old = json.loads((out_dir / "analysis.json").read_text())
        owned |= {Path(f).name for f in old.get("figures", []) if (out_dir / Path(f).name).is_file()}
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    return owned


def _diffusion(x, types, masses, mol, t, fit_window_ps, max_lag_ps) -> dict:
    """MSD + fitted and single-interval diffusivity per bead type and per molecule species (centre of mass)."""
    groups = {f"type:{ty}": (x[:, types == ty]) for ty in sorted(set(types.tolist()))}
    com, ids = centre_of_mass_positions(x, masses, mol)
    for label, members in _species(types, mol).items():
        groups[label] = com[:, np.isin(ids, members)]
    out = {}
    for name, xs in groups.items():
        lag, msd = mean_squared_displacement(xs, t, max_lag_ps)
        window = fit_window_ps if fit_window_ps is not None else (0.2 * lag[-1], lag[-1])
        fit = fit_diffusivity(lag, msd, window)
        d1 = single_interval_diffusivity(xs, t).mean()
        out[name] = {"lag_ps": lag, "msd_nm2": msd.mean(1), "n_particles": xs.shape[1], **fit,
                     "D_single_interval_nm2_per_ps": d1, "D_single_interval_cm2_per_s": d1 * 1e-2}
    return out


def _compare(res: dict, ref: str) -> dict:
    """Metrics of every non-reference label against ``ref`` (paper Table 2 style)."""
    out = {}
    for name, per in res.items():
        if ref not in per:
            continue
        r = per[ref]
        for label, p in per.items():
            if label == ref:
                continue
            m = out.setdefault(label, {})
            if name == "rg2":
                m["rg2_emd_nm2"] = earth_movers_distance(p["samples_nm2"], r["samples_nm2"])
                m["rg2_mean_abs_error_nm2"] = mean_absolute_error(r["mean_per_molecule_nm2"],
                                                                  p["mean_per_molecule_nm2"])
            elif name == "rg2_acf":
                m["relaxation_time_ps"] = {"predicted": p["relaxation_time_ps"], "reference": r["relaxation_time_ps"]}
            elif name == "internal_distance":
                m["internal_distance_mae_nm"] = mean_absolute_error(r["R_nm"], p["R_nm"])
            elif name == "contact_map":
                m["contact_map_mae"] = mean_absolute_error(r["map"], p["map"])
            elif name == "msd":
                m["diffusivity_cm2_per_s"] = {
                    g: {"predicted": p[g]["D_cm2_per_s"], "reference": v["D_cm2_per_s"],
                        "relative_error": (p[g]["D_cm2_per_s"] - v["D_cm2_per_s"]) / v["D_cm2_per_s"]
                        if v["D_cm2_per_s"] != 0 else float("nan")} for g, v in r.items() if g in p}
            elif name == "rdf":
                m["rdf_mae"] = {k: mean_absolute_error(v["g"], p[k]["g"]) for k, v in r.items()
                                if k in p and p[k]["g"].shape == v["g"].shape}
            elif name == "collisions":
                m["mean_collisions"] = {c: {"predicted": float(np.mean(p[c]["count"])),
                                            "reference": float(np.mean(v["count"]))} for c, v in r.items() if c in p}
    return out


def load_analysis(path) -> dict:
    """An analysis.json written by :func:`analyze`, its numeric lists as float arrays (null -> NaN), ready for
    :func:`plot_observables`. ``path``: the file or its directory.

    Raises:
        FileNotFoundError: no analysis.json there. ValueError: not JSON.
    """
    path = Path(path)
    path = path / "analysis.json" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"path: {path} does not exist (run analyze first)")
    try:
        doc = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"path: {path} is not JSON: {exc}") from None
    doc["observables"] = _arrays(doc.get("observables", {}))
    return doc


def _arrays(obj):
    """JSON data with every list of numbers (or null) as a float array."""
    if isinstance(obj, dict):
        return {k: _arrays(v) for k, v in obj.items()}
    if isinstance(obj, list):
        if all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in obj):
            return np.asarray([np.nan if v is None else v for v in obj], dtype=float)
        return [_arrays(v) for v in obj]
    return obj
