"""Tests for openmm_mlcg.nn.EnergyScoreGNN: a conservative score (-grad E), smooth at the cutoff, scriptable."""
import warnings

import pytest
import torch

from openmm_mlcg.nn import EnergyScoreGNN, ScoreGNN, build_edges

BOX = torch.tensor([[2.0, 0, 0], [0.7, 2.1, 0], [-0.5, 0.8, 2.2]], dtype=torch.float64)
CUTOFF = 0.8
BONDS = torch.tensor([[0, 1], [1, 2], [5, 6]]).T


def _config(n=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g, dtype=torch.float64) @ BOX
    lat = torch.randn(n, 8, generator=g, dtype=torch.float64)
    sigma = 0.02 + 0.05 * torch.rand(n, 1, generator=g, dtype=torch.float64)   # one noise level per bead
    return x, lat, sigma


def _score(net, x, lat, sigma, box=BOX):
    """The score (1/nm) at x: the network's output over each bead's sigma, graph rebuilt on x."""
    ei, ev, et = build_edges(x, box, CUTOFF, BONDS)
    zero = torch.zeros_like(x)
    return net(lat, zero, zero, ei, ev, et, sigma, CUTOFF, 0.1) / sigma


def _energy(net, x, lat, sigma):
    ei, ev, et = build_edges(x, BOX, CUTOFF, BONDS)
    with torch.no_grad():
        return float(net.energy(lat, ei, ev, et, sigma, CUTOFF, 0.1).sum())


def _net(cls=EnergyScoreGNN, **kw):
    torch.manual_seed(0)
    return cls(latent_dim=8, hidden=16, layers=2, **kw).double().eval()


def _jacobian(net, x, lat, sigma, h=1e-6):
    """d score_i / d x_j by central differences, (3n, 3n)."""
    cols = []
    for k in range(x.numel()):
        dx = torch.zeros(x.numel(), dtype=x.dtype)
        dx[k] = h
        dx = dx.reshape(x.shape)
        with torch.no_grad():
            cols.append(((_score(net, x + dx, lat, sigma) - _score(net, x - dx, lat, sigma)) / (2 * h)).reshape(-1))
    return torch.stack(cols, 1)


def test_score_is_minus_the_gradient_of_the_energy():
    """Central differences of the energy equal the score, and the score's Jacobian is symmetric (a gradient
    field has no curl), while the pair-vector ScoreGNN's is not; the score sums to zero (translation-invariant
    energy) with one sigma per bead, and rotating the configuration rotates it."""
    x, lat, sigma = _config()
    net = _net()
    with torch.no_grad():
        s = _score(net, x, lat, sigma)
    assert s.abs().max() > 1e-2                                   # not trivially zero
    h = 1e-6
    for i, k in [(0, 0), (1, 2), (7, 1), (29, 2)]:
        dx = torch.zeros_like(x)
        dx[i, k] = h
        fd = -(_energy(net, x + dx, lat, sigma) - _energy(net, x - dx, lat, sigma)) / (2 * h)
        assert fd == pytest.approx(float(s[i, k]), rel=1e-5, abs=1e-7)
    assert float(s.sum(0).norm() / s.norm(dim=1).mean()) < 1e-10
    x, lat, sigma = x[:12], lat[:12], sigma[:12]
    jac = _jacobian(net, x, lat, sigma)
    asym = float((jac - jac.T).norm() / (jac + jac.T).norm())
    assert asym < 1e-6
    control = _jacobian(_net(ScoreGNN), x, lat, sigma)
    assert float((control - control.T).norm() / (control + control.T).norm()) > 1e-2
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64))
    with torch.no_grad():
        out = _score(net, x, lat, sigma, box=None)
        rot = _score(net, x @ q.T, lat, sigma, box=None)
    torch.testing.assert_close(rot, out @ q.T, atol=1e-9, rtol=1e-7)


def test_energy_and_score_are_continuous_at_the_cutoff():
    """A non-bonded pair crossing the cutoff changes neither the energy nor the score by a jump."""
    x, lat, sigma = _config(n=3)
    x = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    net = _net()
    bonds = torch.zeros(2, 0, dtype=torch.long)
    vals = []
    for d in (CUTOFF - 1e-7, CUTOFF + 1e-7):
        x[2] = torch.tensor([0.0, d, 0.0])
        ei, ev, et = build_edges(x, None, CUTOFF, bonds)
        zero = torch.zeros_like(x)
        with torch.no_grad():
            out = net(lat, zero, zero, ei, ev, et, sigma, CUTOFF, 0.1)
            e = float(net.energy(lat, ei, ev, et, sigma, CUTOFF, 0.1).sum())
        vals.append((e, out, ei.shape[1]))
    (e_in, s_in, n_in), (e_out, s_out, n_out) = vals
    assert n_in > n_out                                           # the pair really crosses the cutoff
    assert abs(e_in - e_out) < 1e-8
    torch.testing.assert_close(s_in, s_out, atol=1e-6, rtol=0)


def test_scripted_equals_eager_and_training_gets_parameter_gradients():
    """TorchScript and eager agree under the runtime's no_grad (which stays off afterwards, and the output has no
    graph); in training (gradients on) the loss on the output reaches every parameter (double backward)."""
    x, lat, sigma = _config()
    ei, ev, et = build_edges(x, BOX, CUTOFF, BONDS)
    zero = torch.zeros_like(x)
    net = _net()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(net)
    with torch.no_grad():
        out = net(lat, zero, zero, ei, ev, et, sigma, CUTOFF, 0.1)
        out_s = scripted(lat, zero, zero, ei, ev, et, sigma, CUTOFF, 0.1)
        assert not torch.is_grad_enabled()
    assert not out.requires_grad
    torch.testing.assert_close(out_s, out, atol=1e-12, rtol=0)
    scripted.train()
    loss = scripted(lat, zero, zero, ei, ev, et, sigma, CUTOFF, 0.1).pow(2).sum()
    loss.backward()
    grads = {name: p.grad for name, p in scripted.named_parameters()}
    # every weight matrix shapes the forces (some biases only shift the energy by a constant)
    missing = [name for name, g in grads.items() if name.endswith("weight") and (g is None or not bool(g.abs().max() > 0))]
    assert missing == [], missing
    assert net.hyperparameters()["conservative"] is True


def test_config_and_export_refuse_what_the_energy_score_cannot_do(tmp_path):
    """``model.score_energy`` needs the cg_langevin sampler; torch.export cannot trace its autograd gradient."""
    from openmm_mlcg.train.config import TrainConfig

    with pytest.raises(ValueError, match="model.score_energy"):
        TrainConfig.from_dict({"model": {"score_energy": True}, "score": {"sampler": "langevin"}})
    from openmm_mlcg.bundle.export import save_bundle

    with pytest.raises(ValueError, match="torch.export"):
        save_bundle(tmp_path / "m.zip", None, None, _net(), {}, export_format="torch.export")
    assert not (tmp_path / "m.zip").exists()
