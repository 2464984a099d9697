"""Post-training fits of the default generator, run in order after the networks are trained.
"""
