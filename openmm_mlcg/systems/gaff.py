"""GAFF2 atom typing, partial charges and OpenMM residue templates for SPE molecules.

Force field: GAFF2 as shipped by openmmforcefields (``ffxml/amber/gaff/ffxml/gaff-2.11.xml``; Wang et al.,
J. Comput. Chem. 25, 1157 (2004); GAFF2 = AmberTools gaff-2.11.dat).  That file holds atom types, bonded
terms and Lennard-Jones parameters but no residues, so this module

1. assigns GAFF2 atom types to RDKit molecules with a small rule set covering the chemistry used by the
   SPE builder (sp3 C, carbonyl C, ether/ester O, carbonyl/sulfonyl O, H on aliphatic C, TFSI S/N/F),
2. computes partial charges (MMFF94 bond-charge-increment charges from RDKit by default, Gasteiger as an
   alternative; Halgren, J. Comput. Chem. 17, 490 (1996); Gasteiger & Marsili, Tetrahedron 36, 3219 (1980)),
3. writes OpenMM ffxml ``<Residues>`` templates (one per molecule species) plus extra atom types (Li+),
4. checks that every bond, angle and proper torsion of a built System received a parameter (OpenMM's
   ForceField silently skips bonded terms it has no parameters for).

Units follow OpenMM: nm, kJ/mol, e, amu.
"""
from __future__ import annotations

import io
import itertools
from functools import lru_cache
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
from openmm import app

__all__ = ["gaff2_xml_path", "assign_gaff2_types", "partial_charges", "residue_template_xml",
           "extra_types_xml", "make_forcefield", "check_fully_parameterised", "atom_names", "gaff2_type_names"]

_EWG = {"N", "O", "F", "S", "Cl", "Br", "I"}  # electron-withdrawing neighbours counted for h1/h2/h3


def gaff2_xml_path() -> Path:
    """Path of ``gaff-2.11.xml`` inside the installed openmmforcefields package.

    Raises:
        FileNotFoundError: openmmforcefields is not installed or does not ship gaff-2.11.xml.
    """
    try:
        import openmmforcefields
    except ImportError:  # pragma: no cover - dependency check
        raise FileNotFoundError("gaff-2.11.xml: the openmmforcefields package is not installed "
                                "(pip install openmmforcefields)") from None
    path = Path(openmmforcefields.__file__).parent / "ffxml" / "amber" / "gaff" / "ffxml" / "gaff-2.11.xml"
    if not path.is_file():
        raise FileNotFoundError(f"gaff-2.11.xml: expected at {path}, not found")
    return path


def gaff2_type_names() -> set[str]:
    """Names of all atom types defined in gaff-2.11.xml."""
    import xml.etree.ElementTree as ET

    root = ET.parse(gaff2_xml_path()).getroot()
    return {t.get("name") for t in root.find("AtomTypes")}


def _type_of(atom) -> str:
    sym = atom.GetSymbol()
    nbrs = list(atom.GetNeighbors())
    deg = len(nbrs)
    if sym == "H":
        if deg != 1 or nbrs[0].GetSymbol() != "C" or nbrs[0].GetDegree() != 4:
            raise ValueError("H bonded to something other than an sp3 carbon")
        n_ewg = sum(1 for a in nbrs[0].GetNeighbors() if a.GetSymbol() in _EWG)
        return ("hc", "h1", "h2", "h3")[n_ewg]
    if sym == "C":
        if deg == 4:
            return "c3"
        double_o = [b for b in atom.GetBonds() if b.GetBondTypeAsDouble() == 2.0
                    and b.GetOtherAtom(atom).GetSymbol() in ("O", "S")]
        if deg == 3 and double_o:
            return "c"
        raise ValueError("carbon that is neither sp3 nor a carbonyl carbon")
    if sym == "O":
        if deg == 2 and atom.GetTotalNumHs() == 0:
            return "os"
        if deg == 2 and atom.GetTotalNumHs() == 1:
            return "oh"
        if deg == 1:
            return "o"
        raise ValueError("oxygen with an unsupported environment")
    if sym == "S":
        if deg == 4:
            return "s6"
        raise ValueError("sulfur that is not hypervalent with 4 connections")
    if sym == "N":
        if deg == 2 and atom.GetFormalCharge() == -1 and all(a.GetSymbol() == "S" for a in nbrs):
            return "n2"  # sulfonimide N of TFSI; see data/spe_ions.json for the choice
        raise ValueError("nitrogen other than a sulfonimide anion")
    if sym == "F":
        return "f"
    raise ValueError(f"element {sym} has no GAFF2 rule here")


