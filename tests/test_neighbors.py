"""Both radius-search backends of openmm_mlcg.nn.neighbors ("vesin", "cell") against brute force.

Random orthorhombic and random triclinic OpenMM reduced boxes, unwrapped positions, float32 and float64,
batched graphs with per-graph boxes, non-finite beads, and gradients of edge_vec w.r.t. positions. The skin
neighbour list of openmm_mlcg.nn.skin against build_edges and brute force along random walks, and a cg_langevin
model step with it against the full search at every pass.
"""
import pytest
import torch

from openmm_mlcg.nn.neighbors import (
    BACKENDS,
    DEFAULT_BACKEND,
    brute_force_pairs,
    build_edges,
    minimum_image,
    radius_pairs,
)

NO_BONDS = torch.zeros(2, 0, dtype=torch.long)


def _random_box(kind, g):
    """Random reduced box (rows a, b, c) with diagonal in [2.6, 4] nm; triclinic tilts up to their limits."""
    diag = 2.6 + 1.4 * torch.rand(3, generator=g, dtype=torch.float64)
    box = torch.diag(diag)
    if kind == "triclinic":
        u = torch.rand(3, generator=g, dtype=torch.float64) * 2 - 1       # in [-1, 1): up to |bx| = ax / 2 ...
        box[1, 0] = 0.5 * diag[0] * u[0]
        box[2, 0] = 0.5 * diag[0] * u[1]
        box[2, 1] = 0.5 * diag[1] * u[2]
    return box


def _points(box, n, g, dtype=torch.float64):
    x = torch.rand(n, 3, generator=g, dtype=torch.float64) @ box
    return (x + torch.randint(-3, 4, (n, 3), generator=g).double() @ box).to(dtype)   # unwrapped images


