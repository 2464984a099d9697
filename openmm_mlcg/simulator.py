"""Runtime stepping of the learned CG simulator (predict with the Dynamics GNN, refine with the Score GNN).

Used by the OpenMM integrator (openmm_mlcg.openmm), benchmarks and examples. Never imports the trainer.

One model step (paper section 3 and appendix C, Algorithm 1):
 1. edges = CG bonds union radius edges on the current positions (periodic minimum image);
 2. Dynamics GNN -> per-bead Gaussian over the next positions (mean acceleration = -v_last + residual,
    so mean = x + residual * acceleration_std; update rule v' = v + a, x' = x + v');
 3. refinement (default): the bundle's sampler draws the joint next state with the Score GNN, rebuilding
    the edges on the intermediate positions at every pass: ``"interpolant"`` integrates a stochastic bridge
    from x_t (:mod:`openmm_mlcg.interpolant`; Score GNN = denoiser residual), the score samplers
    (:mod:`openmm_mlcg.samplers`) denoise from the Gaussian (Gaussian prior GNS + learned residual); without refinement, an independent Gaussian sample (or the mean if deterministic);
 4. periodic systems: the step's centre-of-mass displacement is removed (momentum conservation);
 5. the velocity stored in the history is ``x_new - x``; history rolls.
``deterministic``: no random numbers at all (mean start, no sampler noise).

NaN/inf policy: no host synchronisation is added for the check; each step records on the device the index of
the first non-finite step, and a single check at the end of :meth:`LearnedSimulator.step` raises
:class:`NonFiniteStateError` naming that step. (The neighbour list itself needs the edge count on the host,
which is inherent to dynamic graphs.)
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

from . import dynamics as _dyn
from . import interpolant as _itp
from . import samplers as _smp
from .export import default_refinement_metadata
from .geometry import check_box
from .nn.neighbors import build_edges

__all__ = ["LearnedSimulator", "NonFiniteStateError"]


class NonFiniteStateError(FloatingPointError):
    """The learned simulator produced NaN or inf positions."""


def _as_tensor(x, name, device, dtype=None):
    try:
        t = x if isinstance(x, torch.Tensor) else torch.tensor(np.array(x))
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected an array or tensor, got {type(x).__name__}") from None
    return t.to(device=device, dtype=dtype) if dtype is not None else t.to(device)


class LearnedSimulator:
    """Steps CG bead positions with a loaded model bundle.

    Args:
        bundle: ``openmm_mlcg.export.Bundle`` (from ``load_bundle``).
        mapping: CGMapping of the simulated system (its ``graph`` gives atom types, masses, bonds). If the bundle
            records a ``mapping_hash`` the mapping is not required to match it (a model transfers across systems
            that share atom types); use ``load_bundle(..., mapping=...)`` to enforce identity.
        device: torch device (default: CPU).

    Attributes:
        history_length (k), cutoff_nm, velocity_std, acceleration_std, sigmas_nm (tensor), n_beads,
        bead_embedding (n_beads, D) computed once, model_time_step_ps.

    Raises:
        ValueError: an atom type of the mapping is not in the bundle's ``atom_type_vocabulary``, or a bond type
            code is >= ``n_bond_types``.
    """

    def __init__(self, bundle, mapping, device=None):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        meta = {**default_refinement_metadata(), **bundle.metadata}
        self.metadata = meta
        self.history_length = int(meta["history"])
        self.cutoff_nm = float(meta["cutoff_nm"])
        self.velocity_std = float(meta["velocity_std"])
        self.acceleration_std = float(meta["acceleration_std"])
        self.model_time_step_ps = float(meta["model_time_step_ps"])
        self.sigmas_nm = torch.as_tensor(meta["sigmas_nm"], dtype=torch.float64)
        self.langevin_steps_per_level = int(meta["langevin_steps_per_level"])
        self.langevin_step_size_nm2 = float(meta["langevin_step_size_nm2"])
        self.sampler = str(meta["sampler"])
        self.schedule = str(meta["schedule"])
        self.corrector_steps = int(meta["corrector_steps"])
        self.snr = float(meta["snr"])
        self.interpolant_noise_nm = float(meta.get("interpolant_noise_nm", self.velocity_std))
        self.score_enabled = bool(meta.get("score_enabled", True))
        if self.sampler not in _smp.SAMPLERS:
            raise ValueError(f"bundle.metadata['sampler']: expected one of {_smp.SAMPLERS}, got {self.sampler!r}")
        self.embedding = bundle.embedding.to(self.device).eval()
        self.dynamics = bundle.dynamics.to(self.device).eval()
        self.score = bundle.score.to(self.device).eval()
        self.mapping = mapping
        graph = mapping.graph

        vocab = list(meta["atom_type_vocabulary"])
        lookup = {t: i for i, t in enumerate(vocab)}
        unknown = sorted(set(graph.atom_types) - set(lookup))
        if unknown:
            raise ValueError(f"mapping: atom types {unknown} are not in the bundle's atom_type_vocabulary {vocab}")
        atom_types = torch.tensor([lookup[t] for t in graph.atom_types], dtype=torch.long, device=self.device)
        bonds = torch.tensor(np.array(graph.bonds, dtype=np.int64).reshape(-1, 2), device=self.device)
        bond_types = torch.tensor(np.array(graph.bond_types, dtype=np.int64).reshape(-1), device=self.device)
        n_bond_types = int(meta.get("n_bond_types", 6))
        if bond_types.numel() and int(bond_types.max()) >= n_bond_types:
            raise ValueError(f"mapping: bond type code {int(bond_types.max())} >= bundle n_bond_types {n_bond_types}")
        bond_index = torch.cat([bonds.t(), bonds.t().flip(0)], 1)
        atom_to_bead = torch.tensor(np.array(mapping.atom_to_bead, dtype=np.int64), device=self.device)
        self.n_beads = int(mapping.n_beads)
        masses = torch.tensor(np.array(graph.masses, dtype=np.float32), device=self.device)
        with torch.no_grad():
            self.bead_embedding = self.embedding(atom_types, masses, bond_index, torch.cat([bond_types, bond_types]),
                                                 atom_to_bead, self.n_beads)
        self.bead_masses = torch.tensor(np.array(mapping.bead_masses, dtype=np.float32), device=self.device)
        cg = np.asarray(mapping.cg_bonds, dtype=np.int64).reshape(-1, 2)
        self.cg_bonds = torch.tensor(cg.T.copy(), device=self.device)

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

    def _edges(self, x, box):
        return build_edges(x, box, self.cutoff_nm, self.cg_bonds)

    def _validate(self, positions, history, box, n_steps):
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
        if box is not None:
            box = _as_tensor(box, "box", self.device, x.dtype)
            check_box(box, "box", self.cutoff_nm)
        return x, h, box

    @torch.no_grad()
    def step(self, positions, history, box=None, n_steps: int = 1, refine: bool = True,
             generator: Optional[torch.Generator] = None, deterministic: bool = False):
        """Advance ``n_steps`` model steps.

        Args:
            positions: (n_beads, 3) nm, unwrapped (float64 recommended; the dtype is kept).
            history: (k, n_beads, 3) nm per model step, oldest first; ``history[-1] = x_t - x_{t-1}``.
            box: (3, 3) nm OpenMM reduced box vectors (rows) or None for non-periodic.
            n_steps: number of model steps (each ``model_time_step_ps``).
            refine: draw the joint next state with the bundle's Score GNN sampler.
            generator: torch.Generator on the simulator's device (None: global RNG).
            deterministic: no random numbers: the mean (unrefined), or the sampler started from the mean
                without noise (refined).

        Returns:
            (positions (n_beads, 3), history (k, n_beads, 3)), same dtype as ``positions``.

        Raises:
            ValueError: bad shapes, ``n_steps``, or box. NonFiniteStateError (a FloatingPointError): a step
            produced NaN/inf positions (the message names the first such step of this call).
        """
        x, hist, box = self._validate(positions, history, box, n_steps)
        dtype = x.dtype
        masses = self.bead_masses.to(dtype)
        weights = (masses / masses.sum())[:, None]
        first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        for s in range(n_steps):
            mean_pos, std_pos, latent = self.predict(x, hist, box)
            if refine and self.refines:
                x_new = self._refine(x, mean_pos, std_pos, latent, box, generator, deterministic)
            else:
                x_new = self._gaussian_sample(mean_pos, std_pos, generator, deterministic)
            if box is not None:  # momentum conservation: no drift of the periodic system's centre of mass
                x_new = x_new - (weights * (x_new - x)).sum(0, keepdim=True)
            bad = ~torch.isfinite(x_new).all()
            first_bad = torch.where(bad & (first_bad < 0), torch.full_like(first_bad, s), first_bad)
            hist = torch.cat([hist[1:], (x_new - x).unsqueeze(0)], 0)
            x = x_new
        if n_steps > 0:
            bad_step = int(first_bad)
            if bad_step >= 0:
                raise NonFiniteStateError(
                    f"LearnedSimulator.step: non-finite bead positions first produced at step {bad_step} "
                    f"(0-based) of this call of {n_steps} steps")
        return x, hist

    @property
    def refines(self) -> bool:
        """Whether the bundle's Score GNN was trained and its sampler does any work."""
        if not self.score_enabled:
            return False
        return not (self.sampler == "langevin" and self.langevin_steps_per_level == 0)

    @property
    def score_passes(self) -> int:
        """Score GNN passes of one refined model step (the Dynamics GNN adds one more)."""
        if not self.refines:
            return 0
        return _smp.score_passes(self.sampler, len(self.sigmas_nm), self.langevin_steps_per_level,
                                 self.corrector_steps)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, hist: torch.Tensor, box: Optional[torch.Tensor]):
        """The Dynamics GNN's Gaussian over the next positions.

        Args:
            x: (n, 3) nm. hist: (k, n, 3) nm per model step. box: (3, 3) nm or None (already validated).

        Returns:
            (mean (n, 3) nm, std (n, 3) nm, latent (n, hidden)). The mean acceleration is ``-v_last`` plus the
            network's residual (:func:`openmm_mlcg.dynamics.gaussian_mean`), so ``mean = x + residual * a_std``.
        """
        ei, ev, et = self._edges(x, box)
        hv = (hist / self.velocity_std).to(torch.float32).permute(1, 0, 2)
        out, std, latent = self.dynamics(self.bead_embedding, self.bead_masses, hv, ei, ev.to(torch.float32),
                                         et, self.cutoff_nm)
        return x + out.to(x.dtype) * self.acceleration_std, std.to(x.dtype) * self.acceleration_std, latent

    def _gaussian_sample(self, mean_pos, std_pos, generator, deterministic):
        """Independent per-bead Gaussian draw (the mean when deterministic)."""
        if deterministic:
            return mean_pos
        return mean_pos + std_pos * torch.randn(mean_pos.shape, generator=generator, device=self.device,
                                                dtype=mean_pos.dtype)

    def _refine(self, x, mean_pos, std_pos, latent, box, generator, deterministic):
        n = x.shape[0]

        def gns_fn(xn: torch.Tensor, sigma: float) -> torch.Tensor:
            ei, ev, et = self._edges(xn, box)
            sig = torch.full((n, 1), float(sigma), dtype=xn.dtype, device=self.device)
            return _smp.model_gns(self.score, latent, xn, x, mean_pos, std_pos, sig, ei, ev, et, self.cutoff_nm,
                                  self.velocity_std)

        noise = not deterministic
        sigmas = [float(s) for s in self.sigmas_nm]
        if self.sampler == "interpolant":
            a = self.interpolant_noise_nm

            def denoise_fn(xs: torch.Tensor, s: float) -> torch.Tensor:
                ei, ev, et = self._edges(xs, box)
                sv = torch.full((n, 1), float(s), dtype=xs.dtype, device=self.device)
                return _itp.model_denoiser(self.score, latent, xs, sv, x, mean_pos, std_pos, a, ei, ev, et,
                                           self.cutoff_nm, self.velocity_std, sigmas[-1])[0]

            return _itp.sample(denoise_fn, x, len(sigmas), a, generator, noise)
        if self.sampler == "langevin":  # Algorithm 1 starts from the Dynamics GNN's sample
            x0 = self._gaussian_sample(mean_pos, std_pos, generator, deterministic)
        else:
            x0 = _smp.initial_state(mean_pos, std_pos, sigmas[0], generator, noise)
        return _smp.refine(gns_fn, x0, sigmas, self.sampler, self.langevin_steps_per_level,
                           self.langevin_step_size_nm2, self.schedule, self.corrector_steps, self.snr, generator,
                           noise)