def assign_gaff2_types(mol) -> list[str]:
    """Assign GAFF2 atom types to every atom of an RDKit molecule with explicit hydrogens.

    Rules (GAFF2 type definitions, Wang et al. 2004 table 1): sp3 C -> ``c3``; carbonyl/ester/carbonate
    C -> ``c``; H on sp3 C with 0/1/2/3 electron-withdrawing neighbours (N, O, F, S, halogens) on that C ->
    ``hc``/``h1``/``h2``/``h3``; ether/ester O -> ``os``; hydroxyl O -> ``oh``; terminal O (C=O, S=O) ->
    ``o``; S with 4 connections -> ``s6``; TFSI imide N -> ``n2``; F -> ``f``.

    Args:
        mol: ``rdkit.Chem.Mol`` with explicit hydrogens (``Chem.AddHs``).

    Returns:
        list of GAFF2 type names, one per atom, in RDKit atom order.

    Raises:
        ValueError: an atom environment is not covered (message names atom index, element and why),
            or the molecule has no explicit hydrogens where they are needed.
    """
    types = []
    for atom in mol.GetAtoms():
        if atom.GetSymbol() != "H" and atom.GetNumImplicitHs() > 0:
            raise ValueError(f"mol: atom {atom.GetIdx()} ({atom.GetSymbol()}) has implicit hydrogens; "
                             "call rdkit.Chem.AddHs first")
        try:
            types.append(_type_of(atom))
        except ValueError as exc:
            raise ValueError(f"mol: atom {atom.GetIdx()} ({atom.GetSymbol()}): {exc}; no GAFF2 typing rule "
                             "in openmm_mlcg.systems.gaff") from None
    return types


def partial_charges(mol, method: str = "mmff94") -> np.ndarray:
    """Partial charges (e) of an RDKit molecule with explicit hydrogens.

    Args:
        mol: ``rdkit.Chem.Mol`` with explicit hydrogens.
        method: ``"mmff94"`` (RDKit MMFF94 bond-charge-increment charges; Halgren 1996) or
            ``"gasteiger"`` (RDKit Gasteiger-Marsili charges).

    Returns:
        ``(n_atoms,)`` float64 array of charges in e; shifted uniformly so that they sum to the formal
        charge exactly (the shift is < 1e-6 e for MMFF94).

    Raises:
        ValueError: unknown ``method`` or RDKit cannot assign charges.
    """
    from rdkit.Chem import AllChem, rdPartialCharges
    from rdkit.Chem import rdmolops

    if method == "mmff94":
        props = AllChem.MMFFGetMoleculeProperties(mol)
        if props is None:
            raise ValueError("mol: RDKit has no MMFF94 parameters for this molecule")
        q = np.array([props.GetMMFFPartialCharge(i) for i in range(mol.GetNumAtoms())], dtype=np.float64)
    elif method == "gasteiger":
        work = type(mol)(mol)
        rdPartialCharges.ComputeGasteigerCharges(work)
        q = np.array([a.GetDoubleProp("_GasteigerCharge") for a in work.GetAtoms()], dtype=np.float64)
    else:
        raise ValueError(f"method: expected 'mmff94' or 'gasteiger', got {method!r}")
    if not np.all(np.isfinite(q)):
        raise ValueError(f"mol: {method} charges contain NaN")
    q += (rdmolops.GetFormalCharge(mol) - q.sum()) / len(q)
    return q


