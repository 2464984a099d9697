"""Solid polymer electrolyte (SPE) reference systems: methyl-capped ether/ester chains + LiTFSI, GAFF2.

Follows Fu et al., TMLR 2023, appendix B ("SPE dataset", after Xie et al., Nat. Commun. 13, 3415 (2022)):
amorphous polymer hosts from a space of ether/ester monomers, 1.5 mol LiTFSI per kg of polymer, NVT at
353 K after NPT equilibration.  Deviations from the paper (documented): GAFF2 instead of PCFF+, OpenMM
LangevinMiddleIntegrator at 2 fs with H-bond constraints instead of a 0.5/2 fs multi-time-step scheme,
packmol packing instead of Monte Carlo chain growth, 0.8-scaled ion charges (data/spe_ions.json).

Residue names: every polymer chain is one residue ``POL``; TFSI anions ``TFS``; lithium ``LI`` (atom ``LI``). Units:
nm, ps, K, amu, e at public boundaries (``openmm.unit`` Quantities accepted)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import openmm
from openmm import app, unit

from ..util.units import to_float
from . import gaff
from .packing import _data, chain_smiles, scaled_composition, embed_molecule, known_monomers, pack_box, parse_polymer

__all__ = ["SPESystem", "known_monomers", "parse_polymer", "chain_smiles", "build_spe", "simulate", "generate",
           "SCALES", "FRAME_INTERVAL_PS"]

_AMU_TO_G = 1.66053906660e-24  # g per amu
TFSI_MASS = 280.146  # g/mol, (CF3SO2)2N-
LI_MASS = 6.94


@dataclass
class SPESystem:
    """A built (not yet simulated) SPE.

    Attributes:
        topology: ``openmm.app.Topology`` (residues POL / TFS / LI, bonds with orders, periodic box set).
        system: ``openmm.System`` (GAFF2, PME, HBonds constraints, no barostat).
        positions: ``(n_atoms, 3)`` float64 packed positions, nm (molecules whole).
        box: ``(3, 3)`` float64 box vectors (rows), nm.
        composition: JSON-serialisable description (monomer fractions, chain sequences, ion counts, masses,
            molality, charges, force-field provenance).
        forcefield_xml: the generated ffxml (residue templates + Li+ type) used with gaff-2.11.xml.
        atom_types: per-atom force-field type names (GAFF2 types; ``spe-Li+`` for lithium).
    """

    topology: app.Topology
    system: openmm.System
    positions: np.ndarray
    box: np.ndarray
    composition: dict
    forcefield_xml: str = field(repr=False, default="")
    atom_types: tuple = field(repr=False, default=())

    n_atoms = property(lambda self: self.system.getNumParticles(), doc="number of atoms")

    def make_simulation(self, temperature=353.0, time_step=0.002, friction=1.0, pressure=1.0,
                        platform=None, seed: int = 0, hydrogen_mass=None) -> app.Simulation:
        """Simulation with a LangevinMiddleIntegrator and (if ``pressure`` is not None) a MonteCarloBarostat.

        Args:
            temperature: K.  time_step: ps (default 2 fs).  friction: 1/ps.
            pressure: bar, or None for no barostat.  platform: name or None (fastest).  seed: RNG seed.
            hydrogen_mass: None (element masses), or amu for hydrogen mass repartitioning
                (:func:`openmm_mlcg.systems.hmr.repartition_hydrogen_mass`; 3 amu with the H-bond constraints allows a
                4 fs ``time_step``: the best-practice classical baseline of the speed comparisons).

        Raises:
            ValueError: non-positive temperature/time_step/friction/pressure or unknown platform.
        """
        from .md import make_platform

        t = to_float(temperature, unit.kelvin, "temperature")
        dt = to_float(time_step, unit.picosecond, "time_step")
        gamma = to_float(friction, unit.picosecond ** -1, "friction")
        for name, v in (("temperature", t), ("time_step", dt), ("friction", gamma)):
            if v <= 0:
                raise ValueError(f"{name}: expected a positive value, got {v}")
        system = openmm.XmlSerializer.clone(self.system)
        if hydrogen_mass is not None:
            from .hmr import repartition_hydrogen_mass

            repartition_hydrogen_mass(system, self.topology, hydrogen_mass)
        if pressure is not None:
            p = to_float(pressure, unit.bar, "pressure")
            if p <= 0:
                raise ValueError(f"pressure: expected a positive pressure in bar or None, got {p}")
            baro = openmm.MonteCarloBarostat(p * unit.bar, t * unit.kelvin, 25)
            baro.setRandomNumberSeed(int(seed) + 17)
            system.addForce(baro)
        integ = openmm.LangevinMiddleIntegrator(t * unit.kelvin, gamma / unit.picosecond, dt * unit.picosecond)
        integ.setRandomNumberSeed(int(seed) + 1)
        sim = app.Simulation(self.topology, system, integ, make_platform(platform))
        sim.context.setPeriodicBoxVectors(*[openmm.Vec3(*row) * unit.nanometer for row in self.box])
        sim.context.setPositions(self.positions * unit.nanometer)
        return sim


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return int(value)


# 150 lines (22 docstring): one build recipe top to bottom; its steps share the species tables.
def build_spe(polymer="PEO", n_chains: int = 9, chain_length: int = 12, salt_molality=1.5, seed: int = 0,
              n_salt: int | None = None, packing_density=None, charge_method: str = "mmff94",
              nonbonded_cutoff=0.9) -> SPESystem:
    """Build a GAFF2 SPE: ``n_chains`` methyl-capped chains + LiTFSI, randomly packed with packmol.

    Args:
        polymer: monomer name, copolymer spec or list/dict (see ``parse_polymer``); copolymer chains get
            independent random sequences (seeded) with the given fractions.
        n_chains: number of chains (>= 1).
        chain_length: monomers per chain (>= 1).
        salt_molality: mol LiTFSI per kg of polymer (default 1.5, Fu et al. 2023 app. B); the number of ion
            pairs is ``max(1, round(molality * polymer mass))`` unless ``n_salt`` is given (0 -> no salt).
        seed: seeds sequences, conformers and packmol.
        n_salt: explicit number of LiTFSI pairs (overrides ``salt_molality``).
        packing_density: initial density for packmol, g/cm^3 (low; NPT compresses it).  Default: 0.6, or
            0.35 when a chain has more than 150 atoms (packmol packs long rigid coils slowly when dense).
        charge_method: polymer charges, ``"mmff94"`` (default) or ``"gasteiger"`` (``gaff.partial_charges``).
        nonbonded_cutoff: real-space cutoff, nm (PME; LJ with long-range dispersion correction).

    Returns:
        SPESystem.

    Raises:
        ValueError: unknown monomer, n_chains/chain_length < 1, negative molality or n_salt, bad density
            or cutoff, typing/parameter failure (names the argument or atom).
    """
    fractions = parse_polymer(polymer)
    n_chains = _check_int(n_chains, "n_chains", 1)
    chain_length = _check_int(chain_length, "chain_length", 1)
    molality = to_float(salt_molality, unit.mole / unit.kilogram, "salt_molality")
    if molality < 0:
        raise ValueError(f"salt_molality: expected >= 0 mol/kg, got {molality}")
    rho = None if packing_density is None else to_float(packing_density, unit.gram / unit.centimeter ** 3,
                                                         "packing_density")
    if rho is not None and not 0.05 <= rho <= 1.5:
        raise ValueError(f"packing_density: expected 0.05-1.5 g/cm^3, got {rho}")
    cutoff = to_float(nonbonded_cutoff, unit.nanometer, "nonbonded_cutoff")
    if not 0.5 <= cutoff <= 2.0:
        raise ValueError(f"nonbonded_cutoff: expected 0.5-2.0 nm, got {cutoff}")
    ions = _data("spe_ions.json")
    rng = np.random.default_rng(seed)
    names, probs = list(fractions), np.array(list(fractions.values()))
    sequences = [list(rng.choice(names, size=chain_length, p=probs)) if len(names) > 1
                 else [names[0]] * chain_length for _ in range(n_chains)]

    species: dict[str, dict] = {}  # smiles -> {mol, types, charges, names, template}
    chain_keys = []
    for seq in sequences:
        smi = chain_smiles(seq)
        if smi not in species:
            mol = embed_molecule(smi, seed + len(species))
            q = gaff.partial_charges(mol, charge_method)
            species[smi] = dict(mol=mol, types=gaff.assign_gaff2_types(mol), charges=q,
                                names=gaff.atom_names(mol), template=f"SPE_POL{len(species)}")
        chain_keys.append(smi)
    polymer_mass = sum(sum(a.GetMass() for a in species[k]["mol"].GetAtoms()) for k in chain_keys)
    if n_salt is None:
        n_pairs = max(1, int(round(molality * polymer_mass / 1000.0))) if molality > 0 else 0
    else:
        n_pairs = _check_int(n_salt, "n_salt", 0)

    scale = float(ions["ion_charge_scale"]["value"])
    tf = ions["tfsi"]
    tmol = embed_molecule(tf["smiles"], seed + 7919, n_conformers=1)
    t_types = gaff.assign_gaff2_types(tmol)
    t_q = np.array([tf["charges_unscaled"][a.GetSymbol()] * scale for a in tmol.GetAtoms()])
    t_names = gaff.atom_names(tmol)
    templates = [gaff.residue_template_xml(s["template"], s["mol"], s["types"], s["charges"], s["names"])
                 for s in species.values()]
    if n_pairs:
        templates.append(gaff.residue_template_xml("SPE_TFS", tmol, t_types, t_q, t_names))
    ff_xml = gaff.extra_types_xml(templates, ions["li"] if n_pairs else None, li_charge=scale * 1.0)

    topology = app.Topology()
    res_templates: dict = {}
    pack_species = []
    all_types: list[str] = []

    def add_molecule(chain, resname, mol, anames, template, rid, types):
        """Add one RDKit molecule as residue ``resname`` of ``chain``; record its atom types."""
        all_types.extend(types)
        res = topology.addResidue(resname, chain, id=str(rid))
        atoms = [topology.addAtom(n, app.element.get_by_symbol(a.GetSymbol()), res, id=str(i + 1))
                 for i, (n, a) in enumerate(zip(anames, mol.GetAtoms()))]
        for b in mol.GetBonds():
            order = b.GetBondTypeAsDouble()
            topology.addBond(atoms[b.GetBeginAtomIdx()], atoms[b.GetEndAtomIdx()],
                             type=app.Double if order == 2.0 else app.Single, order=int(order))
        res_templates[res] = template

    pchain = topology.addChain("P")
    for i, key in enumerate(chain_keys):
        s = species[key]
        add_molecule(pchain, "POL", s["mol"], s["names"], s["template"], i + 1, s["types"])
        pack_species.append(([a.GetSymbol() for a in s["mol"].GetAtoms()],
                             s["mol"].GetConformer().GetPositions() / 10.0, 1))  # Angstrom -> nm
    if n_pairs:
        tchain, lchain = topology.addChain("T"), topology.addChain("L")
        for i in range(n_pairs):
            add_molecule(tchain, "TFS", tmol, t_names, "SPE_TFS", n_chains + i + 1, t_types)
        for i in range(n_pairs):
            res = topology.addResidue(ions["li"]["residue"], lchain, id=str(n_chains + n_pairs + i + 1))
            topology.addAtom(ions["li"]["atom_name"], app.element.lithium, res, id="1")
            res_templates[res] = ions["li"]["residue"]
            all_types.append("spe-Li+")
        pack_species.append(([a.GetSymbol() for a in tmol.GetAtoms()],
                             tmol.GetConformer().GetPositions() / 10.0, n_pairs))
        pack_species.append((["Li"], np.zeros((1, 3)), n_pairs))

    total_mass = polymer_mass + n_pairs * (TFSI_MASS + LI_MASS)
    if rho is None:
        rho = 0.35 if max(s["mol"].GetNumAtoms() for s in species.values()) > 150 else 0.6
    box_nm = (total_mass * _AMU_TO_G / rho) ** (1.0 / 3.0) * 1e7
    dense_box = (total_mass * _AMU_TO_G / 1.35) ** (1.0 / 3.0) * 1e7  # edge at a dense-melt 1.35 g/cm^3
    if dense_box < 2.0 * cutoff:
        raise ValueError(f"nonbonded_cutoff: {cutoff} nm is more than half the equilibrated box (~{dense_box:.2f} nm) "
                         f"of this {total_mass:.0f} amu system; add chains or lower the cutoff")
    positions = pack_box(pack_species, box_nm, seed=seed)
    box = np.eye(3) * box_nm
    topology.setPeriodicBoxVectors([openmm.Vec3(*r) * unit.nanometer for r in box])

    forcefield = gaff.make_forcefield(ff_xml)
    try:
        system = forcefield.createSystem(topology, nonbondedMethod=app.PME, nonbondedCutoff=cutoff * unit.nanometer,
                                         constraints=app.HBonds, residueTemplates=res_templates,
                                         ewaldErrorTolerance=5e-4)
    except ValueError as exc:
        raise ValueError(f"polymer: GAFF2 could not parameterise the system: {exc}") from None
    for f in system.getForces():
        if isinstance(f, openmm.NonbondedForce):
            f.setUseDispersionCorrection(True)
    net = sum(f.getParticleParameters(i)[0].value_in_unit(unit.elementary_charge)
              for f in system.getForces() if isinstance(f, openmm.NonbondedForce)
              for i in range(f.getNumParticles()))
    composition = dict(
        polymer=fractions, polymer_spec=str(polymer), n_chains=n_chains, chain_length=chain_length,
        sequences=[" ".join(s) for s in sequences], chain_smiles=sorted(set(chain_keys)),
        n_li=n_pairs, n_tfsi=n_pairs, polymer_mass_g_mol=polymer_mass,
        salt_molality_mol_kg=(n_pairs / (polymer_mass / 1000.0)), salt_molality_requested=molality,
        n_atoms=system.getNumParticles(), total_mass_amu=total_mass, net_charge_e=net,
        li_charge_e=scale, tfsi_charge_e=float(t_q.sum()), ion_charge_scale=scale,
        polymer_charge_method=charge_method, packing_density_g_cm3=rho, packing_box_nm=box_nm,
        nonbonded_cutoff_nm=cutoff, residue_names={"polymer": "POL", "anion": "TFS", "cation": "LI"},
        force_field=dict(gaff="gaff-2.11.xml (openmmforcefields)", li=ions["li"]["source"],
                         tfsi_charges=tf["charge_source"], tfsi_types=tf["type_source"],
                         ion_charge_scale=ions["ion_charge_scale"]["source"],
                         polymer_charges=("RDKit MMFF94 (Halgren 1996)" if charge_method == "mmff94"
                                          else "RDKit Gasteiger-Marsili (1980)")), seed=int(seed))
    return SPESystem(topology=topology, system=system, positions=positions, box=box,
                     composition=composition, forcefield_xml=ff_xml, atom_types=tuple(all_types))


#: ps between saved frames of ``generate`` (and ``openmm-mlcg generate spe``)
FRAME_INTERVAL_PS = 2.0

SCALES = {
    # ~250 atoms (4 short chains, 2 LiTFSI, 0.6 nm cutoff), 1 ps NPT + 10 ps NVT (5 frames): seconds; a check
    # that the pipeline runs (tests, first try of a command line), not data to learn from
    "smoke": dict(backbone_atoms=18, target_atoms=None, n_salt=2, equilibration_ps=1.0, training_ps=10.0,
                  nonbonded_cutoff=0.6),
    # ~1000 atoms, minutes on 2 CPU cores (examples / CI-scale data)
    "demo": dict(backbone_atoms=36, target_atoms=960, n_salt=None, equilibration_ps=50.0, training_ps=100.0),
    # Fu et al. 2023 app. B: ~6000 atoms, 50 LiTFSI, 150 backbone atoms per chain, 5 ns equilibration,
    # 5 ns training trajectories (pass training_ps=50000 for the 50 ns test trajectories); meant for a GPU.
    "paper": dict(backbone_atoms=150, target_atoms=None, n_salt=50, equilibration_ps=5000.0, training_ps=5000.0),
}


def simulate(spe: SPESystem, out_dir, equilibration_ps=100.0, production_ps=100.0, frame_interval_ps=2.0,
             temperature=353.0, pressure=1.0, time_step=0.002, platform=None, seed: int = 0, desc: str = "",
             progress_bar: bool = True, reporters=()) -> Path:
    """Minimise, NPT-equilibrate (MonteCarloBarostat), then NVT production at the equilibrated volume.

    Writes (via ``md.run_protocol``, resumable) topology.pdb (CONECT), trajectory.dcd, state_data.csv,
    checkpoint.chk, metadata.json (composition, seed, force field, temperature, time step, frame interval,
    box, OpenMM version), DONE; plus forcefield.xml (the generated templates used with gaff-2.11.xml).

    Args:
        spe: from ``build_spe``.  out_dir: output directory.
        equilibration_ps: NPT length, ps (>= 0).  production_ps: NVT length, ps (> 0; rounded to frames).
        frame_interval_ps: ps between saved frames (a multiple of ``time_step``).
        temperature: K.  pressure: bar.  time_step: ps.  platform: OpenMM platform name or None.
        seed: integrator/barostat/velocity seed.  reporters: extra OpenMM reporters attached for all stages.

    Returns:
        ``Path(out_dir)``.

    Raises:
        ValueError: bad lengths/intervals, unwritable ``out_dir`` (named in the message).
    """
    from ..util.io_utils import atomic_write
    from .md import Stage, run_protocol

    dt = to_float(time_step, unit.picosecond, "time_step")
    eq = to_float(equilibration_ps, unit.picosecond, "equilibration_ps")
    prod = to_float(production_ps, unit.picosecond, "production_ps")
    fi = to_float(frame_interval_ps, unit.picosecond, "frame_interval_ps")
    if dt <= 0 or fi <= 0 or prod <= 0 or eq < 0:
        raise ValueError(f"production_ps/frame_interval_ps/time_step: expected > 0 (equilibration_ps >= 0), got "
                         f"{prod}/{fi}/{dt} ({eq})")
    interval = int(round(fi / dt))
    if interval < 1 or abs(interval * dt - fi) > 1e-6 * fi:
        raise ValueError(f"frame_interval_ps: expected a multiple of time_step={dt} ps, got {fi}")
    n_frames = max(1, int(round(prod / fi)))
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_write(out / "forcefield.xml", "w") as fh:
            fh.write(spe.forcefield_xml)
    except OSError as exc:
        raise ValueError(f"out_dir: cannot write to {out}: {exc}") from None
    sim = spe.make_simulation(temperature=temperature, time_step=dt, pressure=pressure, platform=platform, seed=seed)
    sim.reporters.extend(reporters)
    stages = [Stage("npt_equilibration", int(round(eq / dt)), reporters=False, barostat=True, minimize=True),
              Stage("nvt_production", n_frames * interval, reporters=True, barostat=False)]
    meta = dict(system="spe", composition=spe.composition, seed=int(seed), pressure_bar=float(pressure),
                equilibration_ps=eq, production_ps=n_frames * fi, ensemble="NVT (after NPT equilibration)",
                integrator="LangevinMiddleIntegrator, friction 1/ps", constraints="HBonds",
                nonbonded="PME, cutoff %.2f nm, LJ dispersion correction" % spe.composition["nonbonded_cutoff_nm"],
                force_field=spe.composition["force_field"], packing_box_nm=spe.box.tolist())
    return run_protocol(sim, out, stages, interval, meta, desc=desc, progress_bar=progress_bar)


def _one_system(job: dict) -> str:
    from .md import is_done

    if job.get("cpu_threads"):
        os.environ.setdefault("OPENMM_CPU_THREADS", str(job["cpu_threads"]))
    if is_done(job["out"]):
        return str(job["out"])
    spe = build_spe(job["polymer"], job["n_chains"], job["chain_length"], job["salt_molality"], seed=job["seed"],
                    nonbonded_cutoff=job.get("nonbonded_cutoff", 0.9))
    return str(simulate(spe, job["out"], job["equilibration_ps"], job["training_ps"], job["frame_interval_ps"],
                        temperature=job["temperature"], platform=job["platform"], seed=job["seed"],
                        desc=Path(job["out"]).name, progress_bar=job["progress_bar"]))


def generate(n_systems: int, out_dir, polymers=None, chain_length: int | None = None, n_chains: int | None = None,
             seed: int = 0, platform: str | None = None, scale: str = "demo", training_ps=None,
             equilibration_ps=None, frame_interval_ps=FRAME_INTERVAL_PS, n_workers: int = 1, salt_molality=1.5,
             temperature=353.0, progress_bar: bool = True, scheduler: str | None = None) -> list[Path]:
    """Generate ``n_systems`` SPE reference trajectories, one directory each (``out_dir/spe_XXX_<polymer>``).

    Args:
        n_systems: number of systems (>= 1).
        out_dir: parent directory (created; must be writable).
        polymers: polymer spec or list of specs (see ``parse_polymer``); system ``i`` uses
            ``polymers[i % len(polymers)]``.  Default: every known monomer as a homopolymer, in turn.
            Hold polymers out for transfer tests by generating them in a separate call.
        chain_length / n_chains: override the scale preset (monomers per chain / chains per box).
        seed: base seed; system ``i`` uses ``seed + i``.
        platform: OpenMM platform name or None (fastest available).
        scale: ``"smoke"`` (~250 atoms, 1 ps NPT + 10 ps NVT, seconds: checks that the pipeline runs),
            ``"demo"`` (~1000 atoms, 50 ps NPT + 100 ps NVT, ~3-5 min on 2 CPU cores) or ``"paper"``
            (~6000 atoms, 50 LiTFSI, ~150 backbone atoms per chain, 5 ns NPT + 5 ns NVT; a GPU job).
        training_ps / equilibration_ps: production (NVT) and NPT lengths in ps (override the preset).
        frame_interval_ps: ps between frames (default 2).  n_workers: systems run in parallel as Dask tasks on a
            LocalCluster of ``n_workers`` processes (> 1).  scheduler: run them on this Dask cluster instead
            (``tcp://host:8786``; see :mod:`openmm_mlcg.util.parallel`).
        salt_molality: mol LiTFSI per kg polymer.  temperature: K (default 353).

    Returns:
        list of the system directories (finished ones are skipped, interrupted ones resumed).

    Raises:
        ValueError: bad ``n_systems``/``scale``/``n_workers``/``scheduler``/monomer names/lengths, or ``out_dir``
            not writable.
    """
    n_systems = _check_int(n_systems, "n_systems", 1)
    n_workers = _check_int(n_workers, "n_workers", 1)
    if scale not in SCALES:
        raise ValueError(f"scale: expected one of {list(SCALES)}, got {scale!r}")
    if polymers is None:
        specs = known_monomers()
    else:
        specs = [polymers] if isinstance(polymers, (str, dict)) else list(polymers)
    if not specs:
        raise ValueError("polymers: expected at least one polymer spec, got an empty list")
    parsed = [parse_polymer(p) for p in specs]
    for name, val in (("chain_length", chain_length), ("n_chains", n_chains)):
        _ = None if val is None else _check_int(val, name, 1)
    cfg = SCALES[scale]
    train = cfg["training_ps"] if training_ps is None else to_float(training_ps, unit.picosecond, "training_ps")
    equil = cfg["equilibration_ps"] if equilibration_ps is None else to_float(equilibration_ps, unit.picosecond,
                                                                              "equilibration_ps")
    if train <= 0 or equil < 0:
        raise ValueError(f"training_ps/equilibration_ps: expected > 0 / >= 0 ps, got {train}/{equil}")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / ".write_test").write_text("ok")
        (out / ".write_test").unlink()
    except OSError as exc:
        raise ValueError(f"out_dir: cannot write to {out}: {exc}") from None
    molality = to_float(salt_molality, unit.mole / unit.kilogram, "salt_molality")
    jobs = []
    for i in range(n_systems):
        frac = parsed[i % len(parsed)]
        nc, cl = scaled_composition(frac, molality, **{k: cfg[k] for k in ("backbone_atoms", "target_atoms", "n_salt")})
        tag = "-".join(frac)
        jobs.append(dict(out=str(out / f"spe_{i:03d}_{tag}"), polymer=frac, seed=int(seed) + i,
                         n_chains=n_chains or nc, chain_length=chain_length or cl, salt_molality=molality,
                         equilibration_ps=equil, training_ps=train, frame_interval_ps=frame_interval_ps,
                         temperature=temperature, platform=platform, progress_bar=progress_bar,
                         nonbonded_cutoff=cfg.get("nonbonded_cutoff", 0.9),
                         cpu_threads=max(1, (os.cpu_count() or 1) // n_workers) if n_workers > 1 else None))
    from ..util.locks import output_lock
    from ..util.parallel import map_tasks

    with output_lock(out, "generate", "out_dir"):  # one generate per out_dir
        if n_workers == 1 and scheduler is None:
            return [Path(_one_system(j)) for j in jobs]
        # Dask tasks; LocalCluster workers die with this process, a killed worker's system is rerun (resumed)
        return [Path(p) for p in map_tasks(_one_system, jobs, n_workers, scheduler, name="spe")]
