"""Trainer of the learned CG simulator (never imported by the runtime).

Public API:
    train(config) -> Path                               config: TrainConfig | dict | YAML path
    train_on_trajectories(cg_trajectories, mappings, config) -> Path
    TrainConfig (and section dataclasses), load_config

Source: Fu et al., TMLR 2023, section 3 and appendix C.
"""
from .config import (DataConfig, InputNoiseConfig, ModelConfig, OptimConfig, ScoreConfig, SystemSource,
                     TrainConfig, TrainingConfig, load_config)
from .loop import LOG_COLUMNS, train, train_on_trajectories

__all__ = ["train", "train_on_trajectories", "TrainConfig", "DataConfig", "ModelConfig", "ScoreConfig",
           "OptimConfig", "InputNoiseConfig", "TrainingConfig", "SystemSource", "load_config", "LOG_COLUMNS"]
