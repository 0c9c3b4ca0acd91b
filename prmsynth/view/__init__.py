"""Looking at results: the HTML viewer and run statistics.

The modules here are private; their public names are importable from ``prmsynth``.
"""
