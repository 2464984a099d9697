"""Input noise on history positions; it lives in :mod:`openmm_mlcg.model.noise` (used by ``CGDynamicsModel.loss``)."""
from openmm_mlcg.model.noise import history_positions, log_uniform, noisy_history

__all__ = ["log_uniform", "history_positions", "noisy_history"]
