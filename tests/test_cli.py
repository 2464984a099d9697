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
    assert "--n-systems: expected an integer >= 1, got 0" in capsys.readouterr().err


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


# --------------------------------------------------------------------------------------------------------------
# options: help, defaults, version, validation by option name


def _subparsers(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def test_every_option_has_help_and_version(capsys):
    from openmm_mlcg._version import __version__
    from openmm_mlcg.app.cli import DESCRIPTION, build_parser

    parser = build_parser()
    assert parser.description == DESCRIPTION and "Workflow" in DESCRIPTION
    subs = _subparsers(parser)
    assert {"generate", "coarse-grain", "train", "check", "run", "analyze"} <= set(subs)
    for name, sub in [("openmm-mlcg", parser), *subs.items()]:
        for action in sub._actions:
            assert action.help, f"{name}: {action.dest} has no help text"
        assert sub.description, f"{name}: no description"
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"openmm-mlcg {__version__}"
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    assert "(default 10;" in text and "(default: cg_run)" in text and "(default: None)" not in text


def test_generate_options_are_checked_by_name(tmp_path, capsys):
    """--production-ps and --polymer are checked before anything is built, and named as typed."""
    out = str(tmp_path / "g")
    for kind, value, expected in (("spe", "0.013", "frame interval 2 ps"), ("spe", "-5", "frame interval 2 ps"),
                                  ("polymer", "0.013", "frame interval 5 tau")):
        assert main(["generate", kind, "--production-ps", value, "--out", out]) == 2
        err = capsys.readouterr().err
        assert "--production-ps: expected a positive multiple of the" in err and expected in err, err
        assert "n_steps" not in err and value in err
    assert main(["generate", "spe", "--polymer", "PEO", "PEO:PTMO", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "--polymer: 'PEO:PTMO'" in err and "did you mean 'PEO/PTMO'" in err
    assert main(["generate", "polymer", "--polymer", "PEO", "--out", out]) == 2
    assert "--polymer: only for `generate spe`" in capsys.readouterr().err
    assert not (tmp_path / "g").exists() or not any((tmp_path / "g").iterdir())


def test_dcd_reads_are_quiet(tmp_path, capfd):
    """mdtraj's dcdplugin prints on C stdout when it opens a DCD; our readers silence it."""
    import mdtraj

    from openmm_mlcg.openmm import load_dcd

    top = mdtraj.Topology()
    res = top.add_residue("X", top.add_chain())
    for _ in range(3):
        top.add_atom("C", mdtraj.element.carbon, res)
    mdtraj.Trajectory(np.zeros((2, 3, 3), dtype=np.float32), top).save_dcd(str(tmp_path / "t.dcd"))
    capfd.readouterr()
    print("before", flush=True)
    traj = load_dcd(tmp_path / "t.dcd", top)
    print("after", flush=True)
    out = capfd.readouterr().out
    assert traj.n_frames == 2 and "dcdplugin" not in out and "before" in out and "after" in out


# --------------------------------------------------------------------------------------------------------------
# the trainer reads a run's frame interval from its DCD header, like coarse-grain and analyze


def _run_dir(liquid, d, openmm_header: bool):
    """A run folder without metadata.json: topology.pdb + trajectory.dcd (OpenMM header or mdtraj's)."""
    import mdtraj
    from openmm import app, unit

    d.mkdir()
    with open(d / "topology.pdb", "w") as fh:
        app.PDBFile.writeFile(liquid["topology"], liquid["xyz"][0] * 10.0, fh)
    if openmm_header:   # 10 steps of 0.5 fs per frame, as a DCDReporter writes it
        with open(d / "trajectory.dcd", "wb") as fh:
            dcd = app.DCDFile(fh, liquid["topology"], 0.0005 * unit.picosecond, 0, 10)
            for x in liquid["xyz_wrapped"]:
                dcd.writeModel(x * unit.nanometer, periodicBoxVectors=liquid["box"] * unit.nanometer)
    else:
        traj = mdtraj.Trajectory(liquid["xyz_wrapped"], mdtraj.Topology.from_openmm(liquid["topology"]))
        traj.unitcell_vectors = np.repeat(np.asarray(liquid["box"])[None], traj.n_frames, 0)
        traj.save_dcd(str(d / "trajectory.dcd"))
    return d


def test_trainer_sources_read_the_dcd_header(liquid, tmp_path):
    from openmm_mlcg.train.config import DataConfig, SystemSource
    from openmm_mlcg.train.sources import load_sources

    good = _run_dir(liquid, tmp_path / "openmm", openmm_header=True)
    trajs, _ = load_sources(DataConfig(systems=[SystemSource(dir=str(good))], group_size=3), tmp_path / "c1")
    assert trajs[0].frame_interval_ps == pytest.approx(liquid["frame_interval_ps"], rel=1e-5)
    bare = _run_dir(liquid, tmp_path / "mdtraj", openmm_header=False)
    with pytest.raises(ValueError, match=r"data\.systems\[0\]\.frame_interval_ps: the run .* records no time"):
        load_sources(DataConfig(systems=[SystemSource(dir=str(bare))], group_size=3), tmp_path / "c2")
    trajs, _ = load_sources(DataConfig(systems=[SystemSource(dir=str(bare), frame_interval_ps=0.005)], group_size=3),
                            tmp_path / "c3")
    assert trajs[0].frame_interval_ps == pytest.approx(0.005)


# --------------------------------------------------------------------------------------------------------------
# openmm-mlcg run: a tiny random bundle, CG start frames, checkpoints and --resume

K, DT, BOX = 3, 2.0, np.eye(3) * 3.0


@pytest.fixture(scope="module")
def tiny_run_inputs(tmp_path_factory):
    """A randomly initialised bundle (k = 3, 2-ps step) bound to a 26-bead mapping, the mapping file, a CG
    topology PDB and a CG DCD of k+1 frames one model step apart (OpenMM header: 2 ps per frame)."""
    import torch
    from openmm import app, unit

    from openmm_mlcg.bundle.export import save_bundle
    from openmm_mlcg.cg.topology import FineGraph
    from openmm_mlcg.nn.dynamics_gnn import DynamicsGNN
    from openmm_mlcg.nn.embedding import EmbeddingGNN
    from openmm_mlcg.nn.score import ScoreGNN
    from openmm_mlcg.openmm import create_cg_system

    d = tmp_path_factory.mktemp("run_inputs")
    types = ["Li"] * 20 + ["C", "O", "C", "O"] * 3
    masses = [6.94] * 20 + [12.011, 15.999, 12.011, 15.999] * 3
    bonds = [(20 + 4 * m + i, 20 + 4 * m + i + 1) for m in range(3) for i in range(3)]
    mapping = CGMapping.from_graph(FineGraph.from_arrays(types, masses, bonds,
                                                         residue_names=["LI"] * 20 + ["PEO"] * 12), 2)
    mapping.save(d / "mapping.npz")
    torch.manual_seed(0)
    meta = {"model_time_step_ps": DT, "history": K, "cutoff_nm": 0.6, "velocity_std": 0.01, "acceleration_std": 0.002,
                "atom_type_vocabulary": ["C", "Li", "O"], "sigmas_nm": [0.01, 0.001], "langevin_steps_per_level": 2,
                "langevin_step_size_nm2": 1e-7}
    save_bundle(d / "model.mlcg", EmbeddingGNN(n_atom_types=3, hidden=8, layers=1),
                DynamicsGNN(embedding_dim=8, history=K, hidden=8, layers=1), ScoreGNN(latent_dim=8, hidden=8, layers=1),
                meta, mapping=mapping)
    rng = np.random.default_rng(1)
    x0 = rng.uniform(0.0, 3.0, (mapping.n_beads, 3))
    frames = np.concatenate([x0[None], x0[None] + np.cumsum(rng.normal(0, 0.01, (K, mapping.n_beads, 3)), 0)])
    topology, _ = create_cg_system(mapping, BOX)
    with open(d / "start.pdb", "w") as fh:
        app.PDBFile.writeFile(topology, frames[-1] * unit.nanometer, fh, keepIds=True)
    with open(d / "start.dcd", "wb") as fh:
        dcd = app.DCDFile(fh, topology, DT * unit.picosecond, 0, 1)
        for x in frames:
            dcd.writeModel(x * unit.nanometer, periodicBoxVectors=BOX * unit.nanometer)
    return {k: str(d / f) for k, f in (("bundle", "model.mlcg"), ("mapping", "mapping.npz"),
                                        ("pdb", "start.pdb"), ("dcd", "start.dcd"))}


def _run(inputs, out, *extra):
    return main(["run", inputs["bundle"], "--mapping", inputs["mapping"], "--start", inputs["dcd"], "--topology",
                 inputs["pdb"], "--device", "cpu", "--dcd-interval", "2", "--csv-interval", "2", "--out", str(out),
                 *extra])


def _frames(out):
    from openmm_mlcg.openmm import load_dcd

    return load_dcd(out / "cg.dcd", str(out / "cg.pdb"))


def test_run_then_resume_gives_the_uninterrupted_run(tiny_run_inputs, tmp_path, capsys):
    """20 steps with checkpoints, then --resume to 40: the DCD has 20 frames at steps 2..40, none twice, equal to
    one uninterrupted 40-step run; a resume from an older checkpoint (a run killed after step 20 with its last
    checkpoint at step 10) cuts the DCD/CSV back first and gives the same frames again."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _run(tiny_run_inputs, straight, "--steps", "40") == 0
    assert _run(tiny_run_inputs, split, "--steps", "10", "--checkpoint-interval", "5") == 0
    older = (split / "cg.chk").read_bytes()                          # the checkpoint at step 10
    assert _run(tiny_run_inputs, split, "--steps", "20", "--resume") == 0   # intervals come from run.json
    assert _frames(split).n_frames == 10
    (split / "cg.chk").write_bytes(older)                             # "killed" at 20, last checkpoint at 10
    assert main(["run", tiny_run_inputs["bundle"], "--mapping", tiny_run_inputs["mapping"], "--device", "cpu",
                 "--time-ps", "80", "--resume", "--out", str(split)]) == 0
    out = capsys.readouterr().out
    assert "resumed at step 10 (20 ps)" in out and "now at step 40 (80 ps)" in out
    a, b = _frames(straight), _frames(split)
    assert a.n_frames == b.n_frames == 20
    np.testing.assert_allclose(b.time, np.arange(1, 21) * 2 * DT, rtol=1e-6)   # steps 2, 4, ..., 40
    np.testing.assert_allclose(b.xyz, a.xyz, atol=1e-5)
    assert np.all(np.abs(np.diff(b.xyz, axis=0)).max(axis=(1, 2)) > 0)     # no frame written twice
    rows = [ln.split(",")[0] for ln in (split / "cg.csv").read_text().splitlines()[1:]]
    assert rows == [str(s) for s in range(2, 41, 2)]
    record = json.loads((split / "run.json").read_text())
    assert record["dcd_interval"] == 2 and record["seed"] == 0 and "CG; 4 of 4 frames" in record["start"]


def test_run_from_one_cg_pdb_and_its_errors(tiny_run_inputs, tmp_path, capsys):
    from openmm_mlcg.cg.topology import FineGraph

    out = tmp_path / "pdb"
    rc = main(["run", tiny_run_inputs["bundle"], "--start", tiny_run_inputs["pdb"], "--device", "cpu",
               "--time-ps", "8", "--dcd-interval", "1", "--out", str(out)])   # mapping bound to the bundle
    assert rc == 0 and _frames(out).n_frames == 4
    assert json.loads((out / "run.json").read_text())["from_rest"] is True
    cases = [
        (["--start", tiny_run_inputs["pdb"], "--steps", "4", "--out", str(out)], "--out: "),   # a run is there
        (["--steps", "4", "--resume", "--out", str(tmp_path / "none")], "--resume: "),
        (["--start", tiny_run_inputs["pdb"], "--time-ps", "3", "--out", str(tmp_path / "t")], "--time-ps: expected"),
        (["--start", tiny_run_inputs["pdb"], "--steps", "0", "--out", str(tmp_path / "s")], "--steps: expected"),
        (["--steps", "8", "--resume", "--dcd-interval", "3", "--out", str(out)], "--dcd-interval: the run being"),
        (["--start", tiny_run_inputs["dcd"], "--steps", "4", "--out", str(tmp_path / "d")], "--topology: "),
        (["--start", tiny_run_inputs["mapping"], "--topology", tiny_run_inputs["pdb"], "--steps", "4", "--out",
          str(tmp_path / "m")], "--start: could not read"),
        (["--start", tiny_run_inputs["pdb"], "--mapping", str(tmp_path / "w.npz"), "--steps", "4", "--transfer",
          "--out", str(tmp_path / "w")], "--start: "),
        (["--start", tiny_run_inputs["pdb"], "--mapping", str(tmp_path / "w.npz"), "--steps", "4", "--out",
          str(tmp_path / "w2")], "--mapping: "),   # 26 beads, but the mapping has 1 atom and 1 bead
    ]
    CGMapping.from_graph(FineGraph.from_arrays(["Li"], [6.94], [], residue_names=["LI"]), 1).save(tmp_path / "w.npz")
    capsys.readouterr()
    for extra, expected in cases:
        assert main(["run", tiny_run_inputs["bundle"], "--device", "cpu", *extra]) == 2, extra
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err
        assert "transfer=True" not in err and "mapping=None" not in err
