"""The typed metadata record of a :class:`~openmm_mlcg.model.CGDynamicsModel` (stored as ``metadata.json``).

This module is the one owner of the bundle schema: the trainer builds a :class:`ModelMetadata`, the bundle stores
``to_dict()``, and every reader goes through :meth:`ModelMetadata.from_dict`, which validates it once and
compares the values that are stored twice (history k in the record and in the Dynamics GNN's hyperparameters,
the vocabulary size and the Embedding GNN's ``n_atom_types``). Keys it does not know (training config, val_nll,
training-physics ranges, mapping hash, ...) are kept in :attr:`ModelMetadata.extra` and written back unchanged.
What a generator reads is listed by the generator (``Generator.metadata_keys``, :mod:`openmm_mlcg.generators`);
the score terms' tables sit in one nested section, ``score_terms`` (:mod:`openmm_mlcg.priors`).

Bundle formats (:data:`FORMAT_VERSION`; CHANGELOG.md): 1 (openmm_mlcg 0.1) is refused (retrain); 2 loads, its flat
score-term keys (``excluded_volume_nm`` + ``excluded_volume_width_nm``, ``bond_prior``, ``pair_correction``,
``angle_correction``) moved into ``score_terms`` (:func:`migrate_score_terms`); 3 is written.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

from ..cg.similarity import BeadTypeTransfer
from ..generators import get_generator
from ..generators.score_samplers import SCHEDULES
from ..nn.dkmp import DEFAULT_DKMP_K, NEIGHBORHOODS, check_dkmp
from ..priors import validate_score_terms
from .dynamics import geometric_sigmas

__all__ = ["ModelMetadata", "REQUIRED_KEYS", "FORMAT_VERSION", "default_refinement_metadata",
           "migrate_score_terms"]

#: 2: Gaussian mean = -v_last + residual, residual Score GNN, sampler keys; 3: score terms in one section
FORMAT_VERSION = 3
#: keys a bundle must record (the rest have defaults)
REQUIRED_KEYS = ("model_time_step_ps", "history", "cutoff_nm", "velocity_std", "acceleration_std",
                 "atom_type_vocabulary")

#: values of ``ModelMetadata.unseen_bead_types``
UNSEEN_BEAD_TYPE_RULES = ("nearest_composition", "none")
_POSITIVE = ("model_time_step_ps", "cutoff_nm", "velocity_std", "acceleration_std", "langevin_step_size_nm2")
_OPTIONAL_POSITIVE = ("interpolant_noise_nm", "temperature_K", "cg_langevin_sigma_nm", "cg_langevin_sigma_mass_amu",
                      "cg_langevin_mass_floor_amu", "cg_langevin_relax_ps")
_FLAT_TERM_KEYS = ("excluded_volume_nm", "excluded_volume_width_nm", "bond_prior", "pair_correction",
                   "angle_correction")


def default_refinement_metadata() -> Dict[str, Any]:
    """Paper appendix C refinement settings in nm (Angstrom converted): 20 geometric sigmas 1.0 -> 0.001 nm, 10 steps
    per level, step size 5e-7 nm^2, annealed Langevin with the paper's constant step (``sampler="langevin"``,
    ``schedule="paper"``): what a bundle that records no refinement keys was made for."""
    return dict(sigmas_nm=[float(s) for s in geometric_sigmas(1.0, 0.001, 20)], langevin_steps_per_level=10,
                langevin_step_size_nm2=5e-7, sampler="langevin", schedule="paper", corrector_steps=0, snr=0.16)


def migrate_score_terms(metadata: Mapping[str, Any], name: str) -> Dict[str, Any]:
    """A metadata mapping with the format-2 flat score-term keys moved into ``score_terms`` (format 3).

    Raises:
        ValueError: both the flat keys and ``score_terms`` are given.
    """
    flat = [k for k in _FLAT_TERM_KEYS if k in metadata]
    if not flat:
        return dict(metadata)
    if metadata.get("score_terms"):
        raise ValueError(f"{name}: the flat keys {flat} (bundle format 2) and 'score_terms' (format 3) are both given")
    out = {k: v for k, v in metadata.items() if k not in _FLAT_TERM_KEYS}
    terms = {}
    walls, width = metadata.get("excluded_volume_nm"), metadata.get("excluded_volume_width_nm")
    if walls:
        if width is None:
            raise ValueError(f"{name}['excluded_volume_width_nm']: excluded_volume_nm is given, so the wall width "
                             "is needed; got none")
        terms["excluded_volume"] = {"r0_nm": walls, "width_nm": width}
    for key in ("bond_prior", "pair_correction", "angle_correction"):
        if metadata.get(key):
            terms[key] = metadata[key]
    out["score_terms"] = terms
    return out


@dataclass(frozen=True)
class ModelMetadata(Mapping):
    """What a model needs besides its weights. Units: nm, ps, model steps.

    Also a read-only mapping of :meth:`to_dict` (``metadata["stride"]`` reads a key of :attr:`extra`, as the
    bundle's ``metadata.json`` holds it).

    Attributes:
        history: k, number of history velocities the Dynamics GNN consumes.
        cutoff_nm: radius cutoff of the CG graph, nm.
        model_time_step_ps: one model step, ps.
        velocity_std: nm per model step, acceleration_std: nm per model step^2 (normalisation statistics of the
            training windows; also the Score GNN's displacement scale).
        atom_type_vocabulary: atom types in embedding order. n_bond_types: bond-order codes (FineGraph: 6).
        periodic: whether the training data was periodic (None: unknown).
        sigmas_nm: descending noise levels of the refinement, nm. sampler, schedule, langevin_steps_per_level,
            langevin_step_size_nm2 (nm^2), corrector_steps, snr: the refinement (:mod:`openmm_mlcg.generators.score_samplers`).
        interpolant_noise_nm: noise amplitude a of the ``"interpolant"`` sampler (:mod:`openmm_mlcg.generators.interpolant`),
            nm; None: ``velocity_std``.
        temperature_K: temperature of the training data, K (None: unknown; the ``"cg_langevin"`` sampler needs it).
        cg_langevin_steps, cg_langevin_sigma_nm, cg_langevin_friction_per_ps: the ``"cg_langevin"`` sampler
            (:mod:`openmm_mlcg.generators.cg_langevin`): Langevin sub-steps per model step, the noise level of the learned
            equilibrium score (nm), the friction fitted after training (1/ps).
        cg_langevin_friction_by_type: friction (1/ps) per bead type (``CGMapping.bead_types``), fitted after
            training; beads of a type not listed use ``cg_langevin_friction_per_ps``.
        cg_langevin_denoise: f in [0, 1] of the sampler's final step ``x + f sigma^2 s(x)`` (1: Tweedie, the
            posterior mean, which bundles without the key were made for; 1/2: one probability-flow Euler step).
        cg_langevin_reverse_levels: K deterministic DDIM steps from sigma down to the smallest trained level
            before that final step (:meth:`cg_langevin_reverse_ratios`, :mod:`openmm_mlcg.generators.cg_langevin`; 0, the
            value for bundles without the key: the final step alone).
        cg_langevin_relax_ps: the "jump and relax" long step (:mod:`openmm_mlcg.generators.cg_langevin`): when set
            and shorter than the model step, each step draws the Dynamics GNN's Gaussian over the model step (the
            jump) and then makes the ``cg_langevin_steps`` Langevin sub-steps over this time, ps, not over the model
            step; None (bundles without the key): the sub-steps span the model step.
        cg_langevin_sigma_mass_amu: the bead mass (amu) at which the noise level is ``cg_langevin_sigma_nm``;
            bead i uses ``sigma sqrt(m / m_i)``, the same omega h for every bead (None: one sigma for all).
        cg_langevin_mass_floor_amu: the sampler's inertial mass of a bead is ``max(m_i, floor)`` (amu; None: the
            bead masses). Mass does not change the Boltzmann distribution the sampler draws from, only its
            inertia, which the fitted friction absorbs; a floor keeps a light ion (Li+, 6.9 amu) from forcing a
            wide smoothing sigma (sigma ~ 1 / sqrt(m)) onto its own score.
        score_terms: {term key: table}, the terms summed onto the learned score (:mod:`openmm_mlcg.priors`, in
            their fixed order): ``excluded_volume`` ``{"r0_nm": {"A|B": r0 nm}, "width_nm": w}`` (a soft wall below
            each bead-type pair's closest non-bonded approach in the training data), ``bond_prior``
            ``{"A|B": [r0 nm, variance nm^2]}`` (harmonic CG bonds; the Score GNN was trained as the residual on
            top), ``pair_correction`` ``{"r_min_nm", "dr_nm", "scores": {"A|B": [K values, 1/nm]}}`` and
            ``angle_correction`` ``{"knots_deg": [K], "U": {"A|B|C": [K values, kT]}}`` (fitted after training);
            empty: none.
        unseen_bead_types: how bead types that no fitted table lists (chemistry never seen in training) get the
            friction and the score terms' tables: ``"nearest_composition"`` (bundles without the key) borrows the
            values of the seen types of nearest composition (:mod:`openmm_mlcg.cg.similarity`), ``"none"`` gives
            them the global friction and no table entry (the behaviour before the rule).
        neighborhood: the GNNs' message-passing neighbourhood, ``"radius"`` (every layer on the CG graph; bundles
            without the key) or ``"dkmp"`` (DKMP*, :mod:`openmm_mlcg.nn.dkmp`: per layer the ``dkmp_k`` nearest
            beads in the shell ``[r_{l-1}, r_l)`` + the CG bonds). dkmp_k: K. dkmp_shells_nm: {"dynamics": [r_0..r_L],
            "score": [...]} nm, resolved per GNN (L = its layers; r_L <= cutoff_nm).
        score_enabled: whether the Score GNN was trained.
        min_std: lower bound of the predicted std (normalised units) or None.
        hyperparameters: {"embedding": {...}, "dynamics": {...}, "score": {...}} constructor arguments.
        format_version, package_version: written by :func:`openmm_mlcg.bundle.export.save_bundle` (None before).
        extra: every other key, kept as is.
    """

    history: int
    cutoff_nm: float
    model_time_step_ps: float
    velocity_std: float
    acceleration_std: float
    atom_type_vocabulary: Tuple[str, ...]
    n_bond_types: int = 6
    periodic: Optional[bool] = None
    sigmas_nm: Tuple[float, ...] = ()
    sampler: str = "langevin"
    schedule: str = "paper"
    langevin_steps_per_level: int = 10
    langevin_step_size_nm2: float = 5e-7
    corrector_steps: int = 0
    snr: float = 0.16
    interpolant_noise_nm: Optional[float] = None
    temperature_K: Optional[float] = None
    cg_langevin_steps: int = 15
    cg_langevin_sigma_nm: Optional[float] = None
    cg_langevin_sigma_mass_amu: Optional[float] = None
    cg_langevin_mass_floor_amu: Optional[float] = None
    cg_langevin_friction_per_ps: float = 1.0
    cg_langevin_friction_by_type: Dict[str, float] = field(default_factory=dict)
    cg_langevin_denoise: float = 1.0
    cg_langevin_reverse_levels: int = 0
    cg_langevin_relax_ps: Optional[float] = None
    score_terms: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    unseen_bead_types: str = "nearest_composition"
    neighborhood: str = "radius"
    dkmp_k: int = DEFAULT_DKMP_K
    dkmp_shells_nm: Dict[str, Tuple[float, ...]] = field(default_factory=dict)
    score_enabled: bool = True
    min_std: Optional[float] = None
    hyperparameters: Dict[str, Any] = field(default_factory=dict)
    format_version: Optional[int] = None
    package_version: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, metadata: Mapping[str, Any], name: str = "bundle.metadata") -> "ModelMetadata":
        """Validate a metadata mapping (e.g. a bundle's ``metadata.json``) and build the record.

        Refinement keys missing from ``metadata`` take :func:`default_refinement_metadata`; format-2 score-term
        keys are moved into ``score_terms`` (:func:`migrate_score_terms`).

        Raises:
            ValueError: naming ``name[key]``: a required key is missing, a number is not positive and finite,
                the vocabulary is not a list of str, the noise levels are not positive and descending, the
                sampler or schedule is unknown, or a value stored twice disagrees (history k vs the Dynamics
                GNN's ``history``, vocabulary size vs the Embedding GNN's ``n_atom_types``, ``n_bond_types``).
        """
        if not isinstance(metadata, Mapping):
            raise ValueError(f"{name}: expected a mapping of metadata keys, got {type(metadata).__name__}")
        missing = [k for k in REQUIRED_KEYS if k not in metadata]
        if missing:
            raise ValueError(f"{name}: missing required keys {missing} (required: {list(REQUIRED_KEYS)}); "
                             "not a bundle written by openmm_mlcg.bundle.export.save_bundle")
        meta = {**default_refinement_metadata(), **migrate_score_terms(metadata, name)}
        known = {f.name for f in fields(cls)} - {"extra"}
        extra = {k: v for k, v in meta.items() if k not in known}
        extra.update(meta.get("extra") or {})
        values = {k: meta[k] for k in known if k in meta and (meta[k] is not None or k in REQUIRED_KEYS)}
        record = cls(**{**values, "extra": extra})
        return record._validated(name)

    def _validated(self, name: str) -> "ModelMetadata":
        """Check every field (the generator's own needs through its class) and return the normalised record."""
        self._check_numbers(name)
        by_type = self.cg_langevin_friction_by_type or {}
        if not isinstance(by_type, Mapping):
            raise ValueError(f"{name}['cg_langevin_friction_by_type']: expected a mapping bead type -> 1/ps, got "
                             f"{type(by_type).__name__}")
        for key, f in [("cg_langevin_friction_per_ps", self.cg_langevin_friction_per_ps)] + [
                (f"cg_langevin_friction_by_type'][{t!r}", v) for t, v in by_type.items()]:
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not (math.isfinite(f) and f >= 0):
                raise ValueError(f"{name}['{key}']: expected a finite number >= 0 (1/ps), got {f!r}")
        terms = validate_score_terms(self.score_terms or {}, f"{name}['score_terms']")
        vocab = self.atom_type_vocabulary
        if isinstance(vocab, str) or not all(isinstance(t, str) for t in vocab):
            raise ValueError(f"{name}['atom_type_vocabulary']: expected a list of str, got {vocab!r}")
        sig = [float(s) for s in self.sigmas_nm]
        if not sig or any(not (s > 0) for s in sig) or any(a < b for a, b in zip(sig, sig[1:])):
            raise ValueError(f"{name}['sigmas_nm']: expected positive descending noise levels in nm, got {sig}")
        if self.cg_langevin_reverse_levels and not (self.cg_langevin_sigma_nm and sig[-1] < self.cg_langevin_sigma_nm):
            raise ValueError(f"{name}['cg_langevin_reverse_levels']: {self.cg_langevin_reverse_levels} levels need the "
                             f"smallest trained noise level sigmas_nm[-1] ({sig[-1]} nm) below cg_langevin_sigma_nm "
                             f"({self.cg_langevin_sigma_nm!r} nm)")
        get_generator(self.sampler, f"{name}['sampler']").check_metadata(self, name)
        if self.unseen_bead_types not in UNSEEN_BEAD_TYPE_RULES:
            raise ValueError(f"{name}['unseen_bead_types']: expected one of {UNSEEN_BEAD_TYPE_RULES}, got "
                             f"{self.unseen_bead_types!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"{name}['schedule']: expected one of {SCHEDULES}, got {self.schedule!r}")
        self._check_stored_twice(name)
        shells = self._checked_neighborhood(name)
        return replace(self, atom_type_vocabulary=tuple(vocab), sigmas_nm=tuple(sig), dkmp_shells_nm=shells,
                       cg_langevin_friction_by_type={str(t): float(v) for t, v in by_type.items()},
                       score_terms=terms, score_enabled=bool(self.score_enabled),
                       cg_langevin_denoise=float(self.cg_langevin_denoise),
                       periodic=None if self.periodic is None else bool(self.periodic))

    def _check_numbers(self, name: str) -> None:
        """Positive, optional-positive, fraction and integer fields, each named in the error."""
        def bad(v, low, strict):
            """Whether v is not a finite number above (strict) or at least ``low``."""
            return isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (
                v <= low if strict else v < low)

        for key in _POSITIVE:
            if bad(getattr(self, key), 0, True):
                raise ValueError(f"{name}[{key!r}]: expected a positive finite number, got {getattr(self, key)!r}")
        for key in _OPTIONAL_POSITIVE:
            v = getattr(self, key)
            if v is not None and bad(v, 0, True):
                raise ValueError(f"{name}[{key!r}]: expected a positive finite number or null, got {v!r}")
        d = self.cg_langevin_denoise
        if bad(d, 0, False) or d > 1:
            raise ValueError(f"{name}['cg_langevin_denoise']: expected a fraction in [0, 1], got {d!r}")
        for key in ("history", "n_bond_types", "langevin_steps_per_level", "corrector_steps", "cg_langevin_steps",
                    "cg_langevin_reverse_levels"):
            v = getattr(self, key)
            low = 1 if key in ("history", "n_bond_types", "cg_langevin_steps") else 0
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name}[{key!r}]: expected an integer >= {low}, got {v!r}")

    def _checked_neighborhood(self, name: str) -> Dict[str, Tuple[float, ...]]:
        """``neighborhood`` and, for ``"dkmp"``, K and the shells of both GNNs (L = their ``layers``)."""
        if self.neighborhood not in NEIGHBORHOODS:
            raise ValueError(f"{name}['neighborhood']: expected one of {NEIGHBORHOODS}, got {self.neighborhood!r}")
        if self.neighborhood == "radius":
            return {}
        if self.score_enabled and not self.generator.equilibrium_score:
            raise ValueError(f"{name}['neighborhood']: 'dkmp' needs the 'cg_langevin' sampler (or score disabled), "
                             f"got sampler {self.sampler!r}")
        shells = self.dkmp_shells_nm if isinstance(self.dkmp_shells_nm, Mapping) else {}
        out = {}
        for module in ("dynamics", "score"):
            layers = (self.hyperparameters or {}).get(module, {}).get("layers")
            try:
                r = check_dkmp(self.dkmp_k, shells.get(module), None if layers is None else int(layers),
                               self.cutoff_nm, prefix=f"{name}.")
            except ValueError as exc:
                raise ValueError(f"{exc} (shells of the {module} GNN)") from None
            if r is None:
                raise ValueError(f"{name}['dkmp_shells_nm']: expected L+1 radii (nm) for '{module}', got "
                                 f"{self.dkmp_shells_nm!r}")
            out[module] = r
        return out

    def _check_stored_twice(self, name: str) -> None:
        """History k, the vocabulary size and the bond-type count against the GNNs' hyperparameters."""
        hp = self.hyperparameters or {}
        twice = (("dynamics", "history", self.history, "history"),
                 ("embedding", "n_atom_types", len(self.atom_type_vocabulary), "atom_type_vocabulary (its length)"),
                 ("embedding", "n_bond_types", self.n_bond_types, "n_bond_types"))
        for module, key, value, what in twice:
            stored = (hp.get(module) or {}).get(key)
            if stored is not None and int(stored) != int(value):
                raise ValueError(f"{name}: {what} is {value} but hyperparameters['{module}']['{key}'] is {stored} "
                                 "(inconsistent bundle; export it again from the trainer)")

    # ------------------------------------------------------------------ views
    def to_dict(self) -> Dict[str, Any]:
        """JSON-serialisable dict (the bundle's ``metadata.json``): typed fields, then ``extra`` keys flat."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out["atom_type_vocabulary"] = list(self.atom_type_vocabulary)
        out["sigmas_nm"] = [float(s) for s in self.sigmas_nm]
        out["hyperparameters"] = _plain(self.hyperparameters)
        out["cg_langevin_friction_by_type"] = dict(self.cg_langevin_friction_by_type)
        out["score_terms"] = _plain(self.score_terms)
        out["dkmp_shells_nm"] = _plain(self.dkmp_shells_nm)
        if self.neighborhood == "radius":    # written by DKMP* bundles only (bundles without them: radius)
            for key in ("neighborhood", "dkmp_k", "dkmp_shells_nm"):
                del out[key]
        for key in ("min_std", "format_version", "package_version", "periodic", "interpolant_noise_nm",
                    "temperature_K", "cg_langevin_sigma_nm", "cg_langevin_sigma_mass_amu",
                    "cg_langevin_mass_floor_amu"):
            if out[key] is None:
                del out[key]
        return {**self.extra, **out}

    @functools.cached_property
    def _as_dict(self) -> Dict[str, Any]:
        return self.to_dict()

    def __getitem__(self, key: str) -> Any:
        return self._as_dict[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._as_dict)

    def __len__(self) -> int:
        return len(self._as_dict)

    def with_extra(self, **extra) -> "ModelMetadata":
        """A copy with keys added to (or replaced in) :attr:`extra`."""
        return replace(self, extra={**self.extra, **extra})

    def with_score_term(self, key: str, table: Mapping[str, Any]) -> "ModelMetadata":
        """A copy with the table of score term ``key`` set (validated; ValueError naming the bad entry)."""
        terms = validate_score_terms({**self.score_terms, key: dict(table)}, "score_terms")
        return replace(self, score_terms=terms)

    @property
    def interpolant_a_nm(self) -> float:
        """Noise amplitude of the interpolant sampler, nm (``interpolant_noise_nm``, default ``velocity_std``)."""
        return float(self.interpolant_noise_nm if self.interpolant_noise_nm is not None else self.velocity_std)

    def bead_type_transfer(self, bead_types=None, graph=None) -> Optional[BeadTypeTransfer]:
        """The rule that gives bead types no table lists the values of the nearest seen chemistry, for a system
        (``bead_types`` (n,), ``graph`` its SystemGraph, either may be None), or None when
        :attr:`unseen_bead_types` is ``"none"``."""
        if self.unseen_bead_types != "nearest_composition":
            return None
        return BeadTypeTransfer(self.atom_type_vocabulary, bead_types if graph is not None else None, graph)

    def cg_langevin_frictions(self, bead_types, graph=None) -> list:
        """Friction (1/ps) of each bead of a system with these bead types (``CGMapping.bead_types``; ``graph``: its
        SystemGraph or None): its type's fitted value; a type the table does not list takes the geometric mean of
        its nearest listed types (:meth:`bead_type_transfer`), else ``cg_langevin_friction_per_ps``."""
        default = float(self.cg_langevin_friction_per_ps)
        table = dict(self.cg_langevin_friction_by_type)
        transfer = self.bead_type_transfer(bead_types, graph)
        if transfer is not None and table:
            table.update(transfer.type_values({t: f for t, f in table.items() if f > 0}, bead_types))
        return [float(table.get(str(t), default)) for t in bead_types]

    def cg_langevin_masses(self, bead_masses):
        """Inertial masses (n, 1) amu of the ``"cg_langevin"`` sampler: ``max(m_i, cg_langevin_mass_floor_amu)``
        for bead masses (n,) amu (a tensor); the masses themselves when no floor is set."""
        m = bead_masses.reshape(-1, 1)
        if self.cg_langevin_mass_floor_amu is None:
            return m
        return m.clamp(min=float(self.cg_langevin_mass_floor_amu))

    def cg_langevin_sigmas(self, bead_masses):
        """Per-bead noise levels (n, 1) nm of the ``"cg_langevin"`` sampler for bead masses (n,) amu (a tensor):
        ``sigma sqrt(m_sigma / m_i')`` with ``m_i'`` the sampler's masses (:meth:`cg_langevin_masses`)."""
        sigma = float(self.cg_langevin_sigma_nm)
        m = self.cg_langevin_masses(bead_masses)
        if self.cg_langevin_sigma_mass_amu is None:
            return m.new_full(m.shape, sigma)
        return sigma * (float(self.cg_langevin_sigma_mass_amu) / m) ** 0.5

    def cg_langevin_reverse_ratios(self) -> Tuple[float, ...]:
        """The ``"cg_langevin"`` reverse levels as ratios to the sampler's sigma: K geometric ratios from 1 (not
        included) down to ``sigmas_nm[-1] / cg_langevin_sigma_nm``, the smallest level the Score GNN was trained
        at (``cg_langevin_reverse_levels`` = K; () for K = 0)."""
        k = int(self.cg_langevin_reverse_levels)
        if k == 0:
            return ()
        low = float(self.sigmas_nm[-1]) / float(self.cg_langevin_sigma_nm)
        return tuple(low ** (i / k) for i in range(1, k + 1))

    @property
    def generator(self):
        """The :class:`openmm_mlcg.generators.Generator` class of :attr:`sampler`."""
        return get_generator(self.sampler)

    @property
    def refines(self) -> bool:
        """Whether the refinement does any work (a trained Score GNN and a generator with steps)."""
        return self.generator.refines(self)


def _plain(value):
    """Nested dicts/lists as plain JSON-friendly containers (tuples become lists)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value



