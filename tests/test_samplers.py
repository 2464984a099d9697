"""The refinement samplers recover structured joint distributions from their exact noisy scores.

The start is the independent per-bead Gaussian (the Dynamics GNN's proposal) smoothed to sigma_max, so these
tests check exactly what the samplers must do at runtime: restore the joint structure that a factorised
Gaussian lacks (issue 9).
"""
import math

import pytest
import torch

from types import SimpleNamespace

from openmm_mlcg.generators import get_generator
from openmm_mlcg.generators.score_samplers import (
    ancestral, annealed_langevin, gaussian_prior_gns, initial_state, probability_flow)
from openmm_mlcg.model.dynamics import geometric_sigmas


def refine(gns_fn, x0, sigmas, sampler, steps_per_level=1, step_size=0.0, schedule="paper", corrector_steps=0,
           snr=0.16, generator=None, noise=True):
    """The score samplers' functions by registered generator name (a bundle dispatches through the registry)."""
    name = get_generator(sampler).name
    if name == "langevin":
        return annealed_langevin(gns_fn, x0, sigmas, steps_per_level, step_size, schedule, generator, noise)
    if name == "ancestral":
        return ancestral(gns_fn, x0, sigmas, corrector_steps, snr, generator, noise)
    return probability_flow(gns_fn, x0, sigmas)


def score_passes(sampler, n_levels, steps_per_level=1, corrector_steps=0):
    """Score GNN passes of a generator for a bundle with these settings."""
    meta = SimpleNamespace(sigmas_nm=[1.0] * n_levels, langevin_steps_per_level=steps_per_level,
                           corrector_steps=corrector_steps)
    return get_generator(sampler).score_passes(meta)

# (options, levels, tolerance): measured bias on the pair test at 10/20/40 levels: ode +15/+6/+4 %,
# ancestral -44/-24/-13 %, ancestral + 1 corrector step -40/-22/-10 % (both shrink the variance)
SAMPLERS = [
    (dict(sampler="ode"), 20, 0.10),
    (dict(sampler="ancestral", corrector_steps=1), 40, 0.15),
]


def _pair_gns(rho, s):
    """Exact GNS of pairs of beads (rows 2i, 2i+1) whose components have covariance s^2 [[1, rho], [rho, 1]]."""
    def gns(x, sigma):
        a, b = x[0::2], x[1::2]
        c = torch.tensor([[s * s + sigma * sigma, rho * s * s], [rho * s * s, s * s + sigma * sigma]],
                         dtype=x.dtype)
        inv = torch.linalg.inv(c)
        ga = -(inv[0, 0] * a + inv[0, 1] * b)
        gb = -(inv[1, 0] * a + inv[1, 1] * b)
        out = torch.empty_like(x)
        out[0::2], out[1::2] = sigma * ga, sigma * gb
        return out
    return gns


@pytest.mark.parametrize("opts,levels,tol", SAMPLERS, ids=[o[0]["sampler"] for o in SAMPLERS])
def test_sampler_restores_pair_correlation(opts, levels, tol):
    """Two strongly correlated beads (rho = 0.95, like neighbours in a cage): from independent starts, the
    sampler must recover the joint law: per-bead variance s^2 and the small variance of the difference."""
    g = torch.Generator().manual_seed(0)
    rho, s, n_pairs = 0.95, 0.1, 3000
    sigmas = geometric_sigmas(0.5, 0.002, levels)
    mean = torch.zeros(2 * n_pairs, 3, dtype=torch.float64)
    std = torch.full_like(mean, s)
    x0 = initial_state(mean, std, float(sigmas[0]), g)
    x = refine(_pair_gns(rho, s), x0, sigmas, generator=g, **opts)
    diff_var = float((x[0::2] - x[1::2]).var())
    exact_diff = 2 * s * s * (1 - rho)                            # 0.001 nm^2
    assert abs(diff_var - exact_diff) < tol * exact_diff, (diff_var, exact_diff)
    assert abs(float(x.var()) - s * s) < tol * s * s
    # without refinement (the independent Gaussian) the difference is 20x too wide: the test can fail
    indep = mean + std * torch.randn(mean.shape, generator=g, dtype=mean.dtype)
    assert float((indep[0::2] - indep[1::2]).var()) > 10 * exact_diff


