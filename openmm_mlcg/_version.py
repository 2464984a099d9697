"""Package version (single source of truth, read by setup.py and the model bundle)."""

__version__ = "0.2.0"
