"""Trajectory loading (mdtraj), coarse-grained trajectory cache and training windows."""
from .trajectory import CGTrajectory, coarse_grain_trajectory, map_trajectory
from .runs import load_run, mapping_for_topology, read_run_metadata
from .windows import WindowDataset

__all__ = ["CGTrajectory", "coarse_grain_trajectory", "map_trajectory", "WindowDataset", "load_run",
           "mapping_for_topology", "read_run_metadata"]
