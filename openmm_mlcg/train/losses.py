"""Training losses; they live in :mod:`openmm_mlcg.model.losses` (``CGDynamicsModel.loss`` uses them)."""
from openmm_mlcg.model.losses import denoising_score_loss, gaussian_nll, perturb_next_positions

__all__ = ["gaussian_nll", "perturb_next_positions", "denoising_score_loss"]
