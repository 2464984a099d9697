"""``LearnedIntegrator``: the learned, time-integrated CG simulator as a drop-in OpenMM integrator.

Usage::

    topology, system = create_cg_system(mapping, box)
    integrator = LearnedIntegrator("model.mlcg", history=frames)      # frames: (k+1, n_beads, 3) nm
    simulation = app.Simulation(topology, system, integrator)
    integrator.attach(simulation)                                     # or: create_simulation(topology, ...)
    simulation.context.setPositions(frames[-1])
    simulation.reporters.append(app.DCDReporter("cg.dcd", 10, enforcePeriodicBox=False))
    simulation.step(1000)                                             # 1000 model steps
    traj = openmm_mlcg.openmm.load_dcd("cg.dcd", topology)            # time stamps from the DCD header

Attaching: OpenMM's Python API gives an integrator no way to reach its Context, so the Context is named
explicitly, once: :meth:`LearnedIntegrator.attach` (a Simulation or a Context; checked with the public
``Context.getIntegrator()``), or :func:`openmm_mlcg.openmm.create_simulation`, which builds the Simulation and
attaches. Every stepping path then works: ``Simulation.step``, ``Simulation.runForClockTime`` and
``integrator.step``. Stepping before attaching raises a RuntimeError that says so.

mdtraj reads XTCReporter time stamps directly; for DCD (mdtraj ignores the header) use :func:`load_dcd`.

One OpenMM step is one *model* step (``bundle.metadata['model_time_step_ps']``, e.g. 200 ps); ``getStepSize()``
returns it. Each ``step(n)`` call reads positions (unwrapped) and the box from the Context, runs ``n`` steps of
:class:`openmm_mlcg.model.simulator.LearnedSimulator` on the torch device (CUDA when available; the Context may use any
platform; one call for all ``n`` steps, the box validated once), and writes positions, velocities (last displacement / model time step, nm/ps), time and step
count back once. The history velocities and the RNG state live in integrator variables, so OpenMM checkpoints
and State XML restore them (see :mod:`openmm_mlcg.openmm.state`).

History semantics:
  * ``history`` frames (or :meth:`LearnedIntegrator.initialize_history`) give the k history velocities.
  * Without a history the integrator warm-starts from zero history velocities (beads at rest); the first
    k steps then follow from an unphysical start. Provide the end of a reference trajectory when you can.
  * If positions were changed outside the integrator (``setPositions``, minimisation, ``setState``) the next
    step starts from the new positions but keeps the stored history velocities (a ``UserWarning`` is issued).
    Call :meth:`initialize_history` or :meth:`reset_history` to change that.

Source: Fu et al., "Simulate Time-integrated Coarse-grained Molecular Dynamics with Multi-scale Graph
Networks", TMLR 2023, section 3 (update rule) and appendix C (refinement).
"""
from __future__ import annotations

import warnings
import weakref
from typing import Any, NamedTuple, Optional

import numpy as np
import openmm
import torch
from openmm import unit

from ..util.threads import ThreadWatch
from ..util.units import to_array
from ..model.simulator import LearnedSimulator, NonFiniteStateError
from . import checks as _checks, forces as _forces, state as _st

__all__ = ["LearnedIntegrator", "StepStart"]

_POSITION_TOLERANCE_NM = 1e-5


class StepStart(NamedTuple):
    """What a model step starts from (:meth:`LearnedIntegrator.begin_step`): the Context, its positions (n, 3) nm,
    box (3, 3) nm or None, the history velocities (k, n, 3) nm per model step, its step count and time (ps), and
    the System's classified forces (:func:`openmm_mlcg.openmm.forces.classify_forces`)."""

    context: Any
    positions: np.ndarray
    box: Optional[np.ndarray]
    history: np.ndarray
    step0: int
    t0: float
    forces: Any


def _load_bundle(bundle, device, mapping):
    from ..bundle.export import load_bundle  # runtime module; never the trainer

    if hasattr(bundle, "metadata") and hasattr(bundle, "dynamics"):
        return bundle
    return load_bundle(bundle, device=str(device), mapping=mapping)


