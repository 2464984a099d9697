"""Bad and edge inputs across the layers (issue 11): every case asserts the exception type and that the message
names the argument or the file. Classes: 1 outputs destroyed, 2 concurrent writers, 3 physically impossible
input, 4 silent config mistakes, 5 errors naming no file, 6 CLI hygiene, 7 leftovers and stale state."""
import json
import os
import threading
import time
import warnings
import zipfile

import numpy as np
import pytest
import torch

from conftest import linear_chain_graph
from openmm_mlcg.util import sanity
from openmm_mlcg.app.cli import main
from openmm_mlcg.data import CGTrajectory
from openmm_mlcg.bundle.export import load_bundle, save_bundle
from openmm_mlcg.util.io_utils import atomic_write, clean_stale_tmp, write_npz
from openmm_mlcg.util.locks import LOCK_NAME, OutputLockedError, output_lock
from openmm_mlcg.cg.mapping import CGMapping
from openmm_mlcg.io.readers import read_json, read_npz
from openmm_mlcg.cg.topology import FineGraph

torch.set_num_threads(1)
K = 2


def _modules():
    from openmm_mlcg.nn.dynamics_gnn import DynamicsGNN
    from openmm_mlcg.nn.embedding import EmbeddingGNN
    from openmm_mlcg.nn.score import ScoreGNN

    torch.manual_seed(0)
    return (EmbeddingGNN(n_atom_types=1, hidden=8, layers=1), DynamicsGNN(embedding_dim=8, history=K, hidden=8, layers=1),
            ScoreGNN(latent_dim=8, hidden=8, layers=1))


META = dict(model_time_step_ps=1.0, history=K, cutoff_nm=0.5, velocity_std=0.01, acceleration_std=0.002,
            atom_type_vocabulary=["C"], sigmas_nm=[0.01, 0.001], langevin_steps_per_level=1,
            langevin_step_size_nm2=1e-7)


@pytest.fixture(scope="module")
def mapping():
    return CGMapping.from_graph(linear_chain_graph(12), 3)


@pytest.fixture(scope="module")
def files(tmp_path_factory, mapping):
    """Valid files of each kind, to corrupt copies of."""
    d = tmp_path_factory.mktemp("valid")
    mapping.save(d / "mapping.npz")
    mapping.graph.save(d / "graph.npz")
    x = np.cumsum(np.random.default_rng(0).normal(0, 0.01, (6, mapping.n_beads, 3)), 0) + np.arange(mapping.n_beads)[:, None] * 0.3
    CGTrajectory(x, None, np.arange(6) * 1.0, 1.0, mapping.hash).save(d / "cg.npz")
    from openmm_mlcg.openmm.state import write_state_file
    write_state_file(d / "state.npz", mlcg_format=1, history=np.zeros((K, 4, 3)))
    emb, dyn, score = _modules()
    save_bundle(d / "model.mlcg", emb, dyn, score, META, mapping=mapping)
    return d


# ------------------------------------------------------------------------------------------- class 5: loaders
def _load_mapping(p):
    return CGMapping.load(p)


def _load_cg(p):
    return CGTrajectory.load(p)


def _load_graph(p):
    return FineGraph.load(p)


def _load_bundle(p):
    return load_bundle(p)


def _load_state(p):
    from openmm_mlcg.openmm.state import read_state_file
    return read_state_file(p)


LOADERS = {"mapping.npz": _load_mapping, "cg.npz": _load_cg, "graph.npz": _load_graph, "model.mlcg": _load_bundle,
           "state.npz": _load_state}


