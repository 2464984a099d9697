"""Trainer of the learned CG simulator (never imported by the runtime).

Public API:
    train(config) -> Path                               config: TrainConfig | dict | YAML path
    train_on_trajectories(cg_trajectories, mappings, config) -> Path
    TrainConfig (and section dataclasses), load_config
    check_against_data(config, cg_trajectories, mappings)  the config checked against the data (before training)
    describe_bead_types(mappings) -> str                the bead types (score.terms.pair_correction_types)
    FitQualityError                                     a post-training fit too far from its data (no bundle)

Source: Fu et al., TMLR 2023, section 3 and appendix C.
"""
from .config import (DataConfig, InputNoiseConfig, ModelConfig, OptimConfig, ScoreConfig, SystemSource,
                     TrainConfig, TrainingConfig, load_config)
from .data_checks import check_against_data, describe_bead_types
from .fits.quality import FitQualityError
from .loop import LOG_COLUMNS, train, train_on_trajectories

__all__ = ["train", "train_on_trajectories", "TrainConfig", "DataConfig", "ModelConfig", "ScoreConfig",
           "OptimConfig", "InputNoiseConfig", "TrainingConfig", "SystemSource", "load_config", "LOG_COLUMNS",
           "check_against_data", "describe_bead_types", "FitQualityError"]
