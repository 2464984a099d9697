"""Runtime stepping loop of the learned CG simulator: a thin loop over :class:`openmm_mlcg.model.CGDynamicsModel`.

Used by the OpenMM integrator (openmm_mlcg.openmm), benchmarks and examples. Never imports the trainer.

:class:`LearnedSimulator` binds a model to one system (bead embeddings computed once, bead masses, CG bonds),
validates the inputs and the box once per :meth:`LearnedSimulator.step` call and runs ``n_steps`` model steps
(:meth:`CGDynamicsModel.step`: edges -> Dynamics GNN Gaussian -> Score GNN refinement or Gaussian sample ->
periodic centre-of-mass drift removed -> history rolled) without any host synchronisation of its own; the
neighbour list needs the edge count on the host, which is inherent to dynamic graphs.
``deterministic``: no random numbers at all (mean start, no sampler noise).

NaN/inf policy: each step records on the device whether it produced non-finite positions; from the first such
step on the state is frozen at the last finite one (no further steps are taken into account), and a single
check at the end of the call raises :class:`NonFiniteStateError` naming that step and carrying the last finite
state, so callers (the OpenMM integrator) can keep it.
"""
from __future__ import annotations

import warnings
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from . import dynamics as _dyn
from ..util.geometry import check_box
from . import CGDynamicsModel
from ..cg.similarity import seen_bead_types
from ..priors import ScoreTerms

__all__ = ["LearnedSimulator", "NonFiniteStateError"]

Generators = Union[None, torch.Generator, Sequence[torch.Generator]]


class NonFiniteStateError(FloatingPointError):
    """The learned simulator produced NaN or inf positions.

    Attributes:
        step: 0-based index (within the call) of the first step that produced non-finite positions.
        positions, history: the last finite state ((n, 3) and (k, n, 3)), i.e. after ``step`` steps.
    """

    def __init__(self, message: str, step: int = -1, positions=None, history=None):
        super().__init__(message)
        self.step, self.positions, self.history = step, positions, history


def _as_tensor(x, name, device, dtype=None):
    try:
        t = x if isinstance(x, torch.Tensor) else torch.tensor(np.array(x))
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected an array or tensor, got {type(x).__name__}") from None
    return t.to(device=device, dtype=dtype) if dtype is not None else t.to(device)


def _warn_unseen_bead_types(meta, bead_types, graph) -> None:
    """Warn once per simulator when the system has bead types no fitted table of the bundle lists, naming the seen
    types whose tables they take (:mod:`openmm_mlcg.cg.similarity`) or that they get none."""
    seen = seen_bead_types(meta)
    unseen = sorted({str(t) for t in bead_types} - seen) if seen else []
    if not unseen:
        return
    transfer = meta.bead_type_transfer(bead_types, graph)
    parts = [f"{t} -> {', '.join(transfer.nearest(t, seen)) or 'none'}" if transfer is not None else t
             for t in unseen[:6]]
    more = f" and {len(unseen) - 6} more" if len(unseen) > 6 else ""
    how = ("take the friction and walls of the seen types of nearest composition" if transfer is not None else
           "get the global friction and no wall (metadata unseen_bead_types 'none')")
    warnings.warn(f"mapping: {len(unseen)} bead type(s) never seen in training {how}: {'; '.join(parts)}{more}",
                  UserWarning, stacklevel=3)


