"""Bad inputs of the trainer and of ``openmm-mlcg check``: refused before any work with messages that name the YAML
key, nothing left behind in a new output directory, fits far from their data refused before export, a bundle
checked against another system's data refused, and an empty check that does not read as a pass."""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_train import _chain_system, _config

from openmm_mlcg.app.cli import main
from openmm_mlcg.data import CGTrajectory
from openmm_mlcg.train import (
    FitQualityError,
    check_against_data,
    describe_bead_types,
    train,
    train_on_trajectories,
)
from openmm_mlcg.train.fits import quality

torch.set_num_threads(1)

CG_LANGEVIN = dict(sampler="cg_langevin", sigma_max_nm=None, sigma_min_nm=None,
                   cg_langevin=dict(steps=3, calibration_starts=1, calibration_lag=2))
FEW_STEPS = dict(n_steps=2, eval_every=2, checkpoint_every=2)


def _score(**over) -> dict:
    """The tiny cg_langevin score section with ``over`` merged one level deep."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in CG_LANGEVIN.items()}
    for key, value in over.items():
        out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return out


def _files(root: Path) -> dict:
    """{relative path: (content digest, mtime)} of every file below ``root``."""
    return {str(p.relative_to(root)): (hashlib.sha1(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _yaml_run(tmp_path: Path, out_dir: Path, traj=None, mapping=None, **over) -> Path:
    """A YAML config training on a saved CG trajectory + mapping (the ``cg_trajectory`` form of data.systems)."""
    if traj is None:
        traj, mapping = _chain_system(seed=4, n_frames=30)
    traj.save(tmp_path / "cg.npz")
    mapping.save(tmp_path / "mapping.npz")
    raw = _config(out_dir, **over).to_dict()
    raw["data"]["systems"] = [dict(cg_trajectory=str(tmp_path / "cg.npz"), mapping=str(tmp_path / "mapping.npz"))]
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


class _Steps:
    """A training callback counting the optimisation steps (and raising at step ``fail_at``)."""

    def __init__(self, fail_at=None):
        self.done, self.fail_at = 0, fail_at

    def __call__(self, step, row):
        self.done = step
        if step == self.fail_at:
            raise KeyboardInterrupt(f"stopped at step {step}")


# ------------------------------------------------------------------ cause A: checked before any work
def test_unknown_pair_correction_type_is_refused_before_training_with_the_types_present(tmp_path):
    traj, mapping = _chain_system(seed=4, n_frames=30)
    steps = _Steps()
    with pytest.raises(ValueError, match=r"score\.terms\.pair_correction_types: expected bead types") as err:
        train_on_trajectories([traj], [mapping], _config(tmp_path / "run", score=_score(
            terms=dict(pair_correction_types=["Xx"]))), callback=steps)
    text = str(err.value)
    assert "['Xx']" in text and "Li (2 beads of Li, residues LI)" in text and "residues ETH" in text
    assert "describe_bead_types" in text and "'types'" not in text
    assert steps.done == 0 and not (tmp_path / "run").exists()       # nothing trained, nothing created
    assert describe_bead_types([mapping]) in text
    cfg = _config(tmp_path / "run", score=_score(terms=dict(pair_correction_types=["Xx"]))).to_dict()
    with pytest.raises(ValueError, match=r"score\.terms\.pair_correction_types"):   # the same pass, by itself
        check_against_data(cfg, [traj], [mapping])


def test_yaml_and_cli_refuse_the_same_option_before_creating_the_output_directory(tmp_path, capsys):
    out = tmp_path / "new" / "run"
    config = _yaml_run(tmp_path, out, score=_score(terms=dict(pair_correction_types=["Xx"])))
    before = _files(tmp_path)
    with pytest.raises(ValueError, match=r"score\.terms\.pair_correction_types"):
        train(config)
    assert not (tmp_path / "new").exists()        # no out_dir, cache/ or lock file, nor the parent it needed
    assert main(["train", str(config)]) == 2
    assert "score.terms.pair_correction_types: expected bead types" in capsys.readouterr().err
    assert not (tmp_path / "new").exists() and _files(tmp_path) == before


def test_angle_correction_without_cg_angles_is_refused_before_training(tmp_path):
    traj, mapping = _chain_system(seed=4, n_frames=30)        # chains of two beads: one bond, no angle
    steps = _Steps()
    with pytest.raises(ValueError, match=r"score\.terms\.angle_correction_iterations: expected 0 for data without "
                                         r"CG bond angles.*got 2") as err:
        train_on_trajectories([traj], [mapping], _config(tmp_path / "run", score=_score(
            terms=dict(angle_correction_iterations=2))), callback=steps)
    assert "mappings" not in str(err.value).split(":")[0] and "data.group_size" in str(err.value)
    assert steps.done == 0 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("over, key", [
    (dict(score=_score(cg_langevin=dict(calibration_lag=50))),
     r"score\.cg_langevin\.calibration_lag: expected at most 21 model steps.*got 50"),
    (dict(data=dict(history=40)),
     r"data\.history/data\.stride: expected trajectories of at least .* = 42 frames.*got 30 frames in data\.systems\[0\]"),
    (dict(data=dict(temperature_K=None), score=_score()), r"data\.temperature_K: the 'cg_langevin' sampler needs"),
    (dict(model=dict(cutoff_nm=2.0)),
     r"model\.cutoff_nm: expected at most half the smallest box width of data\.systems\[0\] \(1\.5 nm.*got 2\.0"),
])
def test_options_against_the_data_are_refused_before_creating_anything(tmp_path, over, key):
    out = tmp_path / "run"
    config = _yaml_run(tmp_path, out, **over)
    before = _files(tmp_path)
    with pytest.raises(ValueError, match=key):
        train(config)
    assert not out.exists() and _files(tmp_path) == before


def test_relative_entropy_on_non_periodic_data_is_refused_before_training(tmp_path):
    traj, mapping = _chain_system(seed=4, n_frames=30)
    free = CGTrajectory(traj.positions, None, traj.time_ps, traj.frame_interval_ps, mapping.hash)
    cfg = _config(tmp_path / "run", model=dict(score_energy=True),
                  score=_score(relative_entropy=dict(steps=5)))
    with pytest.raises(ValueError, match=r"score\.relative_entropy\.steps: expected 0 for non-periodic data.*got 5"):
        train_on_trajectories([free], [mapping], cfg)
    assert not (tmp_path / "run").exists()


def test_a_failed_run_in_an_existing_directory_removes_only_what_it_created(tmp_path):
    out = tmp_path / "run"
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "readme.txt").write_text("keep me")
    (out / "plan.yaml").write_text("a: 1\n")
    config = _yaml_run(tmp_path, out, score=_score(terms=dict(pair_correction_types=["Xx"])))
    before = _files(tmp_path)
    with pytest.raises(ValueError, match=r"score\.terms\.pair_correction_types"):
        train(config)
    assert _files(tmp_path) == before                                  # cache/ and lock removed, the rest untouched
    assert sorted(p.name for p in out.iterdir()) == ["notes", "plan.yaml"]


def test_a_run_stopped_before_its_first_checkpoint_leaves_no_directory_one_after_it_keeps_it(tmp_path):
    traj, mapping = _chain_system(seed=4, n_frames=30)
    early = _config(tmp_path / "early", training=dict(n_steps=4, eval_every=4, checkpoint_every=4))
    with pytest.raises(KeyboardInterrupt):
        train_on_trajectories([traj], [mapping], early, callback=_Steps(fail_at=1))
    assert not (tmp_path / "early").exists()                           # no log.csv, resolved_config.yaml left
    late = _config(tmp_path / "late", training=dict(n_steps=4, eval_every=4, checkpoint_every=1))
    with pytest.raises(KeyboardInterrupt):
        train_on_trajectories([traj], [mapping], late, callback=_Steps(fail_at=2))
    assert {"checkpoint.pt", "log.csv", "resolved_config.yaml"} <= {p.name for p in (tmp_path / "late").iterdir()}


# ------------------------------------------------------------------ cause B: fits far from their data
def test_a_mass_floor_far_above_the_beads_is_refused_at_export_naming_the_fit_and_the_key(tmp_path):
    traj, mapping = _chain_system(seed=4, n_frames=30)
    cfg = _config(tmp_path / "run", score=_score(cg_langevin=dict(mass_floor_amu=1e9)), training=FEW_STEPS)
    with pytest.raises(FitQualityError, match=r"the friction fit misses its data by [0-9.e+]+x at") as err:
        train_on_trajectories([traj], [mapping], cfg)
    text = str(err.value)
    assert "score.cg_langevin.mass_floor_amu (here 1e+09 amu" in text and "Li" in text
    assert "data " in text and "model " in text and "no bundle was exported" in text
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert "model.mlcg" not in files and "checkpoint.pt" in files      # resumable: fit options may change


def test_the_bundle_records_the_quality_of_every_fit(tmp_path):
    from openmm_mlcg.bundle.export import load_bundle

    traj, mapping = _chain_system(seed=4, n_frames=30)
    cfg = _config(tmp_path / "run", score=_score(), training=FEW_STEPS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = load_bundle(train_on_trajectories([traj], [mapping], cfg)).metadata
    q = meta["fit_quality"]["friction"]
    assert q["status"] in ("ok", "warn") and 1.0 <= q["ratio"] <= quality.REFUSE_FACTOR
    assert isinstance(q["at_bound"], bool) and set(q["values"]) == {"data", "model"}


def _liquid_record(friction=0.0010661741958893827, model=0.15669339007830269):
    """The LJ argon benchmark's friction record (benchmarks/work/liquid/full_defaults): at its lower bound."""
    return dict(friction_per_ps=friction, friction_by_type={"Ar": friction}, data_msd_by_type_nm2={"Ar": 0.1679},
                model_msd_by_type_nm2={"Ar": model}, pooled_types=[], bounds=[1e-3, 1e5])


