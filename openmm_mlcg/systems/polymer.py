"""Webb-style single-chain coarse-grained polymers in implicit solvent (Fu et al. TMLR 2023, appendix B).

Source: potential of Fu et al. 2023 appendix B eq. (3), chemical space of Webb, Jackson, Jha, de Pablo,
"Targeted sequence design within the coarse-grained polymer genome", Sci. Adv. 6, eaax9324 (2020),
DOI 10.1126/sciadv.aax9324.  **Webb et al.'s numerical parameters were not available**: the bead types,
the ten constitutional units (CUs) and every parameter are our own Webb-style choices, all listed in
``systems/data/polymer_params.json``.

Model: four bead types (backbone B1/B2, side S1/S2; B1/S1 solvophobic, B2/S2 solvophilic); each CU is
a backbone bead with a linear side chain of 0-2 beads.  Energy terms (force group in brackets):
FENE bonds [0], 12-6 WCA between bonded beads [1], harmonic angles K(theta-theta0)^2 [2],
backbone dihedrals K(1+cos phi) [3], truncated-and-shifted 9-6 LJ between all pairs that are not
directly bonded (1-3 and 1-4 pairs interact, as eq. (3) prescribes) [4].
Deviation (default, ``dihedral.backbone.restricted``): the dihedral term is multiplied by
sin^2(theta1) sin^2(theta2) / sin^4(theta0) (restricted/combined bending-torsion, cf. Bulacu et al.,
JCTC 9, 3282 (2013)); it equals eq. (3) at the equilibrium angles, but plain K(1+cos phi) has forces
that diverge as 1/sin(theta) when a backbone angle reaches 180 degrees, which blew up a demo run.

Units: reduced LJ units mapped onto OpenMM units with sigma = 1 nm, epsilon = 1 kJ/mol, m = 1 amu, so
tau = 1 ps, and kT = 1 epsilon means T = 1/R = 120.27 K.  No periodic boundaries.  Class-I (training):
a random pattern of four CUs repeated exactly; class-II (testing): random sequence over four random CUs.
"""
from __future__ import annotations

import itertools
import math
import os
from pathlib import Path

import numpy as np
import openmm
from openmm import app, unit

from ..util.io_utils import atomic_write
from ..util.units import to_float
from .md import Stage, ensure_writable_dir, is_done, make_platform, run_protocol

__all__ = ["load_params", "class_one_sequence", "class_two_sequence", "build_polymer_system",
           "make_simulation", "reduced_temperature_K", "generate", "KINDS", "SCALES"]

PARAMS_PATH = Path(__file__).with_name("data") / "polymer_params.json"
KINDS = ("class1", "class2")
SCALES = ("smoke", "demo", "paper")
_GROUPS = dict(fene=0, wca=1, angle=2, dihedral=3, lj=4)


def load_params(path=None) -> dict:
    """Model parameters (dict) from ``path`` or the packaged ``polymer_params.json``.

    Raises:
        FileNotFoundError: ``path`` does not exist. ValueError: not a JSON object (empty, binary, invalid; the
        message names ``path`` and what the file looks like).
    """
    from ..io.readers import read_json

    return read_json(PARAMS_PATH if path is None else Path(path), "polymer parameter", "path")


def reduced_temperature_K(kT_epsilon: float = 1.0) -> float:
    """Kelvin for a reduced temperature kT/epsilon with epsilon = 1 kJ/mol (1.0 -> 120.27 K)."""
    return kT_epsilon / unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)


def _check_units(units, params, name: str, four: bool = False) -> list[str]:
    cus = params["constitutional_units"]
    units = [str(u) for u in units]
    if four and len(units) != 4:
        raise ValueError(f"{name}: expected 4 constitutional units, got {len(units)}")
    bad = sorted({u for u in units if u not in cus})
    if bad:
        raise ValueError(f"{name}: unknown constitutional units {bad}; expected names from {sorted(cus)}")
    return units


