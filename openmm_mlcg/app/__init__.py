"""Entry points: the ``openmm-mlcg`` command line, the coarse-grain command, the workflow helpers.
"""
