"""Initial structures: monomer specs -> chain SMILES -> RDKit conformers -> packmol packing in a periodic box.

Monomer definitions live in ``data/spe_monomers.json`` (methyl-capped ether/ester/carbonate repeat units).

Uses the ``packmol`` binary (Martinez et al., J. Comput. Chem. 30, 2157 (2009), doi:10.1002/jcc.21224;
the PyPI ``packmol`` wheel puts it on PATH) with its ``pbc`` keyword (packmol >= 20.15), so molecules may
cross the box faces and distances are checked with the minimum image.  Coordinates in nm at the boundary.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["packmol_binary", "pack_box", "embed_molecule", "known_monomers", "parse_polymer", "chain_smiles",
           "scaled_composition", "DATA_DIR", "COPOLYMER_SYNTAX"]

DATA_DIR = Path(__file__).parent / "data"
#: the one polymer-spec syntax (``parse_polymer``, ``openmm-mlcg generate spe --polymer``, the docs)
COPOLYMER_SYNTAX = ("a monomer name (PEO), a random copolymer with equal fractions NAME/NAME (PEO/PTMO) or with "
                    "weights NAME:WEIGHT,NAME:WEIGHT (PEO:0.7,PTMO:0.3)")


def packmol_binary() -> str:
    """Absolute path of the packmol executable.

    Raises:
        FileNotFoundError: no ``packmol`` on PATH (``pip install packmol``).
    """
    exe = shutil.which("packmol")
    if exe is None:
        raise FileNotFoundError("packmol: executable not found on PATH; install it with `pip install packmol`")
    return exe


def _write_xyz(path: Path, elements, xyz_angstrom: np.ndarray) -> None:
    with open(path, "w") as fh:
        fh.write(f"{len(elements)}\nmolecule\n")
        for el, (x, y, z) in zip(elements, xyz_angstrom):
            fh.write(f"{el} {x:.5f} {y:.5f} {z:.5f}\n")


def pack_box(species, box_nm: float, seed: int = 0, tolerance_nm: float = 0.2,
             timeout_s: float = 600.0) -> np.ndarray:
    """Pack molecules at random positions/orientations into a periodic cubic box.

    Args:
        species: list of ``(elements, coordinates_nm, count)``: element symbols ``(n_i,)``, one template
            conformation ``(n_i, 3)`` in nm, and how many copies to place.
        box_nm: cubic box edge in nm (> 0).
        seed: packmol random seed.
        tolerance_nm: minimum distance between atoms of different molecules, nm (packmol ``tolerance``).
        timeout_s: wall-clock limit for packmol, seconds.

    Returns:
        ``(sum_i n_i * count_i, 3)`` float64 positions in nm, species in the given order, copies
        consecutive, atoms in template order; molecules are whole (not wrapped atom by atom), so
        some atoms may lie outside ``[0, box_nm)``.

    Raises:
        ValueError: bad arguments, or packmol did not converge (message carries packmol's last lines).
        FileNotFoundError: packmol is not installed.
    """
    if not box_nm > 0:
        raise ValueError(f"box_nm: expected a positive box edge in nm, got {box_nm!r}")
    if not species:
        raise ValueError("species: expected at least one (elements, coordinates, count) entry, got none")
    exe = packmol_binary()
    box_a = 10.0 * float(box_nm)
    n_total = 0
    with tempfile.TemporaryDirectory(prefix="openmm_mlcg_packmol_") as tmp:
        tmp = Path(tmp)
        lines = [f"tolerance {10.0 * tolerance_nm:.4f}", "filetype xyz", "output packed.xyz",
                 f"seed {int(seed) + 1}", f"pbc 0. 0. 0. {box_a:.4f} {box_a:.4f} {box_a:.4f}", ""]
        for k, (elements, xyz, count) in enumerate(species):
            xyz = np.asarray(xyz, dtype=np.float64)
            if xyz.shape != (len(elements), 3) or not np.all(np.isfinite(xyz)):
                raise ValueError(f"species: entry {k} coordinates must be finite with shape "
                                 f"({len(elements)}, 3), got {xyz.shape}")
            if int(count) < 1:
                raise ValueError(f"species: entry {k} count must be >= 1, got {count!r}")
            _write_xyz(tmp / f"s{k}.xyz", elements, 10.0 * (xyz - xyz.mean(axis=0)))
            lines += [f"structure s{k}.xyz", f"  number {int(count)}",
                      f"  inside box 0. 0. 0. {box_a:.4f} {box_a:.4f} {box_a:.4f}", "end structure", ""]
            n_total += len(elements) * int(count)
        (tmp / "pack.inp").write_text("\n".join(lines))
        with open(tmp / "pack.inp") as stdin:
            try:
                proc = subprocess.run([exe], stdin=stdin, cwd=tmp, capture_output=True, text=True,
                                      timeout=timeout_s, env=dict(os.environ))
            except subprocess.TimeoutExpired:
                raise ValueError(f"box_nm: packmol did not finish within {timeout_s} s for a {box_nm:.3f} nm "
                                 "box; use a lower packing density") from None
        out = tmp / "packed.xyz"
        if proc.returncode != 0 or not out.exists():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
            raise ValueError(f"box_nm: packmol failed (exit {proc.returncode}) for a {box_nm:.3f} nm box; "
                             f"try a lower density. packmol said:\n{tail}")
        rows = out.read_text().splitlines()[2:2 + n_total]
    pos = np.array([[float(v) for v in r.split()[1:4]] for r in rows], dtype=np.float64) / 10.0
    if pos.shape != (n_total, 3):
        raise ValueError(f"species: packmol wrote {len(pos)} atoms, expected {n_total}")
    return pos


def embed_molecule(smiles: str, seed: int, n_conformers: int = 3):
    """RDKit molecule (explicit H) with one 3-D conformer (Angstrom): the most compact of a few ETKDG embeddings.

    Args:
        smiles: molecule SMILES.  seed: RDKit random seed.  n_conformers: embeddings to choose from (the one
            with the smallest Cartesian extent is kept, which helps packing long chains in small boxes);
            molecules above 150 atoms get a single embedding (ETKDG costs several seconds each there).

    Raises:
        ValueError: RDKit cannot parse or embed the molecule.
    """
    from rdkit import Chem
    from rdkit.Chem import AllChem

    parsed = Chem.MolFromSmiles(smiles)
    if parsed is None:
        raise ValueError(f"smiles: RDKit cannot parse {smiles!r}")
    mol = Chem.AddHs(parsed)
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed) % (2 ** 31)
    params.useRandomCoords = mol.GetNumAtoms() > 60
    n_conf = 1 if mol.GetNumAtoms() == 1 or mol.GetNumAtoms() > 150 else n_conformers  # big chains: 1 (cost)
    ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=n_conf, params=params))
    if not ids:
        raise ValueError(f"smiles: RDKit could not embed {smiles[:60]}...")
    extent = [np.ptp(mol.GetConformer(i).GetPositions(), axis=0).max() for i in ids]
    best = ids[int(np.argmin(extent))]
    conf = Chem.Conformer(mol.GetConformer(best))
    mol.RemoveAllConformers()
    mol.AddConformer(conf, assignId=True)
    return mol


@lru_cache(maxsize=None)
def _data(name: str) -> dict:
    return json.loads((DATA_DIR / name).read_text())


def known_monomers() -> list[str]:
    """Names of supported monomers (keys of data/spe_monomers.json), e.g. ``["PEO", "PPO", ...]``."""
    return list(_data("spe_monomers.json")["monomers"])


def parse_polymer(polymer) -> dict[str, float]:
    """Normalise a polymer spec to ``{monomer: fraction}`` (fractions sum to 1).

    Accepted forms: ``"PEO"``; ``"PEO/PPO"`` (random copolymer, equal fractions); ``"PEO:0.7,PPO:0.3"``;
    a list/tuple of monomer names (equal fractions); a dict ``{name: weight}``.

    Raises:
        ValueError: empty spec, unknown monomer (message lists the known ones), non-positive or non-numeric
            weight (``"PEO:PTMO"`` is refused with a pointer to ``"PEO/PTMO"``).
        TypeError: spec of another type.
    """
    if isinstance(polymer, str):
        text = polymer.strip()
        if ":" in text:
            spec = {}
            for part in text.split(","):
                name, _, w = part.partition(":")
                try:
                    spec[name.strip()] = float(w)
                except ValueError:
                    hint = ""
                    if all(p.strip() in known_monomers() for p in text.replace(",", ":").split(":")):
                        hint = f" (did you mean {text.replace(':', '/').replace(',', '/')!r}?)"
                    raise ValueError(f"polymer: bad weight {w!r} in {polymer!r}; expected {COPOLYMER_SYNTAX}"
                                     f"{hint}") from None
        else:
            spec = {p.strip(): 1.0 for p in text.split("/") if p.strip()}
    elif isinstance(polymer, (list, tuple)):
        spec = {str(p): 1.0 for p in polymer}
    elif isinstance(polymer, dict):
        spec = {str(k): float(v) for k, v in polymer.items()}
    else:
        raise TypeError(f"polymer: expected str, list of monomer names or dict, got {type(polymer).__name__}")
    if not spec:
        raise ValueError(f"polymer: expected at least one monomer name, got {polymer!r}")
    known = known_monomers()
    for name, w in spec.items():
        if name not in known:
            raise ValueError(f"polymer: unknown monomer {name!r}; known monomers: {known}")
        if not (np.isfinite(w) and w > 0):
            raise ValueError(f"polymer: weight of {name} must be > 0, got {w}")
    total = sum(spec.values())
    return {k: v / total for k, v in spec.items()}


def chain_smiles(sequence) -> str:
    """SMILES of the methyl-capped chain CH3-O-[u1]...[un]-CH3 for a sequence of monomer names.

    Raises:
        ValueError: empty sequence or unknown monomer.
    """
    mons = _data("spe_monomers.json")["monomers"]
    if len(sequence) == 0:
        raise ValueError("sequence: expected at least one monomer, got an empty sequence")
    bad = [s for s in sequence if s not in mons]
    if bad:
        raise ValueError(f"sequence: unknown monomer(s) {sorted(set(bad))}; known monomers: {list(mons)}")
    return "CO" + "".join(mons[s]["unit_smiles"] for s in sequence) + "C"


def scaled_composition(fractions: dict, salt_molality: float, backbone_atoms: int, target_atoms: int | None = None,
                       n_salt: int | None = None) -> tuple[int, int]:
    """(n_chains, chain_length) giving about ``backbone_atoms`` backbone heavy atoms per chain and either
    ``n_salt`` LiTFSI pairs at ``salt_molality`` (mol/kg) or about ``target_atoms`` atoms in total.

    Uses monomer-fraction-weighted backbone atoms, atom counts and masses of homopolymer chains.
    """
    from rdkit import Chem

    mons = _data("spe_monomers.json")["monomers"]
    length = max(1, int(round(backbone_atoms / sum(f * mons[m]["backbone_atoms"] for m, f in fractions.items()))))
    atoms = mass = 0.0
    for m, f in fractions.items():
        mol = Chem.AddHs(Chem.MolFromSmiles(chain_smiles([m] * length)))
        atoms += f * mol.GetNumAtoms()
        mass += f * sum(a.GetMass() for a in mol.GetAtoms())
    pairs_per_chain = salt_molality * mass / 1000.0
    if n_salt is not None and pairs_per_chain > 0:
        n_chains = n_salt / pairs_per_chain
    else:
        n_chains = target_atoms / (atoms + 16 * pairs_per_chain)  # LiTFSI = 16 atoms
    return max(2, int(round(n_chains))), length