def _check_count(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return int(value)


def class_one_sequence(n_units: int, pattern=None, rng=None, params: dict | None = None) -> list[str]:
    """Class-I (regular copolymer) sequence: a pattern of four CUs repeated to ``n_units`` CUs.

    Args:
        n_units: number of CUs in the chain (> 0).
        pattern: four CU names; drawn uniformly (with replacement) from the ten CUs with ``rng`` if None.
        rng: ``numpy.random.Generator`` or int seed (used only when ``pattern`` is None).

    Raises:
        ValueError: ``n_units`` not positive, ``pattern`` not four known CUs.
    """
    params = params or load_params()
    n_units = _check_count(n_units, "n_units")
    if pattern is None:
        rng = np.random.default_rng(rng)
        pattern = list(rng.choice(sorted(params["constitutional_units"]), size=4, replace=True))
    pattern = _check_units(pattern, params, "pattern", four=True)
    return [pattern[i % 4] for i in range(n_units)]


def class_two_sequence(rng, n_units: int, units=None, params: dict | None = None) -> list[str]:
    """Class-II (random copolymer) sequence of ``n_units`` CUs drawn uniformly from four CUs.

    Args:
        rng: ``numpy.random.Generator`` or int seed. n_units: number of CUs (> 0).
        units: the four allowed CUs; four distinct CUs drawn with ``rng`` if None.

    Raises:
        ValueError: ``n_units`` not positive, ``units`` not four known CUs.
    """
    params = params or load_params()
    rng = np.random.default_rng(rng)
    n_units = _check_count(n_units, "n_units")
    if units is None:
        units = list(rng.choice(sorted(params["constitutional_units"]), size=4, replace=False))
    units = _check_units(units, params, "units", four=True)
    return [str(u) for u in rng.choice(units, size=n_units)]


def _connectivity(sequence, params):
    """Bead types, CU index per bead, backbone flags and bonds (i, j) of a chain of CUs."""
    types, cu_of, backbone, bonds, prev_bb = [], [], [], [], None
    for k, cu in enumerate(sequence):
        beads = params["constitutional_units"][cu]
        for m, t in enumerate(beads):
            i = len(types)
            types.append(t)
            cu_of.append(k)
            backbone.append(m == 0)
            if m > 0 or prev_bb is not None:
                bonds.append((i - 1 if m > 0 else prev_bb, i))  # side beads hang off the previous bead
            prev_bb = i if m == 0 else prev_bb
    return types, np.array(cu_of), np.array(backbone), bonds


def _initial_positions(bonds, n, rng, bond_length=0.97, min_dist=0.9, tries=50) -> np.ndarray:
    """Self-avoiding-ish random walk (nm): each bead placed at ``bond_length`` from its parent."""
    parent = {j: i for i, j in bonds}
    x = np.zeros((n, 3))
    for j in range(1, n):
        best, best_d = None, -1.0
        for _ in range(tries):
            v = rng.normal(size=3)
            trial = x[parent[j]] + bond_length * v / np.linalg.norm(v)
            others = np.delete(np.arange(j), parent[j])
            d = np.min(np.linalg.norm(x[others] - trial, axis=1)) if len(others) else 1e9
            if d > best_d:
                best, best_d = trial, d
            if d >= min_dist:
                break
        x[j] = best
    return x - x.mean(axis=0)


def _globals(force, **values):  # OpenMM needs globally unique global-parameter names
    for name, value in values.items():
        force.addGlobalParameter(name, float(value))
    return force


def build_polymer_system(sequence, seed: int = 0, params: dict | None = None):
    """Build the OpenMM model of one chain.

    Args:
        sequence: list of CU names (e.g. from :func:`class_one_sequence`). seed: seeds the initial random walk.
        params: parameter dict (default: packaged ``polymer_params.json``).

    Returns:
        ``(topology, system, positions)``: ``app.Topology`` with one residue per CU (name = CU name,
        atom names = bead types, no elements, bonds), ``openmm.System`` (masses in amu, forces in
        groups fene 0, wca 1, angle 2, dihedral 3, lj 4, no PBC), positions ``(n_beads, 3)`` nm.

    Raises:
        ValueError: empty ``sequence`` or unknown CU names.
    """
    params = params or load_params()
    if isinstance(sequence, str) or len(sequence) == 0:
        raise ValueError(f"sequence: expected a non-empty list of CU names, got {sequence!r}")
    sequence = _check_units(sequence, params, "sequence")
    types, cu_of, backbone, bonds = _connectivity(sequence, params)
    n, bt, top = len(types), params["bead_types"], app.Topology()
    chain = top.addChain()
    residues = [top.addResidue(cu, chain) for cu in sequence]
    atoms = [top.addAtom(t, None, residues[cu_of[i]]) for i, t in enumerate(types)]
    system = openmm.System()
    for t in types:
        system.addParticle(float(bt[t]["mass"]))

    b = params["bond"]
    fene = _globals(openmm.CustomBondForce("-0.5*fene_K*fene_R0^2*log(1-(r/fene_R0)^2)"), fene_K=b["K"],
                    fene_R0=b["R0"])
    wca = _globals(openmm.CustomBondForce("step(2^(1/6)*wca_s - r)*(4*wca_e*((wca_s/r)^12 - (wca_s/r)^6) + wca_e)"),
                   wca_e=b["wca_epsilon"], wca_s=b["wca_sigma"])
    for i, j in bonds:
        fene.addBond(i, j, [])
        wca.addBond(i, j, [])
        top.addBond(atoms[i], atoms[j])

    angles = openmm.HarmonicAngleForce()
    nbrs = [[] for _ in range(n)]
    for i, j in bonds:
        nbrs[i] += [j]
        nbrs[j] += [i]
    for j in range(n):
        for i, k in itertools.combinations(nbrs[j], 2):
            p = params["angle"]["backbone" if backbone[[i, j, k]].all() else "backbone_side" if backbone[j] else "side"]
            angles.addAngle(i, j, k, math.radians(p["theta0_deg"]), 2.0 * p["K"])

    dih, bb = params["dihedral"]["backbone"], [int(v) for v in np.flatnonzero(backbone)]
    if dih.get("restricted", False):  # K (1+cos phi) sin^2(t1) sin^2(t2) / sin^4(t0): no collinear singularity
        s0 = math.sin(math.radians(params["angle"]["backbone"]["theta0_deg"]))
        torsions = _globals(openmm.CustomCompoundBondForce(4, "dih_k*sin(angle(p1,p2,p3))^2*sin(angle(p2,p3,p4))^2"
                                                           "*(1 + cos(dihedral(p1,p2,p3,p4)))"), dih_k=dih["K"] / s0**4)
        for q in range(len(bb) - 3):
            torsions.addBond(bb[q:q + 4], [])
    else:  # plain eq. (3); its force diverges when a backbone angle reaches 180 degrees
        torsions = openmm.PeriodicTorsionForce()
        for q in range(len(bb) - 3):
            torsions.addTorsion(*bb[q:q + 4], 1, 0.0, float(dih["K"]))

    nb, names, key = params["nonbonded"], sorted(bt), {2: "phobic_phobic", 1: "phobic_philic", 0: "philic_philic"}
    table = [float(nb["epsilon"][key[bt[a]["solvophobic"] + bt[b]["solvophobic"]]]) for b in names for a in names]
    lj = _globals(openmm.CustomNonbondedForce(
        "4*epstab(type1, type2)*((lj_s/r)^9 - (lj_s/r)^6 - (lj_s/lj_rc)^9 + (lj_s/lj_rc)^6)"),
        lj_s=nb["sigma"], lj_rc=nb["cutoff"])
    lj.addTabulatedFunction("epstab", openmm.Discrete2DFunction(len(names), len(names), table))
    lj.addPerParticleParameter("type")
    for t in types:
        lj.addParticle([float(names.index(t))])
    lj.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffNonPeriodic)
    lj.setCutoffDistance(float(nb["cutoff"]))
    lj.createExclusionsFromBonds([list(p) for p in bonds], 1)

    for force, group in ((fene, "fene"), (wca, "wca"), (angles, "angle"), (torsions, "dihedral"), (lj, "lj")):
        force.setForceGroup(_GROUPS[group])
        system.addForce(force)
    positions = _initial_positions(bonds, n, np.random.default_rng(seed))
    return top, system, positions


