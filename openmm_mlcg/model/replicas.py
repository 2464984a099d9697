"""Batched replicas: R replicas (of one system or of several) advanced as one disjoint-union graph per pass.

A learned model step is many small GNN passes (``cg_langevin``: 16 Score GNN passes); on a few hundred beads
each pass costs mostly fixed per-call overhead, so R replicas stepped one after another cost about R times one.
:class:`ReplicaSimulator` stacks the replicas' beads row-wise (replica ``r`` owns rows ``[o_r, o_r + n_r)``), joins
their graphs into one disjoint union (each replica's edges from its own neighbour list and box, indices offset by
``o_r``; no edge between replicas) and runs every GNN pass once for all of them, as the trainer batches graphs.

Per-replica semantics are those of :meth:`LearnedSimulator.step` on that replica alone:

* random numbers: replica ``r`` draws every normal variate from its own generator(s), with the shape a single
  run draws (:class:`openmm_mlcg.generators.rng.ReplicaStreams`), so its trajectory with seed ``s_r`` equals the
  single-replica run with seed ``s_r`` to float rounding of the batched matrix products (bit for bit in
  practice on CPU; measured in ``tests/test_batched_replicas.py``);
* per-replica box (or None), centre-of-mass drift removal, score terms (evaluated on the replica's own edges and
  box) and NaN policy (a replica that produces non-finite positions is frozen at its last finite state, the
  others go on; :class:`ReplicaNonFiniteError` at the end of the call names it).

Batched: the default ``cg_langevin`` generator and the unrefined Gaussian step (``refine=False`` or an untrained
Score GNN). The comparison generators (``langevin``, ``ancestral``, ``ode``, ``interpolant``) step the replicas one
after another (same results, no speed-up). Not supported: forces outside the model (``external_score``).
Units: nm, ps. Runtime only (never imports the trainer).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..generators.cg_langevin import kt_over_mass, sample
from ..generators.rng import ReplicaStreams, normal
from .simulator import LearnedSimulator, NonFiniteStateError

__all__ = ["ReplicaSimulator", "ReplicaNonFiniteError", "BATCHED_GENERATORS"]

#: generators whose refined step is batched (the others step the replicas one after another)
BATCHED_GENERATORS = ("cg_langevin",)


class ReplicaNonFiniteError(NonFiniteStateError):
    """One or more replicas produced NaN or inf positions.

    Attributes:
        first_bad_steps: (R,) list, per replica the 0-based step of this call that first produced non-finite
            positions, -1 for replicas that finished. step: the smallest of them.
        positions, history: lists of R last finite states ((n_r, 3) and (k, n_r, 3)).
    """

    def __init__(self, message: str, first_bad_steps: List[int], positions, history):
        super().__init__(message, min(s for s in first_bad_steps if s >= 0), positions, history)
        self.first_bad_steps = first_bad_steps


def _int_at_least(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _per_replica(value, name: str, n_replicas: int) -> list:
    """A sequence (list, tuple, array or tensor with a leading axis) of ``n_replicas`` entries, as a list."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise ValueError(f"{name}: expected a sequence of {n_replicas} entries (one per replica), "
                         f"got {type(value).__name__}")
    if len(value) != n_replicas:
        raise ValueError(f"{name}: expected {n_replicas} entries (one per replica), got {len(value)}")
    return list(value)


