"""The ``openmm-mlcg`` command line: thin wrappers that reach the library and report bad input cleanly."""
import json

import numpy as np
import pytest

from openmm_mlcg.app.cli import main
from openmm_mlcg.cg.mapping import CGMapping


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for sub in ("coarse-grain", "generate", "train", "analyze"):
        assert sub in out


def test_coarse_grain_writes_mapping_and_cache(liquid, tmp_path, capsys):
    import mdtraj
    from openmm import app

    top = tmp_path / "liquid.pdb"
    with open(top, "w") as fh:
        app.PDBFile.writeFile(liquid["topology"], liquid["xyz"][0] * 10.0, fh)
    n_frames = liquid["xyz"].shape[0]
    traj = mdtraj.Trajectory(liquid["xyz_wrapped"], mdtraj.Topology.from_openmm(liquid["topology"]))
    traj.unitcell_vectors = np.repeat(np.asarray(liquid["box"])[None], n_frames, 0)
    traj.save_dcd(str(tmp_path / "liquid.dcd"))
    rc = main(["coarse-grain", str(top), "--group-size", "3", "--out", str(tmp_path / "m.npz"), "--trajectory",
               str(tmp_path / "liquid.dcd"), "--frame-interval-ps", str(liquid["frame_interval_ps"]),
               "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    mapping = CGMapping.load(tmp_path / "m.npz")
    assert summary["n_beads"] == mapping.n_beads and summary["n_frames"] == liquid["xyz"].shape[0]
    assert mapping.n_beads < summary["n_atoms"]
    assert any((tmp_path / "cache").iterdir())


def test_bad_input_gives_exit_status_2(tmp_path, capsys):
    rc = main(["coarse-grain", str(tmp_path / "missing.pdb")])
    assert rc == 2
    assert "missing.pdb" in capsys.readouterr().err
    rc = main(["generate", "polymer", "--n-systems", "0", "--out", str(tmp_path / "p")])
    assert rc == 2
    assert "n_systems" in capsys.readouterr().err


def test_threads_option_sets_torch_threads(tmp_path):
    import torch

    from openmm_mlcg.util.threads import default_threads

    before = torch.get_num_threads()
    try:
        assert main(["--threads", "1", "coarse-grain", str(tmp_path / "missing.pdb")]) == 2
        assert torch.get_num_threads() == 1
        assert main(["--threads", "0", "coarse-grain", str(tmp_path / "missing.pdb")]) == 2   # bad value: error
        assert 1 <= default_threads() <= 4
    finally:
        torch.set_num_threads(before)