def make_simulation(topology, system, positions, platform=None, seed: int = 1, threads: int | None = None,
                    params: dict | None = None):
    """Langevin ``app.Simulation`` at kT = 1 epsilon (120.27 K), friction 1/tau, step 0.01 tau (params file).

    Args:
        platform: name ('CPU', 'CUDA', 'Reference', ...) or None for the fastest.
        seed: integrator random seed (made positive and non-zero; 0 would mean "random" in OpenMM).
        threads: CPU-platform thread count (None: OpenMM default).

    Raises:
        ValueError: unknown platform name.
    """
    params = params or load_params()
    ig, tau = params["integrator"], params["units"]["tau_ps"]
    integ = openmm.LangevinMiddleIntegrator(reduced_temperature_K(params["units"]["kT_epsilon"]) * unit.kelvin,
                                            ig["friction_per_tau"] / tau / unit.picosecond,
                                            ig["time_step_tau"] * tau * unit.picosecond)
    integ.setRandomNumberSeed(int(seed) % (2**31 - 1) + 1)
    plat = make_platform(platform)
    props = {"Threads": str(int(threads))} if threads and plat.getName() == "CPU" else {}
    sim = app.Simulation(topology, system, integ, plat, props)
    sim.context.setPositions(np.asarray(positions) * unit.nanometer)
    return sim


