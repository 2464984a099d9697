"""Score matching and annealed Langevin refinement on Gaussians with known scores (paper eq. 2, Algorithm 1)."""
import math

import pytest
import torch

from openmm_mlcg.model.dynamics import geometric_sigmas
from openmm_mlcg.generators.score_samplers import annealed_langevin
from openmm_mlcg.nn.mlp import MLP


def dsm_loss(gns, noisy, clean, sigma):
    """Paper eq. (2): mean over samples of 1/2 sigma^2 || GNS/sigma - (clean - noisy)/sigma^2 ||^2."""
    target = (clean - noisy) / sigma ** 2
    return 0.5 * (sigma ** 2 * ((gns / sigma - target) ** 2).sum(-1, keepdim=True)).mean()


def test_denoising_score_matching_recovers_gaussian_score():
    """A small MLP GNS(x~, log sigma) trained with eq. (2) on N(mu, s^2 I) data learns
    sigma * score of N(mu, (s^2 + sigma^2) I), i.e. -sigma (x~ - mu) / (s^2 + sigma^2)."""
    torch.manual_seed(0)
    mu = torch.tensor([0.3, -0.2, 0.1])
    s = 0.4
    sigmas = geometric_sigmas(1.0, 0.3, 3).float()   # sigma ~ s: the score signal is not buried in noise
    model = MLP(4, 32, 3, n_hidden_layers=2, layer_norm=False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.995)
    for _ in range(600):
        clean = mu + s * torch.randn(1024, 3)
        sigma = sigmas[torch.randint(0, len(sigmas), (1024, 1))]
        noisy = clean + sigma * torch.randn(1024, 3)
        gns = model(torch.cat([noisy, sigma.log()], -1))
        loss = dsm_loss(gns, noisy, clean, sigma)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        for sig in sigmas:
            v = s ** 2 + float(sig) ** 2
            x = mu + math.sqrt(v) * torch.randn(4000, 3)           # points where p_sigma has its mass
            pred = model(torch.cat([x, torch.full((4000, 1), float(sig)).log()], -1))
            exact = -float(sig) * (x - mu) / v
            rel = (pred - exact).norm() / exact.norm()
            assert rel < 0.15, (float(sig), float(rel))
    # sanity: an untrained model is far from the analytic score (the check can fail)
    fresh = MLP(4, 64, 3, n_hidden_layers=2, layer_norm=False)
    with torch.no_grad():
        x = mu + torch.randn(1000, 3)
        pred = fresh(torch.cat([x, torch.zeros(1000, 1)], -1))
        assert (pred - (-(x - mu) / (s ** 2 + 1))).norm() / (x - mu).norm() > 0.1


@pytest.mark.parametrize("use_model_units", [False, True])
def test_annealed_langevin_samples_gaussian(use_model_units):
    """Algorithm 1 with the analytic GNS of N(mu, s^2) perturbed by sigma_i gives, at the last level, the
    unadjusted-Langevin stationary law N(mu, V / (1 - eps / (2 V))), V = s^2 + sigma_L^2."""
    g = torch.Generator().manual_seed(0)
    if use_model_units:   # nm-scale problem with the paper's shape of schedule (10 -> 0.01, geometric)
        mu, s, sigmas, steps, eps = 0.5, 0.01, geometric_sigmas(0.1, 0.0001, 10), 200, 2e-6
    else:
        mu, s, sigmas, steps, eps = -1.0, 0.5, geometric_sigmas(10.0, 0.01, 20), 100, 5e-3
    n = 20000
    x0 = torch.full((n // 3 + 1, 3), mu + 3.0 * s, dtype=torch.float64)   # start far from the target

    def gns(x, sig):
        return -sig * (x - mu) / (s ** 2 + sig ** 2)

    x = annealed_langevin(gns, x0, sigmas, steps, eps, generator=g).reshape(-1)
    v = s ** 2 + float(sigmas[-1]) ** 2
    var_exact = v / (1 - eps / (2 * v))
    m = x.numel()
    assert abs(float(x.mean()) - mu) < 4 * math.sqrt(var_exact / m)
    assert abs(float(x.var()) - var_exact) < 4 * var_exact * math.sqrt(2 / m)
    # the refinement really moved the samples (a broken update would leave them at x0)
    assert float(x.var()) > 0.5 * var_exact


def test_annealed_langevin_generator_reproducible():
    sig = geometric_sigmas(1.0, 0.1, 3)
    f = lambda x, sigma: -x  # noqa: E731
    a = annealed_langevin(f, torch.zeros(5, 3), sig, 4, 1e-3, generator=torch.Generator().manual_seed(1))
    b = annealed_langevin(f, torch.zeros(5, 3), sig, 4, 1e-3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
