"""Pure physics: parameters, memory, FLOPs and bytes per op, communication, roofline time.

Functions are keyword-only and work on scalars or numpy arrays; docstrings give the
equation, the units and the source. Nothing here imports a solver.
"""
