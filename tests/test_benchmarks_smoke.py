"""Smoke tests of the benchmark scripts (--smoke). bench_speed and bench_model run in the suite (< 15 s each on 2
idle cores); the heavier bench_accuracy, bench_liquid and bench_spe_ensemble smoke runs (0.5-2 min each) are
marked ``slow`` and run with ``pytest tests --run-slow``.

Each script runs in a subprocess (as a user would run it) writing into tmp_path; the JSON must carry the
documented keys with finite, physically sensible numbers.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _run(script, *args, cwd):
    p = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=cwd, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, f"{script} failed:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return p.stdout


def _finite_positive(x, name):
    assert isinstance(x, (int, float)) and math.isfinite(x) and x > 0, f"{name}: expected finite > 0, got {x!r}"


@pytest.mark.skipif(not (BENCH / "bench_speed.py").is_file(), reason="benchmarks/ not present")
@pytest.mark.slow
def test_bench_speed_smoke(tmp_path):
    out = _run("bench_speed.py", "--smoke", "--out", str(tmp_path), cwd=tmp_path)
    assert "ns/hour" in out
    doc = json.loads((tmp_path / "speed_cpu_smoke.json").read_text())
    res = doc["models"]["small"]
    env = res["environment"]
    for key in ("device", "date", "cpu_model", "torch_threads", "torch", "openmm", "load_average"):
        assert key in env, key
    assert res["system"]["n_beads"] < res["system"]["n_atoms"]
    assert {m["platform"] for m in res["md"]} >= {"CPU"}
    for m in res["md"]:
        _finite_positive(m["ns_per_hour"], "md ns_per_hour")
        # ns/hour is steps/s * dt * 3.6
        assert m["ns_per_hour"] == pytest.approx(m["steps_per_s"] * m["time_step_ps"] * 3.6)
    assert "no refinement" in res["learned"]
    for key, row in res["learned"].items():
        _finite_positive(row["ns_per_hour"], key)
        _finite_positive(res["ratio_to_md"][key], f"ratio {key}")
    # refinement adds Score passes: a refined model step cannot be cheaper than an unrefined one by much
    ref = [r for k, r in res["learned"].items() if r.get("refine") and not r.get("extrapolated")][0]
    assert ref["s_per_model_step"] > 0.5 * res["learned"]["no refinement"]["s_per_model_step"]
    for key in ("neighbour_list_s", "dynamics_script_s", "score_script_s"):
        _finite_positive(res["per_pass_on_system"]["timings"][key], key)
    rows = res["scaling"]["rows"]
    assert rows and all(r["n_beads"] in res["scaling"]["requested_sizes"] for r in rows)
    for r in rows:
        _finite_positive(r["peak_rss_mb"], "peak_rss_mb")
        assert r["n_edges"] > r["n_beads"]  # ~13 neighbours per bead at the SPE bead density


@pytest.mark.slow
@pytest.mark.skipif(not (BENCH / "bench_accuracy.py").is_file(), reason="benchmarks/ not present")
def test_bench_accuracy_smoke(tmp_path):
    _run("bench_accuracy.py", "--smoke", "--work-dir", str(tmp_path / "work"), "--out", str(tmp_path / "res"),
         cwd=tmp_path)
    doc = json.loads((tmp_path / "res" / "accuracy_smoke.json").read_text())
    assert doc["scale"] == "smoke" and "load_average" in doc["environment"]
    met = doc["polymer"]["metrics"]
    assert set(met) == {"short MD", "learned", "no refinement", "deterministic"}
    short = met["short MD"]
    for key in ("rg2_mae_nm2", "rg2_emd_nm2"):
        assert math.isfinite(short[key]) and short[key] >= 0, key
    assert short["rg2_r2"] is None or short["rg2_r2"] <= 1.0
    for lab in ("learned", "no refinement", "deterministic"):
        assert "error" in met[lab] or met[lab]["rg2_mae_nm2"] >= 0
    per = doc["polymer"]["per_chain"]["reference MD"]["rg2_mean"]
    assert len(per) == doc["config"]["polymer"]["n_test"] and all(v > 0 for v in per)
    assert "skipped" in doc["spe"]
    assert doc["figures"] and all(Path(f).is_file() for f in doc["figures"])


@pytest.mark.slow
def test_bench_model_small_system(tmp_path):
    _run("bench_model.py", "--beads", "60", "--box", "1.6", "--model", "small", "--repeats", "1", "--history", "3",
         "--out", str(tmp_path), cwd=tmp_path)
    res = json.loads((tmp_path / "model_cpu.json").read_text())
    assert res["environment"]["device"] == "cpu" and res["n_beads"] == 60
    # 3 message-passing layers of width 64: the Dynamics GNN has more parameters than the width-32 Embedding GNN
    assert res["params"]["dynamics"] > res["params"]["embedding"] > 0
    for key, value in res["timings"].items():
        _finite_positive(value, key)
    # one refined model step = one plain step + 200 (neighbour list + Score pass), as documented
    t = res["timings"]
    assert t["model_step_refine_200_s"] == pytest.approx(
        t["model_step_no_refine_s"] + 200 * (t["neighbour_list_s"] + t["score_script_s"]))
    tr = res["training"]
    assert tr["n_atoms_per_window"] == 7 * 60 and tr["batch_size"] == 4
    assert tr["training_samples_per_s"] == pytest.approx(4 / tr["train_step_s"])


@pytest.mark.slow
@pytest.mark.skipif(not (BENCH / "bench_liquid.py").is_file(), reason="benchmarks/ not present")
def test_bench_liquid_smoke(tmp_path):
    _run("bench_liquid.py", "--smoke", "--threads", "1", "--work-dir", str(tmp_path / "work"), "--out",
         str(tmp_path), cwd=tmp_path)
    doc = json.loads((tmp_path / "liquid_smoke.json").read_text())
    assert (tmp_path / "liquid_smoke_gr.png").stat().st_size > 10_000
    ref = doc["reference"]
    assert ref["peak_height"] > 2.0                      # MD of the LJ liquid has a first g(r) peak
    assert 0.2 < ref["nn_q001"] < 0.34                   # hard core: nearest neighbours beyond ~0.3 nm
    v = doc["variants"]
    itp, cgl = "interpolant, 10 steps", "cg langevin, 15 sub-steps (default)"
    assert set(v) >= {cgl, itp, "score ode", "no refinement", "deterministic", "Gaussian oracle", "langevin paper"}
    assert v[cgl]["cost"]["gnn_passes_per_step"] == 16              # 15 Langevin sub-steps + the start, no Dynamics
    assert v["cg langevin, 10 sub-steps"]["cost"]["gnn_passes_per_step"] == 11
    assert len(v[cgl]["rollout"]["gr_error_by_quarter"]) == 4
    assert v[itp]["cost"]["gnn_passes_per_step"] == 11              # 1 Dynamics + 10 Score passes
    assert v["score ode"]["cost"]["gnn_passes_per_step"] == 20      # 1 Dynamics + 19 Score passes
    assert v["interpolant, 5 steps"]["cost"]["gnn_passes_per_step"] == 6
    assert set(doc["bundle_metadata"]) == {"cg_langevin", "interpolant", "score"}
    assert doc["bundle_metadata"]["interpolant"]["sampler"] == "interpolant"
    fit = doc["bundle_metadata"]["cg_langevin"]["friction_calibration"]
    assert fit["friction_per_ps"] > 0 and abs(fit["model_msd_nm2"] / fit["data_msd_nm2"] - 1) < 0.3
    assert v["no refinement"]["cost"]["gnn_passes_per_step"] == 1
    assert v["deterministic"]["one_step"]["msd_nm2"] < v["no refinement"]["one_step"]["msd_nm2"]
    _finite_positive(v[cgl]["rollout"]["gr_error"], "gr_error")


@pytest.mark.skipif(not (BENCH / "bench_spe_ensemble.py").is_file(), reason="benchmarks/ not present")
@pytest.mark.slow
def test_bench_spe_ensemble_smoke(tmp_path):
    """Two independently packed smoke boxes, one model trained on the first and transferred to the second: every
    box gets its learned, short MD, reference, independent-MD and MD-continuation numbers (their orderings are
    statistics of the full benchmark, not of a smoke run: docs/benchmarks.md)."""
    _run("bench_spe_ensemble.py", "--smoke", "--work-dir", str(tmp_path / "work"), "--out", str(tmp_path), cwd=tmp_path)
    doc = json.loads((tmp_path / "spe_ensemble_smoke.json").read_text())
    assert sorted(doc["per_box"]) == ["0", "1"]
    assert doc["per_box"]["0"]["trained_on_this_box"] and not doc["per_box"]["1"]["trained_on_this_box"]
    for box in doc["per_box"].values():
        for label in ("learned", "short MD", "reference MD"):
            _finite_positive(box["diffusivity_cm2_per_s"][label]["Li+"], f"{label} Li+ D")
        _finite_positive(box["rdf_error"]["learned"]["all"], "learned RDF error")
    assert sorted(doc["independent_md"]) == ["0<-0", "0<-1", "1<-0", "1<-1"]
    rdf = doc["ensemble"]["rdf_error"]
    for label in ("independent MD", "short MD, common grid", "MD continuation"):
        _finite_positive(rdf[label]["all"]["mean"], f"{label} RDF error")
    for box in doc["per_box"].values():
        assert len(box["md_continuation"]) == 1 and len(box["other_rollouts"]) == 2
        _finite_positive(box["md_continuation"][0]["diffusivity_cm2_per_s"]["Li+"], "MD continuation Li+ D")
    assert set(doc["ensemble"]["targets"]) == {"rdf_error_not_above_short_md", "rdf_error_not_above_independent_md",
                                               "li_diffusivity_within_2x", "overlaps_within_reference_plus_0_1"}
    # a second call reuses every box and rolls out a compared bundle (here the same model) from the same starts
    bundle = doc["model"]
    _run("bench_spe_ensemble.py", "--smoke", "--work-dir", str(tmp_path / "work"), "--out", str(tmp_path),
         "--continuations", "0", "--rollout-seeds", "0", "--compare", f"same={bundle}", "--compare-seeds", "1",
         cwd=tmp_path)
    doc = json.loads((tmp_path / "spe_ensemble_smoke.json").read_text())
    for box in doc["per_box"].values():
        assert len(box["compare"]["same"]) == 1
        _finite_positive(box["compare"]["same"][0]["rdf_error"]["all"], "compared bundle's RDF error")
    paired = doc["ensemble"]["paired_minus_short_md"]
    assert sorted(paired) == ["learned", "learned, one replica", "same"]
    assert sorted(paired["same"]["all"]["per_box"]) == ["0", "1"]
    # the main job's label pools its replicas; the first replica alone is judged too, and differs
    for box in doc["per_box"].values():
        assert box["rdf_error"]["learned"]["all"] != box["rdf_error"]["learned, one replica"]["all"]
    assert math.isfinite(paired["same"]["all"]["mean"]) and paired["same"]["all"]["se"] is not None


@pytest.mark.slow
@pytest.mark.skipif(not (BENCH / "bench_long_step.py").is_file(), reason="benchmarks/ not present")
def test_bench_long_step_smoke(tmp_path):
    """Two model steps on the committed electrolyte data, tiny training: the jump-and-relax step costs one Dynamics
    pass more than the plain step and covers 5x the time; the Dynamics GNN alone is one pass."""
    _run("bench_long_step.py", "--steps-ps", "2", "10", "--part-ps", "100", "--train-steps", "4", "--replicas", "1",
         "--learned-ps", "240", "--work-dir", str(tmp_path / "work"), "--out", str(tmp_path), cwd=tmp_path)
    rows = {(r["model_step_ps"], r["route"]): r for r in json.loads((tmp_path / "long_step.json").read_text())["rows"]}
    assert set(rows) == {(2.0, "default"), (2.0, "Dynamics GNN alone"), (10.0, "jump+relax"),
                         (10.0, "Dynamics GNN alone")}
    assert rows[(2.0, "default")]["gnn_passes_per_step"] == 16
    assert rows[(10.0, "jump+relax")]["gnn_passes_per_step"] == 17 and rows[(10.0, "jump+relax")]["relax_ps"] == 2.0
    assert rows[(10.0, "Dynamics GNN alone")]["gnn_passes_per_step"] == 1
    for r in rows.values():
        assert r["finite"] and 0 < r["rdf_error"] < 2 and r["frames"] >= 10
