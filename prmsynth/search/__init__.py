"""Searching solutions: step generation, the Monte Carlo estimator, search policies,
first-error rules.

The modules here are private; their public names are importable from ``prmsynth``.
"""
