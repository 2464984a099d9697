"""analyze() on independent replicas (positions (R, F, n, 3)): each observable is the replica average."""
import json
import math

import numpy as np
import pytest
from openmm import unit

from openmm_mlcg import analysis as A
from test_analysis import _toy_system, brownian

BOX = np.eye(3) * 3.0


def _run(tmp_path, name, traj, types, m, mol, bonds, **kw):
    return A.analyze({"learned": traj}, BOX, types, m, mol, bonds, tmp_path / name, plot=False, rdf_n_bins=20,
                     fit_window_ps=(10.0, 40.0), max_lag_ps=40.0, **kw)


def test_replicas_pool_to_the_replica_average(tmp_path):
    """Two replicas of a chain + ions system: every pooled observable equals the mean of the two separate
    analyses (equal frame counts), so no molecule, frame or pair is mixed across replicas."""
    rng = np.random.default_rng(21)
    x1, t, types, m, mol, bonds = _toy_system(rng)
    x2 = _toy_system(rng)[0]
    one = [_run(tmp_path, f"r{i}", (x, t), types, m, mol, bonds)["observables"] for i, x in enumerate((x1, x2))]
    res = _run(tmp_path, "pooled", (np.stack([x1, x2]) * unit.nanometer, t), types, m, mol, bonds)
    pooled = res["observables"]
    assert res["replicas"] == {"learned": 2}

    def mean(get):
        return 0.5 * (np.asarray(get(one[0])["learned"]) + np.asarray(get(one[1])["learned"]))

    for pair in pooled["rdf"]["learned"]:
        np.testing.assert_allclose(pooled["rdf"]["learned"][pair]["g"], mean(lambda o: {
            "learned": o["rdf"]["learned"][pair]["g"]}), rtol=1e-10, atol=1e-12)
    species = [g for g in pooled["msd"]["learned"] if g.startswith("mol:P")]
    assert species, list(pooled["msd"]["learned"])
    for group in ("type:Li", "type:X", species[0]):
        got = pooled["msd"]["learned"][group]
        # the chain's centre of mass: one molecule per replica; merging the two replicas' chains into one
        # molecule would average their displacements and shrink this MSD
        np.testing.assert_allclose(got["msd_nm2"], mean(lambda o: {"learned": o["msd"]["learned"][group]["msd_nm2"]}),
                                   rtol=1e-10, atol=1e-14)
        assert got["n_particles"] == 2 * one[0]["msd"]["learned"][group]["n_particles"]
    for rc in ("0.05", "0.1", "0.2"):
        np.testing.assert_allclose(pooled["collisions"]["learned"][rc]["count"],
                                   mean(lambda o: {"learned": o["collisions"]["learned"][rc]["count"]}))
    np.testing.assert_allclose(pooled["rg2"]["learned"]["mean_per_molecule_nm2"],
                               mean(lambda o: {"learned": o["rg2"]["learned"]["mean_per_molecule_nm2"]}), rtol=1e-10)
    np.testing.assert_allclose(pooled["internal_distance"]["learned"]["R_nm"],
                               mean(lambda o: {"learned": o["internal_distance"]["learned"]["R_nm"]}), rtol=1e-10)
    np.testing.assert_allclose(pooled["contact_map"]["learned"]["map"],
                               mean(lambda o: {"learned": o["contact_map"]["learned"]["map"]}), atol=1e-12)
    # one replica given as (1, F, n, 3) is the plain trajectory
    single = _run(tmp_path, "single", (x1[None], t), types, m, mol, bonds)["observables"]
    np.testing.assert_array_equal(single["msd"]["learned"]["type:Li"]["msd_nm2"],
                                  one[0]["msd"]["learned"]["type:Li"]["msd_nm2"])


