"""Checking answers and steps: answer extraction and equivalence, verifiers, LLM judges and critics.

The modules here are private; their public names are importable from ``prmsynth``.
"""
