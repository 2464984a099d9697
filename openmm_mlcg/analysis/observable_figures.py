"""The figures of :func:`openmm_mlcg.analysis.analyze`'s observables (split from :mod:`.report`): which RDF pairs
and MSD groups get a panel (the worst RDF pair of every compared label always; a molecule group and the bead-type
group of the same beads once), readable panel titles with a key to the hashed bead types, and
:func:`plot_observables`, which writes every PNG (also from a saved analysis.json)."""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from . import plots
from .metrics import worst_rdf_pairs
from .selection import MAX_PANELS, natural_key, select_msd_groups, select_rdf_pairs, split_pair

__all__ = ["msd_panel_groups", "plot_observables", "rdf_panel_pairs", "same_bead_groups"]


def plot_observables(res: dict, out_dir, reference=None, bead_types=(), bead_molecules=(), metrics=None,
                     type_names=None) -> list:
    """The PNG figures of :func:`analyze`'s observables, written to ``out_dir`` (also from a saved analysis.json,
    :func:`load_analysis`).

    Args:
        res: ``analyze(...)["observables"]``: {observable: {label: result}} (arrays or lists).
        out_dir: directory of the figures (created).  reference: the reference label (contact-map differences).
        bead_types: (n,) bead type per bead; bead_molecules: (n,) molecule index per bead (which RDF panels).
        metrics: ``analyze(...)["metrics"]``: the worst RDF pair of every compared label is always drawn.
        type_names: optional {bead type: readable name} for panel titles (a key to the types in the figure
            title); names of the form "<species> <detail>" let molecule panels be titled by species.

    Returns:
        list of written paths (figures of observables absent from ``res`` are not written).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    types, mol = np.asarray(bead_types).astype(str), np.asarray(bead_molecules, dtype=np.int64)
    figs = []
    if res.get("rg2"):
        figs.append(plots.plot_distributions({k: v["samples_nm2"] for k, v in res["rg2"].items()},
                                             out_dir / "rg2_distribution.png"))
    if res.get("rg2_acf"):
        figs.append(plots.plot_acf({k: (v["lag_ps"], v["acf"]) for k, v in res["rg2_acf"].items()},
                                   out_dir / "rg2_acf.png"))
    if res.get("internal_distance"):
        figs.append(plots.plot_internal_distance({k: (v["s"], v["R_nm"]) for k, v in res["internal_distance"].items()},
                                                 out_dir / "internal_distance.png"))
    if res.get("contact_map") and all("map" in v for v in res["contact_map"].values()):
        figs.append(plots.plot_contact_maps({k: v["map"] for k, v in res["contact_map"].items()},
                                            out_dir / "contact_map.png", reference=reference))
    if res.get("msd"):
        figs.append(_msd_figure(res["msd"], out_dir / "msd.png", type_names))
    if res.get("rdf"):
        figs.append(_rdf_figure(res["rdf"], out_dir / "rdf.png", types, mol, metrics or {}, type_names))
    per = res.get("collisions", {})
    groups = dict.fromkeys(g for v in per.values() for g in v)
    if groups:
        panels = {g: {k: (v[g]["time_ps"], v[g]["count"]) for k, v in per.items() if g in v} for g in groups}
        figs.append(plots.plot_collisions(panels, out_dir / "collisions.png"))
    return figs


def rdf_panel_pairs(pairs, bead_types, bead_molecules, include=(), max_panels: int = MAX_PANELS) -> list:
    """The RDF pairs drawn: :func:`.selection.select_rdf_pairs`, with every pair of ``include`` (those among
    ``pairs``, e.g. the worst pairs) in place of the last-ranked others; at most ``max_panels`` (unless
    ``include`` alone has more), naturally ordered."""
    include = [p for p in dict.fromkeys(include) if p in set(pairs)]
    chosen = set(include)
    for k in range(max_panels, -1, -1):
        chosen = set(select_rdf_pairs(pairs, bead_types, bead_molecules, max_panels=k)) | set(include)
        if len(chosen) <= max_panels:
            break
    return sorted(chosen, key=natural_key)


def same_bead_groups(msd: Mapping) -> dict:
    """{"type:T": "mol:T"} for the MSD groups of one-bead molecules of type T that hold every T bead (equal
    particle counts in every label): the two groups are the same beads, drawn once (as the molecule group)."""
    out = {}
    for per in msd.values():
        for g in per:
            t = g[4:]
            if g.startswith("mol:") and "," not in t and f"type:{t}" in per:
                out[f"type:{t}"] = g
    return {tg: mg for tg, mg in out.items()
            if all(per[tg]["n_particles"] == per[mg]["n_particles"] for per in msd.values() if tg in per and mg in per)}


def _name(bead_type: str, names) -> str:
    return (names or {}).get(bead_type, bead_type)


def _type_key(used, names) -> str:
    """'bead types: <name> = <type>; ...' for the types ``used`` that ``names`` renames ('' when none)."""
    key = [f"{_name(t, names)} = {t}".replace(" ", "\u00a0")  # no line break inside an entry
           for t in sorted(set(used), key=natural_key) if _name(t, names) != t]
    return "bead types: " + "; ".join(key) if key else ""


def _group_types(group: str) -> tuple:
    """(bead types named by an MSD group label, molecule size or None): "mol:A,B,C,...(14)" -> ([A, B, C], 14)."""
    body = group.split(":", 1)[1]
    m = re.fullmatch(r"(.*),\.\.\.\((\d+)\)", body)
    return (m.group(1).split(","), int(m.group(2))) if m else (body.split(","), None)


def _group_title(group: str, names, twins: dict) -> str:
    """Panel title of an MSD group: readable with ``names`` (molecules by their species), else the label."""
    types, size = _group_types(group)
    if group in twins.values():
        return f"{_name(types[0], names)} (bead = molecule)" if names else f"{group} (= type:{types[0]})"
    if not names:
        return group
    if group.startswith("type:"):
        return f"{_name(types[0], names)} beads"
    species = {_name(t, names).split(" ")[0] for t in types}
    what = (f"{species.pop()} molecules" if len(species) == 1
            else "molecules " + ", ".join(_name(t, names) for t in types))
    return what + (f" ({size} beads)" if size else "") + ", centre of mass"


def msd_panel_groups(msd: Mapping) -> list:
    """The MSD groups drawn (:func:`.selection.select_msd_groups`): each set of beads once (a bead type whose beads
    are all one-bead molecules only as the molecule group, :func:`same_bead_groups`), groups whose MSD is
    round-off in every label left out (the centre of mass of a lone molecule whose drift was removed, e.g. one
    protein, would fill a log panel with noise; it stays in analysis.json)."""
    counts = {g: v["n_particles"] for per in msd.values() for g, v in per.items()}
    moving = {g: n for g, n in counts.items()
              if any(g in v and np.nanmax(np.abs(np.asarray(v[g]["msd_nm2"], dtype=float)), initial=0) > 1e-12
                     for v in msd.values())}
    twins = same_bead_groups(msd)
    return select_msd_groups({g: n for g, n in (moving or counts).items() if g not in twins})


def _msd_figure(msd: dict, path: Path, names) -> Path:
    counts = {g: v["n_particles"] for per in msd.values() for g, v in per.items()}
    twins = same_bead_groups(msd)
    groups = msd_panel_groups(msd)
    titles = {}
    for g in groups:  # two groups with one readable title keep their labels apart
        t = _group_title(g, names, twins)
        titles[g] = f"{t} [{g}]" if t in titles.values() else t
    panels = {titles[g]: {k: (v[g]["lag_ps"], v[g]["msd_nm2"]) for k, v in msd.items() if g in v} for g in groups}
    fits = {titles[g]: {k: (*v[g]["fit_window_ps"], v[g]["slope_nm2_per_ps"], v[g]["intercept_nm2"])
                        for k, v in msd.items() if g in v} for g in groups}
    shown = len(counts) - len(twins)
    note = f"; {len(groups)} of {shown} groups (all in analysis.json)" if len(groups) < shown else ""
    key = _type_key([t for g in groups for t in _group_types(g)[0]], names)
    return plots.plot_msd(panels, path, fits=fits, title="MSD (solid), diffusivity fit over its window (dashed)"
                          + note + (f"\n{key}" if key else ""))


def _pair_title(pair: str, names, type_set: set, worst_of) -> str:
    """'A ↔ B' with readable names (the pair key without ``names``), '(worst: labels)' for a worst pair."""
    title = pair
    if names:
        a, b = split_pair(pair, type_set)
        title = f"{_name(a, names)} \u2194 {_name(b, names)}"
    return title + (f" (worst: {', '.join(worst_of)})" if worst_of else "")


def _rdf_figure(rdf: dict, path: Path, types: np.ndarray, mol: np.ndarray, metrics, names) -> Path:
    all_pairs = list(dict.fromkeys(p for v in rdf.values() for p in v))
    worst = {p: labels for p, labels in worst_rdf_pairs(metrics).items() if p in set(all_pairs)}
    pairs = rdf_panel_pairs(all_pairs, types, mol, include=worst)
    type_set = set(types.tolist())
    panels = {_pair_title(p, names, type_set, worst.get(p)): {k: (v[p]["r_nm"], v[p]["g"]) for k, v in rdf.items()
                                                              if p in v} for p in pairs}
    note = (f"{len(pairs)} of {len(all_pairs)} bead-type pairs: ion pairs, the most populated and each run's worst "
            "(all in analysis.json)") if len(pairs) < len(all_pairs) else ""
    used = [t for p in pairs for t in split_pair(p, type_set)]
    key = _type_key(used, names)
    return plots.plot_rdf(panels, path, title="\n".join(t for t in (note, key) if t))
