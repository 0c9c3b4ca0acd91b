"""Running at scale: the Pipeline, the durable run folder, progress.

The modules here are private; their public names are importable from ``prmsynth``.
"""
