"""Shared small fixtures: a tiny periodic all-atom liquid (ethanol, dimethyl ether, Li) simulated with OpenMM."""
from __future__ import annotations

import numpy as np
import pytest


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run the tests marked slow: the heavy benchmarks' own smoke runs (minutes each)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a heavy benchmark's smoke run (over a minute on 2 cores); skipped "
                                       "unless --run-slow")


def pytest_collection_modifyitems(config, items):
    """Skip ``slow`` tests unless ``--run-slow``: the suite stays under 8 minutes on 2 cores (README)."""
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="a heavy benchmark's smoke run: pytest --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)

BOX_NM = 2.0
FRAME_INTERVAL_PS = 0.005  # 10 steps of 0.5 fs
N_FRAMES = 40
MOLECULES = [("ETH", "CCO")] * 4 + [("DME", "COC")] * 3 + [("LI", "[Li]")] * 2


def _rdkit_molecule(smiles: str, seed: int):
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    if mol.GetNumAtoms() > 1:
        AllChem.EmbedMolecule(mol, randomSeed=seed)
        xyz = mol.GetConformer().GetPositions() / 10.0  # Angstrom -> nm
    else:
        xyz = np.zeros((1, 3))
    elements = [a.GetSymbol() for a in mol.GetAtoms()]
    bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]
    return elements, bonds, xyz - xyz.mean(axis=0)


def build_liquid(seed: int = 0):
    """OpenMM Topology + System + minimised positions for MOLECULES in a cubic BOX_NM box."""
    import openmm
    from openmm import app, unit

    rng = np.random.default_rng(seed)
    top = app.Topology()
    chain = top.addChain()
    system = openmm.System()
    bond_force = openmm.HarmonicBondForce()
    nb = openmm.NonbondedForce()
    nb.setNonbondedMethod(openmm.NonbondedForce.CutoffPeriodic)
    nb.setCutoffDistance(0.8)
    grid = np.array([(i, j, k) for i in range(3) for j in range(3) for k in range(3)], dtype=float)
    grid = grid[rng.permutation(len(grid))[: len(MOLECULES)]] * BOX_NM / 3 + 0.3
    positions = []
    cache = {}
    for (resname, smiles), centre in zip(MOLECULES, grid):
        if smiles not in cache:
            cache[smiles] = _rdkit_molecule(smiles, seed=7)
        elements, bonds, xyz = cache[smiles]
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        res = top.addResidue(resname, chain)
        atoms = []
        for k, el in enumerate(elements):
            element = app.Element.getBySymbol(el)
            atoms.append(top.addAtom(f"{el}{k}", element, res))
            system.addParticle(element.mass)
            nb.addParticle(0.0, 0.2 if el == "H" else 0.3, 0.2)
        for i, j in bonds:
            top.addBond(atoms[i], atoms[j], type=app.Single)
            r0 = float(np.linalg.norm(xyz[i] - xyz[j]))
            bond_force.addBond(atoms[i].index, atoms[j].index, r0, 2.0e5)
            nb.addException(atoms[i].index, atoms[j].index, 0.0, 0.1, 0.0)
        positions.append(xyz @ q.T + centre)
    positions = np.concatenate(positions)
    box = np.eye(3) * BOX_NM
    top.setPeriodicBoxVectors(box * unit.nanometer)
    system.setDefaultPeriodicBoxVectors(*[openmm.Vec3(*row) for row in box])
    system.addForce(bond_force)
    system.addForce(nb)
    return top, system, positions, box


@pytest.fixture(scope="session")
def liquid():
    """dict(topology, system, xyz (F, n, 3) nm unwrapped (molecules whole), xyz_wrapped (each atom wrapped
    into the box, so molecules are split), box (3, 3) nm, frame_interval_ps)."""
    import openmm
    from openmm import unit

    top, system, positions, box = build_liquid()
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 5.0 / unit.picosecond, 0.0005)
    integrator.setRandomNumberSeed(3)
    ctx = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(positions)
    openmm.LocalEnergyMinimizer.minimize(ctx, 10.0, 200)
    ctx.setVelocitiesToTemperature(300 * unit.kelvin, 5)
    frames = []
    for _ in range(N_FRAMES):
        integrator.step(10)
        frames.append(ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    xyz = np.array(frames)
    # shift so that several molecules straddle the box faces, then wrap atom by atom
    shifted = xyz + np.array([0.35, 0.5, 0.45])
    wrapped = shifted - np.floor(shifted / BOX_NM) * BOX_NM
    return dict(topology=top, system=system, xyz=shifted, xyz_wrapped=wrapped, box=box,
                frame_interval_ps=FRAME_INTERVAL_PS)


def linear_chain_graph(n: int, resname: str = "CH"):
    """FineGraph of a linear n-atom carbon chain (one molecule)."""
    from openmm_mlcg.cg.topology import FineGraph

    return FineGraph.from_arrays(["C"] * n, [12.011] * n, [(i, i + 1) for i in range(n - 1)],
                                 residue_names=[resname] * n)
