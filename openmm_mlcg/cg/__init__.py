"""All-atom topology -> CG mapping: FineGraph, bead types, METIS mapping (periodic geometry: ``util.geometry``).
"""
