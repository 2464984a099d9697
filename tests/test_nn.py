"""Tests for openmm_mlcg.nn: neighbour list vs brute force, translation invariance, eager == scripted."""
import itertools
import warnings

import pytest
import torch

from openmm_mlcg.nn import DynamicsGNN, EmbeddingGNN, ScoreGNN, brute_force_pairs, build_edges, minimum_image

BOXES = {
    "orthorhombic": torch.diag(torch.tensor([3.0, 3.5, 4.0], dtype=torch.float64)),
    "triclinic": torch.tensor([[3.0, 0, 0], [1.2, 3.2, 0], [-1.0, 1.4, 3.3]], dtype=torch.float64),
    "none": None,
}


def _points(box, n, seed):
    g = torch.Generator().manual_seed(seed)
    if box is None:
        return torch.rand(n, 3, generator=g, dtype=torch.float64) * 4.0
    # inside the cell, then scattered over periodic images (unwrapped input)
    x = torch.rand(n, 3, generator=g, dtype=torch.float64) @ box
    return x + torch.randint(-3, 4, (n, 3), generator=g).double() @ box


def _true_pairs(x, box, cutoff):
    """Reference: brute force over 125 periodic images (independent of the minimum-image code)."""
    if box is not None:
        frac = x @ torch.linalg.inv(box)
        x = (frac - torch.floor(frac)) @ box
    d = x[None, :, :] - x[:, None, :]
    if box is not None:
        shifts = torch.tensor(list(itertools.product(range(-2, 3), repeat=3)), dtype=x.dtype) @ box
        r = (d[:, :, None, :] + shifts[None, None]).norm(dim=-1).min(-1).values
    else:
        r = d.norm(dim=-1)
    r.fill_diagonal_(float("inf"))
    return set(map(tuple, torch.nonzero(r < cutoff).tolist()))


@pytest.mark.parametrize("kind", list(BOXES))
def test_neighbour_list_equals_brute_force(kind):
    box = BOXES[kind]
    x = _points(box, 300, seed=1)
    cutoff = 1.2
    ei, vec, et = build_edges(x, box, cutoff, torch.zeros(2, 0, dtype=torch.long))
    got = set(map(tuple, ei.t().tolist()))
    assert got == _true_pairs(x, box, cutoff)
    assert got == set(map(tuple, brute_force_pairs(x, box, cutoff).t().tolist()))
    assert (et == 0).all()
    # displacement is the minimum image of x[dst] - x[src]
    assert torch.all(vec.norm(dim=1) < cutoff)
    assert torch.allclose(vec, minimum_image(x[ei[1]] - x[ei[0]], box))


def test_cg_bonds_union_and_type():
    box = BOXES["orthorhombic"]
    x = torch.tensor([[0.1, 0.1, 0.1], [2.9, 0.1, 0.1], [1.5, 1.5, 1.5], [1.5, 1.5, 2.0]], dtype=torch.float64)
    # bond 0-1 is also a radius pair across the boundary (0.2 nm); bond 0-2 is long (no radius edge)
    ei, vec, et = build_edges(x, box, 0.6, torch.tensor([[0, 0], [1, 2]]))
    edges = {tuple(e): int(t) for e, t in zip(ei.t().tolist(), et.tolist())}
    assert edges == {(0, 1): 1, (1, 0): 1, (0, 2): 1, (2, 0): 1, (2, 3): 0, (3, 2): 0}
    k = ei.t().tolist().index([0, 1])
    assert torch.allclose(vec[k], torch.tensor([-0.2, 0.0, 0.0], dtype=torch.float64))


def test_box_errors_are_clear():
    x = torch.rand(10, 3)
    with pytest.raises(ValueError, match="cutoff_nm"):
        build_edges(x, torch.eye(3), 0.6, torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="reduced"):
        build_edges(x, torch.tensor([[3.0, 0.5, 0], [0, 3, 0], [0, 0, 3]]), 0.6, torch.zeros(2, 0, dtype=torch.long))


