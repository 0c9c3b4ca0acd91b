"""Writing records: the run's own files and every trainer format, with their JSON Schemas.

The modules here are private; their public names are importable from ``prmsynth``.
"""
