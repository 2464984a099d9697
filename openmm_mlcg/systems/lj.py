"""Lennard-Jones liquids run with OpenMM: the structure benchmark of the learned step (one atom per bead).

A single-species LJ liquid is the simplest system with a real liquid structure (a first g(r) peak of
height ~3 and a hard core), so it tells whether the learned step keeps the joint structure of the beads.
Every atom is its own residue and molecule, so the normal mapping path (``CGMapping.from_graph``) gives
one bead per atom and the CG trajectory equals the MD trajectory.

Default parameters: argon (sigma 0.34 nm, epsilon 0.996 kJ/mol, 39.95 amu; Rahman, Phys. Rev. 136, A405,
1964, DOI 10.1103/PhysRev.136.A405), 21 atoms/nm^3, 120 K. Dynamics: ``LangevinMiddleIntegrator`` with a
weak friction, so that the dynamics are close to Newtonian.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import openmm
from openmm import app, unit

from ..util.units import to_float
from .md import Stage, is_done, make_platform, run_protocol

__all__ = ["LJSpecies", "ARGON", "build_lj_system", "generate"]


class LJSpecies(dict):
    """One LJ species: ``name`` (also the element-free atom type), ``sigma_nm``, ``epsilon_kjmol``, ``mass_amu``."""


ARGON = LJSpecies(name="Ar", sigma_nm=0.34, epsilon_kjmol=0.996, mass_amu=39.95)


def _positive(value, name: str, unit_=None) -> float:
    v = to_float(value, unit_, name) if unit_ is not None else float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name}: expected a positive finite number, got {value!r}")
    return v


def build_lj_system(n_atoms: int = 256, density_per_nm3: float = 21.0, species: LJSpecies = ARGON,
                    cutoff_sigma: float = 2.5, seed: int = 0):
    """A periodic cubic LJ liquid: OpenMM ``Topology``, ``System`` and initial lattice positions.

    Args:
        n_atoms: number of atoms (>= 8).
        density_per_nm3: number density, atoms per nm^3 (or an ``openmm.unit`` Quantity of 1/nm^3).
        species: :class:`LJSpecies` (default :data:`ARGON`).
        cutoff_sigma: LJ cutoff in units of sigma (switched smoothly over the last 10 %); long-range
            dispersion correction on.
        seed: jitter of the initial simple-cubic lattice.

    Returns:
        (topology, system, positions (n_atoms, 3) nm as a numpy array). Box edge = (n / density)^(1/3) nm.

    Raises:
        ValueError: bad counts or densities, or a box edge smaller than twice the cutoff.
    """
    if isinstance(n_atoms, bool) or not isinstance(n_atoms, (int, np.integer)) or n_atoms < 8:
        raise ValueError(f"n_atoms: expected an integer >= 8, got {n_atoms!r}")
    rho = _positive(density_per_nm3, "density_per_nm3")
    sig = _positive(species["sigma_nm"], "species['sigma_nm']")
    eps = _positive(species["epsilon_kjmol"], "species['epsilon_kjmol']")
    mass = _positive(species["mass_amu"], "species['mass_amu']")
    edge = (n_atoms / rho) ** (1.0 / 3.0)
    cutoff = float(cutoff_sigma) * sig
    if edge < 2 * cutoff:
        raise ValueError(f"n_atoms: box edge {edge:.3f} nm is smaller than twice the LJ cutoff {cutoff:.3f} nm; "
                         f"use more atoms (>= {int(math.ceil(rho * (2 * cutoff) ** 3))})")
    system = openmm.System()
    system.setDefaultPeriodicBoxVectors(openmm.Vec3(edge, 0, 0), openmm.Vec3(0, edge, 0), openmm.Vec3(0, 0, edge))
    force = openmm.NonbondedForce()
    force.setNonbondedMethod(openmm.NonbondedForce.CutoffPeriodic)
    force.setCutoffDistance(cutoff)
    force.setUseSwitchingFunction(True)
    force.setSwitchingDistance(0.9 * cutoff)
    force.setUseDispersionCorrection(True)
    topology = app.Topology()
    chain = topology.addChain()
    element = app.Element.getBySymbol(species["name"]) if species["name"] in ("Ar", "Ne", "Kr", "Xe") else None
    for i in range(n_atoms):
        system.addParticle(mass)
        force.addParticle(0.0, sig, eps)
        res = topology.addResidue(species["name"], chain)
        topology.addAtom(species["name"], element, res)
    system.addForce(force)
    topology.setPeriodicBoxVectors(((edge, 0, 0), (0, edge, 0), (0, 0, edge)) * unit.nanometer)
    m = int(math.ceil(n_atoms ** (1.0 / 3.0)))
    grid = np.stack(np.meshgrid(*[np.arange(m)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n_atoms]
    rng = np.random.default_rng(seed)
    positions = (grid + 0.5 + 0.05 * rng.standard_normal(grid.shape)) * (edge / m)
    return topology, system, positions


def generate(out_dir, n_atoms: int = 256, density_per_nm3: float = 21.0, temperature=120.0,
             production_ps: float = 1000.0, frame_interval_ps: float = 2.0, equilibration_ps: float = 50.0,
             time_step_fs: float = 5.0, friction_per_ps: float = 0.1, species: LJSpecies = ARGON, seed: int = 0,
             platform: str | None = None, threads: int | None = None, progress_bar: bool = True) -> Path:
    """Run (or resume) reference MD of an LJ liquid into a run directory (``openmm_mlcg.data.load_run`` reads it).

    Args:
        out_dir: run directory (topology.pdb, trajectory.dcd, metadata.json, DONE; resumable).
        n_atoms, density_per_nm3, species: see :func:`build_lj_system`.
        temperature: K (float or Quantity).
        production_ps, frame_interval_ps, equilibration_ps: ps (floats or Quantities); the frame interval
            must be a whole number of time steps.
        time_step_fs: MD time step in fs. friction_per_ps: Langevin friction, 1/ps.
        seed: lattice jitter, velocities and integrator noise. platform / threads: OpenMM platform name and
            CPU threads (None: fastest / OpenMM default).

    Returns:
        ``Path(out_dir)``.

    Raises:
        ValueError: bad arguments (named), or ``out_dir`` started with other settings.
    """
    out = Path(out_dir)
    if is_done(out):
        return out
    temp = _positive(temperature, "temperature", unit.kelvin)
    prod = _positive(production_ps, "production_ps", unit.picosecond)
    fint = _positive(frame_interval_ps, "frame_interval_ps", unit.picosecond)
    eq = float(to_float(equilibration_ps, unit.picosecond, "equilibration_ps"))
    dt_ps = _positive(time_step_fs, "time_step_fs") / 1000.0
    every = int(round(fint / dt_ps))
    if every < 1 or abs(every * dt_ps - fint) > 1e-9:
        raise ValueError(f"frame_interval_ps: expected a multiple of the time step {dt_ps} ps, got {fint}")
    n_frames = int(round(prod / fint))
    if n_frames < 1:
        raise ValueError(f"production_ps: expected >= frame_interval_ps ({fint}), got {prod}")
    topology, system, positions = build_lj_system(n_atoms, density_per_nm3, species, seed=seed)
    integrator = openmm.LangevinMiddleIntegrator(temp * unit.kelvin, friction_per_ps / unit.picosecond,
                                                 dt_ps * unit.picosecond)
    integrator.setRandomNumberSeed(int(seed) % (2**31 - 1) + 1)
    plat = make_platform(platform)
    props = {"Threads": str(int(threads))} if threads and plat.getName() == "CPU" else {}
    sim = app.Simulation(topology, system, integrator, plat, props)
    sim.context.setPositions(positions * unit.nanometer)
    n_eq = int(round(eq / dt_ps / every)) * every
    stages = [Stage("minimize", 0, minimize=True), Stage("equilibrate", n_eq),
              Stage("production", n_frames * every, reporters=True)]
    meta = dict(system="lj", species=dict(species), n_atoms=int(n_atoms), density_per_nm3=float(density_per_nm3),
                friction_per_ps=float(friction_per_ps), temperature_K=temp, seed=int(seed),
                atom_types=[species["name"]] * int(n_atoms), masses=[float(species["mass_amu"])] * int(n_atoms))
    return run_protocol(sim, out, stages, every, meta, desc=out.name, progress_bar=progress_bar)