def _vec_array(values) -> np.ndarray:
    """List of Vec3 (as returned by getPerDofVariableByName) -> (n, 3) float64."""
    return np.asarray([tuple(v) for v in values], dtype=np.float64).reshape(-1, 3)


class LearnedIntegrator(openmm.CustomIntegrator):
    """OpenMM integrator whose dynamics is a trained time-integrated CG model (an exported bundle).

    Args:
        bundle: path to a bundle file (``openmm_mlcg.bundle.export.save_bundle``) or a loaded ``Bundle``.
        mapping: CGMapping of the simulated system; None -> the mapping bound to the bundle.
        history: None or (>= k+1, n_beads, 3) CG frames in nm one model step apart (unwrapped, Quantity
            allowed; the last k+1 are used), e.g. the end of a reference CG trajectory; k = metadata 'history'.
        refine: draw each step's joint next state with the bundle's Score GNN sampler (:mod:`openmm_mlcg.generators.score_samplers`).
        seed: integer in [0, 2**53) for the counter-based RNG (see :func:`state.step_seed`).
        device: torch device of the model; None -> "cuda" if available else "cpu".
        deterministic: no random numbers (the mean step, or the sampler started from the mean without noise).
        transfer: run a bundle bound to one system's mapping on another system's ``mapping`` (a transferred
            model: another packing, or another chemistry of the same atom types); the bound mapping's hash is
            then not enforced. False (default): a different mapping is refused, as a guard against mix-ups.

    Raises:
        ValueError: mapping hash differs from the bundle's bound mapping (without ``transfer``), no mapping
            available, bad ``history`` shape/values, bad ``seed``, or missing bundle metadata.
        FileNotFoundError: bundle path does not exist.
    """

    def __init__(self, bundle, mapping=None, history=None, refine: bool = True, seed: int = 0,
                 device=None, deterministic: bool = False, transfer: bool = False):
        device = _checks.resolve_device(device, "device")  # ValueError for "cuda" without CUDA
        if mapping is None and transfer:
            raise ValueError("mapping: transfer=True needs the CGMapping of the simulated system, got None")
        bundle = _load_bundle(bundle, device, None if transfer else mapping)
        mapping = mapping if transfer else _checks.resolve_mapping(bundle, mapping)
        seed = self._check_seed(seed)
        simulator = LearnedSimulator(bundle, mapping, device)  # validates the typed metadata record
        record = simulator.model.metadata
        dt = float(record.model_time_step_ps)
        super().__init__(dt)
        self._dt = dt
        self._bundle, self._mapping, self._device = bundle, mapping, device
        self._simulator = simulator
        self._k = int(record.history)
        self._n = int(mapping.n_beads)
        self._fingerprint = _st.bundle_fingerprint(bundle)
        self._ids = _st.accepted_ids(bundle, self._fingerprint)  # also ids of earlier builds
        values = dict(_st.GLOBALS, seed=float(seed), refine=float(bool(refine)),
                      deterministic=float(bool(deterministic)))
        for i, v in enumerate(_st.encode_fingerprint(self._fingerprint)):
            values[f"bundle_id{i}"] = v
        for name, value in values.items():
            self.addGlobalVariable(name, value)
        for i in range(self._k):
            self.addPerDofVariable(f"h{i}", 0.0)
        self.addPerDofVariable("x_last", 0.0)
        self._context_ref = None
        self._checked = None  # (id of checked context, n particles)
        self._cache = None    # (sync_token, history (k,n,3), x_last (n,3)) mirroring the per-DOF variables
        self._warned_external = False
        self._watch = None    # ThreadWatch of the CPU run, made at the first step
        if history is not None:
            self.initialize_history(history)

    # ------------------------------------------------------------------ configuration
    @property
    def bundle(self):
        """The loaded bundle."""
        return self._bundle

    @property
    def mapping(self):
        """The CGMapping being simulated."""
        return self._mapping

    @property
    def model_time_step(self) -> float:
        """Model time step in ps (== ``getStepSize()``)."""
        return self._dt

    @property
    def history_length(self) -> int:
        """Number k of history velocities the model consumes."""
        return self._k

    #: seed / refine / deterministic live in global variables (restored by checkpoints); assignable.
    seed = property(lambda self: int(self.getGlobalVariableByName("seed")),
                    lambda self, v: self.setGlobalVariableByName("seed", float(self._check_seed(v))))
    refine = property(lambda self: bool(self.getGlobalVariableByName("refine")),
                      lambda self, v: self.setGlobalVariableByName("refine", float(bool(v))))
    deterministic = property(lambda self: bool(self.getGlobalVariableByName("deterministic")),
                             lambda self, v: self.setGlobalVariableByName("deterministic", float(bool(v))))

    @staticmethod
    def _check_seed(seed) -> int:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= _st.MAX_SEED:
            raise ValueError(f"seed: expected an integer in [0, 2**53), got {seed!r}")
        return int(seed)

    # ------------------------------------------------------------------ the Context
    def attach(self, target) -> None:
        """Name the Context this integrator runs in (once, after creating it; see the module docstring).

        Args:
            target: the ``openmm.Context`` created with this integrator, or an ``app.Simulation`` (its
                ``context``). A weak reference is kept: the Simulation/Context owns the lifetime.

        Raises:
            TypeError: ``target`` is neither a Context nor a Simulation.
            ValueError: the Context runs another integrator (``context.getIntegrator()`` is not this one), or its
                System holds forces the learned step cannot act on (:mod:`openmm_mlcg.openmm.forces`: a barostat,
                or any force for a generator that does not integrate forces or with ``refine=False``).
        """
        ctx = getattr(target, "context", target)
        if not isinstance(ctx, openmm.Context):
            raise TypeError(f"target: expected an openmm.Context or an app.Simulation, got {type(target).__name__}")
        if ctx.getIntegrator() is not self:
            raise ValueError("target: its Context was created with a different integrator, not this "
                             "LearnedIntegrator")
        self._check_forces(_forces.classify_forces(ctx.getSystem()))
        self._context_ref = weakref.ref(ctx)
        self._checked = None

    def _require_context(self):
        ctx = self._context_ref() if self._context_ref is not None else None
        if ctx is None:
            raise RuntimeError("LearnedIntegrator: not attached to a Context; after app.Simulation(topology, "
                               "system, integrator) call integrator.attach(simulation) (or attach(context) after "
                               "openmm.Context(system, integrator)), or build it with "
                               "openmm_mlcg.openmm.create_simulation(topology, system, integrator)")
        if self._checked is None or self._checked[0] != id(ctx):
            self._check_system(ctx.getSystem())
            _checks.check_context(self._bundle.metadata, ctx, self._mapping)  # periodicity, box, bond lengths
            self._checked = (id(ctx), _forces.classify_forces(ctx.getSystem()), self._context_box(ctx))
        return ctx

    @staticmethod
    def _context_box(ctx):
        """The Context's box (3, 3) nm, or None for a non-periodic System."""
        if not ctx.getSystem().usesPeriodicBoundaryConditions():
            return None
        vectors = ctx.getState().getPeriodicBoxVectors(asNumpy=True)
        return np.asarray(vectors.value_in_unit(unit.nanometer), dtype=np.float64)

    def _check_forces(self, forces) -> None:
        """Refuse System forces that the current generator and ``refine`` setting cannot act on."""
        model = self._simulator.model
        honoured, why = _forces.honours(model.metadata.generator, self.refine, model.refines)
        _forces.check_forces(forces, honoured, why)

    def _check_system(self, system) -> None:
        n = system.getNumParticles()
        if n != self._n:
            raise ValueError(f"system: has {n} particles but the mapping has {self._n} beads; build the System "
                             "with openmm_mlcg.openmm.create_cg_system(mapping, box)")
        masses = np.array([system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(n)])
        bad = np.flatnonzero(~np.isclose(masses, self._mapping.bead_masses, rtol=1e-6, atol=1e-6))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"system: particle {i} has mass {masses[i]} amu but bead {i} of the mapping has "
                             f"{self._mapping.bead_masses[i]} amu ({bad.size} mismatches); wrong System for this bundle")

    # ------------------------------------------------------------------ integrator variables
    def _write_vars(self, history: np.ndarray, x_last: np.ndarray, ready: bool) -> None:
        """Store the record in the integrator variables, stamped with its check value (:mod:`.state`)."""
        for i in range(self._k):
            self.setPerDofVariableByName(f"h{i}", history[i])
        self.setPerDofVariableByName("x_last", x_last)
        self.setGlobalVariableByName("history_ready", float(ready))
        self.setGlobalVariableByName("mlcg_format", float(_st.FORMAT_VERSION))
        words = [self.getGlobalVariableByName(f"bundle_id{i}") for i in range(4)]
        token = _st.make_token(_st.record_checksum(history, x_last, ready, words, _st.FORMAT_VERSION))
        self.setGlobalVariableByName("sync_token", token)
        self._cache = (token, history.copy(), x_last.copy(), bool(ready))

    def _read_vars(self, source: str | None = None):
        """(history (k,n,3), x_last (n,3), ready) from the integrator variables (cached between steps).

        A record this integrator did not write itself (a loaded checkpoint or State) is verified first
        (:meth:`check_state`); ``source`` names it in messages.
        """
        source = source or "integrator state (a checkpoint or State loaded into the Context)"
        token = self.getGlobalVariableByName("sync_token")
        if self._cache is None or self._cache[0] != token:
            self._cache = self._load_record(token, source)
        fp = _st.decode_fingerprint([self.getGlobalVariableByName(f"bundle_id{i}") for i in range(4)])
        if fp not in self._ids:
            raise ValueError(f"bundle: the {source} was written by bundle {fp[:12]}... but this integrator runs "
                             f"bundle {self._fingerprint[:12]}...")
        return self._cache[1], self._cache[2], self._cache[3]

    def _load_record(self, token: float, source: str) -> tuple:
        """(token, history, x_last, ready) read from the Context and checked against its check value."""
        history = np.stack([_vec_array(self.getPerDofVariableByName(f"h{i}")) for i in range(self._k)]) \
            if self._k else np.zeros((0, self._n, 3))
        x_last = _vec_array(self.getPerDofVariableByName("x_last"))
        values = {name: self.getGlobalVariableByName(name) for name in _st.GLOBALS}
        _st.verify_record(values, history, x_last, source)  # before the fingerprint: a cut record reads as zeros
        return token, history, x_last, bool(values["history_ready"])

    def check_state(self, source: str = "integrator state") -> None:
        """Verify the integrator record now in the Context, e.g. right after ``loadCheckpoint`` or ``setState``
        (:func:`openmm_mlcg.openmm.resume_simulation` does); stepping verifies it too.

        Raises:
            ValueError: a record cut short, corrupt or mixed from two runs (it does not match its check value),
                an unknown format version, or one written with another bundle; the message names ``source``.
        """
        self._cache = None
        self._read_vars(source)

    def initialize_history(self, frames) -> None:
        """Set the history from the last k+1 of (>= k+1, n_beads, 3) CG frames (nm, unwrapped, Quantity ok).

        The history velocities are successive differences (``dynamics.history_velocities``); ``frames[-1]`` is
        remembered as the current positions (set the Context positions to it).

        Raises:
            ValueError: shape is not (>= k+1, n_beads, 3) or non-finite values.
        """
        from ..model.dynamics import history_velocities

        x = to_array(frames, unit.nanometer, "history")
        if x.ndim != 3 or x.shape[0] < self._k + 1 or x.shape[1:] != (self._n, 3):
            raise ValueError(f"history: expected (>= k+1, n_beads, 3) = (>= {self._k + 1}, {self._n}, 3) frames "
                             f"in nm, got shape {x.shape}")
        x = x[x.shape[0] - self._k - 1:]
        _checks.check_history(self._bundle.metadata, x, self._mapping)  # displacements vs velocity_std, nm
        self._write_vars(history_velocities(x), x[-1], True)

    def reset_history(self) -> None:
        """Forget the history: the next step warm-starts from zero history velocities."""
        self._write_vars(np.zeros((self._k, self._n, 3)), np.zeros((self._n, 3)), False)

    def get_history(self) -> np.ndarray:
        """Current history velocities, (k, n_beads, 3) nm per model step, oldest first."""
        return self._read_vars()[0].copy()

    # ------------------------------------------------------------------ stepping
    def step(self, steps: int) -> None:
        """Advance the attached Context by ``steps`` model steps.

        Forces of the CG System other than its bond topology (restraints, biases, an applied field) act in every
        Langevin sub-step (:mod:`openmm_mlcg.openmm.forces`). Positions or a box changed since the last step
        (``setPositions``, ``setPeriodicBoxVectors``, ``setState``) are checked as at the start of the run.

        Raises:
            ValueError: ``steps`` < 0, System does not match the mapping, periodic box thinner than twice the
                model cutoff, step size changed, state from a different bundle, positions (CG bonds > 5x the
                training's: Angstrom?) or box (bead density outside the training range) changed into what no
                model was trained for, or System forces the step cannot act on (``refine=False``).
            RuntimeError: not attached to a Context; or the model produced non-finite positions (the message
                names the step; the Context keeps the last finite state, time and step count).
        """
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
            raise ValueError(f"steps: expected an integer >= 0, got {steps!r}")
        if steps == 0:
            self._require_context()
            return
        size = self.getStepSize().value_in_unit(unit.picosecond)
        if not np.isclose(size, self._dt, rtol=1e-12, atol=0):
            raise ValueError(f"step size: the model time step is {self._dt} ps, got getStepSize()={size} ps")
        start = self.begin_step("LearnedIntegrator")
        forces = start.forces
        self._check_forces(forces)  # refine may have been changed since attach
        external = None
        if forces.active:  # the CG System's own forces, evaluated by OpenMM in every Langevin sub-step
            external = _forces.external_score_function(start.context,
                                                       float(self._simulator.model.metadata.temperature_K))
        seed, refine, det = self.seed, self.refine, self.deterministic
        dev = self._device
        xt = torch.as_tensor(start.positions, dtype=torch.float64, device=dev)
        ht = torch.as_tensor(start.history, dtype=torch.float64, device=dev)
        bt = None if start.box is None else torch.as_tensor(start.box, dtype=torch.float64, device=dev)
        step0 = start.step0
        gens = [torch.Generator(device=dev).manual_seed(_st.step_seed(seed, step0 + i)) for i in range(int(steps))]
        done, failed = int(steps), None
        try:  # all steps in one simulator call: no host round trip per step beyond the neighbour list
            xt, ht = self._simulator.step(xt, ht, bt, int(steps), refine, gens, det, external)
        except NonFiniteStateError as exc:  # the error carries the last finite state
            xt, ht, done = exc.positions, exc.history, exc.step
            failed = step0 + done + 1
        self.finish_step(start, xt, ht, done)
        if self._watch is None and torch.device(dev).type == "cpu":
            self._watch = ThreadWatch("LearnedIntegrator")  # warns once if torch's threads are starved
        if self._watch is not None:
            self._watch.check()
        if failed is not None:
            raise RuntimeError(f"LearnedIntegrator: the model produced non-finite positions at step {failed}; "
                               f"the Context keeps the last finite state (step {step0 + done}). Check the input "
                               "history/positions, the box, or try refine=False / deterministic=True")

    # ------------------------------------------------------------------ one step's start and end
    def begin_step(self, caller: str = "LearnedIntegrator") -> StepStart:
        """Read and check what a step starts from, as :meth:`step` does (also used by
        :func:`openmm_mlcg.openmm.replicas.step_replicas`, which advances several integrators in one batch).

        Positions moved or a box changed since the last step (``setPositions``, a minimisation, ``setState``) are
        checked again (:func:`openmm_mlcg.openmm.checks.check_state`) and warned about once, naming ``caller``;
        the stored history velocities are kept. Before the first step the history is zero (a start from rest).

        Returns:
            :class:`StepStart`.

        Raises:
            RuntimeError: not attached to a Context, or all beads at one position (positions never set).
            ValueError: a changed state the bundle refuses, or a record written by another bundle.
        """
        ctx = self._require_context()
        state = ctx.getState(getPositions=True)
        x = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer), dtype=np.float64)
        if self._n > 1 and np.ptp(x, axis=0).max() == 0:
            raise RuntimeError(f"{caller}.step: all beads are at the same position; set the Context "
                               "positions first (e.g. simulation.context.setPositions(frames[-1]))")
        box = None  # validated once per call by the simulator
        if ctx.getSystem().usesPeriodicBoundaryConditions():
            box = np.asarray(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer))
        history, x_last, ready = self._read_vars()
        moved = ready and np.max(np.abs(x - x_last), initial=0.0) > _POSITION_TOLERANCE_NM
        box_changed = box is not None and not np.array_equal(box, self._checked[2])
        if moved or box_changed:  # changed outside the integrator: the start-of-run checks again
            _checks.check_state(self._bundle.metadata, x, box, self._mapping)
            self._checked = self._checked[:2] + (box,)
        if not ready:
            history = np.zeros((self._k, self._n, 3))
        elif moved and not self._warned_external:
            warnings.warn(f"{caller}: Context positions changed since the last step (setPositions, "
                          "minimisation, setState); keeping the stored history velocities", stacklevel=3)
            self._warned_external = True
        return StepStart(ctx, x, box, history, ctx.getStepCount(), state.getTime().value_in_unit(unit.picosecond),
                         self._checked[1])

    def finish_step(self, start: StepStart, positions, history, done: int) -> None:
        """Write the state after ``done`` model steps from ``start``: the Context's positions, velocities (the
        last history velocity over the model step), time and step count, and the integrator's record.

        Args:
            start: what :meth:`begin_step` returned. positions: (n, 3) nm. history: (k, n, 3) nm per model step
                (tensors or arrays, any device). done: model steps made (0: nothing is written).
        """
        if not done:
            return
        as_np = (lambda a: (a.detach().to("cpu", torch.float64).numpy() if torch.is_tensor(a)  # noqa: E731
                            else np.asarray(a, dtype=np.float64)))
        x_new, h_new = as_np(positions), as_np(history).reshape(self._k, self._n, 3)
        ctx = start.context
        ctx.setPositions(x_new)
        ctx.setVelocities(h_new[-1] / self._dt if self._k else np.zeros_like(x_new))
        self._write_vars(h_new, x_new, True)
        ctx.setTime(start.t0 + done * self._dt)
        ctx.setStepCount(start.step0 + done)

    @property
    def fingerprint(self) -> str:
        """The bundle's fingerprint (:func:`openmm_mlcg.openmm.state.bundle_fingerprint`)."""
        return self._fingerprint

    @property
    def simulator(self):
        """The :class:`~openmm_mlcg.model.simulator.LearnedSimulator` this integrator steps with."""
        return self._simulator

    # ------------------------------------------------------------------ persistence
    def save_state(self, path) -> None:
        """Write the integrator state and the Context's positions, box, time and step count to ``path`` (npz,
        atomic). Portable across platforms; OpenMM checkpoints already include this state automatically.

        Raises:
            RuntimeError: not attached to a Context. FileNotFoundError: parent directory missing.
        """
        ctx = self._require_context()
        history, x_last, ready = self._read_vars()
        globals_ = {name: self.getGlobalVariableByName(name) for name in _st.GLOBALS}
        _st.write_state_file(path, history=history, x_last=x_last, fingerprint=self._fingerprint,
                             **_st.context_arrays(ctx), **globals_)

    def load_state(self, path, restore_context: bool = True) -> None:
        """Restore a file written by :meth:`save_state` (history, seed, flags; and, if ``restore_context``,
        the Context's positions, velocities, box, time and step count).

        Raises:
            FileNotFoundError / ValueError: missing file, wrong format, missing entries, different bundle or bead
            count (the message names ``path``).
            RuntimeError: ``restore_context`` but not attached to a Context.
        """
        data = self._read_state_npz(path)
        for name in ("seed", "refine", "deterministic"):
            self.setGlobalVariableByName(name, float(data[name]))
        if restore_context:
            _st.restore_context(self._require_context(), data, self._dt)
        self._write_vars(data["history"], data["x_last"], bool(data["history_ready"]))

    def _read_state_npz(self, path) -> dict:
        """A file of :meth:`save_state`, checked against this integrator (bundle, k, bead count)."""
        data = _st.read_state_file(path)
        missing = [k for k in ("history", "x_last", "fingerprint", "history_ready", "seed", "refine",
                               "deterministic") if k not in data]
        if missing:
            raise ValueError(f"path: {path} is not a complete LearnedIntegrator state file: missing entries "
                             f"{missing} (found {sorted(data)})")
        if str(data["fingerprint"]) not in self._ids:
            raise ValueError(f"path: {path} was written with bundle {str(data['fingerprint'])[:12]}..., "
                             f"this integrator runs {self._fingerprint[:12]}...")
        for name, shape in (("history", (self._k, self._n, 3)), ("x_last", (self._n, 3))):
            if data[name].shape != shape:
                raise ValueError(f"path: {path} holds {name} of shape {data[name].shape}, expected {shape} "
                                 "(k history velocities of this bundle, beads of this mapping)")
        return data

    @classmethod
    def from_xml(cls, xml, bundle, mapping=None, device=None, transfer: bool = False) -> "LearnedIntegrator":
        """Rebuild a LearnedIntegrator from ``XmlSerializer.serialize(integrator)`` output (str) or the plain
        ``CustomIntegrator`` that ``XmlSerializer.deserialize`` returns. The bundle must be given again (XML
        cannot hold it); its fingerprint must match the one stored in the integrator's global variables.
        ``mapping``, ``device`` and ``transfer`` as in the constructor (XML holds none of them).

        Raises:
            ValueError: not a LearnedIntegrator serialisation, or a different bundle.
        """
        src = openmm.XmlSerializer.deserialize(xml) if isinstance(xml, str) else xml
        names = {src.getGlobalVariableName(i) for i in range(src.getNumGlobalVariables())} \
            if isinstance(src, openmm.CustomIntegrator) else set()
        if not set(_st.GLOBALS) <= names:
            raise ValueError("xml: not a serialised LearnedIntegrator (missing its global variables)")
        g = {name: src.getGlobalVariableByName(name) for name in _st.GLOBALS}
        new = cls(bundle, mapping=mapping, refine=bool(g["refine"]), seed=int(g["seed"]), device=device,
                  deterministic=bool(g["deterministic"]), transfer=transfer)
        stored = _st.decode_fingerprint([g[f"bundle_id{i}"] for i in range(4)])
        if stored not in new._ids:
            raise ValueError(f"bundle: the XML integrator was created with bundle {stored[:12]}..., "
                             f"got bundle {new._fingerprint[:12]}...")
        if g["history_ready"]:
            hist = np.stack([_vec_array(src.getPerDofVariableByName(f"h{i}")) for i in range(new._k)]) \
                if new._k else np.zeros((0, new._n, 3))
            x_last = _vec_array(src.getPerDofVariableByName("x_last"))
            if hist.shape == (new._k, new._n, 3):
                new._write_vars(hist, x_last, True)
        return new
