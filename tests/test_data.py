import mdtraj
import numpy as np
import pytest
import torch

from conftest import FRAME_INTERVAL_PS, linear_chain_graph
from openmm_mlcg.model import dynamics
from openmm_mlcg.data import CGTrajectory, WindowDataset, coarse_grain_trajectory, map_trajectory
from openmm_mlcg.cg.mapping import CGMapping, centre_of_mass, minimum_image
from openmm_mlcg.cg.topology import FineGraph


@pytest.fixture(scope="module")
def files(liquid, tmp_path_factory):
    """The OpenMM liquid written as PDB (CONECT) + DCD and GRO + XTC, atoms wrapped one by one."""
    from openmm import app

    d = tmp_path_factory.mktemp("liquid")
    top = mdtraj.Topology.from_openmm(liquid["topology"])
    n = len(liquid["xyz_wrapped"])
    traj = mdtraj.Trajectory(liquid["xyz_wrapped"], top, time=np.arange(n) * FRAME_INTERVAL_PS,
                             unitcell_lengths=np.tile(np.diag(liquid["box"]), (n, 1)),
                             unitcell_angles=np.full((n, 3), 90.0))
    with open(d / "topology.pdb", "w") as fh:
        app.PDBFile.writeFile(liquid["topology"], liquid["xyz_wrapped"][0] * 10.0, fh)
    traj.save_dcd(str(d / "traj.dcd"))
    traj[0].save_gro(str(d / "conf.gro"))
    traj.save_xtc(str(d / "traj.xtc"))
    nobox = mdtraj.Trajectory(liquid["xyz_wrapped"], top)
    nobox.save_dcd(str(d / "nobox.dcd"))
    return d


def _check_against_reference(cg, mapping, liquid, atol):
    ref = centre_of_mass(liquid["xyz"], mapping.graph.masses, mapping.atom_to_bead, mapping.n_beads)
    d = cg.positions - ref
    np.testing.assert_allclose(d - d[:1], 0.0, atol=atol)  # continuous, one lattice shift per bead
    np.testing.assert_allclose(minimum_image(d, liquid["box"]), 0.0, atol=atol)


def test_readme_pdb_dcd_and_cache(files, liquid, tmp_path):
    # --- the README snippet: PDB with CONECT + DCD written by another program ---
    graph = FineGraph.from_file(files / "topology.pdb")
    mapping = CGMapping.from_graph(graph, group_size=4, seed=0)
    cg = coarse_grain_trajectory(files / "traj.dcd", files / "topology.pdb", mapping,
                                 cache_dir=tmp_path / "cache", frame_interval_ps=0.005)
    # ---
    assert cg.n_beads == mapping.n_beads == 23 and cg.n_frames == len(liquid["xyz"])
    assert cg.frame_interval_ps == 0.005 and cg.box.shape == (cg.n_frames, 3, 3)
    np.testing.assert_allclose(cg.time_ps[-1], 0.005 * (cg.n_frames - 1))
    _check_against_reference(cg, mapping, liquid, atol=2e-5)  # DCD stores float32 Angstrom
    cached = list((tmp_path / "cache").glob("*.npz"))
    assert len(cached) == 1
    again = coarse_grain_trajectory(files / "traj.dcd", files / "topology.pdb", mapping,
                                    cache_dir=tmp_path / "cache", frame_interval_ps=0.005)
    assert np.array_equal(again.positions, cg.positions) and np.array_equal(again.box, cg.box)
    # a different mapping gets a different cache file and refuses the old one
    other = CGMapping.from_graph(graph, group_size=2)
    with pytest.raises(ValueError, match="mapping"):
        CGTrajectory.load(cached[0], mapping=other)
    coarse_grain_trajectory(files / "traj.dcd", None, other, cache_dir=tmp_path / "cache",
                            frame_interval_ps=0.005)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2


