"""Analytic tests of openmm_mlcg.analysis (RDF, MSD/diffusivity, Rg^2, R(s), ACF, collisions, metrics, report)."""
import json
import math

import numpy as np
import pytest
from openmm import unit

from openmm_mlcg import analysis as A


def brownian(rng, n, n_frames, dt, D, dim=3):
    steps = rng.normal(scale=math.sqrt(2 * D * dt), size=(n_frames - 1, n, dim))
    x0 = rng.uniform(0, 3, size=(1, n, dim))
    return np.concatenate([x0, x0 + np.cumsum(steps, axis=0)]), np.arange(n_frames) * dt


# ---------------------------------------------------------------- RDF
def test_ideal_gas_rdf_is_one():
    rng = np.random.default_rng(0)
    L, n, F = 3.0, 300, 50
    x = rng.uniform(0, L, size=(F, n, 3))
    r, g = A.radial_distribution(x, np.eye(3) * L, np.arange(n), r_min_nm=0.3, n_bins=24)
    assert r[0] > 0.3 and r[-1] < L / 2
    # smallest shell has ~F * n(n-1)/2 * 4 pi r^2 dr / V ~ 4700 pairs -> 1.5 % noise; 0.08 is > 5 sigma.
    assert np.all(np.abs(g - 1) < 0.08), g
    assert abs(g.mean() - 1) < 0.02
    # unwrapped positions (shifted by whole boxes) give the same g(r)
    shift = rng.integers(-3, 4, size=(F, n, 3)) * L
    _, g2 = A.radial_distribution(x + shift, np.eye(3) * L, np.arange(n), r_min_nm=0.3, n_bins=24)
    np.testing.assert_allclose(g2, g, atol=1e-3)


def test_rdf_by_type_cross_pair_ideal_gas():
    rng = np.random.default_rng(1)
    L, n, F = 3.0, 200, 40
    x = rng.uniform(0, L, size=(F, n, 3))
    types = np.array(["Li"] * 100 + ["TFSI"] * 100)
    res = A.rdf_by_type(x, [L, L, L], types, n_bins=20)
    assert set(res) == {"Li-Li", "Li-TFSI", "TFSI-TFSI"}
    sel = res["Li-TFSI"]["r_nm"] > 0.4
    assert np.all(np.abs(res["Li-TFSI"]["g"][sel] - 1) < 0.12)


def test_rdf_requires_box_and_valid_range():
    x = np.zeros((2, 4, 3))
    with pytest.raises(ValueError, match="box"):
        A.radial_distribution(x, None, [0, 1])
    with pytest.raises(ValueError, match="r_max_nm"):
        A.radial_distribution(x + np.arange(4)[:, None] * 0.1, np.eye(3) * 2.0, [0, 1, 2], r_max_nm=1.5)


# ---------------------------------------------------------------- MSD / diffusivity
def test_ballistic_msd_exact():
    v = np.array([[0.3, -0.1, 0.2], [1.0, 0.0, 0.0]])
    t = np.arange(64) * 0.5
    x = 1.0 + t[:, None, None] * v[None]
    lag, msd = A.mean_squared_displacement(x, t, max_lag_ps=31.5)
    np.testing.assert_allclose(msd, lag[:, None] ** 2 * (v ** 2).sum(1)[None], rtol=1e-9, atol=1e-9)


def test_fft_msd_equals_direct_average_over_origins():
    rng = np.random.default_rng(2)
    x, t = brownian(rng, 5, 50, 0.2, 0.4)
    lag, msd = A.mean_squared_displacement(x, t, max_lag_ps=t[-1])
    for k in (1, 7, 30, 49):
        direct = ((x[k:] - x[:-k]) ** 2).sum(-1).mean(0)
        np.testing.assert_allclose(msd[k], direct, rtol=1e-9)


