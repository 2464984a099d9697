"""The one file between trainer and runtime: save/load, TorchScript, torch.export.
"""
