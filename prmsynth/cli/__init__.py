"""The ``prmsynth`` command line, on top of the library (which never imports it).

``main`` runs a command; ``build_parser`` gives its argparse parser.  Exit
status: 0 done, 1 failed (a run with more than ``--max-failed-fraction`` of
its questions failed, a stopped backend, records that fail their schema), 2
bad input, options or config file (nothing written), 130 interrupted by
Ctrl-C (a run folder stays resumable).  ``docs/cli.md`` is rendered from
these parsers.
"""

from prmsynth.cli._common import EXIT_FAILURE, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_OK
from prmsynth.cli._main import build_parser, main

__all__ = ["EXIT_FAILURE", "EXIT_INPUT", "EXIT_INTERRUPTED", "EXIT_OK", "build_parser", "main"]