def test_brownian_diffusivity_recovered():
    rng = np.random.default_rng(3)
    D, dt = 0.5, 0.1  # nm^2/ps, ps
    x, t = brownian(rng, 500, 1000, dt, D)
    lag, msd = A.mean_squared_displacement(x * unit.nanometer, t * unit.picosecond, max_lag_ps=10.0)
    fit = A.fit_diffusivity(lag, msd, (1.0, 10.0))
    # 500 independent walkers x ~5000 ps / 10 ps windows: relative standard error < 1 %; allow 4 %.
    assert fit["D_nm2_per_ps"] == pytest.approx(D, rel=0.04)
    assert fit["D_cm2_per_s"] == pytest.approx(fit["D_nm2_per_ps"] * 1e-2, rel=1e-12)
    # paper's single-interval estimate: per walker |dx|^2/(6T) has relative sd sqrt(2/3); mean of 500 -> 3.7 %.
    assert A.single_interval_diffusivity(x, t).mean() == pytest.approx(D, rel=0.15)


def test_diffusivity_window_at_float32_dcd_times():
    """A DCD stores the step as float32 in AKMA units: a 10-ps learned step reads back as 9.99999996 ps. The window
    (10, 100) ps must still fit (it raised 'trajectory too short' and dropped the 10-ps lag) and give the walk's D."""
    rng = np.random.default_rng(8)
    D, dt = 0.05, 10.0
    x, _ = brownian(rng, 400, 400, dt, D)
    t = np.arange(400) * 9.9999999555
    fit = A.fit_diffusivity(*A.mean_squared_displacement(x, t, max_lag_ps=100.0), (10.0, 100.0))
    assert fit["n_points"] == 10                          # the lags 10, 20, ..., 100 ps, both ends included
    assert fit["D_nm2_per_ps"] == pytest.approx(D, rel=0.06)


def test_centre_of_mass_diffusion_of_rigid_dimers():
    rng = np.random.default_rng(4)
    D, dt = 0.2, 0.5
    com, t = brownian(rng, 200, 400, dt, D)
    m = np.tile([1.0, 3.0], 200)
    mol = np.repeat(np.arange(200), 2)
    offset = rng.normal(size=(200, 3))  # bead positions com -/+ offset weighted so the COM is exact
    x = np.empty((400, 400, 3))
    x[:, 0::2] = com - 0.75 * offset
    x[:, 1::2] = com + 0.25 * offset
    got, ids = A.centre_of_mass_positions(x, m, mol)
    np.testing.assert_allclose(got, com, atol=1e-12)
    fit = A.fit_diffusivity(*A.mean_squared_displacement(got, t, max_lag_ps=20.0), (2.0, 20.0))
    assert fit["D_nm2_per_ps"] == pytest.approx(D, rel=0.06)


def test_unit_conversion_and_unwrap():
    assert A.nm2_per_ps_to_cm2_per_s(1.0) == pytest.approx(1e-2)
    assert A.nm2_per_ps_to_cm2_per_s(1e-4) == pytest.approx(1e-6)  # 1e-4 nm^2/ps = 1e-6 cm^2/s
    rng = np.random.default_rng(5)
    x, _ = brownian(rng, 10, 200, 0.1, 0.05)  # steps ~0.1 nm << L/2
    L = 1.5
    back = A.unwrap_positions(np.mod(x, L), np.eye(3) * L)
    np.testing.assert_allclose(back - back[0], x - x[0], atol=1e-9)


def test_diffusion_errors_name_argument():
    x, t = brownian(np.random.default_rng(6), 3, 20, 1.0, 0.1)
    with pytest.raises(ValueError, match="time_ps"):
        A.mean_squared_displacement(x, t[:-1])
    lag, msd = A.mean_squared_displacement(x, t)
    with pytest.raises(ValueError, match="fit_window_ps"):
        A.fit_diffusivity(lag, msd, (50.0, 100.0))
    bad = x.copy()
    bad[3, 1, 0] = np.nan
    with pytest.raises(ValueError, match="positions"):
        A.mean_squared_displacement(bad, t)
    with pytest.raises(ValueError, match="positions"):
        A.mean_squared_displacement(x[..., :2], t)


