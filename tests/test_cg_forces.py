"""Forces a user adds to the CG System act on the learned dynamics (or are refused, never ignored).

An ideal-gas ``cg_langevin`` bundle (the learned score is zero) isolates the System's forces: a harmonic
restraint must hold each bead at its centre with the Boltzmann variance kT / k, and a constant force must drift
a bead at D F / kT with D the model's own diffusivity (Einstein relation), whatever the box.
"""
import math

import numpy as np
import openmm
import pytest
import torch
from openmm import unit

from openmm_mlcg.bundle.export import save_bundle
from openmm_mlcg.cg.mapping import CGMapping
from openmm_mlcg.cg.topology import FineGraph
from openmm_mlcg.generators.cg_langevin import BOLTZMANN_KJ_PER_MOL_K
from openmm_mlcg.nn import DynamicsGNN, EmbeddingGNN
from openmm_mlcg.openmm import LearnedIntegrator, create_cg_system, create_simulation

torch.set_num_threads(1)
TEMP = 300.0
MASS = 39.948          # amu (argon)
GAMMA = 5.0            # 1/ps
DT = 1.0               # ps per model step
N = 40                 # free beads
KT = BOLTZMANN_KJ_PER_MOL_K * TEMP


class _ZeroScore(torch.nn.Module):
    """A Score GNN of an ideal gas: the equilibrium score is zero everywhere."""

    def forward(self, latent, residual, displacement, edge_index, edge_vec, edge_type, sigma, cutoff: float = 1.0,
                length_scale: float = 1.0):
        return torch.zeros(latent.shape[0], 3, dtype=latent.dtype)


@pytest.fixture(scope="module")
def ideal_gas(tmp_path_factory):
    """(bundle path, mapping): free argon beads, cg_langevin with a fixed friction GAMMA (one bead mass: no floor)."""
    graph = FineGraph.from_arrays(["Ar"] * N, np.full(N, MASS), np.zeros((0, 2), dtype=int),
                                  residue_names=["AR"] * N)
    mapping = CGMapping.from_graph(graph, 1)
    torch.manual_seed(0)
    emb = EmbeddingGNN(1, 6, hidden=4, layers=1)
    meta = dict(model_time_step_ps=DT, history=2, cutoff_nm=0.5, velocity_std=0.3, acceleration_std=0.4,
                atom_type_vocabulary=["Ar"], sampler="cg_langevin", temperature_K=TEMP, cg_langevin_steps=10,
                cg_langevin_sigma_nm=0.05, sigmas_nm=[0.1, 0.01], cg_langevin_friction_per_ps=GAMMA)
    path = save_bundle(tmp_path_factory.mktemp("gas") / "gas.mlcg", emb,
                       DynamicsGNN(embedding_dim=emb.out_dim, history=2, hidden=8, layers=1), _ZeroScore(), meta,
                       mapping=mapping)
    return path, mapping


def _start(n, spacing=1.0):
    """(n, 3) nm: beads on a cubic grid ``spacing`` apart (no two closer than the cutoff)."""
    side = int(math.ceil(n ** (1 / 3)))
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n]
    return grid * spacing + 0.5


def _run(ideal_gas, force=None, box=None, steps=400, seed=0, refine=True):
    """Positions (steps + 1, N, 3) nm of a learned run of the ideal gas with ``force`` added to the CG System."""
    path, mapping = ideal_gas
    topology, system = create_cg_system(mapping, box)
    if force is not None:
        system.addForce(force)
    integrator = LearnedIntegrator(path, mapping, seed=seed, refine=refine, device="cpu")
    simulation = create_simulation(topology, system, integrator, openmm.Platform.getPlatformByName("Reference"))
    x0 = _start(N)
    simulation.context.setPositions(x0)
    out = [x0]
    for _ in range(steps):
        integrator.step(1)
        out.append(simulation.context.getState(getPositions=True).getPositions(asNumpy=True)
                   .value_in_unit(unit.nanometer))
    return np.asarray(out)


def _restraint(k, centres):
    force = openmm.CustomExternalForce("0.5*k*((x-x0)^2+(y-y0)^2+(z-z0)^2)")
    force.addGlobalParameter("k", k)
    for p in ("x0", "y0", "z0"):
        force.addPerParticleParameter(p)
    for i, c in enumerate(centres):
        force.addParticle(i, [float(v) for v in c])
    force.setName("restraint")
    return force


