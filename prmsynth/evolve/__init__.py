"""Evolving questions: Evolve-Instruct mutations, filters, and earned answers.

The modules here are private; their public names are importable from ``prmsynth``.
"""
