"""The main job, examples/run_spe.py, end to end in --smoke mode (tiny PEO/LiTFSI system, tiny model)."""
import json
import math
import subprocess
import sys
from pathlib import Path

import mdtraj
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("spe_smoke")
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "run_spe.py"), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def test_smoke_summary_is_complete_and_finite(smoke_run):
    out, stdout = smoke_run
    summary = json.loads((out / "summary_refined.json").read_text())
    assert summary["n_beads"] < summary["n_atoms"]
    # the learned run covers the judging reference (5x the training length), one model step = 2 frames
    assert summary["reference_ps"] >= 5 * summary["training_ps"] - 1e-6
    assert summary["learned_ps"] == pytest.approx(summary["reference_ps"], abs=summary["model_time_step_ps"])
    for label in ("learned", "short MD", "reference MD"):
        d = summary["diffusivity_cm2_per_s"][label]
        assert set(d) == {"Li+", "TFSI-"}
        assert all(math.isfinite(v) for v in d.values())
    assert summary["speed"]["learned_ns_per_hour"] > 0 and summary["speed"]["classical_ns_per_hour"] > 0
    side = summary["speed"]["side_by_side"]   # best practice (HMR, 4 fs) first, the reference's 2 fs beside it
    assert side["md_time_step_ps"] == pytest.approx(0.004) and "hydrogen mass 3 amu" in summary["speed"]["classical_setup"]
    assert side["baselines"]["reference protocol"]["time_step_ps"] == pytest.approx(0.002)
    assert summary["speed"]["speed_up_vs_2fs"] == pytest.approx(
        summary["speed"]["learned_ns_per_hour"] / summary["speed"]["classical_2fs_ns_per_hour"])
    assert "learned" in summary["metrics"] and "rdf_mae" in summary["metrics"]["learned"]
    # the smoke preset pools 2 learned replicas (seeds 0 and 1) and also judges the first alone
    assert summary["learned_replicas"] == 2 and (out / "learned_refined_replica1" / "learned.dcd").is_file()
    one, pooled = (summary["metrics"][k]["rdf_mae"] for k in ("learned, one replica", "learned"))
    assert set(one) == set(pooled) and any(abs(one[k] - pooled[k]) > 1e-9 for k in one)
    assert "learned, one replica" in stdout and "learned 2 x" in stdout
    assert "Li+" in stdout and "ns/h" in stdout
    # the reference-free check of the trained score at its training frames (cg_langevin, the default sampler)
    check = summary["score_check"]
    assert check["contact_nm"] == 0.30 and isinstance(check["flagged"], dict)
    assert all(abs(v["z"]) > 5 and v["n"] >= 100 for v in check["flagged"].values())
    assert "score check at the training frames" in stdout
    # the judged window starts strictly after the last training frame; the rollout's history is training frames
    train, judged = range(*summary["train_frames"]), range(*summary["judged_frames"])
    assert len(judged) > 0 and max(train) < min(judged)
    assert set(summary["rollout_start_frames"]) <= set(train) and summary["rollout_start_frames"][-1] == max(train)
    assert (Path(summary["analysis_dir"]) / "msd.png").is_file()
    assert (Path(summary["analysis_dir"]) / "rdf.png").is_file()


def test_spe_split_judges_only_frames_after_training():
    """run_spe_experiment's split, for every preset: no judged frame is a training frame."""
    from openmm_mlcg.experiments.spe import SCALES, spe_split

    for scale, s in SCALES.items():
        split = spe_split(s)
        train, judged = set(range(*split.train)), set(range(*split.judge))
        assert judged and not train & judged and max(train) < min(judged), scale
        assert len(split.start_frames) == s["history"] + 1 and set(split.start_frames.tolist()) <= train
        n_train = round(s["training_ps"] / s["frame_interval_ps"])
        # the judged window is the whole continuation: judge_factor x the training length, one model step apart
        assert split.n_steps * s["stride"] == s["judge_factor"] * n_train, scale
    with pytest.raises(ValueError, match="n_frames"):
        spe_split(SCALES["smoke"], n_frames=21)  # a run that ends with the training part leaves nothing to judge