def _run_one(job: dict) -> str:
    """Build (deterministically from the seeds) and run one chain; resumes from its checkpoint."""
    out = Path(job["out_dir"])
    if is_done(out):
        return str(out)
    params = load_params()
    rng = np.random.default_rng(job["build_seed"])
    sequence = (class_one_sequence(job["length"], rng=rng, params=params) if job["kind"] == "class1"
                else class_two_sequence(rng, job["length"], params=params))
    top, system, pos = build_polymer_system(sequence, seed=job["build_seed"], params=params)
    sim = make_simulation(top, system, pos, job["platform"], job["integrator_seed"], job["threads"], params)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "system.xml", "w") as fh:
        fh.write(openmm.XmlSerializer.serialize(system))
    types = [a.name for a in top.atoms()]
    meta = dict(system="polymer", kind=job["kind"], scale=job["scale"], sequence=sequence,
                n_units=len(sequence), n_beads=len(types), atom_types=types,
                masses=[system.getParticleMass(i).value_in_unit(unit.amu) for i in range(len(types))],
                bead_types=sorted(params["bead_types"]), seed=job["build_seed"], index=job["index"], params=params,
                units=params["units"]["note"], source=params["description"])
    stages = [Stage("minimize", 0, minimize=True), Stage("equilibrate", job["equilibration_steps"]),
              Stage("production", job["n_steps"], reporters=True)]
    from ..io.readers import read_json

    old = read_json(out / "metadata.json", "run metadata", "out_dir") if (out / "metadata.json").exists() else {}
    if old and [old.get(k) for k in ("sequence", "stages", "report_interval_steps")] != [
            sequence, [s.__dict__ for s in stages], job["report_interval"]]:
        raise ValueError(f"out_dir: {out} was started with other settings (sequence/steps/frame interval); "
                         "resume with the same arguments or use a new out_dir")
    run_protocol(sim, out, stages, job["report_interval"], meta, desc=out.name, progress_bar=job["progress_bar"])
    return str(out)


def _steps(value_tau: float, dt_tau: float, name: str) -> int:
    steps = value_tau / dt_tau
    if value_tau < 0 or abs(steps - round(steps)) > 1e-6 * max(1.0, steps):
        raise ValueError(f"{name}: expected a non-negative multiple of the time step {dt_tau} tau, got {value_tau}")
    return int(round(steps))


#: below this many CUs (~2.3 beads each) one implicit-solvent chain runs faster on the single-threaded Reference
#: platform than on CPU (2 cores, steps/s: 56 beads 4790 vs 1241, 225 beads 1097 vs 647, 917 beads 257 vs 266)
REFERENCE_PLATFORM_MAX_UNITS = 400


def default_platform(length_units: int) -> str:
    """The fastest platform (``md.make_platform(None)``), except Reference instead of CPU for chains shorter
    than ``REFERENCE_PLATFORM_MAX_UNITS`` constitutional units."""
    fastest = make_platform(None).getName()
    return "Reference" if fastest == "CPU" and length_units < REFERENCE_PLATFORM_MAX_UNITS else fastest