def atom_names(mol) -> list[str]:
    """Unique PDB-compatible (<= 4 characters) atom names: element symbol + per-element counter.

    Counters above 999 (single-letter elements) are written in base 36 to stay within 4 characters.
    """
    counts: dict[str, int] = {}
    names = []
    for atom in mol.GetAtoms():
        sym = atom.GetSymbol().upper()
        counts[sym] = counts.get(sym, 0) + 1
        k = counts[sym]
        room = 4 - len(sym)
        label = str(k) if len(str(k)) <= room else np.base_repr(k, 36)
        if len(label) > room:
            raise ValueError(f"mol: too many {sym} atoms ({k}) for 4-character PDB atom names")
        names.append(sym + label)
    return names


def residue_template_xml(name: str, mol, types, charges, names=None) -> str:
    """OpenMM ffxml ``<Residue>`` element for one molecule species.

    Args:
        name: template name (unique within a ForceField).
        mol: RDKit molecule (explicit H) giving the bonds.
        types: ``(n_atoms,)`` GAFF2 type names (``assign_gaff2_types``).
        charges: ``(n_atoms,)`` charges in e.
        names: atom names (default ``atom_names(mol)``); must match the Topology's atom names.

    Returns:
        XML text of one ``<Residue>`` element.
    """
    names = atom_names(mol) if names is None else list(names)
    n = mol.GetNumAtoms()
    if not (len(types) == len(charges) == len(names) == n):
        raise ValueError(f"types/charges/names: expected {n} entries each, got "
                         f"{len(types)}/{len(charges)}/{len(names)}")
    lines = [f"<Residue name={quoteattr(name)}>"]
    lines += [f"<Atom name={quoteattr(a)} type={quoteattr(t)} charge=\"{float(q):.8f}\"/>"
              for a, t, q in zip(names, types, charges)]
    lines += [f"<Bond atomName1={quoteattr(names[b.GetBeginAtomIdx()])} "
              f"atomName2={quoteattr(names[b.GetEndAtomIdx()])}/>" for b in mol.GetBonds()]
    lines.append("</Residue>")
    return "\n".join(lines)


def extra_types_xml(residues: list[str], li: dict | None = None, li_charge: float = 1.0) -> str:
    """Full ffxml document with the given ``<Residue>`` elements and, if ``li`` is given, a Li+ type.

    Args:
        residues: XML strings from ``residue_template_xml``.
        li: dict with ``mass``, ``sigma_nm``, ``epsilon_kj_mol``, ``residue``, ``atom_name`` (data/spe_ions.json).
        li_charge: Li+ charge in e (after scaling).

    The ``<NonbondedForce>`` uses GAFF's 1-4 scales (coulomb 1/1.2, LJ 0.5) so OpenMM merges it with
    gaff-2.11.xml's generator.
    """
    out = ["<ForceField>"]
    if li is not None:
        out += ["<AtomTypes>", f"<Type name=\"spe-Li+\" class=\"spe-Li+\" element=\"Li\" mass=\"{li['mass']}\"/>",
                "</AtomTypes>"]
        residues = list(residues) + [
            f"<Residue name={quoteattr(li['residue'])}><Atom name={quoteattr(li['atom_name'])} type=\"spe-Li+\" "
            f"charge=\"{li_charge:.8f}\"/></Residue>"]
    out += ["<Residues>", *residues, "</Residues>"]
    if li is not None:
        out += ["<NonbondedForce coulomb14scale=\"0.8333333333333334\" lj14scale=\"0.5\">",
                "<UseAttributeFromResidue name=\"charge\"/>",
                f"<Atom type=\"spe-Li+\" sigma=\"{li['sigma_nm']}\" epsilon=\"{li['epsilon_kj_mol']}\"/>",
                "</NonbondedForce>"]
    out.append("</ForceField>")
    return "\n".join(out)


def make_forcefield(extra_xml: str) -> app.ForceField:
    """``openmm.app.ForceField`` of gaff-2.11.xml plus ``extra_xml`` (from ``extra_types_xml``)."""
    return app.ForceField(str(gaff2_xml_path()), io.StringIO(extra_xml))


