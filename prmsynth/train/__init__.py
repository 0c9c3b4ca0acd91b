"""Training and judging process reward models on prmsynth's data: ``prmsynth train``
and ``prmsynth evaluate``.

The modules here are private.  Reading data and computing metrics needs nothing
beyond prmsynth itself; training and scoring with a local model need the
``train`` extra (``torch``, ``transformers``, ``gguf``, ``accelerate``), imported
only inside the functions that use them.
"""
