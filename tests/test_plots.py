"""Figures stay readable for many bead types: capped panels, natural order, fit lines; full data in the JSON."""
import itertools
import json
import os

import numpy as np
import pytest
from PIL import Image

from openmm_mlcg import analysis as A
from openmm_mlcg.analysis.selection import MAX_PANELS, natural_key, select_msd_groups, select_rdf_pairs


def test_natural_order():
    assert sorted(["POL10", "POL2", "Li", "POL1"], key=natural_key) == ["Li", "POL1", "POL2", "POL10"]


def test_rdf_pairs_capped_ions_first_then_most_populated():
    types = np.array(["Li"] * 4 + [f"P{i}" for i in range(18) for _ in range(3)])   # 19 types -> 190 pairs
    mol = np.concatenate([np.arange(4), 4 + np.tile(np.arange(3), 18)])            # Li ions, 3 chains of 18
    pairs = [f"{a}-{b}" for i, a in enumerate(sorted(set(types))) for b in sorted(set(types))[i:]]
    chosen = select_rdf_pairs(pairs, types, mol)
    assert len(chosen) == MAX_PANELS and chosen == sorted(chosen, key=natural_key)
    assert sum("Li" in p for p in chosen) == MAX_PANELS // 2
    assert "Li-Li" not in chosen                 # 6 particle pairs; each Li-Pk pair type has 4 x 3 = 12
    assert sum(p.count("-") == 1 and p.split("-")[0] != p.split("-")[1] and "Li" not in p for p in chosen) == 6
    assert all(p in pairs for p in chosen)


def test_msd_groups_capped_molecules_first():
    groups = {f"type:B{i}": 1 for i in range(479)} | {"mol:B0,B1,B2,...(479)": 1}
    chosen = select_msd_groups(groups)
    assert len(chosen) == MAX_PANELS and chosen[0].startswith("mol:")
    assert chosen[1:] == sorted(chosen[1:], key=natural_key) and chosen[1] == "type:B0"


def _gas(n_types, per_type, frames=12, seed=0):
    rng = np.random.default_rng(seed)
    n = n_types * per_type
    x = rng.uniform(0, 3, (1, n, 3)) + np.cumsum(rng.normal(0, 0.05, (frames, n, 3)), 0)
    types = [f"T{i}" for i in range(n_types) for _ in range(per_type)]
    return x, np.arange(frames) * 1.0, types, np.arange(n)


def test_analyze_figures_stay_small_for_171_pairs(tmp_path):
    x, t, types, mol = _gas(18, 3)                      # 18 types -> 171 pairs
    res = A.analyze({"reference MD": (x, t), "learned": (x[::-1].copy(), t)}, np.eye(3) * 3.0, types,
                    np.ones(len(types)), mol, None, tmp_path, observables=["msd", "rdf"], rdf_n_bins=20)
    doc = json.loads((tmp_path / "analysis.json").read_text())
    assert len(doc["observables"]["rdf"]["learned"]) == 171               # full data stays in the JSON
    for name in ("rdf.png", "msd.png"):
        w, h = Image.open(tmp_path / name).size
        assert w <= 1300 and h <= 1400, (name, w, h)
    d = res["observables"]["msd"]["learned"]["type:T0"]
    assert {"slope_nm2_per_ps", "intercept_nm2", "fit_window_ps"} <= set(d)   # what the fit lines draw


def test_headline_and_training_figures(tmp_path):
    from openmm_mlcg.analysis.plots import BarPanel, plot_headline, plot_training_log

    p = plot_headline([BarPanel("D", "D", {"learned": {"Li+": (2.0, 0.1)}, "reference MD": {"Li+": (0.7, None)}}),
                       BarPanel("RDF error", "error", {"learned": {"learned": (0.5, None)}})], tmp_path / "h.png")
    assert Image.open(p).size == (880, 440)
    log = tmp_path / "log.csv"
    log.write_text("step,loss,nll,score_loss,val_nll,lr,samples_per_s\n1,3,2,1,,1e-3,5\n2,2,1.5,0.5,1.4,1e-3,5\n")
    assert Image.open(plot_training_log(log, tmp_path / "t.png")).size == (600, 400)