def _mixture_gns(centres, s):
    def gns(x, sigma):
        v = s * s + sigma * sigma
        d = x[:, None, :] - centres[None, :, :]                   # (n, K, 3)
        logw = -0.5 * (d * d).sum(-1) / v
        w = torch.softmax(logw, dim=1)[..., None]
        return sigma * (-(w * d).sum(1) / v)
    return gns


@pytest.mark.parametrize("opts", [dict(sampler="ode"), dict(sampler="ancestral", corrector_steps=1),
                                  dict(sampler="langevin", schedule="song_ermon", steps_per_level=20,
                                       step_size=1e-6)], ids=["ode", "ancestral", "langevin"])
def test_sampler_recovers_bimodal_distribution(opts):
    """Equal mixture of two narrow modes at +-0.3 nm along x (a hard-core-like choice of two places): the
    samples split evenly between the modes and keep the narrow width, which a Gaussian cannot do."""
    g = torch.Generator().manual_seed(1)
    s, n = 0.03, 4000
    centres = torch.tensor([[0.3, 0.0, 0.0], [-0.3, 0.0, 0.0]], dtype=torch.float64)
    sigmas = geometric_sigmas(1.0, 0.003, 14)
    mean = torch.zeros(n, 3, dtype=torch.float64)
    std = torch.full_like(mean, 0.3)                              # the moment-matched Gaussian's width
    x = refine(_mixture_gns(centres, s), initial_state(mean, std, float(sigmas[0]), g), sigmas, generator=g,
               **opts)
    frac = float((x[:, 0] > 0).double().mean())
    assert abs(frac - 0.5) < 4 * math.sqrt(0.25 / n) + 0.02
    near = (x[:, None, :] - centres[None]).norm(dim=-1).min(1).values
    assert float((near < 4 * s).double().mean()) > 0.95           # mass sits in the modes
    width = float((x[:, 0].abs() - 0.3).std())
    assert abs(width - s) < 0.25 * s


def test_gaussian_prior_gns_is_exact_score_and_ode_keeps_gaussian():
    """The prior GNS equals sigma grad log N(mean, std^2 + sigma^2); the ODE sampler started from the
    smoothed Gaussian returns N(mean, std^2)."""
    g = torch.Generator().manual_seed(2)
    mean = torch.tensor([[0.1, -0.2, 0.3]], dtype=torch.float64).expand(5000, 3)
    std = torch.tensor([[0.05, 0.1, 0.2]], dtype=torch.float64).expand(5000, 3)
    x = (mean + 0.3 * torch.randn(mean.shape, generator=g, dtype=torch.float64)).requires_grad_(True)
    sigma = 0.07
    logp = (-0.5 * (x - mean) ** 2 / (std ** 2 + sigma ** 2)).sum()
    (grad,) = torch.autograd.grad(logp, x)
    torch.testing.assert_close(gaussian_prior_gns(x.detach(), mean, std, sigma), sigma * grad)
    sigmas = geometric_sigmas(0.5, 0.002, 20)
    out = probability_flow(lambda y, sg: gaussian_prior_gns(y, mean, std, sg),
                           initial_state(mean, std, float(sigmas[0]), g), sigmas)
    torch.testing.assert_close(out.std(0), std[0], rtol=0.05, atol=0.0)
    torch.testing.assert_close(out.mean(0), mean[0], rtol=0.0, atol=0.01)


def test_score_passes_and_bad_arguments():
    assert score_passes("ode", 10) == 19
    assert score_passes("ancestral", 10, corrector_steps=1) == 19
    assert score_passes("langevin", 20, steps_per_level=10) == 200
    x = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="sampler"):
        refine(lambda y, s: y, x, [1.0], "euler")
    with pytest.raises(ValueError, match="sigmas"):
        refine(lambda y, s: y, x, [0.1, 1.0], "ode")
    with pytest.raises(ValueError, match="schedule"):
        refine(lambda y, s: y, x, [1.0], "langevin", steps_per_level=1, step_size=1e-3, schedule="linear")
