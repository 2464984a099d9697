"""Physical sanity checks of user input: what physics allows, stated with the argument, the expected range
and the actual value. Plain numpy (torch only for :func:`resolve_device`); used by the data layer, the trainer
(which records the statistics below in the bundle) and the runtime.

* bonded atoms farther apart than any chemical bond (:data:`MAX_CHEMICAL_BOND_NM`): Angstrom passed as nm,
  or a trajectory whose atom order differs from the topology;
* history displacements against the bundle's ``velocity_std`` (z-score: warn at :data:`WARN_Z`, refuse at
  :data:`REFUSE_Z`);
* periodicity, CG bond lengths and bead density against what the bundle was trained on (bundles that predate
  these keys are not checked).
"""
from __future__ import annotations

import warnings

import numpy as np

__all__ = ["MAX_CHEMICAL_BOND_NM", "WARN_Z", "REFUSE_Z", "BOND_SLACK", "DENSITY_FACTOR", "resolve_device",
           "chemical_bonds", "check_bonded_distances", "check_history_displacements", "training_physics",
           "check_periodicity", "check_against_training"]

#: no chemical bond is longer than this (the longest covalent bonds are ~0.3 nm)
MAX_CHEMICAL_BOND_NM = 0.5
WARN_Z, REFUSE_Z = 6.0, 20.0
#: a CG bond may stretch to this factor times the longest one seen in training
BOND_SLACK = 2.0
#: a bead density outside [min / f, max * f] of the training systems is refused (Angstrom boxes give 1000x)
DENSITY_FACTOR = 4.0


def resolve_device(device, name: str = "device"):
    """``torch.device`` for ``device`` (None -> CUDA if available else CPU).

    Raises:
        ValueError: CUDA requested but not available, or an unknown device string.
    """
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"{name}: expected 'cpu', 'cuda', 'cuda:N' or a torch.device, got {device!r} "
                         f"({exc})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name}: {str(device)!r} requested but CUDA is not available (torch "
                             f"{torch.__version__}, CUDA build {torch.version.cuda}); use device='cpu' or None")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{name}: {str(device)!r} requested but only {torch.cuda.device_count()} CUDA "
                             "device(s) exist")
    return dev


def chemical_bonds(atom_types, bonds) -> np.ndarray:
    """The bonds (m, 2) whose two atoms are both chemical elements (reduced-unit bead models are excluded)."""
    from openmm.app import Element

    def is_element(t):
        """Whether ``t`` is a chemical element symbol."""
        try:
            return Element.getBySymbol(str(t)) is not None
        except KeyError:
            return False

    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    ok = np.array([is_element(t) for t in atom_types], dtype=bool)
    return bonds[ok[bonds[:, 0]] & ok[bonds[:, 1]]] if len(bonds) else bonds


def _bond_lengths(xyz, bonds, box):
    d = xyz[:, bonds[:, 0]] - xyz[:, bonds[:, 1]]
    if box is not None:
        from .geometry import minimum_image

        d = minimum_image(d, np.asarray(box)[:, None, :, :])
    return np.linalg.norm(d, axis=-1)