def _set(pairs):
    return set(map(tuple, pairs.t().tolist()))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["orthorhombic", "triclinic"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_radius_pairs_equal_brute_force_random_boxes(backend, kind, seed):
    g = torch.Generator().manual_seed(100 * seed + len(kind))
    box = _random_box(kind, g)
    x = _points(box, 400, g)
    cutoff = 0.5 * float(torch.diagonal(box).min()) * 0.99
    ref = brute_force_pairs(x, box, cutoff)
    got = radius_pairs(x, box, cutoff, backend)
    assert ref.shape[1] > 2000                     # dense enough that a wrong image would show
    assert torch.equal(got, ref)                   # same pairs, same (i, j) sorted order
    ei, vec, et = build_edges(x, box, cutoff, NO_BONDS, backend=backend)
    assert torch.equal(ei, ref)
    assert (et == 0).all()
    assert torch.allclose(vec, minimum_image(x[ei[1]] - x[ei[0]], box))
    assert float(vec.norm(dim=1).max()) < cutoff


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_and_non_periodic_match_brute_force(backend):
    g = torch.Generator().manual_seed(7)
    box = _random_box("triclinic", g)
    x = _points(box, 600, g, torch.float32)
    assert torch.equal(radius_pairs(x, box.float(), 1.2, backend), brute_force_pairs(x, box.float(), 1.2))
    xn = torch.rand(500, 3, generator=g) * 5.0
    assert torch.equal(radius_pairs(xn, None, 0.9, backend), brute_force_pairs(xn, None, 0.9))


def test_backends_agree_on_a_large_system():
    """5000 beads at the SPE bead density: identical edges from both backends (and both have ~12 per bead)."""
    g = torch.Generator().manual_seed(3)
    box = torch.tensor([[7.3, 0, 0], [2.0, 7.3, 0], [-1.5, 3.0, 7.3]], dtype=torch.float64)
    x = _points(box, 5000, g, torch.float32)
    bonds = torch.stack([torch.arange(0, 4999, 2), torch.arange(1, 5000, 2)])
    out = [build_edges(x, box.float(), 0.6, bonds, backend=b) for b in BACKENDS]
    for ei, vec, et in out[1:]:
        assert torch.equal(ei, out[0][0]) and torch.equal(et, out[0][2]) and torch.equal(vec, out[0][1])
    assert 10 < out[0][0].shape[1] / 5000 < 15


@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_graphs_per_graph_boxes(backend):
    """Three graphs (triclinic, non-periodic, orthorhombic) concatenated: edges never cross graphs and each
    graph's edges are its own brute-force pairs with the global offset."""
    g = torch.Generator().manual_seed(11)
    boxes = torch.stack([_random_box("triclinic", g), torch.zeros(3, 3, dtype=torch.float64),
                         _random_box("orthorhombic", g)])
    sizes = [200, 150, 250]
    xs = [_points(boxes[0], sizes[0], g), torch.rand(sizes[1], 3, generator=g, dtype=torch.float64) * 3.0,
          _points(boxes[2], sizes[2], g)]
    x = torch.cat(xs)
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    cutoff = 1.0
    ei, vec, _ = build_edges(x, None, cutoff, NO_BONDS, batch=batch, boxes=boxes, backend=backend)
    expected, start = set(), 0
    for k, (xk, n) in enumerate(zip(xs, sizes)):
        bk = None if k == 1 else boxes[k]
        expected |= {(i + start, j + start) for i, j in _set(brute_force_pairs(xk, bk, cutoff))}
        start += n
    assert _set(ei) == expected
    assert (batch[ei[0]] == batch[ei[1]]).all()
    assert float(vec.norm(dim=1).max()) < cutoff
    keys = ei[0] * x.shape[0] + ei[1]
    assert torch.equal(keys, torch.unique(keys))      # unique and sorted by (src, dst)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bonds_win_and_both_directions(backend):
    box = torch.diag(torch.tensor([3.0, 3.5, 4.0], dtype=torch.float64))
    x = torch.tensor([[0.1, 0.1, 0.1], [2.9, 0.1, 0.1], [1.5, 1.5, 1.5], [1.5, 1.5, 2.0]], dtype=torch.float64)
    ei, vec, et = build_edges(x, box, 0.6, torch.tensor([[0, 0], [1, 2]]), backend=backend)
    edges = {tuple(e): int(t) for e, t in zip(ei.t().tolist(), et.tolist())}
    assert edges == {(0, 1): 1, (1, 0): 1, (0, 2): 1, (2, 0): 1, (2, 3): 0, (3, 2): 0}
    k = ei.t().tolist().index([0, 1])
    assert torch.allclose(vec[k], torch.tensor([-0.2, 0.0, 0.0], dtype=torch.float64))


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_finite_beads_get_no_radius_edges(backend):
    g = torch.Generator().manual_seed(5)
    box = _random_box("triclinic", g)
    x = _points(box, 300, g)
    x[[4, 17]] = torch.tensor([float("nan"), 0.0, float("inf")], dtype=torch.float64)
    got = radius_pairs(x, box, 1.2, backend)
    assert not torch.isin(got, torch.tensor([4, 17])).any()
    finite = torch.tensor([i not in (4, 17) for i in range(300)])
    idx = torch.nonzero(finite, as_tuple=True)[0]
    assert _set(got) == {(int(idx[i]), int(idx[j])) for i, j in _set(brute_force_pairs(x[finite], box, 1.2))}


@pytest.mark.parametrize("backend", BACKENDS)
def test_edge_vec_gradient_flows_to_positions(backend):
    """d(sum_e w_e . vec_e)/dx_i = sum_{e: dst=i} w_e - sum_{e: src=i} w_e (minimum-image shifts are constant)."""
    g = torch.Generator().manual_seed(9)
    box = _random_box("triclinic", g)
    x = _points(box, 200, g).requires_grad_(True)
    bonds = torch.tensor([[0, 2, 4], [1, 3, 5]])
    ei, vec, _ = build_edges(x, box, 1.1, bonds, backend=backend)
    w = torch.randn(vec.shape, generator=g, dtype=torch.float64)
    (grad,) = torch.autograd.grad((w * vec).sum(), x)
    expected = torch.zeros_like(x).index_add_(0, ei[1], w).index_add_(0, ei[0], -w)
    assert torch.allclose(grad, expected)
    assert grad.abs().sum() > 0


def test_default_and_unknown_backend():
    assert DEFAULT_BACKEND == "vesin"       # vesin-torch is a required dependency and wins the benchmark
    x = torch.rand(20, 3)
    with pytest.raises(ValueError, match="backend"):
        build_edges(x, None, 0.5, NO_BONDS, backend="nope")
    with pytest.raises(ValueError, match="backend"):
        radius_pairs(x, None, 0.5, "brute")


# ---------------------------------------------------------------- skin neighbour list (openmm_mlcg.nn.skin)
def _same_edges(a, b):
    """Same edge_index, edge_type and edge_vec (NaN where the other has NaN), in the same order."""
    return (torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])
            and torch.equal(torch.nan_to_num(a[1], nan=7.0), torch.nan_to_num(b[1], nan=7.0)))


