"""Training configuration: nested dataclasses <-> YAML, with strict validation.

Every section is a dataclass; :meth:`TrainConfig.from_dict` rejects unknown keys (naming the key and the
section), checks types, and validates values. The resolved configuration (all defaults filled in) is written
beside the outputs as ``resolved_config.yaml`` by the trainer.

Units: lengths in nm, times in ps. The input-noise scales are dimensionless *fractions of the dataset
velocity_std* (the per-component standard deviation of the displacement over one model step), so one setting
works for any system and model time step. Defaults follow Fu et al., TMLR 2023, section 3 and appendix C
(paper values converted from Angstrom to nm).
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Union

import yaml

from openmm_mlcg.generators import DEFAULT_GENERATOR
from openmm_mlcg.generators.cg_langevin import CGLangevinConfig
from openmm_mlcg.nn.dkmp import DEFAULT_DKMP_K
from openmm_mlcg.generators.interpolant import InterpolantConfig
from openmm_mlcg.generators.score_samplers import AncestralConfig, LangevinConfig

from .config_checks import MOVED_SCORE_KEYS, refuse_moved_keys, validate_config
from .fits.pipeline import DEFAULT_FITS

__all__ = [
    "SystemSource", "DataConfig", "ModelConfig", "ScoreConfig", "ScoreTermsConfig", "RelativeEntropyConfig",
    "OptimConfig", "InputNoiseConfig", "TrainingConfig", "TrainConfig", "load_config", "MOVED_SCORE_KEYS",
]


@dataclass
class SystemSource:
    """One training system (an entry of ``data.systems``). Give exactly one of three forms:

    - ``dir``: a generated system directory with ``topology.pdb``, ``trajectory.dcd`` and ``metadata.json``
      (``frame_interval_ps``), as written by ``openmm_mlcg.systems``;
    - ``topology`` + ``trajectories`` (+ ``frame_interval_ps`` if the files do not carry times);
    - ``cg_trajectory`` + ``mapping``: an already coarse-grained trajectory (npz/h5) and its mapping (npz).

    ``mapping`` may also be given with the first two forms: an existing file is loaded (and checked against
    the topology); a missing one is computed with METIS (``data.group_size`` / ``data.mapping_seed``) and
    written there. Without ``mapping`` the computed mapping is cached in ``data.cache_dir``.
    """

    dir: Optional[str] = None
    topology: Optional[str] = None
    trajectories: List[str] = field(default_factory=list)
    frame_interval_ps: Optional[float] = None
    mapping: Optional[str] = None
    cg_trajectory: Optional[str] = None


@dataclass
class DataConfig:
    """Which trajectories and how windows are cut from them.

    history: number k of past velocities fed to the model. stride: frames per model step
    (model_time_step_ps = stride * frame_interval_ps). val_fraction: the last fraction of every trajectory
    (in time) is held out for validation (a time split, so no validation window overlaps a training window
    except at the boundary). max_val_windows: validation NLL is averaged over at most this many windows.
    temperature_K: temperature of the data, K (None: from the ``dir`` sources' ``metadata.json``); the
    ``"cg_langevin"`` generator needs it (kT/m of the beads).
    """

    systems: List[SystemSource] = field(default_factory=list)
    group_size: int = 7
    mapping_seed: int = 0
    history: int = 5
    stride: int = 1
    val_fraction: float = 0.1
    max_val_windows: int = 64
    cache_dir: Optional[str] = None
    temperature_K: Optional[float] = None


@dataclass
class ModelConfig:
    """Network sizes (paper appendix C: 7 layers; hidden 64 embedding, 128 dynamics/score) and graph cutoff.

    min_std: lower bound of the predicted acceleration std, in *normalised* acceleration units
    (fraction of acceleration_std). score_rbf: radial basis functions of the distance on Score GNN edges.
    score_symmetric_pairs: the Score GNN's pair weights obey Newton's third law (``ScoreGNN(symmetric_pairs)``).
    score_energy: the Score GNN is the gradient of a learned energy (:class:`openmm_mlcg.nn.EnergyScoreGNN`, a
    conservative field; ``score.sampler: cg_langevin`` only, TorchScript bundles only).
    neighborhood: the GNNs' message passing, ``radius`` (every layer on the CG graph: CG bonds + all beads within
    ``cutoff_nm``) or ``dkmp`` (DKMP*, :mod:`openmm_mlcg.nn.dkmp`: layer l passes the messages of each bead's
    ``dkmp_k`` nearest beads in the shell ``[r_{l-1}, r_l)`` plus its CG bonds, so the messages grow as
    N x K x L; ``score.sampler: cg_langevin`` (or score disabled), not with ``score_energy``). dkmp_k: K (>= 1).
    dkmp_shells_nm: L+1 strictly increasing radii in nm, r_L <= ``cutoff_nm``, L = ``dynamics_layers`` =
    ``score_layers``; null: ``r_0 = 0``, ``r_l = cutoff_nm (l / L)^(1/3)`` (equal-volume shells, each GNN its L).
    """

    embedding_hidden: int = 64
    embedding_layers: int = 7
    dynamics_hidden: int = 128
    dynamics_layers: int = 7
    score_hidden: int = 128
    score_layers: int = 7
    min_std: float = 1e-3
    cutoff_nm: float = 0.6
    score_rbf: int = 16
    score_symmetric_pairs: bool = False
    score_energy: bool = False
    neighborhood: str = "radius"
    dkmp_k: int = DEFAULT_DKMP_K
    dkmp_shells_nm: Optional[List[float]] = None


@dataclass
class ScoreTermsConfig:
    """``score.terms``: the score terms of the ``cg_langevin`` generator (:mod:`openmm_mlcg.priors`).

    excluded_volume_width: a soft wall below each bead-type pair's closest non-bonded approach in the data, of
    width ``excluded_volume_width`` x sigma_b, keeps beads out of the regions the data never visits (null: no
    wall). bond_prior: a harmonic bond per bead-type pair from the data's bond-length mean and variance, the Score
    GNN learning the residual on top of it (default false: on the SPE demo it did not lower the RDF error).
    pair_correction_types: bead-type names (e.g. ``["Li"]``) whose non-bonded pairs get a radial pair score fitted
    after training by denoising score matching with the network frozen, where the Score GNN under-fits a rare
    contact (:mod:`openmm_mlcg.train.fits.pair_correction`; null: none). angle_correction_iterations > 0: a
    tabulated bond-angle potential per angle type fitted after training by that many iterative-Boltzmann-inversion
    updates against the training frames' angle distributions, each with ``cg_langevin.calibration_starts``
    rollouts of ``angle_correction_steps`` model steps (:mod:`openmm_mlcg.train.fits.angle_correction`; 0: off).
    """

    excluded_volume_width: Optional[float] = 3.0
    bond_prior: bool = False
    pair_correction_types: Optional[List[str]] = None
    angle_correction_iterations: int = 0
    angle_correction_steps: int = 200


@dataclass
class RelativeEntropyConfig:
    """``score.relative_entropy``: steps > 0 (needs ``model.score_energy``) fine-tunes the energy after training by
    relative entropy (maximum likelihood against the sampler's own persistent chains, at learning rate ``lr``;
    :mod:`openmm_mlcg.train.fits.relative_entropy`); 0: off."""

    steps: int = 0
    lr: float = 1e-4


@dataclass
class ScoreConfig:
    """Score GNN (denoising score matching, paper eq. (2)) and the generator the bundle is made for.

    sampler: the generator (:mod:`openmm_mlcg.generators`): ``"cg_langevin"`` (default, chosen on bench_liquid:
    Langevin sub-steps on a learned equilibrium score), or the comparison generators ``"interpolant"``,
    ``"ode"``, ``"ancestral"``, ``"langevin"`` (the paper's annealed Langevin); each has its own section below
    (``score.<sampler>``), read only when it is the sampler. enabled: train the Score GNN (false: the bundle steps
    with the Dynamics GNN's independent Gaussian). weight multiplies L_score.

    Training draws one noise level per window log-uniformly in [sigma_min_nm, sigma_max_nm]. ``None`` ties the range
    to the data: for ``cg_langevin`` [sigma_b / 3, 3 sigma_b] (sigma_b: the noise level its sub-steps resolve, see
    ``score.cg_langevin``); for the others sigma_max = 3 velocity_std (at sigma_max the joint structure is washed
    out) and sigma_min = 0.05 velocity_std. ``n_levels`` geometric levels span the range (the score samplers' and
    the interpolant's steps; cg_langevin's reverse levels end at the smallest).

    terms: the score terms; relative_entropy: the energy fine-tuning; fits: the order of the post-training fits
    (:mod:`openmm_mlcg.train.fits.pipeline`). The paper's refinement (appendix C): ``sampler: langevin, n_levels: 20,
    sigma_max_nm: 1.0, sigma_min_nm: 0.001, langevin: {schedule: paper, steps_per_level: 10, step_size_nm2: 5e-7}``.
    """

    enabled: bool = True
    sampler: str = DEFAULT_GENERATOR
    sigma_max_nm: Optional[float] = None
    sigma_min_nm: Optional[float] = None
    n_levels: int = 10
    weight: float = 1.0
    cg_langevin: CGLangevinConfig = field(default_factory=CGLangevinConfig)
    langevin: LangevinConfig = field(default_factory=LangevinConfig)
    ancestral: AncestralConfig = field(default_factory=AncestralConfig)
    interpolant: InterpolantConfig = field(default_factory=InterpolantConfig)
    terms: ScoreTermsConfig = field(default_factory=ScoreTermsConfig)
    relative_entropy: RelativeEntropyConfig = field(default_factory=RelativeEntropyConfig)
    fits: List[str] = field(default_factory=lambda: list(DEFAULT_FITS))

    def resolved_sigmas(self, velocity_std: float):
        """(sigma_max, sigma_min) in nm, filling ``None`` from the data's velocity_std (nm per model step)."""
        hi = self.sigma_max_nm if self.sigma_max_nm is not None else 3.0 * float(velocity_std)
        lo = self.sigma_min_nm if self.sigma_min_nm is not None else 0.05 * float(velocity_std)
        if hi < lo:
            raise ValueError(f"score.sigma_max_nm: expected >= score.sigma_min_nm={lo}, got {hi}")
        return float(hi), float(lo)


@dataclass
class OptimConfig:
    """Adam with exponential decay from ``lr`` to ``lr_final`` over ``training.n_steps`` (paper appendix C).

    batch_size: windows per optimisation step (beads of all windows are concatenated into one graph); under
    torchrun the global batch, shared equally by the ranks (a multiple of their number; docs/scaling.md).
    grad_clip: max global gradient norm (<= 0 disables clipping).
    ema_decay: exponential moving average of the weights, in [0, 1): the exported bundle (and the friction fit
    after training) uses the averaged weights, ``w_ema <- d w_ema + (1 - d) w`` after every step
    (``torch.optim.swa_utils``); 0 exports the last iterate. Score networks are sampled with averaged weights in
    Song & Ermon, "Improved techniques for training score-based generative models", NeurIPS 2020 (technique 5):
    the last iterate of a noisy denoising-score-matching objective carries a random error in its field. A
    finished run's checkpoint holds the averaged weights, so raising ``training.n_steps`` continues from them.
    """

    lr: float = 2e-4
    lr_final: float = 2e-5
    grad_clip: float = 20.0
    batch_size: int = 4
    ema_decay: float = 0.0


@dataclass
class InputNoiseConfig:
    """Multi-scale input noise on history positions (Sanchez-Gonzalez et al. 2020, ICML).

    Per window a std is drawn log-uniformly in [std_min, std_max], in units of the dataset velocity_std
    (dimensionless fraction), and added i.i.d. to every history position.
    """

    enabled: bool = True
    std_max: float = 0.1
    std_min: float = 0.01


@dataclass
class TrainingConfig:
    """Run control. device: "cpu", "cuda", "cuda:N" (under torchrun, "cuda" is each rank's GPU, LOCAL_RANK).
    resume: continue from out_dir/checkpoint.pt if present."""

    n_steps: int = 1000
    eval_every: int = 100
    checkpoint_every: int = 100
    seed: int = 0
    device: str = "cpu"
    out_dir: str = "mlcg_run"
    resume: bool = True
    progress: bool = True


_SECTIONS = {
    "data": DataConfig, "model": ModelConfig, "score": ScoreConfig, "optim": OptimConfig,
    "input_noise": InputNoiseConfig, "training": TrainingConfig,
}


@dataclass
class TrainConfig:
    """The whole training configuration; YAML top level has the sections data, model, score, optim,
    input_noise, training (all optional; missing keys take the defaults above)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    input_noise: InputNoiseConfig = field(default_factory=InputNoiseConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    @classmethod
    def from_dict(cls, raw: Optional[dict]) -> "TrainConfig":
        """Build and validate from a nested dict (e.g. parsed YAML).

        Raises:
            ValueError: unknown section or key (message names both), or an invalid value.
            TypeError: a value of the wrong type (message names section.key, expected and actual type).
        """
        raw = {} if raw is None else raw
        if not isinstance(raw, dict):
            raise TypeError(f"config: expected a mapping of sections, got {type(raw).__name__}")
        unknown = sorted(set(raw) - set(_SECTIONS))
        if unknown:
            raise ValueError(f"config: unknown section {unknown[0]!r}; expected one of {sorted(_SECTIONS)}")
        cfg = cls(**{name: _build(sec_cls, raw.get(name) or {}, name) for name, sec_cls in _SECTIONS.items()})
        cfg.validate()
        return cfg

    @classmethod
    def from_yaml(cls, path) -> "TrainConfig":
        """Read a YAML file. Relative paths inside ``data`` are resolved against the file's directory.

        Raises:
            FileNotFoundError: missing file. ValueError/TypeError: see :meth:`from_dict`.
        """
        from openmm_mlcg.util.yaml_strict import load_yaml

        path = Path(path)
        raw = load_yaml(path)  # duplicate keys/sections and syntax errors -> ValueError with file and line
        if not isinstance(raw, dict):
            raise ValueError(f"config: {path} should hold a mapping of sections (data, model, ...), found "
                             f"{type(raw).__name__}")
        try:
            cfg = cls.from_dict(raw)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{exc} (in {path})") from None
        cfg.resolve_paths(path.parent)
        return cfg

    def resolve_paths(self, base) -> None:
        """Make relative file paths in ``data`` and ``training.out_dir`` absolute with respect to ``base``."""
        base = Path(base)

        def fix(p):
            """``p`` resolved against ``base`` when relative (None stays None)."""
            return None if p is None else str((base / p).resolve()) if not Path(p).is_absolute() else p

        for s in self.data.systems:
            s.dir, s.topology, s.mapping, s.cg_trajectory = map(fix, (s.dir, s.topology, s.mapping, s.cg_trajectory))
            s.trajectories = [fix(t) for t in s.trajectories]
        self.data.cache_dir = fix(self.data.cache_dir)
        self.training.out_dir = fix(self.training.out_dir)

    def to_dict(self) -> dict:
        """Plain nested dict (YAML-serialisable)."""
        return dataclasses.asdict(self)

    def save_yaml(self, path) -> None:
        """Write the resolved configuration atomically."""
        from openmm_mlcg.util.io_utils import atomic_write

        with atomic_write(path, "w") as fh:
            yaml.safe_dump(self.to_dict(), fh, sort_keys=False)

    def validate(self) -> None:
        """Check value ranges (:func:`openmm_mlcg.train.config_checks.validate_config`).

        Raises:
            ValueError: naming ``section.key``, the expected range and the actual value.
        """
        validate_config(self)


def load_config(config: Union["TrainConfig", dict, str, Path]) -> TrainConfig:
    """Accept a TrainConfig, a nested dict or a YAML path and return a validated TrainConfig.

    Raises:
        TypeError: any other type. FileNotFoundError/ValueError: see :meth:`TrainConfig.from_yaml`.
    """
    if isinstance(config, TrainConfig):
        config.validate()
        return config
    if isinstance(config, dict):
        return TrainConfig.from_dict(config)
    if isinstance(config, (str, Path)):
        return TrainConfig.from_yaml(config)
    raise TypeError(f"config: expected TrainConfig, dict or path to a YAML file, got {type(config).__name__}")


def _build(cls, raw: Any, section: str):
    """Instantiate dataclass ``cls`` from ``raw`` dict, rejecting unknown keys and wrong types."""
    if not isinstance(raw, dict):
        raise TypeError(f"{section}: expected a mapping, got {type(raw).__name__} ({raw!r})")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in raw if k not in names]
    if cls is ScoreConfig:
        refuse_moved_keys(raw, section)
    if unknown:
        raise ValueError(f"{section}: unknown key {unknown[0]!r} in section '{section}'; "
                         f"allowed keys: {', '.join(names)}")
    return cls(**{k: _coerce(v, hints[k], f"{section}.{k}") for k, v in raw.items()})


def _coerce(value: Any, tp, name: str):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Union:  # Optional[X]
        if value is None:
            return None
        return _coerce(value, [a for a in args if a is not type(None)][0], name)
    if origin in (list, List):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{name}: expected a list, got {type(value).__name__} ({value!r})")
        return [_coerce(v, args[0], f"{name}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, name)
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{name}: expected true/false, got {type(value).__name__} ({value!r})")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name}: expected an integer, got {type(value).__name__} ({value!r})")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "5e-7" as a string
            try:
                value = float(value)
            except ValueError:
                raise TypeError(f"{name}: expected a number, got string {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise TypeError(f"{name}: expected a finite number, got {type(value).__name__} ({value!r})")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise TypeError(f"{name}: expected a string, got {type(value).__name__} ({value!r})")
        return value
    raise TypeError(f"{name}: unsupported config type {tp}")  # pragma: no cover
