"""The ``prmsynth`` command line: a registry of commands, one module per command.

Each module's ``add_parsers`` adds its subcommands and sets their handler.
Subcommands import what they need when they run, so ``prmsynth --help``
stays fast and never imports litellm.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from prmsynth.cli._common import EXIT_INPUT

#: The command modules, in the order ``--help`` lists their commands.
COMMAND_MODULES = (
    "prmsynth.cli._run",
    "prmsynth.cli._evolve",
    "prmsynth.cli._label",
    "prmsynth.cli._merge",
    "prmsynth.cli._export",
    "prmsynth.cli._verify",
    "prmsynth.cli._view",
    "prmsynth.cli._push",
)


def build_parser() -> argparse.ArgumentParser:
    from prmsynth._version import __version__

    parser = argparse.ArgumentParser(
        prog="prmsynth",
        description="Make training data for process reward models.",
    )
    parser.add_argument("--version", action="version", version=f"prmsynth {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_parsers(subparsers)
    return parser


from typing import Any, TextIO


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``prmsynth`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_INPUT
    stderr = sys.stderr
    sys.stderr = _RedactingStream(stderr)  # the application's stream, restored below
    try:
        return handler(args)
    finally:
        sys.stderr = stderr


if __name__ == "__main__":
    sys.exit(main())
