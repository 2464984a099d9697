"""CG Langevin generator: the joint next state by Langevin dynamics on a learned equilibrium score.

The score samplers (:mod:`openmm_mlcg.generators.score_samplers`) and the interpolant (:mod:`openmm_mlcg.generators.interpolant`) learn the
structure of the CONDITIONAL next state p(x_{t+1} | history) from a regression target dominated by the step's
own randomness; on the Lennard-Jones benchmark they stay far from the liquid's g(r) (issue 9). This generator
learns instead what is easy to learn from every frame:

* the **equilibrium score** ``s(x) = grad log p_sigma(x)`` of the coarse-grained configurations, smoothed at a
  small noise level sigma, by denoising score matching (Vincent, Neural Comput. 23, 1661 (2011)); as a
  coarse-grained force field: Arts et al., "Two for One: Diffusion Models and Force Fields for Coarse-Grained
  Molecular Dynamics", J. Chem. Theory Comput. 19, 6151 (2023), doi:10.1021/acs.jctc.3c00702. At small sigma
  ``s = F / kT``, the thermodynamic (mean) force over kT;

and moves the beads with Langevin dynamics in that force field, the standard Markovian model of
coarse-grained dynamics, integrated with the Gronbech-Jensen-Farago scheme (Mol. Phys. 111, 983 (2013),
doi:10.1080/00268976.2012.760055), whose free-particle diffusion is exactly kT / (m gamma) at any gamma h
(BAOAB's cannot fall below (kT/m) h / 2, which is far too fast for a light, strongly bound ion such as Li+).
One model step of length ``dt`` is ``N`` sub-steps of ``h = dt / N`` from the current, structured state,
with fresh Maxwell-Boltzmann velocities (``v ~ N(0, kT/m)`` per bead) at its start; with a = (kT/m) s(x),
b = 1 / (1 + gamma h / 2), c = (1 - gamma h / 2) b and eta = sqrt(2 gamma (kT/m) h) z::

    x' = x + b h v + b h^2 a / 2 + b h eta / 2;    v' = c v + h (c a + a') / 2 + b eta

followed by a denoising step ``x + f sigma^2 s(x)`` that takes the output from the sigma-smoothed density back
towards the data's. ``f = 1`` is Tweedie's formula (Efron, JASA 106, 1602 (2011)): the posterior MEAN of the
clean state, whose spread is too narrow (a Gaussian law of variance v comes out with v^2 / (v + sigma^2)
instead of v). ``f = 1/2`` is one Euler step of the probability-flow ODE dx/d(sigma^2) = -s/2 from sigma to 0
(Song et al., ICLR 2021, eq. (13)), which transports the smoothed density towards the data's: the Gaussian
comes out with v + sigma^4 / (4 (v + sigma^2)), never narrower than the data's and at most sigma^2 / 4 wider.
The friction ``gamma`` is fitted after training so that the sampler's mean-squared displacement over several
model steps equals the data's (``openmm_mlcg.train.fits.calibrate``). The stationary distribution of the positions
is the learned p_sigma whatever gamma, so the structure does not depend on the dynamics' fit. sigma is chosen
so the fastest oscillation the smoothed score allows,
``omega = sqrt(kT/m) / sigma``, is resolved at a fixed ``omega h`` (1.5 by default; the scheme is stable up to 2):
each bead has its own sigma, proportional to 1 / sqrt(m), so heavy beads are smoothed less than light ones.
The masses here are the sampler's inertial masses, ``max(m_i, floor)`` (``ModelMetadata.cg_langevin_masses``,
by default the floor is the median bead mass): the positions' stationary distribution does not depend on the
masses, only the short-time inertia does, and the fitted friction absorbs that (the same argument as mass
repartitioning in MD). Without a floor one light ion (Li+, 6.9 amu, in beads of ~50 amu) would set a sigma
three times wider for itself than for the polymer, smoothing away its coordination shell (SPE demo: Li+ D
3.3x the reference's with physical masses).

**Reverse levels.** A single final step from sigma is a poor map from p_sigma to the data's density when a
distribution is about as narrow as the smoothing: for the bond vector of two beads (variance tau^2 per axis,
smoothing 2 sigma^2) at tau^2 = sigma^2, Tweedie leaves a third of the variance and the half step gives 4/3
of it. With ``K`` reverse levels (``ModelMetadata.cg_langevin_reverse_levels``) the sample is
first carried along the probability-flow ODE from sigma to ``r_K sigma`` (the smallest level the Score GNN was
trained at) by K deterministic DDIM steps (Song, Meng & Ermon, ICLR 2021, "Denoising diffusion implicit
models", eq. (12) with eta = 0 in the variance-exploding form: x + sigma_k (sigma_k - sigma_{k+1}) s(x, sigma_k),
geometric sigma_k), then the final step ``x + f (r_K sigma)^2 s`` is made from there, where the smoothing is
small against the distribution. For a Gaussian of variance tau^2 and the exact score, K = 3 down to sigma / 3
with f = 1/2 returns 0.93-1.10 tau^2 for tau / sigma in [0.3, 2] (Tweedie 0.08-0.8, the half step 1.01-3.5).

**Jump and relax (long model steps).** With the sub-steps spanning the model step, sigma grows with the step
(sigma ~ sqrt(kT/m) dt / N): at 10 ps the LJ liquid's structure is lost, and keeping sigma means N in proportion
to dt, a cost per simulated ns that a longer step cannot lower. With ``relax_ps`` (``ModelMetadata.cg_langevin_relax_ps``)
shorter than the model step, one model step is instead (i) the JUMP: a draw from the Dynamics GNN's Gaussian over
the whole model step (the time-integrated transport, conditioned on the history and the environment: paper section
3, the multi-scale GNN's own prediction), then (ii) the RELAXATION: the N Langevin sub-steps above over
``relax_ps`` only (h = relax_ps / N, and sigma from that h), which take the independent per-bead draw back onto
the learned equilibrium density (the corrector of predictor-corrector samplers; Song et al., ICLR 2021, sec. 4.2).
The cost is one Dynamics pass + N + 1 + K Score passes whatever the model step, so the cost per simulated ns falls
as 1 / dt; the friction is fitted, as always, to the data's MSD with the whole step in the loop.

Cost: ``N + 1 + K`` Score GNN passes per model step, + 1 Dynamics GNN pass with ``relax_ps`` (the last
sub-step's score is reused by the first reverse step or by the denoising step).
The friction may differ per bead (one value per bead type).
Units: positions nm, velocities nm/ps, kT/m nm^2/ps^2, sigma nm, gamma 1/ps, score 1/nm.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from openmm import unit as _unit

from ..nn.losses import denoising_score_loss, perturb_next_positions
from ..nn.noise import log_uniform
from ..priors.bonds import bond_score
from .base import Generator, StepInputs, register
from .rng import normal

__all__ = ["sample", "smallest_stable_sigma", "kt_over_mass", "ScoreFn", "BOLTZMANN_KJ_PER_MOL_K", "CGLangevin",
           "CGLangevinConfig"]

ScoreFn = Callable[[torch.Tensor], torch.Tensor]

#: k_B in kJ/(mol K) (OpenMM's molar gas constant)
BOLTZMANN_KJ_PER_MOL_K = _unit.MOLAR_GAS_CONSTANT_R.value_in_unit(_unit.kilojoule_per_mole / _unit.kelvin)


def kt_over_mass(temperature_K: float, masses_amu: torch.Tensor, validate: bool = True) -> torch.Tensor:
    """kT / m per bead, (n, 1) nm^2/ps^2 (1 kJ/mol/amu = 1 nm^2/ps^2), in the dtype of ``masses_amu``.

    ``validate=False`` skips the mass check (a host round trip on accelerators; the runtime's masses come from
    a validated mapping).

    Raises:
        ValueError: a non-positive temperature or mass.
    """
    if not (temperature_K > 0 and math.isfinite(temperature_K)):
        raise ValueError(f"temperature_K: expected a positive finite temperature in K, got {temperature_K!r}")
    m = masses_amu.reshape(-1, 1)
    if validate and m.numel() and not bool((m > 0).all()):
        raise ValueError(f"masses_amu: expected positive bead masses, got min {float(m.min())}")
    return BOLTZMANN_KJ_PER_MOL_K * float(temperature_K) / m


def smallest_stable_sigma(temperature_K: float, min_mass_amu: float, time_step_ps: float, n_steps: int,
                          omega_h: float = 1.0) -> float:
    """sigma (nm) at which the lightest bead's fastest allowed oscillation has ``omega h = omega_h``.

    ``omega = sqrt(kT/m) / sigma`` bounds the curvature of a score smoothed at sigma; ``h = time_step / n_steps``.
    """
    if not (omega_h > 0 and math.isfinite(omega_h)):
        raise ValueError(f"omega_h: expected a positive finite number, got {omega_h!r}")
    if not (min_mass_amu > 0):
        raise ValueError(f"min_mass_amu: expected a positive mass in amu, got {min_mass_amu!r}")
    u = BOLTZMANN_KJ_PER_MOL_K * float(temperature_K) / float(min_mass_amu)
    return math.sqrt(u) * float(time_step_ps) / int(n_steps) / float(omega_h)


def sample(score_fn: ScoreFn, x0: torch.Tensor, kt_m: torch.Tensor, n_steps: int, time_step_ps: float,
           friction_per_ps, sigma_nm, generator: Optional[torch.Generator] = None,
           noise: bool = True, validate: bool = True, denoise: float = 1.0,
           reverse_ratios: Sequence[float] = (), external_score: Optional[ScoreFn] = None) -> torch.Tensor:
    """One model step of CG Langevin dynamics on a learned score (module docstring): ``n_steps + 1 + K`` passes.

    Args:
        score_fn: ``score_fn(x) -> (n, 3)`` learned equilibrium score at ``sigma_nm``, 1/nm; with reverse levels
            also called as ``score_fn(x, r)``, the score at ``r sigma_nm``.
        x0: (n, 3) current positions, nm. kt_m: (n, 1) kT/m, nm^2/ps^2 (:func:`kt_over_mass`).
        n_steps: Langevin sub-steps N (>= 1). time_step_ps: the model step dt, ps. friction_per_ps: gamma >= 0,
            a float or per bead (n, 1) (one per bead type, fitted after training).
        sigma_nm: noise level of the score, nm: a float or per bead (n, 1) (the denoising step uses it).
        generator: torch RNG on x0's device, or one stream per replica of a batched state
            (:class:`openmm_mlcg.generators.rng.ReplicaStreams`). noise: False gives zero initial velocities and
            no O-step noise (deterministic mode: damped motion down the learned free-energy surface).
        validate: check sigma and friction (host round trips on accelerators; the runtime passes False, its
            values come from validated metadata).
        denoise: f of the final denoising step ``x + f sigma^2 s(x)``, in [0, 1] (module docstring): 1 Tweedie
            (posterior mean), 1/2 one probability-flow Euler step, 0 none (the sigma-smoothed sample).
            With reverse levels it is applied at the last level ``r_K sigma`` instead of at sigma.
        reverse_ratios: K descending ratios 1 > r_1 > ... > r_K > 0 (module docstring, "reverse levels"):
            before the final step, K deterministic DDIM steps x + sigma_k (sigma_k - sigma_{k+1}) s(x, sigma_k)
            take the sample from sigma down to r_K sigma (K more passes); () gives the single final step.
        external_score: ``external_score(x) -> (n, 3)``, F_ext(x) / kT in 1/nm: forces that are not learned (the
            CG System's own forces: restraints, biases, an applied field), added to the learned score in every
            Langevin sub-step and nowhere else: they are exact, not smoothed at sigma, so the denoising and reverse
            steps do not see them. The stationary distribution is then p_sigma(x) exp(-U_ext(x) / kT) (a harmonic
            restraint of constant k on a free bead gives variance kT / k) and a constant force F drifts a free bead
            at F / (m gamma) = D F / kT (the Gronbech-Jensen-Farago scheme's drift is exact for it).

    Returns:
        (n, 3) next positions, nm.

    Raises:
        ValueError: ``n_steps`` < 1, a non-positive time step or sigma, a negative friction, ``denoise`` outside
        [0, 1], ``reverse_ratios`` not descending in (0, 1).
    """
    ratios = [float(r) for r in reverse_ratios]
    if any(not (0.0 < r < 1.0) for r in ratios) or any(a <= b for a, b in zip(ratios, ratios[1:])):
        raise ValueError(f"reverse_ratios: expected descending ratios in (0, 1), got {list(reverse_ratios)!r}")
    if isinstance(n_steps, bool) or int(n_steps) != n_steps or n_steps < 1:
        raise ValueError(f"n_steps: expected an integer >= 1, got {n_steps!r}")
    sig = torch.as_tensor(sigma_nm, dtype=x0.dtype, device=x0.device)
    gam = torch.as_tensor(friction_per_ps, dtype=x0.dtype, device=x0.device)
    checks = [("time_step_ps", float(time_step_ps), time_step_ps > 0)]
    if isinstance(denoise, bool) or not (0.0 <= float(denoise) <= 1.0):
        raise ValueError(f"denoise: expected a fraction in [0, 1], got {denoise!r}")
    if validate:
        sig_min = float(sig.min()) if bool(torch.isfinite(sig).all()) else float("nan")
        gam_min = float(gam.min()) if bool(torch.isfinite(gam).all()) else float("nan")
        checks += [("sigma_nm", sig_min, sig_min > 0), ("friction_per_ps", gam_min, gam_min >= 0)]
    for name, v, ok in checks:
        if not (ok and math.isfinite(v)):
            raise ValueError(f"{name}: expected a finite value {'>= 0' if name.startswith('fr') else '> 0'}, "
                             f"got {v!r}")
    n = int(n_steps)
    h = float(time_step_ps) / n
    b = 1.0 / (1.0 + 0.5 * gam * h)          # GJF: b = 1 / (1 + gamma h / 2), a = (1 - gamma h / 2) b
    a = (1.0 - 0.5 * gam * h) * b
    kt_m = kt_m.to(x0.dtype)
    root = torch.sqrt(2.0 * gam * kt_m * h)  # velocity kick of the random force over one sub-step, nm/ps

    def randn() -> torch.Tensor:
        """Standard-normal draw of the positions' shape from ``generator``."""
        return normal(x0.shape, generator, x0.device, x0.dtype)

    def total(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Force / mass (nm/ps^2) of the learned score ``s`` plus the external forces at ``x``."""
        return kt_m * (s if external_score is None else s + external_score(x))

    v = torch.sqrt(kt_m) * randn() if noise else torch.zeros_like(x0)
    x = x0
    acc = total(x, score_fn(x))              # force / mass = (kT / m) x score, nm/ps^2
    s = None
    for _ in range(n):
        eta = root * randn() if noise else torch.zeros_like(x0)
        x = x + b * h * v + 0.5 * b * h * h * acc + 0.5 * b * h * eta
        s = score_fn(x)
        acc_new = total(x, s)
        v = a * v + 0.5 * h * (a * acc + acc_new) + b * eta
        acc = acc_new
    r_prev = 1.0
    for r in ratios:                          # DDIM (eta = 0) from r_prev sigma to r sigma, the score reused
        x = x + (r_prev * (r_prev - r)) * sig * sig * s
        s = score_fn(x, r)
        r_prev = r
    return x + (float(denoise) * r_prev * r_prev) * sig * sig * s


@dataclass
class CGLangevinConfig:
    """``score.cg_langevin``: the default generator (module docstring).

    steps: Langevin sub-steps N per model step (N + 1 + reverse_levels Score passes). omega_h: the lightest
    bead's fastest allowed oscillation per sub-step, which sets the noise level sigma_b of the learned score (the
    training range is [sigma_b / 3, 3 sigma_b] unless ``score.sigma_min_nm`` / ``sigma_max_nm`` say otherwise).
    mass_floor_amu: the sampler's inertial mass of a bead is max(m_i, floor) (null: the median bead mass of the
    training mappings; 0: the bead masses); mass leaves the sampled distribution unchanged, the fitted friction
    absorbs it, and the floor keeps a light ion from setting a wide sigma. denoise: f of the final step
    x + f sigma^2 s(x) (1: Tweedie's posterior mean, 0.5: one probability-flow Euler step), made after
    ``reverse_levels`` DDIM steps down to the smallest trained level (0: from sigma_b itself). type_balance: weight
    each bead's score-matching loss so every bead type of a system has the same total weight
    (:func:`openmm_mlcg.nn.losses.type_balanced_weights`). calibration_lag, calibration_starts: the friction
    per bead type is fitted after training to the slope of the data's MSD at ``calibration_lag`` model steps (null:
    the rule of :mod:`openmm_mlcg.train.fits.calibrate`, the shortest lag from 10 steps at which the data are
    diffusive, else half the longest training trajectory), the model rolled out from ``calibration_starts`` true
    states per trajectory. relax_ps: the "jump and relax" long step (module docstring): the Dynamics GNN's draw
    over the model step, then the ``steps`` sub-steps over ``relax_ps`` ps (sigma from that sub-step); null, or a
    value >= the model step: the sub-steps span the model step (no jump).
    """

    steps: int = 15
    omega_h: float = 1.5
    mass_floor_amu: Optional[float] = None
    denoise: float = 1.0
    reverse_levels: int = 0
    type_balance: bool = False
    calibration_lag: Optional[int] = None
    calibration_starts: int = 4
    relax_ps: Optional[float] = None

    def check(self, where: str) -> None:
        """Raise ValueError naming ``where.key``, the expected range and the value."""
        checks = [("steps", self.steps >= 1, ">= 1"),
                  ("omega_h", 0 < self.omega_h < 2, "in (0, 2) (the Langevin scheme is unstable at omega h >= 2)"),
                  ("denoise", 0 <= self.denoise <= 1,
                   "in [0, 1] (1: Tweedie, 0.5: one probability-flow Euler step, 0: no denoising)"),
                  ("reverse_levels", self.reverse_levels >= 0, ">= 0"),
                  ("calibration_starts", self.calibration_starts >= 1, ">= 1")]
        if self.calibration_lag is not None:
            checks.append(("calibration_lag", self.calibration_lag >= 1, ">= 1 (model steps; null: automatic)"))
        if self.relax_ps is not None:
            checks.append(("relax_ps", self.relax_ps > 0, "> 0 (ps; null: the sub-steps span the model step)"))
        if self.mass_floor_amu is not None:
            checks.append(("mass_floor_amu", self.mass_floor_amu >= 0,
                           ">= 0 (amu; 0: no floor, null: the median bead mass)"))
        for key, ok, expected in checks:
            if not ok:
                raise ValueError(f"{where}.{key}: expected {expected}, got {getattr(self, key)!r}")


@register
class CGLangevin(Generator):
    """Langevin sub-steps on the learned equilibrium score (module docstring): the default generator.

    Its refined step needs no Dynamics GNN pass: ``cg_langevin_steps + 1 + cg_langevin_reverse_levels`` Score
    passes. The system's score terms (:mod:`openmm_mlcg.priors`) are added to the learned score at every pass;
    external forces (``StepInputs.external_score``, the CG System's forces) in every Langevin sub-step.
    """

    name = "cg_langevin"
    config_class = CGLangevinConfig
    metadata_keys = ("temperature_K", "cg_langevin_steps", "cg_langevin_sigma_nm", "cg_langevin_sigma_mass_amu",
                     "cg_langevin_mass_floor_amu", "cg_langevin_friction_per_ps", "cg_langevin_friction_by_type",
                     "cg_langevin_denoise", "cg_langevin_reverse_levels", "cg_langevin_relax_ps")
    uses_dynamics = False
    equilibrium_score = True
    honours_forces = True

    @classmethod
    def score_passes(cls, metadata) -> int:
        """N sub-steps + the score at the start + K reverse levels."""
        return int(metadata.cg_langevin_steps) + 1 + int(metadata.cg_langevin_reverse_levels)

    @classmethod
    def needs_dynamics(cls, metadata) -> bool:
        """The Dynamics GNN's jump is part of the step when ``cg_langevin_relax_ps`` is set."""
        return metadata.cg_langevin_relax_ps is not None

    @classmethod
    def check_metadata(cls, metadata, name: str) -> None:
        """A trained bundle records the data's temperature and the score's noise level."""
        if metadata.score_enabled:
            for key in ("temperature_K", "cg_langevin_sigma_nm"):
                if getattr(metadata, key) is None:
                    raise ValueError(f"{name}[{key!r}]: the 'cg_langevin' sampler needs it; got none")

    @classmethod
    def loss(cls, model, prediction, positions, bead_embedding, batch, generator):
        """Denoising score matching of the equilibrium configurations (paper eq. (2) form).

        One level lambda per window, log-uniform between the smallest and the largest ``sigmas_nm``; bead i gets
        ``sigma_i = lambda sqrt(m / m_i)`` (``ModelMetadata.cg_langevin_sigmas``, the sampler's mass scaling);
        x~ = x_{t+1} + sigma z; graph on x~; loss = 0.5 mean |GNS + z|^2 (:func:`denoising_score_loss`), with GNS
        = sigma (learned score + the trained-with score terms, :meth:`openmm_mlcg.priors.ScoreTerms.training_gns`):
        the network learns the residual on top of them; beads weighted by ``batch.score_weight`` when it is set
        (``score.cg_langevin.type_balance``).
        """
        m = model.metadata
        sig = m.sigmas_nm
        x1 = batch.next_positions
        lam = log_uniform(batch.n_graphs, sig[-1], sig[0], generator).to(x1.device)[batch.batch]
        scale = m.cg_langevin_sigmas(batch.bead_masses.to(x1.dtype)).reshape(-1) / float(m.cg_langevin_sigma_nm)
        sigma = lam.to(x1.dtype) * scale
        noisy, z = perturb_next_positions(x1, sigma, generator)
        edges = model.edges(noisy, None, batch.cg_bonds, batch=batch.batch, boxes=batch.boxes)
        sig = sigma.to(noisy.dtype)[:, None]
        gns = model.equilibrium_gns(bead_embedding, noisy, sig, edges)
        if batch.cg_bond_prior is not None:
            gns = gns + sig * bond_score(noisy, batch.cg_bonds, batch.cg_bond_prior, sig, batch=batch.batch,
                                         boxes=batch.boxes)
        return denoising_score_loss(gns, z, batch.score_weight)

    @classmethod
    def step(cls, model, positions, prediction, inputs: StepInputs):
        """N Langevin sub-steps from ``positions`` on the learned score plus the system's score terms; with
        ``cg_langevin_relax_ps``, from the Dynamics GNN's draw over the model step, the sub-steps spanning relax_ps.

        Raises:
            ValueError: ``inputs`` without ``bead_embedding`` or ``bead_masses``; ``prediction`` None with
            ``cg_langevin_relax_ps``.
        """
        if inputs.bead_embedding is None or inputs.bead_masses is None:
            raise ValueError("bead_embedding, bead_masses: the 'cg_langevin' sampler needs both, got None")
        m = model.metadata
        masses = inputs.bead_masses.to(positions.dtype)
        sig = m.cg_langevin_sigmas(masses).to(positions.dtype)  # (n, 1) nm
        terms, box = inputs.score_terms, inputs.box
        # one skin neighbour list for the step's passes (the same edges as a full search at each pass)
        neighbors = model.neighbor_list(box, inputs.cg_bonds) if hasattr(model, "neighbor_list") else None

        def score_fn(x: torch.Tensor, ratio: float = 1.0) -> torch.Tensor:
            """Learned equilibrium score (1/nm) at ``ratio`` x sigma on the graph of ``x`` (+ the score
            terms')."""
            e = model.edges(x, box, inputs.cg_bonds, validate=False) if neighbors is None else neighbors(x)
            sg = sig * ratio
            s = model.equilibrium_gns(inputs.bead_embedding, x, sg, e) / sg
            return s if terms is None else s + terms.score(x, e, sg, box, s.dtype)

        kt_m = kt_over_mass(float(m.temperature_K), m.cg_langevin_masses(masses), validate=False)
        friction = float(m.cg_langevin_friction_per_ps) if inputs.bead_friction is None else inputs.bead_friction
        span = float(m.model_time_step_ps)
        if m.cg_langevin_relax_ps is not None:   # jump and relax: the Dynamics GNN's draw, then relax_ps of Langevin
            if prediction is None:
                raise ValueError("prediction: the jump of cg_langevin_relax_ps needs the Dynamics GNN's, got None")
            positions = model.sample(prediction, inputs.generator, inputs.deterministic)
            span = float(m.cg_langevin_relax_ps)
        return sample(score_fn, positions, kt_m, m.cg_langevin_steps, span, friction, sig,
                      inputs.generator, not inputs.deterministic, validate=False, denoise=m.cg_langevin_denoise,
                      reverse_ratios=m.cg_langevin_reverse_ratios(), external_score=inputs.external_score)