def test_a_friction_at_its_bound_that_matches_the_data_warns_and_one_that_misses_is_refused():
    from openmm_mlcg.train.fits.calibrate import friction_quality

    q = friction_quality(_liquid_record())
    assert q["status"] == "warn" and q["at_bound"] and q["ratio"] == pytest.approx(0.1679 / 0.15669, rel=1e-3)
    with pytest.warns(UserWarning, match=r"the friction fit is at a bound of its search \(Ar at 0\.00107 /ps\); "
                                         r"it matches its data within 1\.07x"):
        quality.judge({"friction": q})
    inside = friction_quality(_liquid_record(friction=0.5))
    assert inside["status"] == "ok" and not inside["at_bound"]
    far = friction_quality(_liquid_record(model=0.1679 / 8700))
    assert far["status"] == "refused"
    with pytest.raises(FitQualityError, match=r"friction fit misses its data by 8\.7e\+03x at Ar .*data 0\.1679"):
        quality.judge({"friction": far})


def test_every_fit_grades_its_own_result_against_the_thresholds():
    from openmm_mlcg.train.fits.angle_correction import angle_correction_quality
    from openmm_mlcg.train.fits.pair_correction import pair_correction_quality
    from openmm_mlcg.train.fits.relative_entropy import relative_entropy_quality

    # angles: the SPE TFSI angle, L1 1.07 before and 0.17 after the inversion (docs/history.md, ablation 12)
    ok = angle_correction_quality(dict(deviation=[{"CF3|NO4S2|CF3": 1.07}, {"CF3|NO4S2|CF3": 0.17}]))
    assert ok["status"] == "ok" and ok["ratio"] == pytest.approx(1 / (1 - 0.085))
    assert angle_correction_quality(dict(deviation=[{"a": 1.0}, {"a": 1.0}]))["status"] == "warn"   # half shared
    assert angle_correction_quality(dict(deviation=[{"a": 1.0}, {"a": 1.95}]))["status"] == "warn"    # 40x
    assert angle_correction_quality(dict(deviation=[{"a": 1.0}, {"a": 1.995}]))["status"] == "refused"
    # pairs: the SPE benchmark's Li contacts get better; a correction that multiplies the residual is refused
    pair = {"n": 848, "difference": -34.47, "se": 3.55}
    rec = dict(identity_check=dict(before={"C2H4|Li": pair}, after={"C2H4|Li": dict(pair, difference=-17.99)}),
               held_out={"0.3": -16.1, "1.0": -17.4, "100.0": -1.1}, ridge=1.0)
    assert pair_correction_quality(rec)["status"] == "ok"
    rec["identity_check"]["after"]["C2H4|Li"]["difference"] = -500.0
    assert pair_correction_quality(rec)["status"] == "warn"                                           # 13x
    rec["identity_check"]["after"]["C2H4|Li"]["difference"] = -5000.0
    assert pair_correction_quality(rec)["status"] == "refused"
    rec["identity_check"]["after"]["C2H4|Li"]["difference"], rec["ridge"] = -17.99, 100.0
    assert pair_correction_quality(rec)["bound_keys"] == ["ridge 100 (the largest tried)"]
    # relative entropy: -0.1 kT per bead (SPE) is fine, -7 kT (chains that never equilibrate) is refused
    assert relative_entropy_quality(dict(cd_first=-0.5, cd_last=-0.1))["status"] == "ok"
    bad = relative_entropy_quality(dict(cd_first=-9.0, cd_last=-7.0))
    with pytest.raises(FitQualityError, match=r"score\.fits: the relative_entropy fit misses its data by"):
        quality.judge({"relative_entropy": bad})