# ---------------------------------------------------------------- structure
def test_rg2_known_shapes():
    R = 1.7
    octa = np.concatenate([np.eye(3), -np.eye(3)]) * R + np.array([4.0, -2.0, 1.0])
    assert A.radius_of_gyration_squared(octa)[0] == pytest.approx(R ** 2)
    d, m1, m2 = 2.0, 1.0, 3.0
    two = np.array([[0, 0, 0], [d, 0, 0]], float)
    assert A.radius_of_gyration_squared(two, [m1, m2])[0] == pytest.approx(m1 * m2 * d ** 2 / (m1 + m2) ** 2)
    n, L = 11, 5.0
    rod = np.zeros((n, 3))
    rod[:, 2] = np.linspace(0, L, n)
    assert A.radius_of_gyration_squared(rod)[0] == pytest.approx(L ** 2 * (n + 1) / (12 * (n - 1)))
    # per molecule: octahedron (mol 0) and rod (mol 1) in one frame; equal masses -> column order = unique ids
    both = np.concatenate([octa, rod])[None].repeat(3, 0)
    got = A.radius_of_gyration_squared(both, None, np.array([0] * 6 + [1] * n))
    np.testing.assert_allclose(got, [[R ** 2, L ** 2 * (n + 1) / (12 * (n - 1))]] * 3)


def test_internal_distance_and_contact_map():
    a = 0.38
    rod = np.zeros((2, 8, 3))
    rod[:, :, 0] = np.arange(8) * a
    s, r = A.mean_internal_distance(rod)
    np.testing.assert_allclose(r, s * a)
    s, r = A.mean_internal_distance(rod, chain=np.arange(8)[::-1], kind="rms")
    np.testing.assert_allclose(r, s * a)
    cm = A.contact_map(rod, 0.5)  # only nearest neighbours (0.38) are within 0.5
    assert cm[0, 1] == 1.0 and cm[0, 2] == 0.0 and cm[3, 3] == 1.0
    rod[1, 7, 0] = 0.1  # frame 1: bead 7 sits next to bead 0
    cm = A.contact_map(rod, 0.5)
    assert cm[0, 7] == 0.5 and cm[7, 0] == 0.5
    # periodic: beads 0 and 7 are 2.66 nm apart, 0.34 nm through a 3.0 nm box
    assert A.contact_map(rod[:1], 0.5, box=np.eye(3) * 3.0)[0, 7] == 1.0
    c, dens = A.distribution(np.random.default_rng(0).normal(size=2000), bins=30)
    assert np.sum(dens) * (c[1] - c[0]) == pytest.approx(1.0)


# ---------------------------------------------------------------- ACF
def test_ou_relaxation_time():
    rng = np.random.default_rng(7)
    tau, dt, F = 20.0, 1.0, 200_000
    a = math.exp(-dt / tau)
    noise = rng.normal(size=(F, 2)) * math.sqrt(1 - a * a)
    y = np.empty((F, 2))
    y[0] = rng.normal(size=2)
    for k in range(1, F):  # AR(1) = exact discretisation of OU
        y[k] = a * y[k - 1] + noise[k]
    acf = A.autocorrelation(y + 5.0, max_lag=200).mean(1)
    assert acf[0] == pytest.approx(1.0)
    assert A.relaxation_time(acf, dt) == pytest.approx(tau, rel=0.1)
    assert A.relaxation_time(acf, dt, method="fit") == pytest.approx(tau, rel=0.1)


def test_relaxation_time_interpolation_and_no_crossing():
    t = np.arange(50) * 3.0
    acf = np.exp(-t / 40.0)
    assert A.relaxation_time(acf, 3.0) == pytest.approx(40.0, rel=0.01)
    assert A.relaxation_time(acf, 3.0, method="fit") == pytest.approx(40.0, rel=1e-9)
    assert math.isnan(A.relaxation_time(np.exp(-t / 1000.0), 3.0))
    with pytest.raises(ValueError, match="dt_ps"):
        A.relaxation_time(acf, -1.0)
    with pytest.raises(ValueError, match="series"):
        A.autocorrelation(np.ones(10))


