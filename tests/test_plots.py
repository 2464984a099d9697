"""Figures stay readable for many bead types: capped panels, natural order, fit lines; full data in the JSON."""
import json

import numpy as np
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
    from openmm_mlcg.analysis.plots import plot_headline, plot_training_log

    p = plot_headline({"learned": {"Li+": 2e-6, "TFSI-": 7e-7}, "reference MD": {"Li+": 7e-7, "TFSI-": 6e-7}},
                      {"learned": 0.5}, tmp_path / "h.png")
    assert Image.open(p).size == (900, 380)
    log = tmp_path / "log.csv"
    log.write_text("step,loss,nll,score_loss,val_nll,lr,samples_per_s\n1,3,2,1,,1e-3,5\n2,2,1.5,0.5,1.4,1e-3,5\n")
    assert Image.open(plot_training_log(log, tmp_path / "t.png")).size == (600, 400)


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