def test_smoke_reporter_output_has_model_time_stamps(smoke_run):
    out, _ = smoke_run
    from openmm_mlcg.openmm import load_dcd

    summary = json.loads((out / "summary_refined.json").read_text())
    run = out / "learned_refined"
    traj = load_dcd(run / "learned.dcd", mdtraj.load_topology(str(run / "cg_topology.pdb")))
    dt = summary["model_time_step_ps"]
    assert traj.n_atoms == summary["n_beads"]
    assert traj.n_frames == round(summary["learned_ps"] / dt)
    assert traj.time[1] - traj.time[0] == pytest.approx(dt, rel=1e-5)


def test_rerun_reuses_reference_and_model(smoke_run):
    """Every stage is resumable: a second run finds the finished reference MD and the trained bundle."""
    out, _ = smoke_run
    kept = [out / "reference" / "trajectory.dcd", out / "train" / "model.mlcg", out / "train" / "checkpoint.pt"]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in kept}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "run_spe.py"), "--smoke", "--out", str(out),
                           "--no-refine"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary_norefine.json").read_text())
    # reused, not redone (file times and bytes; a wall-time bound would fail on a loaded machine)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in kept} == before
    assert summary["refine"] is False


def test_main_job_config_names_its_training_data(smoke_run):
    """The main job's resolved_config.yaml lists the frames it trained on, so ``openmm-mlcg check`` runs on it
    and flags the same pairs as the summary's score check (same frames, draws and seed)."""
    out, _ = smoke_run
    from openmm_mlcg.app.cli import main

    summary = json.loads((out / "summary_refined.json").read_text())
    report = out / "check.json"
    assert main(["check", str(out / "train" / "model.mlcg"), str(out / "train" / "resolved_config.yaml"),
                 "--out", str(report)]) == 0
    checked = json.loads(report.read_text())
    assert checked["n_frames"] == len(range(*summary["train_frames"]))   # all training frames (no validation)
    assert sorted(checked["flagged"]) == sorted(summary["score_check"]["flagged"])
    for pair, v in summary["score_check"]["flagged"].items():
        assert checked["pairs"][pair]["difference"] == pytest.approx(v["difference"], rel=1e-6)
    assert checked["pairs"], "no bead-type pair in contact was checked"


def test_main_job_judges_diffusivity_against_a_long_reference(smoke_run, tmp_path):
    """With a long reference of the same system (here the smoke reference run itself, one block), the learned
    runs are extended to a block's length, the usual analysis still sees the judged window only, and the summary
    and the printed table carry a verdict per species."""
    import shutil

    from openmm_mlcg.data import load_run
    from openmm_mlcg.experiments.spe import run_spe_experiment
    from openmm_mlcg.experiments.spe_summary import format_summary

    out, _ = smoke_run
    work = tmp_path / "run"
    for part in ("reference", "train"):
        shutil.copytree(out / part, work / part)
    mapping, cg = load_run(work / "reference", group_size=7, seed=0)
    ref = tmp_path / "long"
    ref.mkdir()
    cg.save(ref / "cg_trajectory.npz")
    (ref / "recipe.json").write_text(json.dumps(dict(fit_window_ps=[0.4, 1.6], blocks=1)))
    summary = run_spe_experiment(work, scale="smoke", long_reference=ref, progress=False)
    judged = summary["long_time_targets"]
    assert judged["fit_window_ps"] == [0.4, 1.6]
    for sp in ("Li+", "TFSI-"):
        assert judged[sp]["verdict"] in ("PASS", "FAIL", "within noise")
        assert judged[sp]["learned"]["n_segments"] == 2 and judged[sp]["reference"]["n_segments"] == 1
    block_steps = math.ceil((cg.time_ps[-1] - cg.time_ps[0]) / summary["model_time_step_ps"])
    run = work / "learned_refined"
    traj = mdtraj.load_dcd(str(run / "learned.dcd"), top=str(run / "cg_topology.pdb"))
    assert traj.n_frames == max(block_steps, round(summary["learned_ps"] / summary["model_time_step_ps"]))
    assert summary["learned_ps"] == pytest.approx(summary["reference_ps"], abs=summary["model_time_step_ps"])
    assert "long-time target" in format_summary(summary)
