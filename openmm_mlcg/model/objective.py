"""The training objective of :class:`~openmm_mlcg.model.CGDynamicsModel`: Gaussian NLL + the score's loss.

Kept apart from the model object (``model/core.py``) so the runtime's step code and the trainer's loss stay
small; :meth:`CGDynamicsModel.loss` delegates here, and the trainer calls that method. Sources: Fu et al., TMLR
2023, eq. (1)-(2) (NLL of the Gaussian step and denoising score matching); input noise as Sanchez-Gonzalez et
al., ICML 2020.
"""
from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Sequence

import torch

from ..nn.losses import gaussian_nll
from ..nn.noise import log_uniform, noisy_history

__all__ = ["LossOptions", "training_loss"]


class LossOptions(NamedTuple):
    """Trainer settings of :meth:`CGDynamicsModel.loss` (from ``TrainConfig.input_noise`` and ``score``).

    Attributes:
        input_noise: perturb the history positions in training (Sanchez-Gonzalez et al. 2020).
        noise_std_min, noise_std_max: per-window noise std range, units of ``velocity_std``.
        score_weight: weight of the score-matching loss in the total.
    """

    input_noise: bool = False
    noise_std_min: float = 0.01
    noise_std_max: float = 0.1
    score_weight: float = 1.0


def training_loss(model, batch, graphs: Sequence, generator: Optional[torch.Generator] = None,
                  train: bool = True, options: LossOptions = LossOptions(),
                  return_prediction: bool = False) -> Dict[str, torch.Tensor]:
    """L = Gaussian NLL + ``score_weight`` x denoising score matching on a collated mini-batch.

    Steps: (1) in training with ``options.input_noise``, per-window noise on the history positions with the
    target recomputed (:func:`openmm_mlcg.nn.noise.noisy_history`); (2) bead embeddings per distinct
    system; (3) CG graph on the (noisy) positions; (4) :meth:`CGDynamicsModel.predict` -> NLL of the normalised
    target; (5) if ``metadata.score_enabled``: the generator's own loss (:meth:`openmm_mlcg.generators.Generator.loss`:
    denoising score matching of the equilibrium configurations for ``cg_langevin``, of the next state for the
    score samplers, the denoising regression of the interpolant), with the Gaussian's outputs detached.

    Args:
        batch: a collated batch (``openmm_mlcg.train.batching.Batch``: positions (N, 3) nm,
            history_velocities (N, k, 3), target_acceleration, next_positions, bead_masses, batch, system,
            boxes (G, 3, 3), cg_bonds) on the model's device. graphs: per-system
            :class:`~openmm_mlcg.model.SystemGraph`.
        generator: CPU RNG for every random draw. train: apply input noise. options: :class:`LossOptions`.
        model: the :class:`~openmm_mlcg.model.CGDynamicsModel`.
        return_prediction: also return the :class:`~openmm_mlcg.model.Prediction` under ``"prediction"``.

    Returns:
        dict loss (scalar, differentiable), nll, score_loss (0 when the score is disabled).
    """
    x, v, target = batch.positions, batch.history_velocities, batch.target_acceleration
    if train and options.input_noise:
        std = log_uniform(batch.n_graphs, options.noise_std_min, options.noise_std_max, generator)
        std = (std.double() * float(model.metadata.velocity_std)).to(x.device)[batch.batch]
        x, v, target = noisy_history(x, v, batch.next_positions, std, generator)
    per_system = {s: model.embed(graphs[s]) for s in torch.unique(batch.system).tolist()}
    h = torch.cat([per_system[int(s)] for s in batch.system.tolist()], dim=0)
    prediction = model.predict(x, v, h, batch.bead_masses, model.edges(x, None, batch.cg_bonds, batch=batch.batch,
                                                                      boxes=batch.boxes))
    nll = gaussian_nll(prediction.mean, prediction.std, model.normalise_acceleration(target))
    out = {"loss": nll, "nll": nll, "score_loss": torch.zeros((), device=x.device)}
    if model.metadata.score_enabled:
        detached = type(prediction)(*(t.detach() for t in prediction[:4]), prediction.latent)  # a residual
        out["score_loss"] = model.metadata.generator.loss(model, detached, x, h, batch, generator)
        out["loss"] = nll + options.score_weight * out["score_loss"]
    if return_prediction:
        out["prediction"] = prediction
    return out
