"""Plumbing shared by every layer: units, periodic geometry (box validation, minimum image, wrap, unwrap), atomic
file IO, locks, output checks, threads, strict YAML, physical sanity checks, worker processes. Leaf modules:
nothing here imports another layer.
"""