def test_gro_xtc_chunks_and_time(files, liquid):
    graph = FineGraph.from_openmm(liquid["topology"])
    mapping = CGMapping.from_graph(graph, 4)
    cg = coarse_grain_trajectory([files / "traj.xtc"], files / "conf.gro", mapping, chunk=7)
    assert cg.frame_interval_ps == pytest.approx(FRAME_INTERVAL_PS, rel=1e-4)  # read from the XTC
    _check_against_reference(cg, mapping, liquid, atol=2e-3)  # XTC precision 1e-3 nm
    # several consecutive files are joined into one continuous path
    two = coarse_grain_trajectory([files / "traj.dcd", files / "traj.dcd"], liquid["topology"], mapping,
                                  frame_interval_ps=FRAME_INTERVAL_PS)
    assert two.n_frames == 2 * cg.n_frames
    step = two.positions[cg.n_frames] - two.positions[cg.n_frames - 1]
    np.testing.assert_allclose(step, minimum_image(step, liquid["box"]), atol=1e-9)  # no box jump at the seam
    np.testing.assert_allclose(two.positions[cg.n_frames:] - two.positions[:cg.n_frames],
                               np.broadcast_to(two.positions[cg.n_frames] - two.positions[0], (cg.n_frames,) +
                                               step.shape), atol=1e-9)


def test_cgtrajectory_save_load_exact(tmp_path):
    rng = np.random.default_rng(0)
    box = np.tile(np.array([[2.0, 0, 0], [0.3, 2.1, 0], [0.2, -0.4, 1.9]]), (5, 1, 1))
    t = CGTrajectory(rng.normal(size=(5, 4, 3)), box, np.arange(5) * 0.1, 0.1, "abc")
    t.save(tmp_path / "t.npz")
    u = CGTrajectory.load(tmp_path / "t.npz")
    assert np.array_equal(u.positions, t.positions) and np.array_equal(u.box, t.box)
    assert np.array_equal(u.time_ps, t.time_ps) and u.mapping_hash == "abc" and u.frame_interval_ps == 0.1
    w = u.wrapped_positions()
    assert np.all(w >= 0) and np.all(w < np.diag(box[0]))
    t2 = CGTrajectory(t.positions, None, t.time_ps, 0.1, "abc")
    t2.save(tmp_path / "t2.npz")
    assert CGTrajectory.load(tmp_path / "t2.npz").box is None
    with pytest.raises(ValueError, match="box"):
        t2.wrapped_positions()


def _dataset_inputs(liquid, n_frames=None):
    graph = FineGraph.from_openmm(liquid["topology"])
    mapping = CGMapping.from_graph(graph, 4)
    xyz = liquid["xyz_wrapped"][:n_frames]
    traj = mdtraj.Trajectory(xyz, mdtraj.Topology.from_openmm(liquid["topology"]))
    traj.unitcell_vectors = np.tile(liquid["box"], (len(xyz), 1, 1))
    return map_trajectory(traj, mapping, FRAME_INTERVAL_PS), mapping