def generate(n_systems: int, out_dir, kind: str = "class1", length: int | None = None, seed: int = 0,
             platform: str | None = None, scale: str = "demo", n_steps: int | None = None,
             frame_interval=None, equilibration_steps: int | None = None, n_workers: int = 1,
             threads: int | None = None, progress_bar: bool = True, production_tau=None,
             scheduler: str | None = None) -> list[Path]:
    """Simulate ``n_systems`` chains, one per directory ``out_dir/{kind}_{i:04d}`` (resumable).

    Each directory gets system.xml, topology.pdb, trajectory.dcd, state_data.csv, metadata.json (sequence,
    atom_types = bead types, masses in amu, seeds, params) and DONE (see ``systems.md.run_protocol``).
    Re-running continues unfinished directories from their checkpoints and skips finished ones.

    Args:
        n_systems: number of chains (> 0). out_dir: parent output directory.
        kind: "class1" (regular, training) or "class2" (random, testing).
        length: chain length in CUs (default by scale: demo 60 CUs ~ 130 beads, paper 400 CUs ~ 880).
        seed: master seed; system i uses independent streams derived from (seed, kind, i).
        platform: OpenMM platform name or None (:func:`default_platform` for the chain length).
        scale: "smoke" (~10 beads, seconds: checks that the pipeline runs), "demo" or "paper": default
            lengths/times from polymer_params.json ("protocol").
        n_steps: production steps of 0.01 tau (default by scale/kind; paper class1 50k tau = 5e6 steps).
        production_tau: alternative to ``n_steps``: production length in tau (= ps; float or Quantity).
        frame_interval: time between frames in tau = ps (float or Quantity; default 5 tau class1; class2
            500 tau paper, 50 tau demo).  Must be a multiple of the time step; ``n_steps`` a multiple of it.
        equilibration_steps: steps before production (after minimisation), not recorded.
        n_workers: systems run in parallel as Dask tasks on a LocalCluster of ``n_workers`` processes (> 1).
        scheduler: run them on this Dask cluster instead (``tcp://host:8786``; :mod:`openmm_mlcg.util.parallel`).
        threads: CPU threads per system (default: ``OPENMM_CPU_THREADS`` if set, else cpu_count // n_workers on
            the CPU platform).

    Returns: list of the system directories.

    Raises:
        ValueError: bad ``n_systems``, ``kind``, ``scale``, ``length``, ``n_steps``/``production_tau``,
            ``frame_interval``, ``equilibration_steps``, ``n_workers``, ``scheduler``, ``platform`` or unwritable
            ``out_dir``.
    """
    n_systems = _check_count(n_systems, "n_systems")
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    if scale not in SCALES:
        raise ValueError(f"scale: expected one of {SCALES}, got {scale!r}")
    n_workers = _check_count(n_workers, "n_workers")
    params = load_params()
    proto = params["protocol"][scale][kind]
    dt = params["integrator"]["time_step_tau"]
    length = _check_count(proto["length_units"] if length is None else length, "length")
    plat = default_platform(length) if platform is None else make_platform(platform).getName()
    fi = proto["frame_interval_tau"] if frame_interval is None else to_float(frame_interval, unit.picosecond,
                                                                             "frame_interval")
    report = _steps(fi, dt, "frame_interval")
    if report <= 0:
        raise ValueError(f"frame_interval: expected > 0, got {fi}")
    if production_tau is not None and n_steps is not None:
        raise ValueError(f"production_tau: give n_steps={n_steps} or production_tau={production_tau}, not both")
    prod = proto["production_tau"] if production_tau is None else to_float(production_tau, unit.picosecond,
                                                                           "production_tau")
    prod_name = "n_steps" if production_tau is None else "production_tau"
    if production_tau is not None and not prod > 0:
        raise ValueError(f"production_tau: expected > 0 tau (a multiple of the frame interval {fi:g} tau), got {prod:g}")
    n_steps = _check_count(_steps(prod, dt, prod_name) if n_steps is None else n_steps, prod_name)
    if n_steps % report:
        raise ValueError(f"{'n_steps' if production_tau is None else 'production_tau'}: expected a multiple of the "
                         f"frame interval ({report} steps = {fi} tau), got {n_steps} steps")
    eq = _check_count(_steps(proto["equilibration_tau"], dt, "equilibration_steps") if equilibration_steps is None
                      else equilibration_steps, "equilibration_steps", 0)
    out = ensure_writable_dir(out_dir)
    if threads is None and plat == "CPU":  # OpenMM's own OPENMM_CPU_THREADS wins over the share of the CPUs
        threads = int(os.environ.get("OPENMM_CPU_THREADS") or max(1, (os.cpu_count() or 1) // n_workers))
    jobs = []
    for i in range(n_systems):
        # independent (sequence/coordinates, integrator) seed streams per system
        build_seed, integ_seed = (int(v) for v in np.random.SeedSequence([int(seed), KINDS.index(kind), i])
                                  .generate_state(2))
        jobs.append(dict(out_dir=str(out / f"{kind}_{i:04d}"), kind=kind, scale=scale, length=length, index=i,
                         build_seed=build_seed, integrator_seed=integ_seed, platform=plat, threads=threads,
                         n_steps=int(n_steps), equilibration_steps=int(eq), report_interval=report,
                         progress_bar=progress_bar and n_workers == 1 and scheduler is None))
    from ..util.locks import output_lock

    with output_lock(out, "generate", "out_dir"):  # one generate per out_dir
        if n_workers == 1 and scheduler is None:
            return [Path(_run_one(j)) for j in jobs]
        from ..util.parallel import map_tasks

        # Dask tasks; LocalCluster workers die with this process, a killed worker's chain is rerun (resumed)
        return [Path(d) for d in map_tasks(_run_one, jobs, n_workers, scheduler, name=f"polymer-{kind}")]