def _models(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    emb = EmbeddingGNN(4, 6, hidden=16, layers=2).to(dtype)
    dyn = DynamicsGNN(16, history=3, hidden=32, layers=3, min_std=0.01).to(dtype)
    sco = ScoreGNN(32, 32, 3).to(dtype)
    return emb, dyn, sco


def _inputs(x, box, dtype=torch.float64, seed=3):
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    bonds = torch.stack([torch.arange(0, n - 1, 2), torch.arange(1, n, 2)])
    ei, ev, et = build_edges(x, box, 1.0, bonds)
    return dict(emb=torch.randn(n, 16, generator=g, dtype=dtype), masses=torch.rand(n, generator=g, dtype=dtype) + 1,
                hist=torch.randn(n, 3, 3, generator=g, dtype=dtype), disp=torch.randn(n, 3, generator=g, dtype=dtype),
                sigma=torch.full((n, 1), 0.1, dtype=dtype), ei=ei, ev=ev, et=et)


def _run(dyn, sco, d):
    mean, std, lat = dyn(d["emb"], d["masses"], d["hist"], d["ei"], d["ev"], d["et"], 1.0)
    gns = sco(lat, d["disp"] / 0.1, d["disp"], d["ei"], d["ev"], d["et"], d["sigma"], 1.0, 0.05)
    return mean, std, lat, gns


@pytest.mark.parametrize("kind", ["orthorhombic", "triclinic", "none"])
def test_translation_invariance(kind):
    box = BOXES[kind]
    _, dyn, sco = _models()
    x = _points(box, 120, seed=5)
    g = torch.Generator().manual_seed(7)
    shift = torch.randn(3, generator=g, dtype=torch.float64) * 3.0
    if box is not None:
        shift = shift + torch.tensor([2.0, -1.0, 3.0], dtype=torch.float64) @ box   # across the box
    out0 = _run(dyn, sco, _inputs(x, box))
    d1 = _inputs(x + shift, box)
    assert torch.equal(d1["ei"], _inputs(x, box)["ei"])
    out1 = _run(dyn, sco, d1)
    for a, b in zip(out0, out1):
        assert torch.allclose(a, b, atol=1e-9, rtol=0)
    # and a non-trivial function: a different configuration changes the output
    out2 = _run(dyn, sco, _inputs(_points(box, 120, seed=6), box))
    assert not torch.allclose(out0[0], out2[0], atol=1e-3)


def test_std_bounded_below_and_shapes():
    _, dyn, sco = _models()
    d = _inputs(_points(BOXES["orthorhombic"], 50, seed=2), BOXES["orthorhombic"])
    mean, std, lat, gns = _run(dyn, sco, d)
    assert mean.shape == (50, 3) and std.shape == (50, 3) and lat.shape == (50, 32) and gns.shape == (50, 3)
    assert torch.all(std >= 0.01)


def test_embedding_is_mean_over_bead_atoms():
    emb, _, _ = _models()
    at = torch.tensor([0, 1, 2, 3, 0, 1])
    masses = torch.tensor([12.0, 14.0, 16.0, 6.9, 12.0, 14.0], dtype=torch.float64)
    bonds = torch.tensor([[0, 1, 1], [1, 2, 3]])
    bi = torch.cat([bonds, bonds.flip(0)], 1)
    bt = torch.tensor([1, 2, 1, 1, 2, 1])
    out = emb(at, masses, bi, bt, torch.tensor([0, 0, 1, 1, 2, 2]), 3)
    per_atom = emb(at, masses, bi, bt, torch.arange(6), 6)
    assert torch.allclose(out, per_atom.reshape(3, 2, -1).mean(1), atol=1e-12)
    # beads 0 and 2: atoms of the same types but different bonding -> different embeddings
    assert not torch.allclose(out[0], out[2], atol=1e-4)


def test_eager_equals_scripted():
    emb, dyn, sco = _models(torch.float32)
    d = _inputs(_points(BOXES["triclinic"], 80, seed=4).float(), BOXES["triclinic"].float(), torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s_emb, s_dyn, s_sco = (torch.jit.script(m) for m in (emb, dyn, sco))
    for a, b in zip(_run(dyn, sco, d), _run(s_dyn, s_sco, d)):
        assert torch.allclose(a, b, atol=1e-5, rtol=0)
    at = torch.randint(0, 4, (12,))
    bi = torch.stack([torch.arange(11), torch.arange(1, 12)])
    bi = torch.cat([bi, bi.flip(0)], 1)
    args = (at, torch.rand(12) + 1, bi, torch.randint(0, 6, (22,)), torch.arange(12) // 3, 4)
    assert torch.allclose(emb(*args), s_emb(*args), atol=1e-5, rtol=0)


def test_score_gnn_is_rotation_equivariant():
    """Rotating the noisy configuration, the residuals and the displacements rotates the Score GNN output
    (same latents): the pair + residual decoder is built from invariant features only."""
    _, _, sco = _models()
    x = _points(None, 60, seed=3)
    d = _inputs(x, None)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64))
    lat = torch.randn(60, 32, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    out = sco(lat, d["disp"] / 0.1, d["disp"], d["ei"], d["ev"], d["et"], d["sigma"], 1.0, 0.05)
    rot = sco(lat, d["disp"] @ q.T / 0.1, d["disp"] @ q.T, d["ei"], d["ev"] @ q.T, d["et"], d["sigma"], 1.0, 0.05)
    torch.testing.assert_close(rot, out @ q.T, atol=1e-9, rtol=1e-7)
    assert out.abs().max() > 1e-3   # not trivially zero


def test_symmetric_pair_weights_obey_newtons_third_law():
    """With ``symmetric_pairs`` the equilibrium score (zero residual; output over sigma, one sigma per bead) sums
    to zero over the beads of each graph of a periodic batch, and the scripted module agrees; without it the sum
    is not zero."""
    g = torch.Generator().manual_seed(7)
    box = BOXES["triclinic"]
    x = torch.cat([_points(box, 50, seed=8), _points(box, 40, seed=9)])
    batch = torch.cat([torch.zeros(50, dtype=torch.long), torch.ones(40, dtype=torch.long)])
    bonds = torch.tensor([[0, 1], [1, 2], [60, 61]]).T
    ei, ev, et = build_edges(x, None, 0.9, bonds, batch=batch, boxes=torch.stack([box, box]))
    lat = torch.randn(90, 8, generator=g, dtype=torch.float64)
    zero = torch.zeros(90, 3, dtype=torch.float64)
    sigma = 0.02 + 0.06 * torch.rand(90, 1, generator=g, dtype=torch.float64)  # one noise level per bead
    sums = {}
    for sym in (False, True):
        torch.manual_seed(0)
        net = ScoreGNN(latent_dim=8, hidden=16, layers=2, symmetric_pairs=sym).double()
        out = net(lat, zero, zero, ei, ev, et, sigma, 0.9, 0.1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scripted = torch.jit.script(net)
        torch.testing.assert_close(scripted(lat, zero, zero, ei, ev, et, sigma, 0.9, 0.1), out)
        assert out.abs().max() > 1e-3
        score = (out / sigma).detach()     # the score: the network's output over each bead's sigma
        sums[sym] = [float(score[batch == b].sum(0).norm() / score[batch == b].norm(dim=1).mean()) for b in (0, 1)]
        assert net.hyperparameters()["symmetric_pairs"] is sym
    assert max(sums[True]) < 1e-10
    assert min(sums[False]) > 1e-3