def _tick_overlaps(fig) -> list:
    """(axis index, label, label) of x tick labels whose drawn boxes overlap, per axis."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    out = []
    for k, ax in enumerate(fig.axes):
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in ax.get_xticklabels() if t.get_text()]
        out += [(k, a, b) for (a, ba), (b, bb) in itertools.pairwise(boxes) if ba.x1 > bb.x0]
    return out


def test_headline_draws_linear_bars_with_error_bars_and_readable_ticks():
    """D on a linear axis from 0 (bar heights are the values: a 20x smaller reference is a short bar, not a log
    artefact), one error bar per finite SE, none where there is no uncertainty; long run names do not overlap."""
    import matplotlib.pyplot as plt
    from matplotlib.container import BarContainer, ErrorbarContainer

    from openmm_mlcg.analysis.plots import BarPanel, headline_figure

    d = BarPanel("D vs the long reference", "D", {"learned": {"Li+: FAIL": (2.6, 0.4), "TFSI-: PASS": (1.2, 0.2)},
                                                  "long reference": {"Li+: FAIL": (0.13, 0.05), "TFSI-: PASS": (1.0, None)}},
                 bands={"Li+: FAIL": (0.09, 0.2)})
    runs = ["learned", "learned, one replica", "short MD with a long name", "reference MD"]
    rdf = BarPanel("RDF error", "error", {r: {r: (0.1 + 0.01 * k, None)} for k, r in enumerate(runs)})
    fig = headline_figure([d, rdf])
    try:
        ax_d, ax_rdf = fig.axes
        for ax in (ax_d, ax_rdf):
            assert ax.get_yscale() == "linear" and ax.get_ylim()[0] == 0.0
        errorbars = [c for c in ax_d.containers if isinstance(c, ErrorbarContainer)]
        assert len(errorbars) == 3                                     # the three finite SEs
        segments = np.stack([seg for c in errorbars for seg in c.lines[2][0].get_segments()])
        assert sorted(np.ptp(segments[:, :, 1], axis=1).round(6)) == [0.1, 0.4, 0.8]   # +-1 SE each
        heights = sorted(p.get_height() for c in ax_d.containers if isinstance(c, BarContainer)
                         and c.get_label() != "target range" for p in c.patches)
        assert heights == pytest.approx([0.13, 1.0, 1.2, 2.6])       # bars are the values
        assert not [c for c in ax_rdf.containers if isinstance(c, ErrorbarContainer)]
        assert _tick_overlaps(fig) == []
        assert "learned, one\nreplica" in [t.get_text() for t in ax_rdf.get_xticklabels()]
    finally:
        plt.close(fig)


def _judged_summary():
    j = {"fit_window_ps": [100.0, 400.0], "target_factor": 1.5}
    for sp, ratio in (("Li+", 19.4), ("TFSI-", 1.1)):
        j[sp] = {"reference": {"D_cm2_per_s": 1.3e-7, "relative_uncertainty": 0.36, "n_segments": 4},
                 "learned": {"D_cm2_per_s": 1.3e-7 * ratio, "relative_uncertainty": 0.14, "n_segments": 4},
                 "ratio": ratio, "ratio_relative_se": 0.05}
    return {"scale": "demo", "reference_ps": 200.0, "long_time_targets": j,
            "diffusivity_cm2_per_s": {"learned": {"Li+": 1.7e-6, "TFSI-": 1.3e-6},
                                      "reference MD": {"Li+": 1.1e-6, "TFSI-": 4e-7}},
            "metrics": {"learned": {"rdf_mae": {"A-A": 0.1}}, "short MD": {"rdf_mae": {"A-A": 0.2}}}}


def test_headline_takes_d_uncertainties_from_the_judgement():
    """The judged D panel: learned +- its replicas' SE, reference +- its blocks' SE (same scaled unit as the bar),
    the 1.5x target range around the reference, the verdict under each species."""
    from openmm_mlcg.experiments.spe_figures import _headline_panels

    judged, window, rdf = _headline_panels(_judged_summary())
    (li, tfsi) = judged.values["learned"]
    assert li.startswith("Li+: FAIL") and tfsi.startswith("TFSI-: PASS")
    value, se = judged.values["learned"][li]
    ref, ref_se = judged.values["long reference"][li]
    assert se / value == pytest.approx(0.14) and ref_se / ref == pytest.approx(0.36)
    assert judged.bands[li] == pytest.approx((ref / 1.5, ref * 1.5))
    assert "10$^{-6}$" in judged.ylabel and value == pytest.approx(1.3e-7 * 19.4 * 1e6)
    assert all(se is None for per in window.values.values() for _, se in per.values())   # no uncertainty there
    assert rdf.values == {"learned": {"learned": (0.1, None)}, "short MD": {"short MD": (0.2, None)}}


def test_collisions_all_zero_is_one_line_of_text_and_counts_start_at_zero():
    import matplotlib.pyplot as plt

    from openmm_mlcg.analysis.plots import collisions_figure

    t = np.arange(5.0)
    zero = {c: {"learned": (t, np.zeros(5)), "reference MD": (t, np.zeros(5))} for c in ("0.05", "0.1")}
    fig = collisions_figure(zero)
    assert fig.axes == [] and [x.get_text() for x in fig.texts] == [
        "no non-bonded bead pairs closer than 0.1 nm in any run (learned, reference MD)"]
    plt.close(fig)
    some = {**zero, "0.2": {"learned": (t, np.array([0, 0, 1.0, 0, 0])), "reference MD": (t, np.zeros(5))}}
    fig = collisions_figure(some)
    try:
        (ax,) = fig.axes                                 # the all-zero cut-offs get no panel
        assert ax.get_title() == "r < 0.2 nm" and ax.get_ylim()[0] == 0.0
        assert [line.get_label() for line in ax.get_lines()] == ["learned"]   # the flat zero line is named instead
        assert any("zero in every frame: reference MD" in x.get_text() for x in ax.texts)
        assert "none closer than 0.1 nm in any run" in " ".join(fig.get_suptitle().split())
    finally:
        plt.close(fig)


def test_worst_rdf_pair_is_always_among_the_panels():
    """Li-Li has the fewest particle pairs, so the panel choice alone leaves it out; as a run's worst pair it is
    drawn anyway, in place of another, still MAX_PANELS panels."""
    from openmm_mlcg.analysis.report import rdf_panel_pairs, worst_rdf_pairs

    types = np.array(["Li"] * 2 + [f"P{i}" for i in range(18) for _ in range(3)])
    mol = np.concatenate([np.arange(2), 2 + np.tile(np.arange(3), 18)])
    names = sorted(set(types))
    pairs = [f"{a}-{b}" for i, a in enumerate(names) for b in names[i:]]
    assert "Li-Li" not in select_rdf_pairs(pairs, types, mol)
    metrics = {"learned": {"rdf_mae": {p: 0.1 for p in pairs} | {"Li-Li": 0.9, "P3-P4": None}},
               "short MD": {"rdf_mae": {p: 0.1 for p in pairs} | {"P7-P9": 0.5}}}
    worst = worst_rdf_pairs(metrics)
    assert worst == {"Li-Li": ["learned"], "P7-P9": ["short MD"]}
    chosen = rdf_panel_pairs(pairs, types, mol, include=worst)
    assert {"Li-Li", "P7-P9"} <= set(chosen) and len(chosen) == MAX_PANELS
    assert chosen == sorted(chosen, key=natural_key)


def _msd_entry(n, scale=1.0):
    return {"n_particles": n, "lag_ps": np.arange(4.0), "msd_nm2": scale * np.arange(4.0)}


def test_molecule_and_type_groups_of_the_same_beads_are_drawn_once():
    from openmm_mlcg.analysis.report import msd_panel_groups, same_bead_groups

    per = {"type:Li": _msd_entry(8), "mol:Li": _msd_entry(8), "type:P": _msd_entry(30),
           "mol:P,P,P,...(10)": _msd_entry(3), "type:Q": _msd_entry(4), "mol:Q": _msd_entry(2)}  # Q: also in chains
    msd = {"learned": per, "reference MD": per}
    assert same_bead_groups(msd) == {"type:Li": "mol:Li"}
    groups = msd_panel_groups(msd)
    assert "mol:Li" in groups and "type:Li" not in groups and {"type:Q", "mol:Q"} <= set(groups)


def test_figures_are_redrawn_from_saved_outputs(tmp_path):
    """redraw_figures reads summary_<tag>.json and analysis.json only: readable bead names in the panel titles
    with a key to the hashed types, the worst RDF pair drawn, the targets recomputed by refresh_outputs."""
    from openmm_mlcg.experiments.spe import refresh_outputs

    x, t, types, mol = _gas(3, 4, frames=8)
    types = ["Li"] * 4 + ["C2H4O_5951"] * 4 + ["CF3_9c81"] * 4
    adir = tmp_path / "analysis_refined"
    res = A.analyze({"learned": (x[::-1].copy(), t), "short MD": (x, t), "reference MD": (x, t)}, np.eye(3) * 3.0,
                    types, np.ones(12), mol, None, adir, observables=["msd", "rdf", "collisions"], rdf_n_bins=10,
                    plot=False)
    summary = {**_judged_summary(), "metrics": res["metrics"], "mean_collisions": {},
               "bead_type_key": {"Li": "Li+", "C2H4O_5951": "PEO C2H4O", "CF3_9c81": "TFSI- CF3"},
               "beads": {"types": types, "molecules": mol.tolist()}}
    (tmp_path / "summary_refined.json").write_text(json.dumps(summary))
    refreshed = refresh_outputs(tmp_path, "refined")            # targets recomputed, figures redrawn (once)
    figs = refreshed["figures"]
    assert sorted(os.path.basename(f) for f in figs) == ["collisions.png", "headline.png", "msd.png", "rdf.png"]
    assert all(os.path.getsize(f) > 0 and os.path.dirname(f) == str(adir) for f in figs)
    assert [r["verdict"] for r in refreshed["targets"]][:2] == ["FAIL", "PASS"]
    assert json.loads((tmp_path / "summary_refined.json").read_text())["targets"] == refreshed["targets"]
    titles = _rdf_titles(res["observables"]["rdf"], res["metrics"], types, mol, summary["bead_type_key"])
    assert "Li+ \u2194 Li+" in " ".join(titles) and all("5951" not in t for t in titles)


def _rdf_titles(rdf, metrics, types, mol, names) -> list:
    """Panel titles rdf.png gets (the report's own choice and naming)."""
    from openmm_mlcg.analysis import observable_figures as figures

    worst = figures.worst_rdf_pairs(metrics)
    pairs = figures.rdf_panel_pairs(list(rdf["learned"]), types, mol, include=worst)
    return [figures._pair_title(p, names, set(types), worst.get(p)) for p in pairs]


def _mcl1_pdb():
    import pathlib

    import pytest

    try:
        import openmmforcefields
    except ImportError:
        pytest.skip("openmmforcefields (MCL1 protein PDB) not installed")
    p = pathlib.Path(openmmforcefields.__file__).parent / "data/perses_jacs_systems/mcl1/MCL1_protein.pdb"
    if not p.is_file():
        pytest.skip(f"{p} not found")
    return p


def test_protein_bead_types_shared_and_figures_bounded(tmp_path):
    """A 2423-atom protein (MCL1, hydrogens, bonds from mdtraj's standard residue templates): per-residue types
    give one type per bead (347 types, 60k RDF pairs); chemistry types are shared across residues; the figures
    stay 12 panels either way and the many-pair RDF runs in seconds."""
    import time

    from openmm_mlcg.cg.mapping import CGMapping
    from openmm_mlcg.cg.topology import FineGraph

    graph = FineGraph.from_file(_mcl1_pdb())
    assert graph.n_atoms == 2423 and graph.n_bonds > graph.n_atoms and graph.n_molecules == 1
    by_res = CGMapping.from_graph(graph, 7, bead_types="residue")
    chem = CGMapping.from_graph(graph, 7)                               # default rule: transferable
    n = by_res.n_beads
    assert len(set(by_res.bead_types)) == n > 300                     # a type per bead: GLY0 ... GLY346
    assert chem.bead_types == CGMapping.from_graph(graph, 7, bead_types="chemistry").bead_types  # all fragments
    assert len(set(chem.bead_types)) < n / 3                            # identical chemistry, one type
    res = np.asarray(graph.residue_names)
    resnames_of = {}
    for b, t in enumerate(chem.bead_types):
        resnames_of.setdefault(t, set()).update(res[by_res.bead_atoms(b)].tolist())
    assert max(len(v) for v in resnames_of.values()) >= 5             # a type spans residues of several kinds
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, n, 3)).cumsum(axis=1) * 0.05 + np.cumsum(rng.normal(size=(4, 1, 3)) * 0.01, axis=0)
    t = np.arange(4.0)
    t0 = time.perf_counter()
    A.analyze({"reference": (x, t), "learned": (x[::-1].copy(), t)}, np.eye(3) * 6.0, list(by_res.bead_types),
              by_res.bead_masses, by_res.bead_molecules, by_res.cg_bonds, tmp_path, observables=["msd", "rdf"],
              rdf_n_bins=20)
    assert time.perf_counter() - t0 < 60                                # one pass over pairs, not 60k mdtraj calls
    for name in ("rdf.png", "msd.png"):
        w, h = Image.open(tmp_path / name).size
        assert w <= 1300 and h <= 1400, (name, w, h)
    A.analyze({"reference": (x, t)}, np.eye(3) * 6.0, list(chem.bead_types), chem.bead_masses, chem.bead_molecules,
              chem.cg_bonds, tmp_path / "chem", observables=["rdf"], rdf_n_bins=20)
    assert Image.open(tmp_path / "chem" / "rdf.png").size[1] <= 1400