class ReplicaSimulator:
    """Steps R replicas as one batched graph (module docstring).

    Args:
        bundle: loaded ``Bundle``, :class:`~openmm_mlcg.model.CGDynamicsModel`, or a :class:`LearnedSimulator`
            (its model is reused).
        mapping: one ``CGMapping`` (``n_replicas`` replicas of it) or a sequence of R mappings, one per replica
            (systems of different sizes are allowed; every one needs the bundle's atom types).
        n_replicas: R >= 1; required with one mapping; with a sequence, None or its length.
        device: torch device (default: that of a given simulator, else CPU).

    Attributes:
        n_replicas, sizes (n_r per replica), offsets (first row per replica), model, device, history_length,
        systems (R :class:`LearnedSimulator`, shared between replicas of the same mapping object).

    Raises:
        ValueError: ``n_replicas`` < 1 or inconsistent with ``mapping``; errors of :class:`LearnedSimulator`.
    """

    def __init__(self, bundle, mapping, n_replicas: Optional[int] = None, device=None):
        if isinstance(mapping, (list, tuple)):
            if n_replicas is not None and _int_at_least(n_replicas, "n_replicas", 1) != len(mapping):
                raise ValueError(f"n_replicas: expected None or len(mapping) = {len(mapping)}, got {n_replicas!r}")
            mappings = list(mapping)
            if not mappings:
                raise ValueError("mapping: expected one CGMapping or a non-empty sequence of them, got []")
        else:
            if n_replicas is None:
                raise ValueError("n_replicas: expected an integer >= 1 with a single mapping, got None")
            mappings = [mapping] * _int_at_least(n_replicas, "n_replicas", 1)
        if isinstance(bundle, LearnedSimulator):
            device = bundle.device if device is None else device
            bundle = bundle.model
        built = {}
        for m in mappings:
            if id(m) not in built:
                built[id(m)] = LearnedSimulator(bundle, m, device)
                bundle = built[id(m)].model          # one model for all systems
        self._bind([built[id(m)] for m in mappings])

    @classmethod
    def from_simulators(cls, simulators: Sequence) -> "ReplicaSimulator":
        """Replicas of already bound systems, one per replica.

        Args:
            simulators: R :class:`LearnedSimulator` of one bundle (or objects with their attributes ``model``,
                ``device``, ``n_beads``, ``history_length``, ``cutoff_nm``, ``bead_embedding``, ``bead_masses``,
                ``cg_bonds``, ``bead_friction``, ``score_terms``); the first one's model steps every replica.

        Raises:
            ValueError: no simulator, or their models' metadata differ.
        """
        sims = list(simulators)
        if not sims:
            raise ValueError("simulators: expected at least one simulator, got none")
        new = cls.__new__(cls)
        new._bind(sims)
        return new

    def _bind(self, systems: list) -> None:
        self.systems = systems
        self.model = systems[0].model
        meta = self.model.metadata.to_dict()
        for r, s in enumerate(systems):
            if s.model is not self.model and s.model.metadata.to_dict() != meta:
                raise ValueError(f"simulators: replica {r} runs a model of other metadata than replica 0's")
        self.device = systems[0].bead_embedding.device
        self.n_replicas = len(systems)
        self.history_length = int(self.model.metadata.history)
        self.sizes = [int(s.n_beads) for s in systems]
        self.offsets = [int(o) for o in np.cumsum([0] + self.sizes[:-1])]
        friction = float(self.model.metadata.cg_langevin_friction_per_ps)
        self.bead_embedding = torch.cat([s.bead_embedding for s in systems])
        self.bead_masses = torch.cat([s.bead_masses for s in systems])
        self.bead_friction = torch.cat([s.bead_friction if s.bead_friction is not None else
                                        torch.full((s.n_beads, 1), friction, dtype=torch.float64, device=self.device)
                                        for s in systems])

    # ------------------------------------------------------------------ inputs
    def _validate(self, positions, history, box, n_steps, generators, seeds):
        R = self.n_replicas
        n_steps = _int_at_least(n_steps, "n_steps", 0)
        xs, hs = _per_replica(positions, "positions", R), _per_replica(history, "history", R)
        if box is None or (not isinstance(box, (list, tuple)) and np.ndim(box) == 2):
            boxes = [box] * R
        else:
            boxes = _per_replica(box, "box", R)
        if seeds is not None and generators is not None:
            raise ValueError("seeds, generators: expected at most one of them, got both")
        if seeds is not None:
            seeds = _per_replica(seeds, "seeds", R)
            for r, s in enumerate(seeds):
                _int_at_least(s, f"seeds[{r}]", 0)
            gens = [torch.Generator(device=self.device).manual_seed(int(s)) for s in seeds]
        else:
            gens = [None] * R if generators is None else _per_replica(generators, "generators", R)
        out = []
        for r, sim in enumerate(self.systems):
            try:
                out.append(LearnedSimulator._validate(sim, xs[r], hs[r], boxes[r], n_steps, gens[r]))
            except ValueError as exc:
                raise ValueError(f"replica {r}: {exc}") from None
        dtypes = {x.dtype for x, _, _, _ in out}
        if len(dtypes) > 1:
            raise ValueError(f"positions: expected one dtype for all replicas, got {sorted(map(str, dtypes))}")
        return n_steps, [o[0] for o in out], [o[1] for o in out], [o[2] for o in out], [o[3] for o in out]

    # ------------------------------------------------------------------ one batched step
    def _edge_fns(self, boxes, use_skin: bool) -> list:
        """Per replica, positions (n_r, 3) -> its edges (local indices), as the single-replica step builds them."""
        model, fns = self.model, []
        for s, box in zip(self.systems, boxes):
            nl = model.neighbor_list(box, s.cg_bonds) if use_skin else None
            fns.append(nl if nl is not None else
                       (lambda y, b=box, c=s.cg_bonds: model.edges(y, b, c, validate=False)))
        return fns

    def _union(self, x: torch.Tensor, fns: list):
        """(union edges, per-replica edges) on the stacked positions ``x`` (N, 3) nm."""
        parts = [fn(x[o:o + n]) for fn, o, n in zip(fns, self.offsets, self.sizes)]
        index = torch.cat([e[0] + o for e, o in zip(parts, self.offsets)], 1)
        return (index, torch.cat([e[1] for e in parts]), torch.cat([e[2] for e in parts])), parts

    def _cg_langevin(self, x, boxes, streams, deterministic):
        """The ``cg_langevin`` refined step (:meth:`CGLangevin.step`) of all replicas: (N, 3) nm."""
        model, m = self.model, self.model.metadata
        masses = self.bead_masses.to(x.dtype)
        sig = m.cg_langevin_sigmas(masses).to(x.dtype)
        fns = self._edge_fns(boxes, True)
        terms = [s.score_terms for s in self.systems]

        def score_fn(y: torch.Tensor, ratio: float = 1.0) -> torch.Tensor:
            """Learned equilibrium score (1/nm) of all replicas at ``ratio`` x sigma on their union graph."""
            edges, parts = self._union(y, fns)
            sg = sig * ratio
            s = model.equilibrium_gns(self.bead_embedding, y, sg, edges) / sg
            if all(t is None for t in terms):
                return s
            extra = [torch.zeros((n, 3), dtype=s.dtype, device=s.device) if t is None else
                     t.score(y[o:o + n], e, sg[o:o + n], b, s.dtype)
                     for t, e, b, o, n in zip(terms, parts, boxes, self.offsets, self.sizes)]
            return s + torch.cat(extra)

        kt_m = kt_over_mass(float(m.temperature_K), m.cg_langevin_masses(masses), validate=False)
        return sample(score_fn, x, kt_m, m.cg_langevin_steps, float(m.model_time_step_ps), self.bead_friction, sig,
                      streams, not deterministic, validate=False, denoise=m.cg_langevin_denoise,
                      reverse_ratios=m.cg_langevin_reverse_ratios())

    def _advance(self, x, h, boxes, refine, gens, deterministic):
        """One model step of every replica from stacked x (N, 3), node-major h (N, k, 3): (x', h')."""
        model = self.model
        refined = refine and model.refines
        if refined and model.metadata.sampler not in BATCHED_GENERATORS:   # one replica after another
            outs = [model.step(x[o:o + n], h[o:o + n], b, s.bead_embedding, s.bead_masses, s.cg_bonds, refine, g,
                               deterministic, s.bead_friction, s.score_terms)
                    for s, b, g, o, n in zip(self.systems, boxes, gens, self.offsets, self.sizes)]
            return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])
        streams = ReplicaStreams(gens, self.sizes)
        if refined:
            x_new = self._cg_langevin(x, boxes, streams, deterministic)
        else:
            edges, _ = self._union(x, self._edge_fns(boxes, False))
            p = model.predict(x, h, self.bead_embedding, self.bead_masses, edges)
            x_new = p.mean_pos if deterministic else p.mean_pos + p.std_pos * normal(
                p.mean_pos.shape, streams, x.device, x.dtype)
        parts = []
        for s, b, o, n in zip(self.systems, boxes, self.offsets, self.sizes):
            xr = x_new[o:o + n]
            if b is not None:      # no drift of each periodic replica's centre of mass (CGDynamicsModel.step)
                w = s.bead_masses.to(xr.dtype)
                xr = xr - ((w / w.sum())[:, None] * (xr - x[o:o + n])).sum(0, keepdim=True)
            parts.append(xr)
        x_new = torch.cat(parts)
        return x_new, torch.cat([h[:, 1:], (x_new - x).unsqueeze(1)], 1)

    # ------------------------------------------------------------------ the public step
    @torch.no_grad()
    def step(self, positions, history, box=None, n_steps: int = 1, refine: bool = True, generators=None,
             seeds=None, deterministic: bool = False) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """Advance every replica ``n_steps`` model steps, as :meth:`LearnedSimulator.step` would each alone.

        Args:
            positions: R entries (n_r, 3) nm, unwrapped (an (R, n, 3) array or tensor, or a list); one dtype.
            history: R entries (k, n_r, 3) nm per model step, oldest first.
            box: None (non-periodic), one (3, 3) nm box for all replicas, or R entries ((R, 3, 3) or a list of
                (3, 3) / None).
            n_steps: model steps (>= 0). refine, deterministic: as :meth:`LearnedSimulator.step`, for all replicas.
            generators: None (the global RNG) or R entries, each what :meth:`LearnedSimulator.step` accepts as
                ``generator`` (a torch.Generator on the device, None, or ``n_steps`` generators, one per step).
            seeds: R integers >= 0 instead of ``generators``: replica r draws from
                ``torch.Generator(device).manual_seed(seeds[r])``, as the single run with that generator.

        Returns:
            (positions: R tensors (n_r, 3), history: R tensors (k, n_r, 3)), in the positions' dtype.

        Raises:
            ValueError: naming the argument: an entry count other than R (``positions``, ``history``, ``box``,
                ``generators``, ``seeds``), both ``seeds`` and ``generators``, a negative seed, mixed dtypes; or
                ``replica r: ...`` with :meth:`LearnedSimulator.step`'s message (shape, box, ``n_steps``).
            ReplicaNonFiniteError (a NonFiniteStateError): a replica produced NaN/inf positions (frozen at its
                last finite state; the error names it and carries every replica's last state).
        """
        n_steps, xs, hs, boxes, gens = self._validate(positions, history, box, n_steps, generators, seeds)
        model, R = self.model, self.n_replicas
        x = torch.cat(xs)
        h = torch.cat([model.node_major(hr) for hr in hs]).to(x.dtype)
        rows = torch.repeat_interleave(torch.arange(R, device=x.device), torch.tensor(self.sizes, device=x.device))
        first_bad = torch.full((R,), -1, dtype=torch.long, device=x.device)
        for step in range(n_steps):
            x_new, h_new = self._advance(x, h, boxes, refine, [g[step] for g in gens], deterministic)
            n_bad = torch.zeros(R, dtype=torch.long, device=x.device).index_add_(
                0, rows, (~torch.isfinite(x_new).all(1)).long())           # non-finite beads per replica
            ok = (n_bad == 0) & (first_bad < 0)
            first_bad = torch.where(~ok & (first_bad < 0), torch.full_like(first_bad, step), first_bad)
            keep = ok[rows]
            x, h = torch.where(keep[:, None], x_new, x), torch.where(keep[:, None, None], h_new, h)
        out_x = [x[o:o + n] for o, n in zip(self.offsets, self.sizes)]
        out_h = [model.node_major(h[o:o + n]).contiguous() for o, n in zip(self.offsets, self.sizes)]
        if n_steps > 0:
            bad = first_bad.tolist()
            if any(b >= 0 for b in bad):
                named = ", ".join(f"replica {r} at step {b}" for r, b in enumerate(bad) if b >= 0)
                raise ReplicaNonFiniteError(f"ReplicaSimulator.step: non-finite bead positions first produced by "
                                            f"{named} (0-based) of this call of {n_steps} steps; those replicas "
                                            "keep their last finite state", bad, out_x, out_h)
        return out_x, out_h