def _wrap(x, box):
    """Positions wrapped into the reduced box (fractional coordinates in [0, 1))."""
    s = x @ torch.linalg.inv(box)
    return (s - torch.floor(s)) @ box


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["orthorhombic", "triclinic"])
@pytest.mark.parametrize("wrapped", [False, True])
def test_skin_list_equals_brute_force_along_a_random_walk(backend, kind, wrapped):
    """At every call of a random walk that crosses the rebuild threshold several times, the skin list's edges are
    build_edges' bit for bit and its radius pairs brute force's; unwrapped positions reuse the candidates."""
    from openmm_mlcg.nn.skin import SkinNeighborList

    g = torch.Generator().manual_seed(11 + len(kind) + 2 * wrapped)
    box = _random_box(kind, g)
    x = _points(box, 300, g)
    bonds = torch.stack([torch.arange(0, 300, 3), torch.randint(0, 300, (100,), generator=g)])   # any length
    both = torch.cat([bonds, bonds.flip(0)], 1)
    both = both[:, both[0] != both[1]]
    cutoff = 0.9
    nl = SkinNeighborList(cutoff, 0.3, box, bonds, backend=backend)
    for _ in range(30):
        x = x + 0.02 * torch.randn(x.shape, generator=g, dtype=torch.float64)
        y = _wrap(x, box) if wrapped else x
        got = nl(y)
        assert _same_edges(got, build_edges(y, box, cutoff, bonds, backend=backend, validate=False))
        ref = torch.cat([brute_force_pairs(y, box, cutoff), both], 1)          # radius pairs union CG bonds
        assert torch.equal(got[0][0] * 300 + got[0][1], torch.unique(ref[0] * 300 + ref[1]))
    assert nl.n_calls == 30 and nl.n_builds >= 3
    if not wrapped:
        assert nl.n_builds <= 15                       # the candidates are reused between searches


@pytest.mark.parametrize("backend", BACKENDS)
def test_skin_list_float32_non_periodic_small_box_and_non_finite(backend):
    """float32 positions; no box; a box too small for a skin (a full search at every call); a bead turning NaN:
    the same edges as build_edges at every call."""
    from openmm_mlcg.nn.skin import SkinNeighborList

    g = torch.Generator().manual_seed(21)
    bonds = torch.tensor([[0, 5, 9], [1, 6, 40]])
    box = _random_box("triclinic", g)
    cases = [(_points(box, 250, g, torch.float32), box.float(), 0.8, 0.25),
             (torch.rand(250, 3, generator=g, dtype=torch.float64) * 3.0, None, 0.7, 0.2),
             (_points(box, 250, g), box, 0.5 * float(torch.diagonal(box).min()) - 0.001, 0.3)]
    for k, (x, b, cutoff, skin) in enumerate(cases):
        nl = SkinNeighborList(cutoff, skin, b, bonds, backend=backend)
        for step in range(12):
            x = x + 0.02 * torch.randn(x.shape, generator=g, dtype=x.dtype)
            if k == 1 and step == 6:
                x[9] = float("nan")
            assert _same_edges(nl(x), build_edges(x, b, cutoff, bonds, backend=backend, validate=False)), (k, step)
        if k == 2:
            assert nl.n_builds == nl.n_calls           # no room for a skin: a full search each time