# ---------------------------------------------------------------- collisions
def test_collisions_hand_built():
    L = 2.0
    x = np.array([[0.05, 1.0, 1.0],   # 0: collides with 1 through the x boundary (0.07 nm)
                  [1.98, 1.0, 1.0],   # 1
                  [1.00, 1.0, 1.0],   # 2: 0.09 nm from 3 but bonded -> excluded
                  [1.09, 1.0, 1.0],   # 3
                  [1.00, 1.5, 1.0],   # 4: far
                  [1.00, 1.0, 1.15]])  # 5: 0.15 nm from 2, 0.175 from 3
    bonds = np.array([[2, 3]])
    frames = np.stack([x, x + np.array([L, 0, -3 * L])])  # frame 1: unwrapped images, same physics
    assert A.count_collisions(frames, 0.1, np.eye(3) * L, bonds).tolist() == [1, 1]
    assert A.count_collisions(frames, 0.1, np.eye(3) * L).tolist() == [2, 2]
    # r_c = 0.2: adds 2-5 (0.15) and 3-5 (0.175)
    assert A.count_collisions(frames, 0.2 * unit.nanometer, np.eye(3) * L, bonds).tolist() == [3, 3]
    assert A.count_collisions(x, 0.1, None, bonds).tolist() == [0]  # no box: 0 and 1 are 1.93 nm apart
    assert A.count_collisions(x, 0.1 + 1e-12, np.eye(3) * L, np.zeros((0, 2), int)).tolist() == [2]
    tric = np.array([[L, 0, 0], [0.5, L, 0], [0.3, -0.4, L]])
    rng = np.random.default_rng(8)
    y = rng.uniform(0, L, size=(40, 3))
    d = y[None] - y[:, None]
    best = np.full((40, 40), np.inf)
    for s in np.array(np.meshgrid(*[[-2, -1, 0, 1, 2]] * 3)).reshape(3, -1).T:
        best = np.minimum(best, np.linalg.norm(d + s @ tric, axis=-1))
    expect = int(np.sum(np.triu(best < 0.45, k=1)))
    assert expect > 0
    assert A.count_collisions(y, 0.45, tric)[0] == expect
    with pytest.raises(ValueError, match="cutoff_nm"):
        A.count_collisions(x, -1.0)
    with pytest.raises(ValueError, match="exclude_bonds"):
        A.count_collisions(x, 0.1, exclude_bonds=[[0, 9]])


# ---------------------------------------------------------------- metrics
def test_metrics():
    y = np.array([1.0, 2.0, 4.0, 7.0])
    assert A.r2_score(y, y) == 1.0
    assert A.r2_score(y, np.full(4, y.mean())) == pytest.approx(0.0)
    assert A.r2_score(y, y[::-1]) < 0
    assert A.mean_absolute_error(y, y + np.array([1, -1, 2, 0])) == pytest.approx(1.0)
    s = np.random.default_rng(9).normal(size=500)
    assert A.earth_movers_distance(s, s + 0.7) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="y_pred"):
        A.r2_score(y, y[:3])


# ---------------------------------------------------------------- report
def _toy_system(rng, F=60):
    chain = np.cumsum(rng.normal(scale=0.2, size=(F, 6, 3)), axis=0) * 0.05 + np.arange(6)[None, :, None] * 0.35
    ions, t = brownian(rng, 20, F, 2.0, 0.01)
    x = np.concatenate([chain + 1.0, ions], axis=1)
    types = ["P"] * 6 + ["Li"] * 10 + ["X"] * 10
    mol = np.concatenate([np.zeros(6, int), np.arange(1, 21)])
    bonds = np.array([[i, i + 1] for i in range(5)])
    return x, t, types, np.ones(26) * 12.0, mol, bonds


def test_analyze_writes_json_and_pngs(tmp_path):
    rng = np.random.default_rng(10)
    x, t, types, m, mol, bonds = _toy_system(rng)
    x2 = x + rng.normal(scale=0.01, size=x.shape)
    res = A.analyze({"reference MD": (x, t), "learned": (x2, t)}, np.eye(3) * 3.0, types, m, mol, bonds,
                    tmp_path, rdf_n_bins=20)
    doc = json.loads((tmp_path / "analysis.json").read_text())
    assert doc["reference"] == "reference MD"
    assert "learned" in doc["metrics"] and "rg2_emd_nm2" in doc["metrics"]["learned"]
    d = res["observables"]["msd"]["learned"]["type:Li"]
    assert d["D_cm2_per_s"] == pytest.approx(d["D_nm2_per_ps"] * 1e-2)
    assert res["observables"]["internal_distance"]["learned"]["chain_ordered_by_bonds"]
    for f in ("rg2_distribution.png", "rg2_acf.png", "internal_distance.png", "contact_map.png",
              "msd.png", "rdf.png", "collisions.png", "contact_maps.npz"):
        assert (tmp_path / f).stat().st_size > 0, f
    with pytest.raises(ValueError, match="fit_window_ps"):
        A.analyze({"learned": (x2, t)}, np.eye(3) * 3.0, types, m, mol, bonds, tmp_path, observables=["msd"],
                  fit_window_ps=(10.0, 1000.0))
    with pytest.raises(ValueError, match="particles"):
        A.analyze({"learned": (x2[:, :5], t)}, None, types, m, mol, bonds, tmp_path, observables=["rg2"])
    with pytest.raises(ValueError, match="observables"):
        A.analyze({"learned": (x2, t)}, None, types, m, mol, bonds, tmp_path, observables=["bogus"])


