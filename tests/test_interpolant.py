"""The stochastic-interpolant generator recovers structured joint laws from their exact denoisers.

The start is the current state x_t (a point), so the tests check what the generator must do at runtime: produce
the joint law of x_{t+1} given x_t, including correlations between beads that a factorised Gaussian lacks.
"""
import math

import pytest
import torch

from openmm_mlcg.generators import interpolant as I


def _gaussian_joint_denoiser(x0, mean, cov, a):
    """Exact E[x1 | x_s] for pairs (rows 2i, 2i+1, per coordinate) with x1 - mean ~ N(0, cov) (2x2)."""
    def denoise(x, s):
        c_xs = s * s * cov + a * a * (1 - s) ** 2 * s * torch.eye(2, dtype=x.dtype)   # Var(x_s)
        gain = s * cov @ torch.linalg.inv(c_xs) if s > 0 else torch.zeros(2, 2, dtype=x.dtype)
        innov = x - (1 - s) * x0 - s * mean
        pairs = torch.stack([innov[0::2], innov[1::2]], -1)                           # (m, 3, 2)
        upd = pairs @ gain.T
        out = mean.clone()
        out[0::2] += upd[..., 0]
        out[1::2] += upd[..., 1]
        return out
    return denoise


@pytest.mark.parametrize("n_steps", [10, 19])
def test_interpolant_recovers_pair_correlation(n_steps):
    """Two strongly correlated beads (rho = 0.95): from the point x_t the generator must produce per-bead
    variance s^2 and the 20x smaller variance of the difference."""
    g = torch.Generator().manual_seed(0)
    rho, s, m, a = 0.95, 0.1, 3000, 0.1
    cov = s * s * torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64)
    x0 = torch.zeros(2 * m, 3, dtype=torch.float64)
    mean = torch.full_like(x0, 0.03)
    x = I.sample(_gaussian_joint_denoiser(x0, mean, cov, a), x0, n_steps, a, generator=g)
    diff_var = float((x[0::2] - x[1::2]).var())
    exact = 2 * s * s * (1 - rho)
    assert abs(diff_var - exact) < 0.12 * exact, (diff_var, exact)
    assert abs(float(x.var()) - s * s) < 0.08 * s * s
    assert abs(float(x.mean()) - 0.03) < 0.005
    # the factorised Gaussian denoiser (what an untrained residual gives) is 20x too wide in the difference
    std = torch.full_like(x0, s)
    y = I.sample(lambda xx, ss: I.gaussian_denoiser(xx, ss, x0, mean, std, a)[0], x0, n_steps, a, generator=g)
    assert float((y[0::2] - y[1::2]).var()) > 10 * exact


def _mixture_denoiser(x0, centres, s, a):
    """Exact E[x1 | x_s] per coordinate for x1 ~ equal mixture of N(c_k, s^2)."""
    def denoise(x, t):
        if t == 0:
            return torch.full_like(x, sum(centres) / len(centres))
        var = t * t * s * s + a * a * (1 - t) ** 2 * t
        mu = torch.stack([(1 - t) * x0 + t * c for c in centres])                    # (K, n, 3)
        logw = -0.5 * (x - mu) ** 2 / var
        w = torch.softmax(logw, 0)
        k = t * s * s / var
        comp = torch.stack([c + k * (x - m) for c, m in zip(centres, mu)])
        return (w * comp).sum(0)
    return denoise


def test_interpolant_recovers_bimodal_distribution():
    """Bimodal next position (modes at -0.2 and +0.2 nm, width 0.03 nm): both modes, equal weight, right width."""
    g = torch.Generator().manual_seed(1)
    s, a = 0.03, 0.15
    x0 = torch.zeros(20000, 1, dtype=torch.float64)
    x = I.sample(_mixture_denoiser(x0, [-0.2, 0.2], s, a), x0, 19, a, generator=g)
    right = x[x > 0]
    assert abs(right.numel() / x.numel() - 0.5) < 0.03
    assert abs(float(right.mean()) - 0.2) < 0.01
    assert abs(float(right.std()) - s) < 0.25 * s
    assert float((x.abs() < 0.1).double().mean()) < 0.01     # nothing between the modes


def test_gaussian_denoiser_is_exact_and_sampler_keeps_gaussian():
    """For a per-bead Gaussian target the closed-form denoiser equals a Monte Carlo conditional mean, and the
    generator reproduces the Gaussian's mean and variance."""
    g = torch.Generator().manual_seed(2)
    a, s_, mu = 0.11, 0.11, 0.05
    n = 200000
    x0 = torch.zeros(n, 1, dtype=torch.float64)
    x1 = mu + s_ * torch.randn(n, 1, generator=g, dtype=torch.float64)
    t = torch.full((n, 1), 0.6, dtype=torch.float64)
    xs = I.interpolate(x0, x1, t, torch.randn(n, 1, generator=g, dtype=torch.float64), a)
    d, post, _ = I.gaussian_denoiser(xs, t, x0, torch.full_like(x0, mu), torch.full_like(x0, s_), a)
    # regression of x1 on xs: the exact denoiser is the best predictor, with residual variance post^2
    assert abs(float(((x1 - d) ** 2).mean()) / float((post ** 2).mean()) - 1) < 0.02
    beta = float(((x1 - x1.mean()) * (xs - xs.mean())).mean() / xs.var())
    slope = float((d[1] - d[0]) / (xs[1] - xs[0]))
    assert abs(beta - slope) < 0.02
    y = I.sample(lambda xx, ss: I.gaussian_denoiser(xx, ss, x0, torch.full_like(x0, mu), torch.full_like(x0, s_),
                                                    a)[0], x0, 10, a, generator=g)
    assert abs(float(y.mean()) - mu) < 0.002
    assert abs(float(y.var()) / s_ ** 2 - 1) < 0.03


def test_bad_arguments():
    x = torch.zeros(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="n_steps"):
        I.sample(lambda xx, s: xx, x, 0, 0.1)
    with pytest.raises(ValueError, match="a: expected"):
        I.sample(lambda xx, s: xx, x, 5, -1.0)
    with pytest.raises(ValueError, match="a: expected"):
        I.interpolate(x, x, torch.zeros(4, 1), x, math.nan)
