"""Trajectory loading (mdtraj), coarse-grained trajectory cache and training windows."""
from .trajectory import CGTrajectory, coarse_grain_trajectory, map_trajectory
from .windows import WindowDataset

__all__ = ["CGTrajectory", "coarse_grain_trajectory", "map_trajectory", "WindowDataset"]
