"""OpenMM runtime of openmm_mlcg: CG Topology/System construction and the learned integrator.

Never imports ``openmm_mlcg.train``.
"""
from .attach import create_simulation
from .dcd_reader import load_dcd, read_dcd_header
from .integrator import LearnedIntegrator
from .replicas import run_replicas, step_replicas
from .reporter import CGStateDataReporter
from .resume import resume_simulation, truncate_outputs
from .system import check_box, create_cg_system, pdb_atom_names

__all__ = ["create_cg_system", "check_box", "pdb_atom_names", "LearnedIntegrator", "load_dcd", "read_dcd_header",
           "CGStateDataReporter", "resume_simulation", "truncate_outputs", "create_simulation", "run_replicas",
           "step_replicas"]