class LearnedSimulator:
    """Steps CG bead positions with a loaded model bundle.

    Args:
        bundle: ``openmm_mlcg.bundle.export.Bundle`` (from ``load_bundle``) or a :class:`CGDynamicsModel`.
        mapping: CGMapping of the simulated system (its ``graph`` gives atom types, masses, bonds). If the bundle
            records a ``mapping_hash`` the mapping is not required to match it (a model transfers across systems
            that share atom types); use ``load_bundle(..., mapping=...)`` to enforce identity.
        device: torch device (default: CPU).

    Attributes:
        model (:class:`CGDynamicsModel`), metadata (dict view of ``model.metadata``), history_length (k),
        cutoff_nm, velocity_std, acceleration_std, sigmas_nm (tensor), n_beads, bead_embedding (n_beads, D)
        computed once, model_time_step_ps, sampler, embedding / dynamics / score (the GNNs), score_terms (the
        bundle's :class:`openmm_mlcg.priors.ScoreTerms` bound to this system, or None) and excluded_volume (its
        wall alone, or None).

    Raises:
        ValueError: invalid or inconsistent bundle metadata, an atom type of the mapping is not in the bundle's
            ``atom_type_vocabulary``, or a bond type code is >= ``n_bond_types``.
    """

    def __init__(self, bundle, mapping, device=None):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        model = bundle if isinstance(bundle, CGDynamicsModel) else CGDynamicsModel.from_bundle(bundle)
        self.model = model.to(self.device).eval()
        meta = self.model.metadata
        self.metadata = meta.to_dict()
        self.history_length = int(meta.history)
        self.cutoff_nm = float(meta.cutoff_nm)
        self.velocity_std = float(meta.velocity_std)
        self.acceleration_std = float(meta.acceleration_std)
        self.model_time_step_ps = float(meta.model_time_step_ps)
        self.sigmas_nm = torch.as_tensor(meta.sigmas_nm, dtype=torch.float64)
        self.sampler = meta.sampler
        self.embedding, self.dynamics, self.score = self.model.embedding, self.model.dynamics, self.model.score
        self.mapping = mapping
        self.graph = self.model.system_graph(mapping, self.device)
        self.n_beads = int(mapping.n_beads)
        with torch.no_grad():
            self.bead_embedding = self.model.embed(self.graph)
        self.bead_masses = self.graph.bead_masses
        self.cg_bonds = self.graph.cg_bonds
        self.bead_friction = torch.tensor(meta.cg_langevin_frictions(mapping.bead_types, self.graph), dtype=torch.float64,
                                          device=self.device).reshape(-1, 1)  # 1/ps per bead (cg_langevin)
        self.score_terms = ScoreTerms.from_metadata(meta, mapping.bead_types, self.graph, self.device)  # or None
        _warn_unseen_bead_types(meta, mapping.bead_types, self.graph)

    # ------------------------------------------------------------------
    def history_from_positions(self, frames) -> Tuple[torch.Tensor, torch.Tensor]:
        """Initial state from the last k+1 CG frames (k+1, n_beads, 3) nm, unwrapped, one model step apart.

        Returns:
            (positions (n, 3), history (k, n, 3)) float64 on the simulator's device.

        Raises:
            ValueError: wrong shape.
        """
        x = _as_tensor(frames, "frames", self.device, torch.float64)
        k = self.history_length
        if x.dim() != 3 or x.shape[0] < k + 1 or x.shape[1:] != (self.n_beads, 3):
            raise ValueError(f"frames: expected shape (>= {k + 1}, {self.n_beads}, 3), got {tuple(x.shape)}")
        x = x[-(k + 1):]
        return x[-1].clone(), _dyn.history_velocities(x)

    def _validate(self, positions, history, box, n_steps, generator):
        if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 0:
            raise ValueError(f"n_steps: expected an integer >= 0, got {n_steps!r}")
        x = _as_tensor(positions, "positions", self.device)
        h = _as_tensor(history, "history", self.device)
        if not x.is_floating_point():
            x = x.double()
        h = h.to(x.dtype)
        if x.shape != (self.n_beads, 3):
            raise ValueError(f"positions: expected shape ({self.n_beads}, 3) nm, got {tuple(x.shape)}")
        if h.shape != (self.history_length, self.n_beads, 3):
            raise ValueError(f"history: expected shape ({self.history_length}, {self.n_beads}, 3) nm per model step, "
                             f"got {tuple(h.shape)}")
        if box is not None:  # validated once per call; the steps skip the check
            box = _as_tensor(box, "box", self.device, x.dtype)
            check_box(box, "box", self.cutoff_nm)
        if generator is None or isinstance(generator, torch.Generator):
            gens = [generator] * int(n_steps)
        else:
            gens = list(generator)
            if len(gens) != n_steps or not all(isinstance(g, torch.Generator) for g in gens):
                raise ValueError(f"generator: expected a torch.Generator, None, or a sequence of n_steps={n_steps} "
                                 f"generators, got {type(generator).__name__} of length {len(gens)}")
        return x, h, box, gens

    @torch.no_grad()
    def step(self, positions, history, box=None, n_steps: int = 1, refine: bool = True,
             generator: Generators = None, deterministic: bool = False, external_score=None):
        """Advance ``n_steps`` model steps in one call.

        Args:
            positions: (n_beads, 3) nm, unwrapped (float64 recommended; the dtype is kept).
            history: (k, n_beads, 3) nm per model step, oldest first; ``history[-1] = x_t - x_{t-1}``.
            box: (3, 3) nm OpenMM reduced box vectors (rows) or None for non-periodic; validated once.
            n_steps: number of model steps (each ``model_time_step_ps``).
            refine: draw the joint next state with the bundle's Score GNN sampler.
            generator: torch.Generator on the simulator's device (None: global RNG), or a sequence of
                ``n_steps`` generators, one per step (the OpenMM integrator's counter-based seeds).
            deterministic: no random numbers: the mean (unrefined), or the sampler without noise (refined;
                ``"cg_langevin"``: zero initial velocities, damped motion on the learned free-energy surface).
            external_score: ``f(x) -> (n, 3)``, F_ext(x) / kT in 1/nm of forces that are not learned (e.g. the CG
                System's restraints, evaluated by OpenMM), integrated in the refined ``cg_langevin`` sub-steps
                (:meth:`CGDynamicsModel.step`); None: none.

        Returns:
            (positions (n_beads, 3), history (k, n_beads, 3)), same dtype as ``positions``.

        Raises:
            ValueError: bad shapes, ``n_steps``, ``generator``, or box. NonFiniteStateError (a FloatingPointError):
            a step produced NaN/inf positions (the message names the first such step of this call; the error
            carries the last finite state).
        """
        x, hist, box, gens = self._validate(positions, history, box, n_steps, generator)
        model = self.model
        h = model.node_major(hist)
        first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        for s, gen in enumerate(gens):
            x_new, h_new = model.step(x, h, box, self.bead_embedding, self.bead_masses, self.cg_bonds, refine, gen,
                                      deterministic, self.bead_friction, self.score_terms, external_score)
            ok = torch.isfinite(x_new).all() & (first_bad < 0)
            first_bad = torch.where(~ok & (first_bad < 0), torch.full_like(first_bad, s), first_bad)
            x, h = torch.where(ok, x_new, x), torch.where(ok, h_new, h)  # frozen at the last finite state
        if n_steps > 0:
            bad_step = int(first_bad)
            if bad_step >= 0:
                raise NonFiniteStateError(
                    f"LearnedSimulator.step: non-finite bead positions first produced at step {bad_step} "
                    f"(0-based) of this call of {n_steps} steps", bad_step, x, model.node_major(h).contiguous())
        return x, model.node_major(h).contiguous()

    @property
    def excluded_volume(self):
        """The excluded-volume wall (:class:`openmm_mlcg.priors.excluded_volume.ExcludedVolume`) or None."""
        return None if self.score_terms is None else self.score_terms.get("excluded_volume")

    @property
    def refines(self) -> bool:
        """Whether the bundle's Score GNN was trained and its sampler does any work."""
        return self.model.refines

    @property
    def score_passes(self) -> int:
        """Score GNN passes of one refined model step (the Dynamics GNN adds one more)."""
        return self.model.score_passes

    @torch.no_grad()
    def predict(self, x: torch.Tensor, hist: torch.Tensor, box: Optional[torch.Tensor]):
        """The Dynamics GNN's Gaussian over the next positions (:meth:`CGDynamicsModel.predict`).

        Args:
            x: (n, 3) nm. hist: (k, n, 3) nm per model step. box: (3, 3) nm or None (already validated).

        Returns:
            (mean (n, 3) nm, std (n, 3) nm, latent (n, hidden)); ``mean = x + residual * acceleration_std``.
        """
        p = self.model.predict(x, self.model.node_major(hist), self.bead_embedding, self.bead_masses,
                               self.model.edges(x, box, self.cg_bonds, validate=False))
        return p.mean_pos, p.std_pos, p.latent