def test_replicas_of_free_particles_give_the_known_diffusivity(tmp_path):
    """8 replicas of 25 Brownian particles (D = 0.05 nm^2/ps): the pooled MSD fit recovers D; one replica alone
    has a 4x larger variance (checked loosely: the pooled estimate is within 6 %)."""
    rng = np.random.default_rng(5)
    D, dt = 0.05, 1.0
    reps = np.stack([brownian(rng, 25, 200, dt, D)[0] for _ in range(8)])
    t = np.arange(200) * dt
    n = reps.shape[2]
    res = A.analyze({"learned": (reps, t)}, None, ["A"] * n, np.ones(n), np.arange(n), None, tmp_path,
                    observables=["msd"], fit_window_ps=(2.0, 20.0), max_lag_ps=20.0, plot=False)
    fit = res["observables"]["msd"]["learned"]["type:A"]
    assert fit["n_particles"] == 200
    # 200 walkers x ~180 ps / 20 ps windows: relative standard error ~2 %
    assert fit["D_nm2_per_ps"] == pytest.approx(D, rel=0.06)
    assert math.isfinite(fit["D_cm2_per_s"])


def test_replicas_bad_shapes_are_named(tmp_path):
    rng = np.random.default_rng(2)
    x, t, types, m, mol, bonds = _toy_system(rng)
    with pytest.raises(ValueError, match=r"trajectories\['learned'\] positions: expected 26 particles"):
        _run(tmp_path, "a", (np.stack([x, x])[:, :, :20], t), types, m, mol, bonds)
    with pytest.raises(ValueError, match=r"time_ps"):
        _run(tmp_path, "b", (np.stack([x, x]), t[:-1]), types, m, mol, bonds)
    with pytest.raises(ValueError, match=r"positions"):
        _run(tmp_path, "c", (np.stack([x, x])[None], t), types, m, mol, bonds)


def test_cli_repeated_label_pools_replicas_from_files(tmp_path, capsys):
    """``openmm-mlcg analyze learned=a.dcd learned=b.dcd`` pools the two runs: the same numbers as analyze() on
    the stacked positions; replicas of different lengths are refused by name."""
    md = pytest.importorskip("mdtraj")
    from openmm_mlcg.app.cli import main

    rng = np.random.default_rng(8)
    runs = [_toy_system(rng, F=30) for _ in range(3)]
    types, m, mol, bonds = runs[0][2:]
    top = md.Topology()
    ch = top.add_chain()
    atoms = [top.add_atom(ty, md.element.carbon, top.add_residue("RES", ch)) for ty in types]
    for i, j in bonds:
        top.add_bond(atoms[i], atoms[j])
    for k, (x, *_rest) in enumerate(runs):
        traj = md.Trajectory(np.mod(x, 3.0), top)
        traj.unitcell_vectors = np.repeat(BOX[None], x.shape[0], 0)
        traj[: 30 - 10 * (k == 2)].save_dcd(str(tmp_path / f"run{k}.dcd"))
    traj[0].save_pdb(str(tmp_path / "top.pdb"))
    args = ["analyze", "--topology", str(tmp_path / "top.pdb"), "--frame-interval-ps", "2.0", "--observables", "msd",
            "rdf", "--out"]
    assert main(args + [str(tmp_path / "cli"), f"learned={tmp_path / 'run0.dcd'}",
                        f"learned={tmp_path / 'run1.dcd'}"]) == 0
    doc = json.loads((tmp_path / "cli" / "analysis.json").read_text())
    assert doc["replicas"] == {"learned": 2} and len(doc["provenance"]["frame_interval"]["learned"]) == 2
    # the DCDs hold wrapped float32 positions; unwrapped again they are the runs (to float32 precision)
    direct = A.analyze({"learned": (np.stack([runs[0][0], runs[1][0]]), runs[0][1])}, BOX, types, m, mol, bonds,
                       tmp_path / "direct", observables=["msd", "rdf"], plot=False)["observables"]
    np.testing.assert_allclose(doc["observables"]["msd"]["learned"]["type:Li"]["msd_nm2"],
                               direct["msd"]["learned"]["type:Li"]["msd_nm2"], rtol=1e-4, atol=1e-7)
    pair = next(iter(direct["rdf"]["learned"]))
    np.testing.assert_allclose(doc["observables"]["rdf"]["learned"][pair]["g"], direct["rdf"]["learned"][pair]["g"],
                               atol=0.05)
    assert main(args + [str(tmp_path / "bad"), f"learned={tmp_path / 'run0.dcd'}",
                        f"learned={tmp_path / 'run2.dcd'}"]) == 2
    assert "expected replicas of one shape" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "analysis.json").exists()