def test_skin_list_gradient_and_validation():
    from openmm_mlcg.nn.skin import SkinNeighborList, default_skin_nm

    g = torch.Generator().manual_seed(9)
    box = _random_box("triclinic", g)
    x = _points(box, 200, g).requires_grad_(True)
    bonds = torch.tensor([[0, 2, 4], [1, 3, 5]])
    ei, vec, _ = SkinNeighborList(1.1, 0.2, box, bonds)(x)
    w = torch.randn(vec.shape, generator=g, dtype=torch.float64)
    (grad,) = torch.autograd.grad((w * vec).sum(), x)
    assert torch.allclose(grad, torch.zeros_like(x).index_add_(0, ei[1], w).index_add_(0, ei[0], -w))
    assert default_skin_nm(0.6, 0.05) == pytest.approx(0.25) and default_skin_nm(0.6, 1.0) == pytest.approx(0.3)
    for bad in ({"cutoff_nm": 0.0}, {"skin_nm": -0.1}, {"backend": "nope"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SkinNeighborList(**{"cutoff_nm": 1.0, "skin_nm": 0.1, "box": None, "cg_bonds": NO_BONDS, **bad})
    with pytest.raises(ValueError, match="velocity_std"):
        default_skin_nm(0.6, 0.0)


def _tiny_cg_langevin_model():
    """An untrained cg_langevin model (tiny real Score GNN, cutoff 0.6 nm) in eval mode; velocity_std 0.075 nm,
    about the RMS displacement per step it gives beads of 100-200 amu."""
    from openmm_mlcg.model import CGDynamicsModel
    from openmm_mlcg.nn import DynamicsGNN, EmbeddingGNN, ScoreGNN

    torch.manual_seed(0)
    emb = EmbeddingGNN(n_atom_types=2, hidden=8, layers=1)
    meta = {"model_time_step_ps": 2.0, "history": 2, "cutoff_nm": 0.6, "velocity_std": 0.075,
            "acceleration_std": 0.01, "atom_type_vocabulary": ["C", "O"], "sampler": "cg_langevin",
            "temperature_K": 300.0, "cg_langevin_steps": 15, "cg_langevin_sigma_nm": 0.02,
            "cg_langevin_friction_per_ps": 10.0, "sigmas_nm": [0.04, 0.01]}
    return CGDynamicsModel(emb, DynamicsGNN(embedding_dim=8, history=2, hidden=8, layers=1),
                           ScoreGNN(latent_dim=8, hidden=8, layers=1), meta).eval()


@pytest.mark.parametrize("skin", [None, 0.12])
def test_model_steps_with_the_skin_list_give_the_rebuild_every_pass_trajectory(skin):
    """Four cg_langevin model steps (16 Score passes each), same seed: the skin list (the metadata's rule and a
    narrower skin), reused across passes and searched again within steps, gives the trajectory of a full search at
    every pass (the same edges: the same numbers)."""
    from openmm_mlcg.model import CGDynamicsModel

    model = _tiny_cg_langevin_model()
    g = torch.Generator().manual_seed(4)
    box = torch.tensor([[2.2, 0, 0], [0.5, 2.3, 0], [-0.4, 0.6, 2.4]], dtype=torch.float64)
    n = 120
    x0 = _points(box, n, g)
    kw = {"box": box, "bead_embedding": torch.randn(n, 8, generator=g),
          "bead_masses": torch.rand(n, generator=g, dtype=torch.float64) * 100 + 100,
          "cg_bonds": torch.stack([torch.arange(0, n - 1, 2), torch.arange(1, n, 2)])}
    lists = []

    def tracked(box_, bonds_):
        lists.append(CGDynamicsModel.neighbor_list(model, box_, bonds_))
        return lists[-1]

    paths = {}
    for s in (0.0, skin):
        model.neighbor_skin_nm = s
        model.neighbor_list = tracked
        x, h = x0, torch.zeros(n, 2, 3, dtype=torch.float64)
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for _ in range(4):
                x, h = model.step(x, h, generator=gen, **kw)
        paths[s] = x
        del model.neighbor_list
    assert lists[:4] == [None] * 4                                   # skin 0: the old path
    skins = lists[4:]
    assert len(skins) == 4 and all(nl.n_calls == 16 for nl in skins)
    builds = sum(nl.n_builds for nl in skins)
    assert 4 < builds < 64                                           # reused, and searched again within steps
    assert float((paths[skin] - paths[0.0]).abs().max()) <= 1e-9
    assert float((paths[0.0] - x0).abs().max()) > 0.05               # the beads moved
