"""The long-time judge of the main job: block-average D of Brownian particles with a known answer, and verdicts
that tell a right diffusivity from a wrong one (and say "within noise" when the data cannot)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from openmm_mlcg.analysis import block_diffusivity
from openmm_mlcg.experiments.spe_judge import judge_diffusivity, load_long_reference, species_tracks, verdict


def _brownian(rng, n_frames, n, d_nm2_per_ps, dt_ps=2.0):
    """(F, n, 3) nm free Brownian paths with diffusivity D (step variance 2 D dt per axis)."""
    steps = rng.normal(0.0, np.sqrt(2.0 * d_nm2_per_ps * dt_ps), size=(n_frames - 1, n, 3))
    return np.concatenate([np.zeros((1, n, 3)), np.cumsum(steps, 0)])


def test_block_diffusivity_recovers_the_known_d_with_an_honest_error():
    rng = np.random.default_rng(0)
    d_true, dt = 2e-3, 2.0
    x = _brownian(rng, 1000, 40, d_true, dt)
    t = np.arange(1000) * dt
    res = block_diffusivity(np.array_split(x, 4), t, (20.0, 100.0))
    assert res["n_segments"] == 4 and len(res["D_segments_nm2_per_ps"]) == 4
    assert abs(res["D_nm2_per_ps"] - d_true) < 4 * res["standard_error_nm2_per_ps"] + 0.02 * d_true
    assert 0.005 < res["relative_uncertainty"] < 0.2            # 40 particles x 4 blocks: a few per cent
    with pytest.raises(ValueError, match=r"segments\[0\]"):      # a block shorter than the window
        block_diffusivity(np.array_split(x, 40), t, (20.0, 100.0))


def test_verdict_passes_fails_or_says_within_noise():
    assert verdict(1.0, 0.05) == "PASS"
    assert verdict(1.2, 0.05) == "PASS"                          # ln 1.2 + 0.1 < ln 1.5
    assert verdict(3.0, 0.05) == "FAIL"
    assert verdict(0.3, 0.05) == "FAIL"                          # too slow counts as much as too fast
    assert verdict(1.45, 0.05) == "within noise"                 # at the edge: the noise decides
    assert verdict(1.0, 0.5) == "within noise"                   # any ratio is within noise of a noisy estimate
    assert verdict(float("nan"), 0.1) == "n/a" and verdict(0.0, 0.1) == "n/a"


@pytest.fixture()
def electrolyte_mapping():
    """Two Li+ ions and two 7-atom TFSI-like anions (residues LI and TFS): 2 Li beads + 2 one-bead anions."""
    from openmm_mlcg.cg.mapping import CGMapping
    from openmm_mlcg.cg.topology import FineGraph

    types, masses, bonds, res = [], [], [], []
    for _ in range(2):
        o = len(types)
        types += ["N", "S", "O", "O", "S", "O", "O"]
        masses += [14.0, 32.0, 16.0, 16.0, 32.0, 16.0, 16.0]
        bonds += [(o, o + 1), (o + 1, o + 2), (o + 1, o + 3), (o, o + 4), (o + 4, o + 5), (o + 4, o + 6)]
        res += ["TFS"] * 7
    types += ["Li", "Li"]
    masses += [6.94, 6.94]
    res += ["LI", "LI"]
    return CGMapping.from_graph(FineGraph.from_arrays(types, masses, bonds, residue_names=res), 7)


def _reference_dir(tmp_path, mapping, positions, dt, window, blocks):
    from openmm_mlcg.data import CGTrajectory

    d = tmp_path / "long"
    d.mkdir()
    t = np.arange(positions.shape[0]) * dt
    CGTrajectory(positions, np.tile(np.eye(3) * 5.0, (len(t), 1, 1)), t, dt, mapping.hash).save(d / "cg_trajectory.npz")
    (d / "recipe.json").write_text(json.dumps(dict(fit_window_ps=list(window), blocks=blocks)))
    return d


def test_judge_tells_the_right_diffusivity_from_a_wrong_one(tmp_path, electrolyte_mapping):
    """Reference: 4 blocks of Brownian beads; learned replicas with the same D pass, with 3x D fail. One bead of
    each species per frame is few: many frames make the answer clear."""
    mapping = electrolyte_mapping
    n = mapping.n_beads
    assert sorted(species_tracks(mapping, np.zeros((3, n, 3)))) == ["Li+", "TFSI-"]
    rng = np.random.default_rng(1)
    dt, window = 2.0, (10.0, 40.0)
    ref_dir = _reference_dir(tmp_path, mapping, _brownian(rng, 8000, n, 1e-3, dt), dt, window, 4)
    ref = load_long_reference(ref_dir, mapping)
    t = np.arange(2000) * dt
    same = judge_diffusivity(np.stack([_brownian(rng, 2000, n, 1e-3, dt) for _ in range(4)]), t, ref, mapping)
    fast = judge_diffusivity(np.stack([_brownian(rng, 2000, n, 3e-3, dt) for _ in range(4)]), t, ref, mapping)
    for sp in ("Li+", "TFSI-"):
        assert same[sp]["verdict"] == "PASS", same[sp]
        assert fast[sp]["verdict"] == "FAIL", fast[sp]
        assert fast[sp]["ratio"] == pytest.approx(3.0, rel=0.3)
    assert same["fit_window_ps"] == list(window)


def test_a_long_reference_of_another_system_is_refused(tmp_path, electrolyte_mapping):
    from openmm_mlcg.data import CGTrajectory

    d = tmp_path / "other"
    d.mkdir()
    n = electrolyte_mapping.n_beads
    CGTrajectory(np.zeros((4, n, 3)), None, np.arange(4.0), 1.0, "f" * 64).save(d / "cg_trajectory.npz")
    (d / "recipe.json").write_text(json.dumps(dict(fit_window_ps=[1, 2], blocks=2)))
    with pytest.raises(ValueError, match="long_reference: .* coarse-grained with mapping ffffffffffff"):
        load_long_reference(d, electrolyte_mapping)
    (d / "recipe.json").write_text(json.dumps(dict(production_ps=4)))
    with pytest.raises(ValueError, match="names no fit_window_ps"):
        load_long_reference(d, electrolyte_mapping)
    with pytest.raises(FileNotFoundError, match="recipe.json"):
        load_long_reference(tmp_path, electrolyte_mapping)


def test_loglog_slope_tells_free_from_caged_motion():
    """Free Brownian beads: slope 1; beads in a harmonic cage (an Ornstein-Uhlenbeck path, relaxation 20 ps):
    the MSD plateaus, slope far below 1 at lags beyond the relaxation time."""
    from openmm_mlcg.analysis.diffusion import loglog_slope, mean_squared_displacement

    rng = np.random.default_rng(3)
    dt, n_frames = 2.0, 3000
    t = np.arange(n_frames) * dt
    lag, msd = mean_squared_displacement(_brownian(rng, n_frames, 30, 1e-3, dt), t, max_lag_ps=200.0)
    assert loglog_slope(lag, msd, (20.0, 200.0)) == pytest.approx(1.0, abs=0.1)
    a = np.exp(-dt / 20.0)
    x = np.zeros((n_frames, 30, 3))
    for f in range(1, n_frames):
        x[f] = a * x[f - 1] + rng.normal(0.0, 0.05 * np.sqrt(1 - a * a), size=(30, 3))
    lag, msd = mean_squared_displacement(x, t, max_lag_ps=200.0)
    assert loglog_slope(lag, msd, (60.0, 200.0)) < 0.3
    assert np.isnan(loglog_slope(lag, msd, (1000.0, 2000.0)))   # no lag in the window


def _species_judgement(ratio, ratio_se, d_ref=1e-7):
    """A hand-made judge_diffusivity entry: reference and learned D (cm^2/s) with equal relative errors."""
    rel = ratio_se / np.sqrt(2.0)
    return {"reference": {"D_cm2_per_s": d_ref, "relative_uncertainty": rel, "n_segments": 4},
            "learned": {"D_cm2_per_s": d_ref * ratio, "relative_uncertainty": rel, "n_segments": 4},
            "ratio": ratio, "ratio_relative_se": ratio_se, "verdict": verdict(ratio, ratio_se)}


def _summary(judgement, learned_rdf, short_rdf, collisions):
    """The parts of a run_spe_experiment summary that format_summary and judge_targets read."""
    metrics = {"learned": {"rdf_mae": learned_rdf}, **({"short MD": {"rdf_mae": short_rdf}} if short_rdf else {})}
    return {"scale": "demo", "n_atoms": 965, "n_beads": 158, "model_time_step_ps": 2.0, "training_ps": 40.0,
            "reference_ps": 200.0, "learned_ps": 200.0, "learned_replicas": 4,
            "diffusivity_cm2_per_s": {"learned": {"Li+": 1e-6, "TFSI-": 5e-7}}, "metrics": metrics,
            "long_time_targets": judgement, "mean_collisions": collisions,
            "speed": {"learned_ns_per_hour": 90.0, "classical_ns_per_hour": 3.0, "speed_up": 30.0},
            "timings_s": {"learned_s": 1.0}}


_WINDOW = {"fit_window_ps": [100.0, 400.0], "target_factor": 1.5}
_NOT_JUDGED = "not judged ("


@pytest.mark.parametrize("summary, verdicts, rdf_mean", [
    # D 1.1x +- 5 %: PASS; 3x: FAIL; mean RDF error 0.3 > short MD's 0.15: FAIL; 0.05 pairs <= 0 + 0.1: PASS
    (_summary({**_WINDOW, "Li+": _species_judgement(1.1, 0.05), "TFSI-": _species_judgement(3.0, 0.05)},
              {"A-A": 0.2, "A-B": 0.4}, {"A-A": 0.1, "A-B": 0.2},
              {"learned": {"0.1": 9.0, "0.05": 0.05}, "reference MD": {"0.1": 0.0, "0.05": 0.0}}),
     ["PASS", "FAIL", "FAIL", "PASS"], 0.3),
    # 1.45x +- 10 %: the noise decides; 0.2x: FAIL (too slow counts too); RDF over the pairs both have (A-A, the
    # learned A-B is NaN) 0.1 <= 0.2: PASS; the smallest cut-off (0.05, not the first key) 0.5 > 0.2 + 0.1: FAIL
    (_summary({**_WINDOW, "Li+": _species_judgement(1.45, 0.1), "TFSI-": _species_judgement(0.2, 0.05)},
              {"A-A": 0.1, "A-B": None}, {"A-A": 0.2, "A-B": 5.0},
              {"learned": {"0.1": 0.0, "0.05": 0.5}, "reference MD": {"0.1": 0.0, "0.05": 0.2}}),
     ["within noise", "FAIL", "PASS", "FAIL"], 0.1),
    # no long reference (e.g. --smoke), no short MD RDF, no collision counts: nothing judged, each saying why
    (_summary(None, {"A-A": 0.1}, None, {}), [_NOT_JUDGED] * 4, None),
])
def test_targets_table_gives_the_verdict_of_each_target(summary, verdicts, rdf_mean):
    from openmm_mlcg.experiments.spe_judge import judge_targets
    from openmm_mlcg.experiments.spe_summary import format_summary

    rows = judge_targets(summary)
    assert [r["quantity"].split(" ")[0] for r in rows] == ["Li+", "TFSI-", "RDF", "close"]
    assert [r["verdict"][:len(v)] for r, v in zip(rows, verdicts)] == verdicts
    judged = summary["long_time_targets"]
    for r, sp in zip(rows[:2], ("Li+", "TFSI-")):
        if judged:   # learned D +- its replica SE
            lrn = judged[sp]["learned"]
            assert r["learned"] == lrn["D_cm2_per_s"]
            assert r["uncertainty"] == pytest.approx(lrn["D_cm2_per_s"] * lrn["relative_uncertainty"])
        else:
            assert r["learned"] is None and "long reference" in r["verdict"]
    if rdf_mean is not None:
        assert rows[2]["learned"] == pytest.approx(rdf_mean)
        assert rows[2]["uncertainty"] is None and "no uncertainty" in rows[2]["note"]
    text = format_summary(summary).splitlines()
    table = text[next(i for i, t in enumerate(text) if t.startswith("targets (")) + 2:]   # after the header row
    printed = [t for t in table if not t.startswith("      ")]                             # notes are indented
    assert len(printed) == 4 and all(t.endswith(r["verdict"]) for t, r in zip(printed, rows))
    if judged:
        assert f"{rows[0]['learned']:.3g} +- " in printed[0] and "no uncertainty" in printed[2]


def test_bead_type_names_read_the_residues(electrolyte_mapping):
    """Whole-molecule types are their species; fragments are "<species> <formula>", the polymer named."""
    from openmm_mlcg.cg.mapping import CGMapping
    from openmm_mlcg.cg.topology import FineGraph
    from openmm_mlcg.experiments.spe_judge import bead_type_names

    assert bead_type_names(electrolyte_mapping) == {"TFS": "TFSI-", "Li": "Li+"}
    seq = ["C", "C", "O"] * 4 + ["C", "C"]                  # one 14-atom ether chain: two 7-atom beads
    graph = FineGraph.from_arrays(seq + ["Li"], [12.0] * 14 + [6.94], [(i, i + 1) for i in range(13)],
                                  residue_names=["POL"] * 14 + ["LI"])
    mapping = CGMapping.from_graph(graph, 7)
    names = bead_type_names(mapping, "PEO")
    chain_types = {t for t in mapping.bead_types if t != "Li"}
    assert names["Li"] == "Li+" and chain_types
    for t in chain_types:
        assert names[t] == f"PEO {t.rsplit('_', 1)[0]}" and "_" in t
    assert bead_type_names(mapping)[next(iter(chain_types))].startswith("polymer ")