def test_analyze_files_reads_dcd(tmp_path):
    md = pytest.importorskip("mdtraj")
    rng = np.random.default_rng(11)
    x, t, types, m, mol, bonds = _toy_system(rng, F=30)
    top = md.Topology()
    ch = top.add_chain()
    atoms = [top.add_atom(ty, md.element.carbon, top.add_residue("RES", ch)) for ty in types]
    for i, j in bonds:
        top.add_bond(atoms[i], atoms[j])
    box = np.eye(3) * 3.0
    traj = md.Trajectory(np.mod(x, 3.0), top)
    traj.unitcell_vectors = np.repeat(box[None], 30, 0)
    traj.save_dcd(str(tmp_path / "run.dcd"))
    traj[0].save_pdb(str(tmp_path / "top.pdb"))
    out = tmp_path / "out"
    res = A.analyze_files({"learned": str(tmp_path / "run.dcd")}, out, topology=str(tmp_path / "top.pdb"),
                          frame_interval_ps=2.0, observables=["rg2", "msd", "collisions"])
    rg_direct = A.radius_of_gyration_squared(x[:, :6]).mean()
    assert res["observables"]["rg2"]["learned"]["mean_nm2"] == pytest.approx(rg_direct, rel=1e-4)
    assert (out / "analysis.json").is_file()
    with pytest.raises(ValueError, match="frame_interval_ps"):
        A.analyze_files({"learned": str(tmp_path / "run.dcd")}, out, topology=str(tmp_path / "top.pdb"))


def test_analyze_files_maps_all_atom_trajectory_with_mapping(tmp_path):
    md = pytest.importorskip("mdtraj")
    from openmm_mlcg.cg.mapping import CGMapping
    from openmm_mlcg.cg.topology import FineGraph
    rng = np.random.default_rng(12)
    x, t, types, m, mol, bonds = _toy_system(rng, F=20)
    x[:, :6] = x[:, :1] + np.arange(6)[None, :, None] * np.array([0.15, 0, 0])   # a rigid chain of 0.15 nm bonds
    top = md.Topology()
    ch = top.add_chain()
    atoms = [top.add_atom("C" if ty == "P" else ty, md.element.carbon if ty == "P" else md.element.lithium,
                          top.add_residue("RES", ch)) for ty in types]
    for i, j in bonds:
        top.add_bond(atoms[i], atoms[j])
    mapping = CGMapping.from_graph(FineGraph.from_mdtraj(top), group_size=2)
    mapping.save(tmp_path / "map.npz")
    traj = md.Trajectory(np.mod(x, 3.0), top)
    traj.unitcell_vectors = np.repeat(np.eye(3)[None] * 3.0, 20, 0)
    traj.save_dcd(str(tmp_path / "aa.dcd"))
    traj[0].save_pdb(str(tmp_path / "aa.pdb"))
    res = A.analyze_files({"reference MD": (str(tmp_path / "aa.dcd"), str(tmp_path / "aa.pdb"))}, tmp_path / "o",
                          mapping=str(tmp_path / "map.npz"), frame_interval_ps=2.0, plot=False,
                          observables=["rg2", "internal_distance"])
    beads = mapping.map_positions(np.mod(x, 3.0), np.eye(3) * 3.0)
    chain_beads = np.nonzero(mapping.bead_molecules == mapping.bead_molecules[0])[0]
    expect = A.radius_of_gyration_squared(beads[:, chain_beads], mapping.bead_masses[chain_beads]).mean()
    assert res["observables"]["rg2"]["reference MD"]["mean_nm2"] == pytest.approx(expect, rel=1e-5)
    assert res["observables"]["internal_distance"]["reference MD"]["chain_ordered_by_bonds"]


