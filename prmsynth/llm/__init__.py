"""Reaching models: the litellm client, retries, rate limits, the completion cache,
the router, the embedded model.

The modules here are private; their public names are importable from ``prmsynth``.
"""
