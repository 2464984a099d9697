"""Relative-entropy fine-tuning of an energy-based Score GNN: make the sampler's stationary law the data's.

Denoising score matching fits the learned score where the (noised) data lie; Langevin dynamics on it then
drifts to wherever the field is wrong off the data, and on the SPE demo the chain loses Li+ coordination and
shortens bonds within ten model steps although one denoising step from noisy data is right. Maximum
likelihood corrects exactly that: for p_theta(x) ~ exp(-E_theta(x)),

    grad_theta KL(p_data || p_theta) = E_data[grad_theta E] - E_theta[grad_theta E],

the relative-entropy method of coarse-graining (Shell, J. Chem. Phys. 129, 144108 (2008),
doi:10.1063/1.2992060), estimated with samples of the model from persistent chains (persistent contrastive
divergence, Tieleman, ICML 2008). Here the densities are the sigma-smoothed ones the ``cg_langevin`` sampler
runs on: the "data" are training frames plus sigma noise (``x + sigma z``, the sampler's per-bead sigma), and
the model's samples come from the bundle's own sampler, one model step per iteration, without the final
denoising step (its chain samples the learned p_sigma) and with the prior's wall. Each iteration minimises

    (mean E(data) - mean E(chains)) / n_beads + DSM loss at the sampler's sigma + alpha (E(data)^2 + E(chains)^2) / n^2

(the score-matching term keeps the score right at the data; the small alpha term fixes E's free additive
constant, Du & Mordatch, NeurIPS 2019). A chain restarts from a noisy training frame with probability
``restart`` per iteration. Only the Score GNN's parameters change.

Needs ``model.score_energy: true`` (an energy to differentiate) and the ``cg_langevin`` sampler.
Units: positions nm, E in kT (the score is -grad E, 1/nm).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np
import torch

__all__ = ["contrastive_divergence", "fine_tune_relative_entropy", "non_periodic", "relative_entropy_quality"]


def non_periodic(trajectories: Sequence) -> list:
    """Indices of the trajectories without a periodic box (the fine-tuning needs one per frame)."""
    return [i for i, t in enumerate(trajectories) if t.box is None]


def relative_entropy_quality(record: dict, meta=None) -> dict:
    """The grade (:func:`openmm_mlcg.train.fits.quality.grade`) of a :func:`fine_tune_relative_entropy` record: the
    miss factor exp(|CD|) of the contrastive divergence per bead over the last iterations (kT per bead): the factor
    by which the fine-tuned energy's Boltzmann weight of the data and of the sampler's own chains still differ per
    bead (0 kT, a factor 1: the chains sample the data's law; the SPE runs end at 0.1 kT, 1.1x; chains that never
    equilibrate gave 7-10 kT). No parameter of the fit has a bound. ``meta`` is unused.
    """
    from .quality import grade

    first, last = float(record.get("cd_first", 0.0)), float(record.get("cd_last", 0.0))
    factor = float(np.exp(min(abs(last), 700.0))) if np.isfinite(last) else np.inf
    advice = ("The sampler's chains did not reach the data's energy: fit the friction before the fine-tuning "
              "(score.fits order), lower score.relative_entropy.lr or give fewer score.relative_entropy.steps; 0 "
              "steps exports the score-matched model.")
    return grade("contrastive divergence, kT per bead", ("first iterations", "last iterations"),
                 {"all beads": (first, last, factor)}, (), advice)


def contrastive_divergence(e_data: torch.Tensor, e_model: torch.Tensor) -> torch.Tensor:
    """``mean(e_data) - mean(e_model)``: its gradient is the maximum-likelihood (relative-entropy) gradient.

    For p_theta ~ exp(-E_theta), d/dtheta of the mean negative log-likelihood of the data is
    E_data[dE/dtheta] - E_theta[dE/dtheta]; with ``e_model`` the energies of samples of p_theta (held fixed:
    no gradient flows through the sampler) this loss has that gradient.

    Args:
        e_data: (B,) energies of data configurations (kT). e_model: (C,) energies of the model's samples (kT).

    Raises:
        ValueError: an empty input.
    """
    if e_data.numel() == 0 or e_model.numel() == 0:
        raise ValueError(f"e_data/e_model: expected non-empty energies, got {e_data.numel()} and {e_model.numel()}")
    return e_data.mean() - e_model.mean()


# 114 lines, 20 of them the docstring: one training loop whose persistent chains, optimiser and running
# means are shared by every iteration.
def fine_tune_relative_entropy(model, trajectories: Sequence, mappings: Sequence, graphs: Sequence, n_steps: int,
                               lr: float, seed: int, n_chains: int = 4, batch_size: int = 4,
                               restart: float = 0.02, energy_weight: float = 0.1, grad_clip: float = 10.0,
                               progress: bool = False) -> dict:
    """Fine-tune ``model.score`` (an :class:`openmm_mlcg.nn.EnergyScoreGNN`) by relative entropy, in place.

    Args:
        model: :class:`openmm_mlcg.model.CGDynamicsModel` with the ``cg_langevin`` sampler and an energy score,
            its metadata complete (sigma, score terms, friction; the friction only sets how fast the chains mix).
        trajectories: training :class:`openmm_mlcg.data.CGTrajectory` objects (positions nm, periodic boxes).
        mappings: their :class:`openmm_mlcg.cg.mapping.CGMapping` objects. graphs: their
            :class:`openmm_mlcg.model.graph.SystemGraph` objects on the model's device.
        n_steps: iterations (>= 1). lr: Adam learning rate. seed: seeds every draw (the result is reproducible).
        n_chains: persistent chains; batch_size: noisy data frames per iteration.
        restart: per-iteration probability that a chain restarts from a noisy training frame.
        energy_weight: alpha of the energy-magnitude term. grad_clip: gradient-norm clip.
        progress: print the running means every 50 iterations.

    Returns:
        {"steps", "lr", "cd_first", "cd_last", "dsm_first", "dsm_last"}: the contrastive divergence per bead
        (kT) and the score-matching loss, means over the first and last 50 iterations.

    Raises:
        ValueError: not an energy-based ``cg_langevin`` model, ``n_steps`` < 1, non-periodic trajectories.
    """
    from openmm_mlcg.priors import ScoreTerms

    meta = model.metadata
    if not meta.generator.equilibrium_score or not getattr(model.score, "conservative", False):
        raise ValueError("model: relative-entropy fine-tuning needs the 'cg_langevin' sampler and an energy-based "
                         f"Score GNN (model.score_energy: true), got sampler {meta.sampler!r} and "
                         f"{type(model.score).__name__}")
    if isinstance(n_steps, bool) or int(n_steps) < 1:
        raise ValueError(f"n_steps: expected an integer >= 1, got {n_steps!r}")
    if non_periodic(trajectories):
        raise ValueError(f"trajectories: relative-entropy fine-tuning needs periodic trajectories (a box per frame), "
                         f"got trajectories {non_periodic(trajectories)} without a box")
    device = next(model.score.parameters()).device
    gen = torch.Generator().manual_seed(int(seed) + 7919)
    chain_model = replace(meta, cg_langevin_denoise=0.0)   # the chain's own state: a sample of p_sigma
    systems = []
    with torch.no_grad():
        for traj, mapping, graph in zip(trajectories, mappings, graphs):
            masses = graph.bead_masses.to(device=device, dtype=torch.float64)
            systems.append(dict(
                frames=torch.as_tensor(np.asarray(traj.positions), dtype=torch.float64, device=device),
                boxes=torch.as_tensor(np.asarray(traj.box), dtype=torch.float64, device=device),
                emb=model.embed(graph).detach(), masses=graph.bead_masses, bonds=graph.cg_bonds,
                sig=meta.cg_langevin_sigmas(masses).to(torch.float64),
                friction=torch.tensor(meta.cg_langevin_frictions(mapping.bead_types), dtype=torch.float64,
                                      device=device).reshape(-1, 1),
                terms=ScoreTerms.from_metadata(meta, mapping.bead_types, graph, device), n=int(mapping.n_beads)))

    def draw():
        """(system index, frame index, noisy frame, its standard-normal noise z) of a random training frame."""
        s = int(torch.randint(len(systems), (1,), generator=gen))
        f = int(torch.randint(systems[s]["frames"].shape[0], (1,), generator=gen))
        sy = systems[s]
        z = torch.randn(sy["frames"][f].shape, generator=gen, dtype=torch.float64).to(device)
        return s, f, sy["frames"][f] + sy["sig"] * z, z

    def energy(s: int, f: int, x: torch.Tensor) -> torch.Tensor:
        """The learned energy of system ``s`` at positions ``x`` (frame ``f``'s box), per bead, kT."""
        sy = systems[s]
        ei, ev, et = model.edges(x, sy["boxes"][f], sy["bonds"], validate=False)
        dtype = sy["emb"].dtype
        return model.score.energy(sy["emb"], ei, ev.to(dtype), et, sy["sig"].to(dtype).reshape(-1),
                                  float(model.cutoff_nm), float(meta.velocity_std)).sum() / sy["n"]

    chains = [draw()[:3] for _ in range(int(n_chains))]
    params = list(model.score.parameters())
    optimizer = torch.optim.Adam(params, lr=float(lr))
    model.score.train()
    log = []
    saved = model.metadata
    model.metadata = chain_model
    try:
        for it in range(int(n_steps)):
            with torch.no_grad():
                for c, (s, f, x) in enumerate(chains):
                    if float(torch.rand((), generator=gen)) < restart:
                        s, f, x, _ = draw()
                    sy = systems[s]
                    hist = torch.zeros(sy["n"], model.history_length, 3, dtype=x.dtype, device=device)
                    step_seed = int(torch.randint(2**62, (1,), generator=gen))
                    step_gen = torch.Generator(device=device).manual_seed(step_seed)
                    x, _ = model.step(x, hist, sy["boxes"][f], sy["emb"], sy["masses"], sy["bonds"], True, step_gen,
                                      False, sy["friction"], sy["terms"])
                    chains[c] = (s, f, x)
            data = [draw() for _ in range(int(batch_size))]
            e_data = torch.stack([energy(s, f, x) for s, f, x, _ in data])
            e_model = torch.stack([energy(s, f, x) for s, f, x in chains])
            cd = contrastive_divergence(e_data, e_model)
            s, f, x, z = data[0]
            sy = systems[s]
            edges = model.edges(x, sy["boxes"][f], sy["bonds"], validate=False)
            gns = model.equilibrium_gns(sy["emb"], x, sy["sig"], edges)
            dsm = 0.5 * (gns + z.to(gns.dtype)).pow(2).sum(-1).mean()
            loss = cd + dsm + energy_weight * (e_data.pow(2).mean() + e_model.pow(2).mean())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            log.append((cd.item(), dsm.item()))
            if progress and (it + 1) % 50 == 0:
                a = np.array(log[-50:])
                print(f"relative entropy {it + 1}/{n_steps}: CD {a[:, 0].mean():+.4f} kT/bead, DSM {a[:, 1].mean():.4f}",
                      flush=True)
    finally:
        model.metadata = saved
        model.score.eval()
    a = np.array(log)
    k = min(50, len(a))
    return dict(steps=int(n_steps), lr=float(lr), cd_first=float(a[:k, 0].mean()), cd_last=float(a[-k:, 0].mean()),
                dsm_first=float(a[:k, 1].mean()), dsm_last=float(a[-k:, 1].mean()))
