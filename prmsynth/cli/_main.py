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


class _RedactingStream:
    """stderr with credentials taken out of every write: an error a provider
    echoes with the key in it never reaches a terminal or a log file."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        from prmsynth._errors import redact_secrets

        return self._stream.write(redact_secrets(text))

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def command_line(args: argparse.Namespace, *, leave_out: Sequence[str] = ()) -> str:
    """The command that parses to ``args``, as one shell line: the command's
    arguments, then each option whose value is not its default (the options
    named in ``leave_out`` aside), so a run can record how to repeat it.

    >>> args = build_parser().parse_args(["export", "t.jsonl", "--format", "trl", "--out", "x y"])
    >>> command_line(args)
    "prmsynth export t.jsonl --format trl --out 'x y'"
    """
    parser = build_parser()
    subparsers = next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    )
    command = subparsers.choices[args.command]
    words: list[Any] = command.prog.split()
    options: list[Any] = []
    for action in command._actions:
        if action.default == argparse.SUPPRESS or action.dest in leave_out:
            continue
        value = getattr(args, action.dest, None)
        if not action.option_strings:
            words.extend(value if isinstance(value, list) else [value])
            continue
        if value == action.default:
            continue
        flag = next((name for name in action.option_strings if name.startswith("--")), None)
        flag = flag or action.option_strings[0]
        if isinstance(action, argparse.BooleanOptionalAction):
            options.append(flag if value else "--no-" + flag[2:])
        elif action.nargs == 0:  # store_true and the like
            options.append(flag)
        else:
            options.extend([flag, *(value if isinstance(value, list) else [value])])
    return shlex.join(str(word) for word in [*words, *options])


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