def _corrupt(kind, src, dst):
    data = src.read_bytes()
    if kind == "empty":
        dst.write_bytes(b"")
    elif kind == "truncated":
        dst.write_bytes(data[: len(data) // 2])
    elif kind == "text":
        dst.write_text("this is a plain text file\nnot an archive\n")
    elif kind == "binary":
        dst.write_bytes(bytes(range(256)) * 4)
    elif kind == "npy":
        with open(dst, "wb") as fh:
            np.save(fh, np.zeros(3))
    elif kind == "tail_cut":
        dst.write_bytes(data[:-30])
    return dst


@pytest.mark.parametrize("kind", ["empty", "truncated", "text", "binary", "npy", "tail_cut"])
@pytest.mark.parametrize("name", sorted(LOADERS))
def test_corrupt_file_names_the_file(files, tmp_path, name, kind):
    bad = _corrupt(kind, files / name, tmp_path / f"bad_{kind}_{name}")
    with pytest.raises(ValueError, match=f"bad_{kind}_{name}"):
        LOADERS[name](bad)


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_directory_instead_of_file(tmp_path, name):
    d = tmp_path / f"dir_{name}"
    d.mkdir()
    with pytest.raises(IsADirectoryError, match=f"dir_{name}"):
        LOADERS[name](d)


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_missing_file(tmp_path, name):
    with pytest.raises(FileNotFoundError, match=f"missing_{name}"):
        LOADERS[name](tmp_path / f"missing_{name}")


def test_npz_with_missing_entries_names_them(tmp_path):
    p = tmp_path / "partial.npz"
    with open(p, "wb") as fh:
        write_npz(fh, {"atom_to_bead": np.zeros(3)})
    with pytest.raises(ValueError, match=r"partial\.npz.*missing entries.*bead_masses"):
        CGMapping.load(p)
    with pytest.raises(ValueError, match="partial.npz.*missing entries"):
        read_npz(p, "X", required=("foo",))


def _rewrite_bundle(src, dst, metadata_bytes):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for n in zin.namelist():
            zout.writestr(n, metadata_bytes if n == "metadata.json" else zin.read(n))
    return dst


@pytest.mark.parametrize("payload", [b"{not json", b"[1, 2]", b"\xff\xfe\x00"])
def test_bundle_with_broken_metadata_json(files, tmp_path, payload):
    bad = _rewrite_bundle(files / "model.mlcg", tmp_path / "broken_meta.mlcg", payload)
    with pytest.raises(ValueError, match=r"broken_meta\.mlcg.*metadata\.json"):
        load_bundle(bad)


def test_bundle_with_corrupt_module(files, tmp_path):
    dst = tmp_path / "bad_module.mlcg"
    with zipfile.ZipFile(files / "model.mlcg") as zin, zipfile.ZipFile(dst, "w") as zout:
        for n in zin.namelist():
            zout.writestr(n, b"garbage" if n == "dynamics.pt" else zin.read(n))
    with pytest.raises(ValueError, match=r"bad_module\.mlcg.*dynamics\.pt"):
        load_bundle(dst)


@pytest.mark.parametrize("text, match", [("", "empty"), ("{", "line 1"), ("[1]", "found list")])
def test_broken_metadata_json(tmp_path, text, match):
    p = tmp_path / "metadata.json"
    p.write_text(text)
    with pytest.raises(ValueError, match=rf"metadata\.json.*{match}|{match}.*metadata\.json"):
        read_json(p, "run metadata")


def test_broken_run_metadata_in_analysis_interval(tmp_path):
    from openmm_mlcg.io.frame_interval import recorded_frame_intervals

    (tmp_path / "metadata.json").write_text("{broken")
    (tmp_path / "trajectory.xyz").write_text("")
    with pytest.raises(ValueError, match="metadata.json"):
        recorded_frame_intervals(tmp_path / "trajectory.xyz")


def test_broken_run_metadata_in_read_run_metadata(tmp_path):
    from openmm_mlcg.data.runs import read_run_metadata

    (tmp_path / "metadata.json").write_text('{"a": 1,}')
    with pytest.raises(ValueError, match=r"run_dir: .*metadata\.json.*line 1"):
        read_run_metadata(tmp_path)


def test_text_file_as_topology(tmp_path):
    p = tmp_path / "notes.pdb"
    p.write_text("just some notes\nnothing structural\n")
    with pytest.raises(ValueError, match=r"notes\.pdb.*(no atoms|found a text file)"):
        FineGraph.from_file(p)


def test_unknown_topology_format(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello\n")
    with pytest.raises(ValueError, match=r"notes\.txt"):
        FineGraph.from_file(p)


def _pdb_and_dcd(tmp_path, liquid, xyz=None, n_frames=None):
    import mdtraj
    from openmm import app

    top = tmp_path / "liquid.pdb"
    with open(top, "w") as fh:
        app.PDBFile.writeFile(liquid["topology"], liquid["xyz"][0] * 10.0, fh)
    xyz = liquid["xyz_wrapped"] if xyz is None else xyz
    xyz = xyz[:n_frames] if n_frames is not None else xyz
    traj = mdtraj.Trajectory(xyz, mdtraj.Topology.from_openmm(liquid["topology"]))
    traj.unitcell_vectors = np.repeat(np.asarray(liquid["box"])[None], len(xyz), 0)
    dcd = tmp_path / "liquid.dcd"
    traj.save_dcd(str(dcd))
    return top, dcd


@pytest.fixture(scope="module")
def liquid_mapping(liquid):
    return CGMapping.from_graph(FineGraph.from_openmm(liquid["topology"]), 3)


def test_zero_frame_dcd(liquid, liquid_mapping, tmp_path):
    from openmm_mlcg.data import coarse_grain_trajectory
    from openmm_mlcg.systems.md import truncate_dcd

    top, dcd = _pdb_and_dcd(tmp_path, liquid)
    truncate_dcd(dcd, 0)
    with pytest.raises(ValueError, match=r"trajectory_files: .*liquid\.dcd holds no frames"):
        coarse_grain_trajectory(dcd, top, liquid_mapping, frame_interval_ps=0.005)


def test_analyze_zero_frame_dcd(liquid, tmp_path):
    from openmm_mlcg.analysis.files import load_cg_positions
    from openmm_mlcg.systems.md import truncate_dcd

    top, dcd = _pdb_and_dcd(tmp_path, liquid)
    truncate_dcd(dcd, 0)
    with pytest.raises(ValueError, match=r"trajectory: .*liquid\.dcd holds no frames"):
        load_cg_positions(dcd, top)


def test_analyze_topology_not_matching_trajectory(liquid, tmp_path):
    from openmm_mlcg.analysis.files import load_cg_positions

    _, dcd = _pdb_and_dcd(tmp_path, liquid)
    other = tmp_path / "other.pdb"
    other.write_text("ATOM      1  C   MOL A   1       0.000   0.000   0.000  1.00  0.00           C\nEND\n")
    with pytest.raises(ValueError, match=r"liquid\.dcd.*other\.pdb"):
        load_cg_positions(dcd, other)


def test_analyze_text_topology(liquid, tmp_path):
    from openmm_mlcg.analysis.files import load_cg_positions

    _, dcd = _pdb_and_dcd(tmp_path, liquid)
    txt = tmp_path / "top.txt"
    txt.write_text("not a topology\n")
    with pytest.raises(ValueError, match=r"topology: .*top\.txt"):
        load_cg_positions(dcd, txt)


# ------------------------------------------------------------------------------------------- class 3: physics
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("call", ["resolve", "bundle", "integrator"])
def test_cuda_without_cuda(files, call):
    if call == "resolve":
        fn = lambda: sanity.resolve_device("cuda")  # noqa: E731
    elif call == "bundle":
        fn = lambda: load_bundle(files / "model.mlcg", device="cuda")  # noqa: E731
    else:
        from openmm_mlcg.openmm import LearnedIntegrator
        fn = lambda: LearnedIntegrator(files / "model.mlcg", device="cuda")  # noqa: E731
    with pytest.raises(ValueError, match=r"device: 'cuda' requested but CUDA is not available"):
        fn()


def test_bad_device_string():
    with pytest.raises(ValueError, match="device: expected"):
        sanity.resolve_device("gpu0")


def test_training_device_cuda_without_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match="training.device"):
        sanity.resolve_device("cuda:0", "training.device")


def _walk(n_beads, n_frames, step_nm, spacing=0.3, seed=0):
    rng = np.random.default_rng(seed)
    x0 = np.arange(n_beads)[:, None] * np.array([spacing, 0, 0])
    return x0[None] + np.cumsum(rng.normal(0, step_nm, (n_frames, n_beads, 3)), 0)


def test_history_far_apart_refused():
    frames = _walk(4, 3, 0.01)
    frames[1:] += 1.55  # the first step jumps 1.55 nm: frames 50 model steps apart
    with pytest.raises(ValueError, match=r"history: step 1 .*velocity_std 0\.03.*<= 20 x"):
        sanity.check_history_displacements(frames, 0.03)


def test_history_suspicious_warns():
    frames = _walk(4, 3, 0.0)
    frames[2, 0, 0] += 0.24  # 8 x velocity_std
    with pytest.warns(UserWarning, match="history: step 2"):
        z = sanity.check_history_displacements(frames, 0.03)
    assert 6 < z < 20


def test_history_typical_passes():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sanity.check_history_displacements(_walk(10, 5, 0.03), 0.03) < 6


def test_history_checked_by_integrator(files, mapping):
    from openmm_mlcg.openmm import LearnedIntegrator

    frames = _walk(mapping.n_beads, K + 1, 0.001)
    frames[-1] += 1.0
    with pytest.raises(ValueError, match="history: step 2 .*velocity_std"):
        LearnedIntegrator(files / "model.mlcg", history=frames, device="cpu")


@pytest.mark.parametrize("trained, periodic, match", [(True, False, "trained on periodic data"),
                                                       (False, True, "trained on non-periodic data")])
def test_periodicity_enforced(trained, periodic, match):
    with pytest.raises(ValueError, match=f"system: the bundle was {match}"):
        sanity.check_periodicity({"periodic": trained}, periodic)


def test_periodicity_unknown_in_old_bundles_is_accepted():
    sanity.check_periodicity({}, True)
    sanity.check_periodicity({"periodic": None}, False)


def test_periodic_bundle_refused_in_non_periodic_system(files, tmp_path, mapping):
    import openmm
    from openmm import app
    from openmm_mlcg.openmm import LearnedIntegrator, create_cg_system

    emb, dyn, score = _modules()
    path = save_bundle(tmp_path / "periodic.mlcg", emb, dyn, score, dict(META, periodic=True), mapping=mapping)
    frames = _walk(mapping.n_beads, K + 1, 0.005)
    top, system = create_cg_system(mapping, None)
    integ = LearnedIntegrator(path, history=frames, device="cpu")
    sim = app.Simulation(top, system, integ, openmm.Platform.getPlatformByName("Reference"))
    integ.attach(sim)
    sim.context.setPositions(frames[-1])
    with pytest.raises(ValueError, match="system: the bundle was trained on periodic data"):
        sim.step(1)


def test_cg_positions_in_angstrom_refused(mapping):
    x = _walk(mapping.n_beads, 1, 0.0)[0] * 10.0  # 3 nm CG bonds instead of 0.3
    with pytest.raises(ValueError, match=r"history: bonded particles .* nm apart.*Angstrom"):
        sanity.check_against_training({"max_cg_bond_nm": 0.35}, x, None, mapping.cg_bonds, mapping.n_beads, "history")


def test_box_in_angstrom_refused(mapping):
    x = _walk(mapping.n_beads, 1, 0.0)[0]
    with pytest.raises(ValueError, match=r"box: bead density .*outside.*Angstrom"):
        sanity.check_against_training({"bead_density_per_nm3": [10.0, 12.0]}, x, np.eye(3) * 30.0,
                                      mapping.cg_bonds, 300, "positions")


def test_all_atom_positions_in_angstrom_refused(liquid, liquid_mapping):
    import mdtraj
    from openmm_mlcg.data import map_trajectory

    t = mdtraj.Trajectory(liquid["xyz"][:3] * 10.0, mdtraj.Topology.from_openmm(liquid["topology"]))
    with pytest.raises(ValueError, match=r"trajectory: bonded particles .*nm apart.*Angstrom"):
        map_trajectory(t, liquid_mapping, 0.005)


def test_dcd_with_atoms_in_another_order(liquid, liquid_mapping, tmp_path):
    from openmm_mlcg.data import coarse_grain_trajectory

    perm = np.random.default_rng(0).permutation(liquid["xyz"].shape[1])
    top, dcd = _pdb_and_dcd(tmp_path, liquid, xyz=liquid["xyz_wrapped"][:, perm])
    with pytest.raises(ValueError, match=r"trajectory_files \(liquid\.dcd\): bonded particles .*another order"):
        coarse_grain_trajectory(dcd, top, liquid_mapping, frame_interval_ps=0.005)


def test_reduced_unit_beads_are_not_checked_against_chemical_bonds():
    graph = FineGraph.from_arrays(["B1", "B2"], [1.0, 1.0], [(0, 1)])
    assert len(sanity.chemical_bonds(graph.atom_types, graph.bonds)) == 0


def test_training_physics_records_periodicity(mapping):
    x = _walk(mapping.n_beads, 4, 0.01)
    t = CGTrajectory(x, np.eye(3) * 5.0, np.arange(4.0), 1.0, mapping.hash)
    phys = sanity.training_physics([t], [mapping])
    assert phys["periodic"] is True and phys["max_cg_bond_nm"] > 0.2
    assert phys["bead_density_per_nm3"][0] == pytest.approx(mapping.n_beads / 125.0)


# ------------------------------------------------------------------------------------------- class 4: YAML
YAML_CASES = {
    "dup_key": ("training:\n  n_steps: 5\n  n_steps: 50\n", r"line 3: duplicate key 'n_steps'"),
    "dup_section": ("training:\n  n_steps: 5\nmodel: {}\ntraining:\n  seed: 1\n", r"line 4: duplicate key 'training'"),
    "dup_nested": ("data:\n  systems:\n    - dir: a\n      dir: b\n", r"line 4: duplicate key 'dir'"),
    "syntax": ("training:\n  n_steps: [1, 2\n", r"invalid YAML"),
    "not_mapping": ("- a\n- b\n", r"should hold a mapping"),
    "tab": ("training:\n\tn_steps: 5\n", r"line 2"),
}


@pytest.mark.parametrize("case", sorted(YAML_CASES))
def test_yaml_config_mistakes(tmp_path, case):
    from openmm_mlcg.train.config import TrainConfig

    text, match = YAML_CASES[case]
    p = tmp_path / f"{case}.yaml"
    p.write_text(text)
    with pytest.raises(ValueError, match=rf"config: .*{case}\.yaml.*") as exc:
        TrainConfig.from_yaml(p)
    assert __import__("re").search(match, str(exc.value)), str(exc.value)


def test_yaml_merge_keys_still_work(tmp_path):
    from openmm_mlcg.util.yaml_strict import load_yaml

    p = tmp_path / "merge.yaml"
    p.write_text("base: &b {a: 1}\nderived:\n  <<: *b\n  c: 2\n")
    assert load_yaml(p)["derived"] == {"a": 1, "c": 2}


def test_yaml_wrong_type_names_the_file(tmp_path):
    from openmm_mlcg.train.config import TrainConfig

    p = tmp_path / "typed.yaml"
    p.write_text("training:\n  n_steps: many\n")
    with pytest.raises((TypeError, ValueError), match=r"typed\.yaml"):
        TrainConfig.from_yaml(p)


# ------------------------------------------------------------------------------------------- class 6: CLI
def _cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def test_cli_missing_topology(capsys, tmp_path):
    rc, err = _cli(capsys, "coarse-grain", tmp_path / "nothere.pdb", "--out", tmp_path / "m.npz")
    assert rc == 2 and "nothere.pdb" in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_debug_shows_traceback(capsys, tmp_path):
    rc, err = _cli(capsys, "--debug", "coarse-grain", tmp_path / "nothere.pdb")
    assert rc == 2 and "Traceback" in err and "nothere.pdb" in err
    rc, err = _cli(capsys, "coarse-grain", tmp_path / "nothere.pdb", "--debug")
    assert rc == 2 and "Traceback" in err


@pytest.fixture()
def pdb(liquid, tmp_path):
    return _pdb_and_dcd(tmp_path, liquid)


def test_cli_out_is_a_directory(capsys, pdb, tmp_path):
    (tmp_path / "outdir").mkdir()
    rc, err = _cli(capsys, "coarse-grain", pdb[0], "--out", tmp_path / "outdir")
    assert rc == 2 and "--out" in err and "outdir" in err and "directory" in err


def test_cli_out_parent_is_a_file(capsys, pdb, tmp_path):
    (tmp_path / "afile").write_text("x")
    rc, err = _cli(capsys, "coarse-grain", pdb[0], "--out", tmp_path / "afile" / "m.npz")
    assert rc == 2 and "--out" in err and "afile" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_cli_out_not_writable(capsys, pdb, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        rc, err = _cli(capsys, "coarse-grain", pdb[0], "--out", ro / "m.npz")
    finally:
        ro.chmod(0o700)
    assert rc == 2 and "permission denied" in err and "ro" in err


def test_cli_missing_trajectory_checked_before_work(capsys, pdb, tmp_path):
    rc, err = _cli(capsys, "coarse-grain", pdb[0], "--out", tmp_path / "m.npz", "--trajectory", tmp_path / "typo.dcd")
    assert rc == 2 and "--trajectory" in err and "typo.dcd" in err
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("text, match", [("training: {n_steps: 1}\ntraining: {}\n", "duplicate key 'training'"),
                                         ("training: [\n", "invalid YAML"),
                                         ("training:\n  no_such_option: 1\n", "no_such_option")])
def test_cli_train_config_errors(capsys, tmp_path, text, match):
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    rc, err = _cli(capsys, "train", p)
    assert rc == 2 and match in err and "Traceback" not in err


def test_cli_train_missing_config(capsys, tmp_path):
    rc, err = _cli(capsys, "train", tmp_path / "absent.yaml")
    assert rc == 2 and "absent.yaml" in err


def test_cli_train_config_is_directory(capsys, tmp_path):
    rc, err = _cli(capsys, "train", tmp_path)
    assert rc == 2 and "directory" in err and str(tmp_path) in err


def test_cli_analyze_bad_spec(capsys, tmp_path):
    rc, err = _cli(capsys, "analyze", "no-label-here.dcd", "--out", tmp_path / "a")
    assert rc == 2 and "LABEL=TRAJ" in err and "no-label-here.dcd" in err


def test_cli_analyze_missing_trajectory(capsys, tmp_path):
    rc, err = _cli(capsys, "analyze", f"x={tmp_path / 'gone.dcd'}:{tmp_path / 'gone.pdb'}", "--out", tmp_path / "a")
    assert rc == 2 and "gone" in err


def test_cli_analyze_out_is_a_file(capsys, tmp_path, pdb):
    (tmp_path / "report").write_text("x")
    rc, err = _cli(capsys, "analyze", f"x={pdb[1]}:{pdb[0]}", "--frame-interval-ps", "1", "--out", tmp_path / "report")
    assert rc == 2 and "out_dir" in err and "report" in err


def test_cli_generate_out_is_a_file(capsys, tmp_path):
    (tmp_path / "gen").write_text("x")
    rc, err = _cli(capsys, "generate", "polymer", "--out", tmp_path / "gen")
    assert rc == 2 and "gen" in err


# ------------------------------------------------------------------------------------------- class 1: outputs
def test_coarse_grain_rerun_other_group_size_refused(capsys, pdb, tmp_path):
    out = tmp_path / "m.npz"
    assert _cli(capsys, "coarse-grain", pdb[0], "--group-size", "3", "--out", out)[0] == 0
    before = out.read_bytes()
    rc, err = _cli(capsys, "coarse-grain", pdb[0], "--group-size", "5", "--out", out)
    assert rc == 2 and "--overwrite" in err and "group_size 3" in err and out.read_bytes() == before
    assert _cli(capsys, "coarse-grain", pdb[0], "--group-size", "5", "--out", out, "--overwrite")[0] == 0
    assert CGMapping.load(out).group_size == 5


def test_coarse_grain_identical_rerun_is_noop(capsys, pdb, tmp_path):
    out = tmp_path / "m.npz"
    assert _cli(capsys, "coarse-grain", pdb[0], "--out", out)[0] == 0
    os.utime(out, (1, 1))
    assert _cli(capsys, "coarse-grain", pdb[0], "--out", out)[0] == 0
    assert out.stat().st_mtime == 1


def test_coarse_grain_failure_keeps_existing_mapping(capsys, pdb, tmp_path):
    out = tmp_path / "m.npz"
    assert _cli(capsys, "coarse-grain", pdb[0], "--group-size", "3", "--out", out)[0] == 0
    before = out.read_bytes()
    bad = tmp_path / "bad.dcd"
    bad.write_text("not a dcd")
    rc, err = _cli(capsys, "coarse-grain", pdb[0], "--group-size", "4", "--out", out, "--overwrite",
                   "--trajectory", bad, "--frame-interval-ps", "1")
    assert rc == 2 and "bad.dcd" in err and out.read_bytes() == before


def test_bundle_export_is_deterministic(tmp_path, mapping):
    from openmm_mlcg.openmm.state import bundle_fingerprint

    emb, dyn, score = _modules()
    a = save_bundle(tmp_path / "a.mlcg", emb, dyn, score, META, mapping=mapping)
    time.sleep(1.1)
    b = save_bundle(tmp_path / "b.mlcg", emb, dyn, score, META, mapping=mapping)
    assert bundle_fingerprint(load_bundle(a)) == bundle_fingerprint(load_bundle(b))
    first = a.read_bytes()
    save_bundle(a, emb, dyn, score, META, mapping=mapping)  # re-export in place: identical bytes
    assert a.read_bytes() == first


def test_analyze_removes_stale_figures(tmp_path):
    from openmm_mlcg.analysis.report import analyze

    out = tmp_path / "analysis"
    out.mkdir()
    (out / "rdf.png").write_bytes(b"old")
    (out / "mine.png").write_bytes(b"user file")
    x = _walk(4, 20, 0.05)
    analyze({"a": (x, np.arange(20.0))}, None, ["A"] * 4, [1.0] * 4, [0, 0, 1, 1], [(0, 1), (2, 3)], out,
            observables=["rg2"])
    doc = json.loads((out / "analysis.json").read_text())
    assert not (out / "rdf.png").exists() and (out / "mine.png").exists()
    assert {os.path.basename(f) for f in doc["figures"]} == {"rg2_distribution.png"}


# ------------------------------------------------------------------------------------------- class 2: writers
def _in_thread(fn):
    box = {}

    def run():
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001
            box["exc"] = exc
    t = threading.Thread(target=run)
    t.start()
    t.join()
    return box.get("exc")


def test_second_writer_gets_lock_error(tmp_path):
    with output_lock(tmp_path / "run", "generate"):
        exc = _in_thread(lambda: output_lock(tmp_path / "run", "generate").__enter__())
    assert isinstance(exc, OutputLockedError) and LOCK_NAME in str(exc) and "run" in str(exc)
    with output_lock(tmp_path / "run", "generate"):  # released afterwards
        pass


def test_lock_is_reentrant_in_one_thread(tmp_path):
    with output_lock(tmp_path, "train"):
        with output_lock(tmp_path, "train"):
            pass


def test_lock_on_a_file_path(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="out_dir: expected a directory"):
        with output_lock(tmp_path / "f"):
            pass


def test_concurrent_analyze_refused(tmp_path):
    from openmm_mlcg.analysis.report import analyze

    x = _walk(4, 10, 0.05)
    with output_lock(tmp_path / "an", "analyze"):
        exc = _in_thread(lambda: analyze({"a": (x, np.arange(10.0))}, None, ["A"] * 4, [1.0] * 4, [0, 0, 1, 1],
                                         None, tmp_path / "an", observables=["rg2"]))
    assert isinstance(exc, OutputLockedError) and "an" in str(exc)


def test_concurrent_generate_refused(tmp_path):
    from openmm_mlcg.systems import polymer as P

    with output_lock(tmp_path / "gen", "generate"):
        exc = _in_thread(lambda: P.generate(1, tmp_path / "gen", kind="class2", length=5, n_steps=200,
                                            frame_interval=0.5, equilibration_steps=100, platform="CPU",
                                            progress_bar=False, threads=1))
    assert isinstance(exc, OutputLockedError) and "gen" in str(exc)


def test_concurrent_train_refused(tmp_path, mapping):
    from openmm_mlcg.train import train_on_trajectories

    t = CGTrajectory(_walk(mapping.n_beads, 30, 0.01), None, np.arange(30.0), 1.0, mapping.hash)
    cfg = {"training": {"out_dir": str(tmp_path / "tr"), "n_steps": 1}}
    with output_lock(tmp_path / "tr", "train"):
        exc = _in_thread(lambda: train_on_trajectories([t], [mapping], cfg))
    assert isinstance(exc, OutputLockedError) and "training.out_dir" in str(exc)


def test_cli_reports_busy_output(capsys, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"training:\n  out_dir: {tmp_path / 'busy'}\n  n_steps: 1\ndata:\n  systems:\n"
                   f"    - dir: {tmp_path}\n")
    box = {}
    with output_lock(tmp_path / "busy", "train"):
        t = threading.Thread(target=lambda: box.update(rc=main(["train", str(cfg)])))
        t.start()
        t.join()
    err = capsys.readouterr().err
    assert box["rc"] == 2 and LOCK_NAME in err


def test_frame_count_mismatch_blocks_done(tmp_path):
    from openmm_mlcg.systems.md import _check_frame_counts

    csv = tmp_path / "state_data.csv"
    csv.write_text('#"Step"\n' + "".join(f"{i}\n" for i in range(5)))
    with pytest.raises(ValueError, match=r"out_dir: .*trajectory\.dcd holds 0 frames but the protocol recorded 3"):
        _check_frame_counts({"dcd": tmp_path / "trajectory.dcd", "csv": csv}, 3)
    with pytest.raises(ValueError, match=r"out_dir: .*state_data\.csv holds 5 frames but the protocol recorded 0"):
        _check_frame_counts({"dcd": tmp_path / "trajectory.dcd", "csv": csv}, 0)


# ------------------------------------------------------------------------------------------- class 7: leftovers
def test_stale_tmp_files_are_cleaned(tmp_path):
    dead = tmp_path / ".m.npz.999999999.abcdefgh.tmp"   # a pid that cannot exist
    legacy = tmp_path / ".m.npz.abcd_123.tmp"
    live = tmp_path / f".m.npz.{os.getppid()}.abcdefgh.tmp"
    other = tmp_path / ".hidden.tmp"
    for p in (dead, legacy, live, other):
        p.write_bytes(b"x" * 100)
    os.utime(legacy, (time.time() - 3600, time.time() - 3600))
    with atomic_write(tmp_path / "m.npz") as fh:
        fh.write(b"new")
    assert not dead.exists() and not legacy.exists() and live.exists() and other.exists()
    assert clean_stale_tmp(tmp_path) == []


def test_atomic_write_to_directory_refused(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        with atomic_write(tmp_path):
            pass


def test_cg_cache_keyed_on_content(liquid, liquid_mapping, tmp_path):
    from openmm_mlcg.data import coarse_grain_trajectory

    top, dcd = _pdb_and_dcd(tmp_path, liquid, n_frames=10)
    a = coarse_grain_trajectory(dcd, top, liquid_mapping, cache_dir=tmp_path / "c", frame_interval_ps=0.005)
    st = dcd.stat()
    _pdb_and_dcd(tmp_path, liquid, xyz=liquid["xyz_wrapped"][10:20])   # same size, other frames
    os.utime(dcd, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert dcd.stat().st_size == st.st_size and dcd.stat().st_mtime_ns == st.st_mtime_ns
    b = coarse_grain_trajectory(dcd, top, liquid_mapping, cache_dir=tmp_path / "c", frame_interval_ps=0.005)
    assert not np.allclose(a.positions, b.positions)


def test_write_npz_is_byte_deterministic(tmp_path):
    import io

    arrays = {"b": np.arange(3), "a": np.eye(2)}
    one, two = io.BytesIO(), io.BytesIO()
    write_npz(one, arrays)
    time.sleep(1.1)
    write_npz(two, dict(reversed(list(arrays.items()))))
    assert one.getvalue() == two.getvalue()
    with np.load(io.BytesIO(one.getvalue())) as d:
        assert np.array_equal(d["b"], np.arange(3))


def test_checkpoint_ids_of_earlier_builds_still_accepted(files):
    from openmm_mlcg.openmm import LearnedIntegrator
    from openmm_mlcg.openmm import state as st

    integ = LearnedIntegrator(files / "model.mlcg", device="cpu")
    legacy = [i for i in integ._ids if len(i) == 32 and i != integ._fingerprint[:32]]
    assert len(legacy) == 1
    for i, v in enumerate(st.encode_fingerprint(legacy[0])):
        integ.setGlobalVariableByName(f"bundle_id{i}", v)
    integ.get_history()  # accepted
    integ.setGlobalVariableByName("bundle_id0", 0.0)
    with pytest.raises(ValueError, match="bundle: the integrator state .* was written by bundle 00000000"):
        integ.get_history()