def test_window_targets_reproduce_next_positions(liquid):
    cg, mapping = _dataset_inputs(liquid)
    k, s = 3, 2
    ds = WindowDataset([cg, cg], [mapping, mapping], history=k, stride=s)
    per = cg.n_frames - (k + 1) * s
    assert len(ds) == 2 * per
    assert ds.model_time_step_ps == pytest.approx(s * FRAME_INTERVAL_PS)
    item = ds[per + 1]
    assert item["system"] == 1
    assert item["history_velocities"].shape == (k, mapping.n_beads, 3)
    assert item["positions"].dtype == torch.float64 and item["box"].shape == (3, 3)
    t = k * s + 1
    np.testing.assert_allclose(item["positions"].numpy(), cg.positions[t], rtol=1e-6)
    np.testing.assert_allclose(item["history_velocities"][-1].numpy(), cg.positions[t] - cg.positions[t - s],
                               atol=1e-6)
    np.testing.assert_allclose(item["history_velocities"][0].numpy(),
                               cg.positions[t - (k - 1) * s] - cg.positions[t - k * s], atol=1e-6)
    for i in range(0, len(ds), 7):
        w = ds.window(*ds._index[i])
        new_x, new_v = dynamics.update(w["positions"], w["history_velocities"][-1], w["target_acceleration"])
        np.testing.assert_allclose(new_x, w["next_positions"], atol=1e-12)
        it = ds[i]
        x32, _ = dynamics.update(it["positions"], it["history_velocities"][-1], it["target_acceleration"])
        torch.testing.assert_close(x32, it["next_positions"], atol=1e-5, rtol=0)
    stats = ds.velocity_statistics()
    assert stats["velocity_std"] > 0 and stats["acceleration_std"] > 0
    every = WindowDataset([cg], [mapping], history=k, stride=s, every=5)
    assert len(every) == -(-per // 5)


def test_errors(files, liquid, tmp_path):
    graph = FineGraph.from_openmm(liquid["topology"])
    mapping = CGMapping.from_graph(graph, 4)
    dcd = files / "traj.dcd"
    wrong = CGMapping.from_graph(linear_chain_graph(graph.n_atoms - 1), 4)
    with pytest.raises(ValueError, match="trajectory_files"):  # atom-count mismatch with the file
        coarse_grain_trajectory(dcd, None, wrong, frame_interval_ps=0.005)
    with pytest.raises(ValueError, match="topology"):  # topology does not match the mapping
        coarse_grain_trajectory(dcd, liquid["topology"], wrong, frame_interval_ps=0.005)
    with pytest.raises(ValueError, match="topology"):
        coarse_grain_trajectory(dcd, linear_chain_graph(graph.n_atoms), mapping, frame_interval_ps=0.005)
    with pytest.raises(FileNotFoundError, match="trajectory_files"):
        coarse_grain_trajectory(tmp_path / "missing.dcd", None, mapping, frame_interval_ps=0.005)
    junk = tmp_path / "junk.dcd"
    junk.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match="trajectory_files"):
        coarse_grain_trajectory(junk, None, mapping, frame_interval_ps=0.005)
    with pytest.raises(ValueError, match="frame_interval_ps"):  # DCD has no reliable time
        coarse_grain_trajectory(dcd, None, mapping)
    with pytest.raises(ValueError, match="box"):  # periodic (OpenMM topology has a box) but no unit cell
        coarse_grain_trajectory(files / "nobox.dcd", liquid["topology"], mapping, frame_interval_ps=0.005)
    with pytest.raises(ValueError, match="box"):
        coarse_grain_trajectory(files / "nobox.dcd", None, mapping, frame_interval_ps=0.005, periodic=True)
    bad = mdtraj.load(str(dcd), top=mdtraj.Topology.from_openmm(liquid["topology"]))
    bad.xyz[2, 5, 1] = np.inf
    with pytest.raises(ValueError, match="trajectory"):
        map_trajectory(bad, mapping, 0.005)
    cg, _ = _dataset_inputs(liquid, n_frames=8)
    with pytest.raises(ValueError, match="history"):  # (3+1)*2+1 = 9 frames needed
        WindowDataset([cg], [mapping], history=3, stride=2)
    with pytest.raises(ValueError, match="stride"):
        WindowDataset([cg], [mapping], history=3, stride=0)
    with pytest.raises(ValueError, match="mappings"):
        WindowDataset([cg], [CGMapping.from_graph(graph, 2)], history=1, stride=1)
    nobox = CGTrajectory(cg.positions, None, cg.time_ps, cg.frame_interval_ps, cg.mapping_hash)
    with pytest.raises(ValueError, match="box"):
        WindowDataset([nobox], [mapping], history=1, stride=1, periodic=True)
    with pytest.raises(FileNotFoundError, match="path"):
        CGTrajectory.load(tmp_path / "none.npz")
    with pytest.raises(ValueError, match="positions"):
        CGTrajectory(np.full((3, 2, 3), np.nan), None, np.arange(3.0), 1.0, "x")
