"""End-to-end smoke test of examples/run_polymer.py (polymer experiment, Fu et al. 2023 section 4.1)."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
METRIC_KEYS = {"rg2_r2", "rg2_mae_nm2", "rg2_emd_nm2", "relaxation_time_mae_ps", "n_chains", "n_relaxation_times"}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("polymer_smoke") / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "run_polymer.py"), "--smoke", "--quiet",
                           "--out", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


def test_summary_has_finite_metrics(smoke_run):
    out, stdout = smoke_run
    summary = json.loads((out / "summary.json").read_text())
    assert {"settings", "metrics", "per_chain", "timing", "plots"} <= set(summary)
    assert set(summary["metrics"]) == {"learned", "short MD"}
    for label, m in summary["metrics"].items():
        assert METRIC_KEYS <= set(m), label
        for key in ("rg2_mae_nm2", "rg2_emd_nm2"):
            assert m[key] is not None and math.isfinite(m[key]) and m[key] >= 0, (label, key, m[key])
        assert m["rg2_r2"] is not None and m["rg2_r2"] <= 1.0
    ref = summary["per_chain"]["reference MD"]
    s = summary["settings"]
    assert len(ref["rg2_mean"]) == s["n_test"] == 2
    # R_g^2 of a chain of >= 2 CG beads is positive and bounded by its contour length squared (nm^2)
    assert all(0 < v < (s["length"] * 3) ** 2 for v in ref["rg2_mean"])
    # the short MD is the first part of the same reference trajectory: fewer frames
    assert all(a < b for a, b in zip(summary["per_chain"]["short MD"]["n_frames"], ref["n_frames"]))
    t = summary["timing"]
    assert t["classical_md_ns_per_hour"] > 0 and t["learned_ns_per_hour"]["learned"] > 0
    for name in summary["plots"]:
        assert (out / name).stat().st_size > 1000
    assert "r2 <Rg2>" in stdout and "learned" in stdout


def test_learned_trajectory_frames(smoke_run):
    out, _ = smoke_run
    summary = json.loads((out / "summary.json").read_text())
    s = summary["settings"]
    expected = int(round(s["test_tau"] / s["test_frame_tau"]))  # MD writes frames at t = dt, ..., test_tau
    assert summary["per_chain"]["reference MD"]["n_frames"] == [expected] * s["n_test"]
    assert summary["per_chain"]["learned"]["n_frames"] == [expected] * s["n_test"]
    rollouts = sorted(out.glob("rollouts/chain*/*/rollout.npz"))
    assert len(rollouts) == s["n_test"]
    for (n_fine, n_cg), path in zip(s["beads_per_chain_fine_cg"], rollouts):
        z = np.load(path)
        assert z["positions"].shape == (expected, n_cg, 3)
        assert n_cg < n_fine
        dt = np.diff(z["time_ps"])
        assert np.allclose(dt, s["test_frame_tau"])  # one frame per model step of 5 tau = 5 ps


def test_scale_presets_live_in_one_table():
    """The experiments and bench_accuracy read one preset table; the benchmark's sizes are valid settings."""
    from openmm_mlcg.experiments import polymer, scales, spe

    assert polymer.SCALES is scales.POLYMER and spe.SCALES is scales.SPE
    for scale, bench in scales.ACCURACY_BENCH.items():
        s = polymer.polymer_settings(scale, **bench["polymer"])
        assert {k: s[k] for k in bench["polymer"]} == bench["polymer"], scale
        assert scales.preset("accuracy_bench", scale) is bench
    with pytest.raises(ValueError, match="scale: expected one of"):
        scales.preset("polymer", "huge")
    with pytest.raises(ValueError, match="experiment: expected one of"):
        scales.preset("protein", "demo")
