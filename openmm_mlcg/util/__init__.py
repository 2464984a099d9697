"""Plumbing shared by every layer: units, atomic file IO, locks, output checks, threads, strict YAML,
physical sanity checks, worker processes. Leaf modules: nothing here imports another layer.
"""
