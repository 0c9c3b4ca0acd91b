"""Publishing a run: its exports as a Hugging Face Hub dataset, with a dataset card.

The modules here are private; their public names are importable from ``prmsynth``.
"""