def check_bonded_distances(xyz, bonds, box, max_nm: float, name: str, hint: str = "") -> float:
    """Raise ValueError if two bonded particles are farther apart than ``max_nm`` (minimum image if ``box``).

    Args: xyz (F, n, 3) nm; bonds (m, 2); box None or (F, 3, 3) nm. Returns the longest bond (nm).
    """
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    x = np.asarray(xyz, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    if len(bonds) == 0 or x.shape[0] == 0:
        return 0.0
    r = _bond_lengths(x, bonds, box)
    f, b = np.unravel_index(int(np.argmax(r)), r.shape)
    if r[f, b] > max_nm:
        i, j = bonds[b]
        n_bad = int(np.sum(r[f] > max_nm))
        raise ValueError(f"{name}: bonded particles {i} and {j} are {r[f, b]:.3g} nm apart in frame {f} ({n_bad} "
                         f"bonds too long), expected <= {max_nm:.3g} nm{'; ' + hint if hint else ''}")
    return float(r.max())


def check_history_displacements(frames, velocity_std: float, name: str = "history", dt_ps=None,
                                warn_z: float = WARN_Z, refuse_z: float = REFUSE_Z) -> float:
    """Compare the displacements between successive frames with the training ``velocity_std`` (nm per model step).

    Returns the largest |component| z-score. Warns (UserWarning) above ``warn_z``.

    Raises:
        ValueError: a z-score above ``refuse_z`` (frames not one model step apart, or not in nm).
    """
    x = np.asarray(frames, dtype=np.float64)
    if x.shape[0] < 2 or not (velocity_std and velocity_std > 0):
        return 0.0
    d = np.abs(np.diff(x, axis=0))
    z = d / float(velocity_std)
    s, b, c = np.unravel_index(int(np.argmax(z)), z.shape)
    zmax = float(z[s, b, c])
    step = f"{dt_ps:g} ps model step" if dt_ps else "model step"
    msg = (f"{name}: step {s + 1} moves bead {b} by {d[s, b, c]:.3g} nm along {'xyz'[c]}, {zmax:.1f} x the bundle's "
           f"velocity_std {velocity_std:.3g} nm per {step}; expected frames one model step apart in nm with "
           f"|displacement| <= {refuse_z:g} x velocity_std = {refuse_z * velocity_std:.3g} nm")
    if zmax > refuse_z:
        raise ValueError(msg)
    if zmax > warn_z:
        warnings.warn(msg.replace("expected", f"accepted (warning above {warn_z:g} x);"), UserWarning, stacklevel=3)
    return zmax


def training_physics(trajectories, mappings) -> dict:
    """Bundle metadata from the training data: ``periodic`` (bool, or None if mixed), ``max_cg_bond_nm``
    (longest CG bond seen) and ``bead_density_per_nm3`` ([min, max] over periodic systems, or None)."""
    periodic = {t.box is not None for t in trajectories}
    longest, dens = 0.0, []
    for t, m in zip(trajectories, mappings):
        bonds = np.asarray(m.cg_bonds).reshape(-1, 2)
        if len(bonds):
            longest = max(longest, float(_bond_lengths(t.positions, bonds, t.box).max()))
        if t.box is not None:
            vol = np.abs(np.linalg.det(t.box))
            dens += [float(m.n_beads / vol.max()), float(m.n_beads / vol.min())]
    return dict(periodic=periodic.pop() if len(periodic) == 1 else None,
                max_cg_bond_nm=longest if longest > 0 else None,
                bead_density_per_nm3=[min(dens), max(dens)] if dens else None)


def check_periodicity(metadata, periodic: bool, name: str = "system") -> None:
    """Refuse a periodic-trained model in a non-periodic System and vice versa (``metadata['periodic']``)."""
    trained = metadata.get("periodic")
    if trained is None or bool(trained) == bool(periodic):
        return
    if trained:
        raise ValueError(f"{name}: the bundle was trained on periodic data but the System has no periodic box; "
                         "build it with create_cg_system(mapping, box) and the box vectors in nm")
    raise ValueError(f"{name}: the bundle was trained on non-periodic data but the System is periodic; build it "
                     "with create_cg_system(mapping, None)")


def check_against_training(metadata, positions, box, cg_bonds, n_beads: int, name: str = "positions",
                           bond_slack: float = None) -> None:
    """Positions (n, 3) nm and box (3, 3) nm or None against the bundle's training statistics.

    Raises:
        ValueError: a CG bond longer than ``bond_slack`` (default ``BOND_SLACK``) x the longest in training, or a
            bead density outside
            the training range by more than ``DENSITY_FACTOR`` (positions or box in Angstrom?).
    """
    x = np.asarray(positions, dtype=np.float64).reshape(1, -1, 3)
    slack = BOND_SLACK if bond_slack is None else float(bond_slack)
    longest = metadata.get("max_cg_bond_nm")
    bonds = np.asarray(cg_bonds).reshape(-1, 2)
    if longest and len(bonds) and np.ptp(x, axis=1).max() > 0:
        b = None if box is None else np.asarray(box, dtype=np.float64).reshape(1, 3, 3)
        check_bonded_distances(x, bonds, b, slack * float(longest), name,
                               f"{slack:g} x the longest CG bond in training ({float(longest):.3g} nm); "
                               "positions in Angstrom instead of nm, or beads in another order?")
    rng = metadata.get("bead_density_per_nm3")
    if rng and box is not None:
        vol = abs(float(np.linalg.det(np.asarray(box, dtype=np.float64))))
        rho = n_beads / vol
        lo, hi = float(rng[0]) / DENSITY_FACTOR, float(rng[1]) * DENSITY_FACTOR
        if not lo <= rho <= hi:
            raise ValueError(f"box: bead density {rho:.4g} beads/nm^3 (box volume {vol:.4g} nm^3) is outside "
                             f"[{lo:.4g}, {hi:.4g}], {DENSITY_FACTOR:g}x the training range {rng[0]:.4g}-"
                             f"{rng[1]:.4g}; box in Angstrom instead of nm?")
