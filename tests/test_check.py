"""``openmm-mlcg check``: the denoising-identity check of a trained bundle at its training frames."""
import dataclasses
import json

import numpy as np
import yaml
from test_pair_correction import _pair_frames, _pair_model

from openmm_mlcg.app.cli import main
from openmm_mlcg.bundle import save_model
from openmm_mlcg.priors import pair_key


def _setup(tmp_path, n_frames=20, val_fraction=0.25):
    """An ideal-gas cg_langevin bundle, m C-O pairs at 0.3 nm saved as a CG trajectory, and its config."""
    from openmm_mlcg.data import CGTrajectory

    m = 40
    model, mapping = _pair_model(m)
    frames = _pair_frames(n_frames, m, 0.3, 0.02, seed=3)
    traj = CGTrajectory(frames, None, np.arange(n_frames) * 2.0, 2.0, mapping.hash)
    traj.save(tmp_path / "cg.npz")
    mapping.save(tmp_path / "mapping.npz")
    bundle = tmp_path / "model.mlcg"
    save_model(model, bundle, mapping=mapping)
    cfg = dict(data=dict(systems=[dict(cg_trajectory=str(tmp_path / "cg.npz"), mapping=str(tmp_path / "mapping.npz"))],
                         history=2, stride=1, val_fraction=val_fraction, temperature_K=300.0),
               score=dict(sampler="cg_langevin"), training=dict(out_dir=str(tmp_path / "run")))
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(cfg))
    return model, mapping, bundle, tmp_path / "train.yaml", m


def test_check_flags_the_pair_an_ideal_gas_score_gets_wrong_on_the_training_part_only(tmp_path, capsys):
    model, mapping, bundle, config, m = _setup(tmp_path)
    out = tmp_path / "check.json"
    assert main(["check", str(bundle), str(config), "--contact-nm", "0.4", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    key = pair_key(mapping.bead_types[0], mapping.bead_types[1])
    assert f"flagged: {key}" in text and "pair_correction_types" in text
    res = json.loads(out.read_text())
    assert res["flagged"] == [key]                     # the C-O contact: an ideal gas has no pair score
    assert res["pairs"][key]["z"] > 10
    assert res["n_frames"] == 15                       # 20 frames less the validation quarter, as in the trainer
    assert 0.99 * 15 * m * 8 < res["pairs"][key]["n"] <= 15 * m * 8


def test_check_refuses_a_bundle_of_another_sampler_and_a_missing_file(tmp_path, capsys):
    model, mapping, bundle, config, _ = _setup(tmp_path, n_frames=8, val_fraction=0.0)
    assert main(["check", str(tmp_path / "none.mlcg"), str(config)]) == 2
    assert "bundle: file" in capsys.readouterr().err
    model.metadata = dataclasses.replace(model.metadata, sampler="ode")
    other = tmp_path / "ode.mlcg"
    save_model(model, other, mapping=mapping)
    assert main(["check", str(other), str(config)]) == 2
    assert "bundle: expected a trained 'cg_langevin' model, got sampler 'ode'" in capsys.readouterr().err
