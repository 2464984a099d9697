"""Observables of CG trajectories (paper section 4, appendix B), metrics, plots and the analyze() report.

All functions take positions (n_frames, n_particles, 3) in nm (unwrapped unless stated), times in ps, boxes as
(3, 3) or (F, 3, 3) row vectors in nm, and accept ``openmm.unit`` Quantities.
"""
from .collisions import count_collisions, nearest_neighbour_distances
from .correlation import autocorrelation, relaxation_time
from .diffusion import (NM2_PER_PS_TO_CM2_PER_S, block_diffusivity, centre_of_mass_positions, fit_diffusivity,
                        mean_squared_displacement, nm2_per_ps_to_cm2_per_s, remove_centre_of_mass_drift,
                        single_interval_diffusivity, unwrap_positions)
from .files import analyze_files, load_cg_positions
from .metrics import earth_movers_distance, mean_absolute_error, r2_score
from .rdf import make_mdtraj, radial_distribution, rdf_by_type
from .report import OBSERVABLES, analyze
from .residence import residence_correlation, shell_occupancy
from .structure import contact_map, distribution, mean_internal_distance, radius_of_gyration_squared

__all__ = ["count_collisions", "nearest_neighbour_distances", "autocorrelation", "relaxation_time",
           "NM2_PER_PS_TO_CM2_PER_S", "block_diffusivity",
           "centre_of_mass_positions", "fit_diffusivity", "mean_squared_displacement", "nm2_per_ps_to_cm2_per_s",
           "remove_centre_of_mass_drift", "single_interval_diffusivity", "unwrap_positions", "analyze_files",
           "load_cg_positions",
           "earth_movers_distance", "mean_absolute_error", "r2_score", "make_mdtraj", "radial_distribution",
           "rdf_by_type", "OBSERVABLES", "analyze", "contact_map", "distribution", "mean_internal_distance",
           "radius_of_gyration_squared", "residence_correlation", "shell_occupancy"]
