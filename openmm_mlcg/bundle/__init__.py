"""The one file between trainer and runtime: save/load (:mod:`.export`), TorchScript, torch.export (:mod:`.exported`).
"""
from .export import Bundle, load_bundle, load_model, save_bundle, save_model

__all__ = ["Bundle", "load_bundle", "save_bundle", "load_model", "save_model"]
