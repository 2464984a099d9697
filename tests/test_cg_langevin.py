"""The CG Langevin generator samples known laws from their exact scores and moves free beads as the OU process.

Known answers: (1) a free bead (zero score) under Langevin dynamics from Maxwell-Boltzmann velocities has
MSD(t) = 6 (kT/m) / gamma^2 (gamma t - 1 + exp(-gamma t)) (Ornstein-Uhlenbeck); (2) two beads bound by a
harmonic pair potential, chained over many model steps, sample the Boltzmann law of their separation (variance
kT/k per axis) while a free bead's variance only grows; (3) a bimodal (double-well) law keeps both wells.
"""
import math

import numpy as np

import pytest
import torch

from openmm_mlcg.generators import cg_langevin as C

KT_M = 0.025  # nm^2/ps^2, argon at 120 K


def test_free_bead_msd_is_ornstein_uhlenbeck():
    g = torch.Generator().manual_seed(0)
    n, gamma, dt = 20000, 1.0, 2.0
    x0 = torch.zeros(n, 3, dtype=torch.float64)
    kt_m = torch.full((n, 1), KT_M, dtype=torch.float64)
    x = C.sample(lambda y: torch.zeros_like(y), x0, kt_m, 15, dt, gamma, 1e-3, generator=g)
    msd = float((x ** 2).sum(-1).mean())
    exact = 6 * KT_M / gamma ** 2 * (gamma * dt - 1 + math.exp(-gamma * dt))
    assert abs(msd - exact) < 0.04 * exact, (msd, exact)
    # high friction: the Brownian limit 6 D t with D = kT / (m gamma)
    x = C.sample(lambda y: torch.zeros_like(y), x0, kt_m, 40, dt, 20.0, 1e-3, generator=g)
    brownian = 6 * KT_M / 20.0 * dt
    assert abs(float((x ** 2).sum(-1).mean()) - brownian) < 0.1 * brownian


@pytest.mark.parametrize("light_mass_ratio", [1.0, 40.0 / 6.94])
def test_harmonic_pair_samples_boltzmann_separation(light_mass_ratio):
    """Pairs (2i, 2i+1) bound by U = k/2 |r|^2, r = x_a - x_b (score -+ k/kT r on the two beads): chained over
    six model steps the separation has its Boltzmann variance kT/k per axis, while the pair's centre diffuses.
    The masses do not enter the stationary law: with one bead of each pair 5.8x lighter (Li+ beside a 40 amu
    bead) the variance is the same, which is why a mass floor (``cg_langevin_mass_floor_amu``) is allowed."""
    g = torch.Generator().manual_seed(1)
    m, k_over_kt = 4000, 400.0  # 1/nm^2: the separation std is 0.05 nm per axis

    def score(x):
        r = x[0::2] - x[1::2]
        out = torch.empty_like(x)
        out[0::2], out[1::2] = -k_over_kt * r, k_over_kt * r
        return out

    x = torch.zeros(2 * m, 3, dtype=torch.float64)
    kt_m = torch.full((2 * m, 1), KT_M, dtype=torch.float64)
    kt_m[1::2] *= light_mass_ratio
    for _ in range(6):
        x = C.sample(score, x, kt_m, 15, 2.0, 1.0, 1e-4, generator=g)
    r = x[0::2] - x[1::2]
    exact = 1.0 / k_over_kt  # Var(r) per axis = kT / k
    assert abs(float(r.var()) - exact) < 0.08 * exact, (float(r.var()), exact)
    centre = 0.5 * (x[0::2] + x[1::2])
    assert float(centre.var()) > 5 * exact  # the pair as a whole moves on


def test_double_well_keeps_both_wells():
    g = torch.Generator().manual_seed(2)
    n, c, s = 6000, 0.2, 0.03

    def score(x):  # equal mixture of N(+-c, s^2) per coordinate
        a = torch.exp(-0.5 * (x - c) ** 2 / s ** 2)
        b = torch.exp(-0.5 * (x + c) ** 2 / s ** 2)
        return (a * (c - x) + b * (-c - x)) / (s * s * (a + b))

    x = torch.where(torch.rand(n, 3, generator=g, dtype=torch.float64) < 0.5, -c, c).to(torch.float64)
    kt_m = torch.full((n, 1), KT_M, dtype=torch.float64)
    x = C.sample(score, x, kt_m, 15, 2.0, 2.0, 1e-4, generator=g)
    frac_pos = float((x > 0).double().mean())
    assert 0.46 < frac_pos < 0.54
    near = ((x.abs() - c).abs() < 3 * s).double().mean()
    assert float(near) > 0.97  # nothing between the wells
    width = float((x.abs() - c).std())
    assert abs(width - s) < 0.1 * s


