"""Both radius-search backends of openmm_mlcg.nn.neighbors ("vesin", "cell") against brute force.

Random orthorhombic and random triclinic OpenMM reduced boxes, unwrapped positions, float32 and float64,
batched graphs with per-graph boxes, non-finite beads, and gradients of edge_vec w.r.t. positions.
"""
import pytest
import torch

from openmm_mlcg.nn.neighbors import (BACKENDS, DEFAULT_BACKEND, brute_force_pairs, build_edges, minimum_image,
                                      radius_pairs)

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
    ei, vec, et = build_edges(x, None, cutoff, NO_BONDS, batch=batch, boxes=boxes, backend=backend)
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
    ei, vec, et = build_edges(x, box, 1.1, bonds, backend=backend)
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