def _pull(f):
    force = openmm.CustomExternalForce("-f*x")
    force.addGlobalParameter("f", f)
    for i in range(N):
        force.addParticle(i, [])
    return force


def test_harmonic_restraint_holds_beads_with_the_boltzmann_variance(ideal_gas):
    """k chosen for a variance of 0.01 nm^2: mean at the centres, variance kT / k per axis within 6 % (18,000
    nearly independent samples; standard error of a variance ~1 %). Without the force the beads wander off."""
    var = 0.01
    k = KT / var
    centres = _start(N)
    x = _run(ideal_gas, _restraint(k, centres), steps=150)[30:]
    d = x - centres[None]
    assert np.abs(d.mean(axis=(0, 1))).max() < 0.01, d.mean(axis=(0, 1))   # SE ~ 0.1 / sqrt(N * 120)
    assert d.var() / var == pytest.approx(1.0, abs=0.06), d.var() / var
    free = _run(ideal_gas, None, steps=150)[30:] - centres[None]
    assert free.var() > 10 * var                                            # the restraint did the holding


def test_constant_force_drifts_at_the_einstein_relation_in_a_periodic_box(ideal_gas):
    """A constant force F on every bead of a periodic box: drift velocity D F / kT, with D the model's own
    diffusivity measured from the MSD of the same beads without the force (Einstein relation), within 10 %.
    (The periodic centre-of-mass drift removal of the learned step must not cancel an external force.)"""
    box = np.eye(3) * 4.0
    f = 5.0  # kJ/mol/nm
    steps = 200
    pulled = _run(ideal_gas, _pull(f), box=box, steps=steps, seed=1)
    drift = (pulled[-1] - pulled[0]).mean(axis=0) / (steps * DT)               # nm/ps
    free = _run(ideal_gas, None, box=box, steps=steps, seed=2)
    lag = 10
    msd = ((free[lag:] - free[:-lag]) ** 2).sum(-1).mean()
    d_model = msd / (6 * lag * DT)
    expected = d_model * f / KT
    assert drift[0] == pytest.approx(expected, rel=0.1), (drift, expected)
    assert abs(drift[1]) < 0.15 * expected and abs(drift[2]) < 0.15 * expected
    # and the analytic diffusivity of the sampler's fresh-velocity Langevin segments, kT/(m gamma) (1 - (1 -
    # exp(-gamma dt)) / (gamma dt)), agrees with the measured one
    analytic = KT / (MASS * GAMMA) * (1 - (1 - math.exp(-GAMMA * DT)) / (GAMMA * DT))
    assert d_model == pytest.approx(analytic, rel=0.1)


def test_forces_the_step_cannot_act_on_are_refused(ideal_gas):
    """A barostat is refused at attach; a restraint with refine=False (the Gaussian step) is refused at attach
    and when refine is switched off later; nothing is ignored silently."""
    path, mapping = ideal_gas
    topology, system = create_cg_system(mapping, np.eye(3) * 4.0)
    system.addForce(openmm.MonteCarloBarostat(1.0, TEMP))
    with pytest.raises(ValueError, match=r"system: .*MonteCarloBarostat.*barostat"):
        create_simulation(topology, system, LearnedIntegrator(path, mapping, device="cpu"))
    topology, system = create_cg_system(mapping, None)
    system.addForce(_restraint(100.0, _start(N)))
    with pytest.raises(ValueError, match=r"system: .*CustomExternalForce 'restraint'.*refine=False"):
        create_simulation(topology, system, LearnedIntegrator(path, mapping, refine=False, device="cpu"))
    integrator = LearnedIntegrator(path, mapping, device="cpu")
    simulation = create_simulation(topology, system, integrator)
    simulation.context.setPositions(_start(N))
    integrator.step(1)
    integrator.refine = False
    with pytest.raises(ValueError, match="refine=False"):
        integrator.step(1)
    # a CMMotionRemover has nothing to act on and is accepted
    topology, system = create_cg_system(mapping, None)
    system.addForce(openmm.CMMotionRemover())
    create_simulation(topology, system, LearnedIntegrator(path, mapping, device="cpu"))