def test_deterministic_and_tweedie():
    x0 = torch.randn(50, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    kt_m = torch.full((50, 1), KT_M, dtype=torch.float64)
    # no noise and zero score: nothing moves (zero initial velocities)
    assert torch.equal(C.sample(lambda y: torch.zeros_like(y), x0, kt_m, 5, 2.0, 1.0, 0.01, noise=False), x0)
    # the Tweedie step of a Gaussian p_sigma = N(0, tau^2 + sigma^2) shrinks by tau^2 / (tau^2 + sigma^2)
    tau, sig = 0.1, 0.05
    y = C.sample(lambda y: -y / (tau ** 2 + sig ** 2), x0, kt_m, 1, 1e-6, 0.0, sig, noise=False)
    assert torch.allclose(y, x0 * tau ** 2 / (tau ** 2 + sig ** 2), rtol=1e-6)


@pytest.mark.parametrize("f", [1.0, 0.5])
def test_denoising_fraction_gives_the_gaussian_output_law(f):
    """Data N(0, tau^2), exact smoothed score of N(0, tau^2 + sigma^2): after the Langevin sub-steps have reached
    p_sigma, the output x + f sigma^2 s has variance (tau^2 + (1 - f) sigma^2)^2 / (tau^2 + sigma^2). At
    tau = sigma Tweedie (f = 1) halves the data's variance; one probability-flow Euler step (f = 1/2) is
    within 12.5 % of it and never narrower."""
    g = torch.Generator().manual_seed(5)
    n, tau = 20000, 0.03
    sig = tau
    x = tau * torch.randn(n, 3, dtype=torch.float64, generator=g)
    kt_m = torch.full((n, 1), KT_M, dtype=torch.float64)
    for _ in range(6):
        x = C.sample(lambda y: -y / (tau ** 2 + sig ** 2), x, kt_m, 15, 2.0, 2.0, sig, generator=g, denoise=f)
    law = (tau ** 2 + (1 - f) * sig ** 2) ** 2 / (tau ** 2 + sig ** 2)
    assert float(x.var()) == pytest.approx(law, rel=0.05)
    if f == 1.0:
        assert float(x.var()) < 0.55 * tau ** 2
    else:
        assert tau ** 2 < float(x.var()) < 1.18 * tau ** 2


@pytest.mark.parametrize("tau_over_sigma", [0.5, 1.0])
def test_reverse_levels_restore_a_narrow_gaussian(tau_over_sigma):
    """Data N(0, tau^2), exact smoothed score -x / (tau^2 + (r sigma)^2) at every level: K = 3 DDIM levels down
    to sigma / 3 and a half step from there return the data's variance within 10 % (the analytic product law of
    the deterministic maps), where Tweedie from sigma leaves tau^2 / (tau^2 + sigma^2) of it (0.2 at
    tau = sigma / 2) and the half step from sigma 1.8 times it."""
    g = torch.Generator().manual_seed(6)
    n, sig = 20000, 0.03
    tau = tau_over_sigma * sig
    ratios = [3.0 ** (-i / 3) for i in (1, 2, 3)]

    def score(y, r=1.0):
        return -y / (tau ** 2 + (r * sig) ** 2)

    x = tau * torch.randn(n, 3, dtype=torch.float64, generator=g)
    kt_m = torch.full((n, 1), KT_M, dtype=torch.float64)
    for _ in range(6):
        x = C.sample(score, x, kt_m, 15, 2.0, 2.0, sig, generator=g, denoise=0.5, reverse_ratios=ratios)
    gain, prev = 1.0, 1.0
    for r in ratios:
        gain *= (tau ** 2 + prev * r * sig ** 2) / (tau ** 2 + (prev * sig) ** 2)
        prev = r
    gain *= 1 - 0.5 * (prev * sig) ** 2 / (tau ** 2 + (prev * sig) ** 2)
    law = gain ** 2 * (tau ** 2 + sig ** 2)
    assert float(x.var()) == pytest.approx(law, rel=0.05)
    assert float(x.var()) == pytest.approx(tau ** 2, rel=0.10)
    # the single final step from sigma is far off for the same data
    y = C.sample(score, x, kt_m, 15, 2.0, 2.0, sig, generator=g, denoise=1.0)
    assert float(y.var()) < 0.7 * tau ** 2


def test_reverse_levels_are_validated_and_recorded_in_the_metadata():
    from openmm_mlcg.model.metadata import ModelMetadata
    from openmm_mlcg.train import TrainConfig

    x0 = torch.zeros(2, 3, dtype=torch.float64)
    kt_m = torch.full((2, 1), KT_M, dtype=torch.float64)
    for bad in ([0.5, 0.7], [1.0], [0.0], [float("nan")]):
        with pytest.raises(ValueError, match="reverse_ratios"):
            C.sample(lambda y, r=1.0: torch.zeros_like(y), x0, kt_m, 2, 2.0, 1.0, 0.01, reverse_ratios=bad)
    base = dict(model_time_step_ps=2.0, history=2, cutoff_nm=0.5, velocity_std=0.2, acceleration_std=0.3,
                atom_type_vocabulary=["C"], sigmas_nm=[0.08, 0.01], temperature_K=300.0,
                cg_langevin_sigma_nm=0.03)
    assert ModelMetadata.from_dict(base, "m").cg_langevin_reverse_ratios() == ()  # older bundles: none
    meta = ModelMetadata.from_dict(dict(base, cg_langevin_reverse_levels=2), "m")
    meta = ModelMetadata.from_dict(meta.to_dict(), "m")
    assert meta.cg_langevin_reverse_levels == 2
    assert meta.cg_langevin_reverse_ratios() == pytest.approx([(1 / 3) ** 0.5, 1 / 3])
    with pytest.raises(ValueError, match="cg_langevin_reverse_levels"):  # nothing trained below sigma
        ModelMetadata.from_dict(dict(base, sigmas_nm=[0.08, 0.04], cg_langevin_reverse_levels=2), "m")
    with pytest.raises(ValueError, match="cg_langevin_reverse_levels"):
        ModelMetadata.from_dict(dict(base, cg_langevin_reverse_levels=-1), "m")
    with pytest.raises(ValueError, match="score.cg_langevin_reverse_levels"):
        TrainConfig.from_dict({"score": {"cg_langevin_reverse_levels": -1}})


def test_denoise_is_validated_and_recorded_in_the_metadata():
    from openmm_mlcg.model.metadata import ModelMetadata
    from openmm_mlcg.train import TrainConfig

    x0 = torch.zeros(2, 3, dtype=torch.float64)
    kt_m = torch.full((2, 1), KT_M, dtype=torch.float64)
    for bad in (-0.1, 1.5, float("nan"), True):
        with pytest.raises(ValueError, match="denoise"):
            C.sample(lambda y: torch.zeros_like(y), x0, kt_m, 2, 2.0, 1.0, 0.01, denoise=bad)
    base = dict(model_time_step_ps=2.0, history=2, cutoff_nm=0.5, velocity_std=0.2, acceleration_std=0.3,
                atom_type_vocabulary=["C"], sigmas_nm=[0.02, 0.01])
    assert ModelMetadata.from_dict(base, "m").cg_langevin_denoise == 1.0  # older bundles: Tweedie
    meta = ModelMetadata.from_dict(dict(base, cg_langevin_denoise=0.5), "m")
    assert ModelMetadata.from_dict(meta.to_dict(), "m").cg_langevin_denoise == 0.5
    with pytest.raises(ValueError, match="cg_langevin_denoise"):
        ModelMetadata.from_dict(dict(base, cg_langevin_denoise=2.0), "m")
    with pytest.raises(ValueError, match="score.cg_langevin_denoise"):
        TrainConfig.from_dict({"score": {"cg_langevin_denoise": -1.0}})


def test_bad_arguments():
    x0 = torch.zeros(2, 3, dtype=torch.float64)
    kt_m = torch.full((2, 1), KT_M, dtype=torch.float64)
    zero = lambda y: torch.zeros_like(y)  # noqa: E731
    with pytest.raises(ValueError, match="n_steps"):
        C.sample(zero, x0, kt_m, 0, 2.0, 1.0, 0.01)
    with pytest.raises(ValueError, match="friction_per_ps"):
        C.sample(zero, x0, kt_m, 5, 2.0, -1.0, 0.01)
    with pytest.raises(ValueError, match="sigma_nm"):
        C.sample(zero, x0, kt_m, 5, 2.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="temperature_K"):
        C.kt_over_mass(-1.0, torch.ones(2))
    with pytest.raises(ValueError, match="masses_amu"):
        C.kt_over_mass(300.0, torch.tensor([1.0, 0.0]))
    # the stable sigma: argon at 120 K, 2 ps / 15 sub-steps, omega h = 1.5 -> 0.014 nm
    assert abs(C.smallest_stable_sigma(120.0, 39.948, 2.0, 15, 1.5) - 0.01405) < 2e-4


class _ZeroScore(torch.nn.Module):
    """A Score GNN of an ideal gas: the equilibrium score is zero everywhere."""

    def forward(self, latent, residual, displacement, edge_index, edge_vec, edge_type, sigma, cutoff: float = 1.0,
                length_scale: float = 1.0):
        return torch.zeros(latent.shape[0], 3, dtype=latent.dtype)


def _fresh_velocity_friction(gamma_true: float, dt: float, lag: int) -> float:
    """Friction of a chain of ``lag`` independent Langevin segments of ``dt`` (fresh Maxwell-Boltzmann velocities
    each, as the sampler draws them) whose free-particle MSD equals that of continuous dynamics over lag*dt."""
    def shape(g, t):
        return (g * t - 1 + math.exp(-g * t)) / g ** 2
    target = shape(gamma_true, lag * dt)
    lo, hi = 1e-3, 1e3
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if lag * shape(mid, dt) > target else (lo, mid)
    return math.sqrt(lo * hi)


def _ideal_gas_case(types, masses, frames, frame_ps: float, temp: float):
    """(trajectory, mapping, model) of free beads: one bead per atom of ``types`` (masses amu), CG frames (F, n, 3)
    nm every ``frame_ps``, a tiny cg_langevin model whose learned score is the ideal gas's (zero)."""
    from openmm_mlcg.cg.mapping import CGMapping
    from openmm_mlcg.cg.topology import FineGraph
    from openmm_mlcg.data import CGTrajectory
    from openmm_mlcg.model import CGDynamicsModel
    from openmm_mlcg.nn import DynamicsGNN, EmbeddingGNN

    graph = FineGraph.from_arrays(list(types), np.asarray(masses, dtype=float), np.zeros((0, 2), dtype=int),
                                  residue_names=[t.upper() for t in types])
    mapping = CGMapping.from_graph(graph, 1)
    frames = np.asarray(frames)
    traj = CGTrajectory(frames, None, np.arange(len(frames)) * frame_ps, frame_ps, mapping.hash)
    vocab = sorted(set(types))
    emb = EmbeddingGNN(len(vocab), 6, hidden=4, layers=1)
    meta = dict(model_time_step_ps=frame_ps, history=2, cutoff_nm=0.5, velocity_std=0.3, acceleration_std=0.4,
                atom_type_vocabulary=vocab, sampler="cg_langevin", temperature_K=temp, cg_langevin_steps=10,
                cg_langevin_sigma_nm=0.05, sigmas_nm=[0.1, 0.01])
    model = CGDynamicsModel(emb, DynamicsGNN(embedding_dim=emb.out_dim, history=2, hidden=8, layers=1), _ZeroScore(),
                            meta).eval()
    return traj, mapping, model


def _free_langevin_frames(masses, gammas, temp: float, dt: float, frame_ps: float, n_frames: int, rng):
    """(n_frames, n, 3) nm: free particles under Langevin dynamics (Euler-Maruyama in numpy, not the code under test)
    with per-particle masses (amu) and frictions (1/ps), from the origin with Maxwell-Boltzmann velocities."""
    mass = np.asarray(masses, dtype=float)[:, None]
    gamma = np.asarray(gammas, dtype=float)[:, None]
    u = C.BOLTZMANN_KJ_PER_MOL_K * temp / mass
    n = len(mass)
    x = np.zeros((n, 3))
    v = rng.normal(0, 1, (n, 3)) * np.sqrt(u)
    frames = [x.copy()]
    for _ in range(n_frames - 1):
        for _ in range(int(round(frame_ps / dt))):
            v += -gamma * v * dt + np.sqrt(2 * gamma * u * dt) * rng.normal(size=(n, 3))
            x = x + v * dt
        frames.append(x.copy())
    return np.asarray(frames)


def test_calibrated_friction_recovers_the_data_friction():
    """Free argon atoms and Li+ ions under Langevin dynamics with known, different frictions (fine Euler-Maruyama
    in numpy, not the code under test), ideal-gas score: the friction fitted per bead type is the analytic one of
    the sampler's fresh-velocity chain (an effective friction: the velocities do not carry over model steps),
    and it predicts the MSD at twice the fitted lag."""
    import dataclasses

    from openmm_mlcg.model import CGDynamicsModel
    from openmm_mlcg.train.fits.calibrate import calibrate_friction, data_msd, model_msd

    n, temp = 120, 120.0
    species = {"Ar": (39.948, 2.0), "Li": (6.94, 10.0)}  # mass amu, friction 1/ps
    types = ["Ar"] * n + ["Li"] * n
    frame_ps = 2.0
    frames = _free_langevin_frames([species[t][0] for t in types], [species[t][1] for t in types], temp, 0.002,
                                   frame_ps, 30, np.random.default_rng(0))
    traj, mapping, model = _ideal_gas_case(types, [species[t][0] for t in types], frames, frame_ps, temp)
    assert sorted(set(mapping.bead_types)) == ["Ar", "Li"]
    fit = calibrate_friction(model, [traj], [mapping], stride=1, lag=5, n_starts=6, iterations=8)
    assert fit["lag"] == 5 and fit["n_starts"] == 6
    for t, (_, g_true) in species.items():
        expected = _fresh_velocity_friction(g_true, frame_ps, 5)  # Ar 1.40 / ps
        assert abs(fit["friction_by_type"][t] / expected - 1) < 0.12, (t, fit, expected)
        assert abs(fit["model_msd_by_type_nm2"][t] / fit["data_msd_by_type_nm2"][t] - 1) < 0.05
    fitted = CGDynamicsModel(model.embedding, model.dynamics, model.score, dataclasses.replace(
        model.metadata, cg_langevin_friction_by_type=fit["friction_by_type"])).eval()
    target, starts = data_msd([traj], [mapping], 1, 2, 10, 4)
    predicted = model_msd(fitted, [traj], [mapping], 1, 10, starts)
    for t in species:
        assert abs(predicted[t] / target[t] - 1) < 0.1, (t, predicted, target)
    # a mass floor at the argon mass: Li+ moves with argon's inertia, and the fitted friction absorbs it (about
    # 40 / 6.94 times smaller, the same kT / (m gamma)) so that the MSD is still the data's
    floored = CGDynamicsModel(model.embedding, model.dynamics, model.score, dataclasses.replace(
        model.metadata, cg_langevin_mass_floor_amu=39.948)).eval()
    fit_f = calibrate_friction(floored, [traj], [mapping], stride=1, lag=5, n_starts=6, iterations=8)
    assert fit_f["friction_by_type"]["Ar"] == pytest.approx(fit["friction_by_type"]["Ar"], rel=0.05)
    assert fit_f["friction_by_type"]["Li"] < 0.4 * fit["friction_by_type"]["Li"], (fit_f, fit)
    assert abs(fit_f["model_msd_by_type_nm2"]["Li"] / fit_f["data_msd_by_type_nm2"]["Li"] - 1) < 0.05, fit_f


def test_calibration_lag_rule_recovers_the_long_time_diffusivity_of_caged_data():
    """Data whose beads rattle in a cage on top of slow diffusion (x = Brownian path with D_long + an
    Ornstein-Uhlenbeck rattle of 4-ps memory, in numpy: not the code under test): a Markovian model cannot have
    both, and the friction decides which it keeps. The automatic lag (first lag where the data are diffusive) gives
    the long-time D within 15 %; a fit over one model step, where the rattle still adds to the MSD, gives a
    too-mobile model (friction < 0.8x)."""
    from openmm_mlcg.train.fits.calibrate import calibrate_friction

    n, temp, frame_ps, n_frames = 100, 120.0, 2.0, 60
    mass, d_long, rattle_var, tau = 39.948, 1e-4, 0.0003, 2.0   # amu, nm^2/ps, nm^2 per axis, ps
    rng = np.random.default_rng(1)
    walk = np.cumsum(rng.normal(0, np.sqrt(2 * d_long * frame_ps), (n_frames, n, 3)), axis=0)
    a = math.exp(-frame_ps / tau)
    u = np.empty((n_frames, n, 3))
    u[0] = rng.normal(0, np.sqrt(rattle_var), (n, 3))
    for i in range(1, n_frames):
        u[i] = a * u[i - 1] + np.sqrt(rattle_var * (1 - a * a)) * rng.normal(size=(n, 3))
    traj, mapping, model = _ideal_gas_case(["Ar"] * n, np.full(n, mass), walk + u, frame_ps, temp)
    expected = C.BOLTZMANN_KJ_PER_MOL_K * temp / mass / d_long   # kT / (m D_long), 1/ps (gamma dt >> 1)
    auto = calibrate_friction(model, [traj], [mapping], stride=1, n_starts=3)
    assert 10 <= auto["lag"] <= 26 and auto["lag_rule"].startswith("automatic"), auto
    assert auto["data_loglog_slope_by_type"]["Ar"] >= 0.8, auto
    assert abs(auto["friction_by_type"]["Ar"] / expected - 1) < 0.15, (auto, expected)
    short = calibrate_friction(model, [traj], [mapping], stride=1, lag=1, n_starts=3)
    assert short["friction_by_type"]["Ar"] < 0.8 * expected, (short, expected)


def test_rare_bead_types_share_one_friction_fitted_to_their_pooled_msd():
    """Free overdamped particles with one true friction, 60 beads of a common type and three types of 3 beads each
    (a polymer's sequence motifs): the rare types (24 bead rollouts each, fewer than 32) get one friction, fitted to
    their pooled MSD increment (the model's within 10 % of the data's, which the 9 beads' noise puts anywhere within
    a factor ~2 of the truth), the common type its own: the analytic friction of the sampler's fresh-velocity chain
    within 10 %."""
    from openmm_mlcg.train.fits.calibrate import POOLED, calibrate_friction

    types = ["Ar"] * 60 + ["Ne"] * 3 + ["Kr"] * 3 + ["Xe"] * 3
    n, temp, mass, g_true, frame_ps = len(types), 120.0, 39.948, 20.0, 2.0
    frames = _free_langevin_frames(np.full(n, mass), np.full(n, g_true), temp, 0.004, frame_ps, 40,
                                   np.random.default_rng(2))
    traj, mapping, model = _ideal_gas_case(types, np.full(n, mass), frames, frame_ps, temp)
    fit = calibrate_friction(model, [traj], [mapping], stride=1, lag=4, n_starts=8, iterations=5)
    assert fit["pooled_types"] == ["Kr", "Ne", "Xe"] and set(fit["model_msd_by_type_nm2"]) == {"Ar", POOLED}, fit
    g = fit["friction_by_type"]
    assert g["Ne"] == g["Kr"] == g["Xe"] != g["Ar"]
    assert abs(fit["model_msd_by_type_nm2"][POOLED] / fit["data_msd_by_type_nm2"][POOLED] - 1) < 0.1, fit

    def shape(gam, t):
        return (gam * t - 1 + math.exp(-gam * t)) / gam ** 2

    # the chain's increment over steps 2..4 is 2 x one step's; continuous dynamics' is shape(4 dt) - shape(2 dt)
    target, lo, hi = shape(g_true, 4 * frame_ps) - shape(g_true, 2 * frame_ps), 1e-2, 1e3
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if 2 * shape(mid, frame_ps) > target else (lo, mid)
    assert abs(g["Ar"] / lo - 1) < 0.1, (g, lo)