def test_analyze_without_box_skips_rdf_unless_requested(tmp_path):
    x, t, types, m, mol, bonds = _toy_system(np.random.default_rng(13), F=20)
    res = A.analyze({"learned": (x, t)}, None, types, m, mol, bonds, tmp_path, plot=False)
    assert res["observables"]["rdf"] == {} and res["observables"]["rg2"]["learned"]["mean_nm2"] > 0
    with pytest.raises(ValueError, match="box"):
        A.analyze({"learned": (x, t)}, None, types, m, mol, bonds, tmp_path, observables=["rdf"], plot=False)


def test_centre_of_mass_drift_removed_from_diffusivity():
    """Independent random walks with D = 0.01 nm^2/ps plus a common drift of the whole system: the analysis
    of a periodic system measures D in the centre-of-mass frame, D (1 - 1/N) for N equal-mass walkers."""
    from openmm_mlcg.analysis.diffusion import (fit_diffusivity, mean_squared_displacement,
                                                remove_centre_of_mass_drift)
    rng = np.random.default_rng(0)
    n, frames, dt, d_true = 200, 400, 1.0, 0.01
    steps = rng.normal(0.0, np.sqrt(2 * d_true * dt), (frames, n, 3))
    steps += np.array([0.05, -0.03, 0.02])                    # common drift, nm per ps
    x = np.cumsum(steps, axis=0)
    t = np.arange(frames) * dt
    raw = fit_diffusivity(*mean_squared_displacement(x, t, 40.0), (5.0, 40.0))["D_nm2_per_ps"]
    lag, msd = mean_squared_displacement(remove_centre_of_mass_drift(x, np.ones(n)), t, 40.0)
    fixed = fit_diffusivity(lag, msd, (5.0, 40.0))["D_nm2_per_ps"]
    assert raw > 2 * d_true                                      # the drift inflates D
    assert abs(fixed - d_true * (1 - 1 / n)) < 0.05 * d_true
    with pytest.raises(ValueError, match="masses"):
        remove_centre_of_mass_drift(x, np.ones(n + 1))


def test_nearest_neighbour_distances_on_a_lattice():
    """A jittered simple-cubic lattice of spacing 0.4 nm in a periodic box: nearest neighbours at ~0.4 nm,
    across the boundary too; the triclinic path (same lattice, sheared cell) gives the same distances."""
    from openmm_mlcg.analysis import nearest_neighbour_distances
    m, a = 5, 0.4
    grid = np.stack(np.meshgrid(*[np.arange(m)] * 3, indexing="ij"), -1).reshape(-1, 3) * a
    box = np.eye(3) * m * a
    nn = nearest_neighbour_distances(grid[None], box)
    np.testing.assert_allclose(nn, a, atol=1e-9)
    sheared = box.copy()
    sheared[1, 0] = m * a                      # same lattice of images, triclinic representation
    np.testing.assert_allclose(nearest_neighbour_distances(grid, sheared), nn, atol=1e-9)
    assert np.all(nearest_neighbour_distances(grid, None) > a - 1e-9)   # no box: corner beads have 3 neighbours
    x = grid.copy()
    x[0] = x[1] + [0.0, 0.0, 0.1]                 # bead 0 moved next to bead 1 (0.1 nm)
    nn2 = nearest_neighbour_distances(x, box)[0]
    assert nn2[0] == pytest.approx(0.1) and nn2[1] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="at least 2 beads"):
        nearest_neighbour_distances(grid[:1], box)


def test_msd_max_lag_tolerates_float32_time_step():
    """DCD headers store the time step as float32 (2 ps reads back as 2.0000000657 ps): a 100 ps maximum lag
    must still give the lag at 100 ps, or a fit window ending at 100 ps is refused."""
    from openmm_mlcg.analysis.diffusion import mean_squared_displacement
    x = np.cumsum(np.random.default_rng(0).normal(size=(200, 4, 3)), axis=0)
    t = np.arange(200) * 2.0000000657
    lag, _ = mean_squared_displacement(x, t, max_lag_ps=100.0)
    assert len(lag) == 51 and lag[-1] == pytest.approx(100.0)