@lru_cache(maxsize=1)
def _proper_patterns() -> tuple:
    import xml.etree.ElementTree as ET

    root = ET.parse(gaff2_xml_path()).getroot()
    return tuple(tuple(p.get(f"class{i}") or "" for i in range(1, 5))
                 for p in root.find("PeriodicTorsionForce").iter("Proper"))


def _zero_torsion_defined(types: tuple) -> bool:
    """True if gaff-2.11.xml has a (possibly wildcard) proper torsion for ``types`` (OpenMM drops k=0 ones)."""
    for pat in _proper_patterns():
        for t in (types, types[::-1]):
            if all(p == "" or p == x for p, x in zip(pat, t)):
                return True
    return False


def check_fully_parameterised(topology: app.Topology, system, atom_types=None) -> dict:
    """Verify that every bond, angle and proper dihedral of ``topology`` has a term in ``system``.

    Args:
        topology: the Topology the System was built from.
        system: ``openmm.System`` (built with or without constraints).
        atom_types: optional per-atom GAFF2 types; a dihedral absent from the System is then accepted
            when gaff-2.11.xml defines a torsion for it (OpenMM omits torsions whose barriers are all 0).

    Returns:
        dict with counts ``bonds``, ``angles``, ``propers`` found in the topology.

    Raises:
        ValueError: listing (up to 5) atom-type tuples of missing bonds / angles / torsions.
    """
    import openmm

    nbr: dict[int, set[int]] = {a.index: set() for a in topology.atoms()}
    bonds = set()
    for a, b in topology.bonds():
        nbr[a.index].add(b.index)
        nbr[b.index].add(a.index)
        bonds.add((min(a.index, b.index), max(a.index, b.index)))
    angles = {(min(i, k), j, max(i, k)) for j in nbr for i, k in itertools.combinations(sorted(nbr[j]), 2)}
    propers = set()
    for j, k in bonds:
        for i in nbr[j] - {k}:
            for l in nbr[k] - {j}:
                if i != l:
                    propers.add((i, j, k, l) if i < l else (l, k, j, i))
    have_b, have_a, have_t = set(), set(), set()
    for f in system.getForces():
        if isinstance(f, openmm.HarmonicBondForce):
            for n in range(f.getNumBonds()):
                i, j = f.getBondParameters(n)[:2]
                have_b.add((min(i, j), max(i, j)))
        elif isinstance(f, openmm.HarmonicAngleForce):
            for n in range(f.getNumAngles()):
                i, j, k = f.getAngleParameters(n)[:3]
                have_a.add((min(i, k), j, max(i, k)))
        elif isinstance(f, openmm.PeriodicTorsionForce):
            for n in range(f.getNumTorsions()):
                i, j, k, l = f.getTorsionParameters(n)[:4]
                have_t.add((i, j, k, l) if i < l else (l, k, j, i))
    for n in range(system.getNumConstraints()):
        i, j = system.getConstraintParameters(n)[:2]
        have_b.add((min(i, j), max(i, j)))
        have_a |= {t for t in angles if {t[0], t[2]} == {i, j}}  # rigid-water style angle constraints
    miss_t = sorted(propers - have_t)
    if atom_types is not None:
        miss_t = [t for t in miss_t if not _zero_torsion_defined(tuple(atom_types[i] for i in t))]
    missing = {"bonds": sorted(bonds - have_b), "angles": sorted(angles - have_a), "propers": miss_t}
    if any(missing.values()):
        atoms = list(topology.atoms())
        desc = "; ".join(f"{k}: {len(v)} missing, e.g. " + ", ".join(
            "-".join(f"{atoms[i].residue.name}:{atoms[i].name}" for i in t) for t in v[:5])
            for k, v in missing.items() if v)
        raise ValueError(f"system: GAFF2 terms missing ({desc})")
    return {"bonds": len(bonds), "angles": len(angles), "propers": len(propers)}
