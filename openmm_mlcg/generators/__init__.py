"""Generators of the joint next state behind one interface (:mod:`.base`) and a name -> class
registry: the default ``cg_langevin`` step and the comparison generators.
"""