# ------------------------------------------------------------------ cause C: openmm-mlcg check
def _other_system_config(tmp_path: Path) -> Path:
    """A config whose data are another system (30 C-O pairs instead of the bundle's 40)."""
    from test_pair_correction import _pair_frames, _pair_model

    _, mapping = _pair_model(30)
    frames = _pair_frames(12, 30, 0.3, 0.02, seed=5)
    CGTrajectory(frames, None, np.arange(12) * 2.0, 2.0, mapping.hash).save(tmp_path / "other.npz")
    mapping.save(tmp_path / "other_mapping.npz")
    cfg = dict(data=dict(systems=[dict(cg_trajectory=str(tmp_path / "other.npz"),
                                       mapping=str(tmp_path / "other_mapping.npz"))],
                         history=2, stride=1, val_fraction=0.0, temperature_K=300.0),
               score=dict(sampler="cg_langevin"), training=dict(out_dir=str(tmp_path / "run")))
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "other.yaml"


def test_check_refuses_the_config_of_another_system(tmp_path, capsys):
    from test_check import _setup

    from openmm_mlcg.train.check import check_bundle

    _, _, bundle, _, _ = _setup(tmp_path, n_frames=8, val_fraction=0.0)
    other = _other_system_config(tmp_path)
    before = _files(tmp_path)
    with pytest.raises(ValueError, match=r"config .*other\.yaml: data\.systems\[0\] was coarse-grained with mapping "
                                         r"\w+\.\.\., expected the mapping \w+\.\.\. that bundle .*model\.mlcg was "
                                         r"trained with"):
        check_bundle(bundle, other)
    assert main(["check", str(bundle), str(other)]) == 2
    assert "data.systems[0] was coarse-grained with mapping" in capsys.readouterr().err
    assert _files(tmp_path) == before and not (tmp_path / "run").exists()   # no cache/ for cg_trajectory data


def test_an_empty_check_says_nothing_was_checked_and_is_not_a_pass(tmp_path, capsys):
    from test_check import _setup

    _, _, bundle, config, _ = _setup(tmp_path, n_frames=8, val_fraction=0.0)
    out = tmp_path / "check.json"
    assert main(["check", str(bundle), str(config), "--contact-nm", "0.01", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "nothing was checked" in text and "not a pass" in text and "pass:" not in text
    assert yaml.safe_load(out.read_text())["status"] == "nothing_checked"
