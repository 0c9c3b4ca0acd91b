"""The ``prmsynth`` command line: a registry of commands, one module per command.

Each module's ``add_parsers`` adds its subcommands and sets their handler;
`build_parser` then gives every command the global options (``--config``,
``-v``, ``-q``, ``--log-file``).  Subcommands import what they need when they
run, so ``prmsynth --help`` stays fast and never imports litellm.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import shlex
import sys
import textwrap
import warnings
from collections.abc import Sequence
from typing import Any, TextIO

from prmsynth._errors import InputError, redact_secrets
from prmsynth._version import __version__
from prmsynth.cli._common import EXIT_CODES, EXIT_INPUT, EXIT_INTERRUPTED
from prmsynth.cli._config import REPORTING_OPTIONS, apply_config, read_config
from prmsynth.cli._logging import command_logging

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
    "prmsynth.cli._train",
    "prmsynth.cli._evaluate",
)


def exit_codes_text() -> str:
    """The exit statuses, as ``prmsynth --help`` ends."""
    lines = ["exit status:"]
    for code, meaning in EXIT_CODES:
        lines += textwrap.wrap(
            meaning, width=76, initial_indent=f"  {code:<4} ", subsequent_indent=" " * 7
        )
    return "\n".join(lines)


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """The options every command takes: a config file, and where its logs go."""
    group = parser.add_argument_group("global options")
    group.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="defaults for this command's options from a YAML, JSON or TOML file "
        "(option names without the dashes as keys); flags on the command line win",
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more: -v retries, rate-limit waits and stalls; -vv debugging detail",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="count",
        default=0,
        help="log less: no progress lines, errors only",
    )
    group.add_argument(
        "--log-file",
        metavar="PATH",
        default=None,
        help="also write the log, with timestamps, to PATH (from -v's level on)",
    )


def command_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser of each command of ``parser`` (built by `build_parser`), by name."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prmsynth",
        description="Make training data for process reward models.",
        epilog="Every command takes --config FILE, -v, -q and --log-file PATH\n"
        "(see 'prmsynth COMMAND --help').\n\n" + exit_codes_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"prmsynth {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_parsers(subparsers)
    for command in command_parsers(parser).values():
        add_global_options(command)
    return parser


class _RedactingStream:
    """stderr with credentials taken out of every write: an error a provider
    echoes with the key in it never reaches a terminal or a log file."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
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
    command = command_parsers(build_parser())[args.command]
    # How the command reports (-v, --log-file) and where its options came from
    # (--config) do not change what it does.
    leave_out = (*leave_out, *REPORTING_OPTIONS)
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


def _command_and_config(
    argv: Sequence[str], commands: dict[str, argparse.ArgumentParser]
) -> tuple[str | None, str | None]:
    """The command ``argv`` names and its ``--config`` file, read before the
    real parse: the config's values must be the command's defaults by then."""
    index = next((i for i, token in enumerate(argv) if not token.startswith("-")), None)
    if index is None or argv[index] not in commands:
        return None, None
    # Only --config: anything else, and any error, is the real parser's to report.
    early = argparse.ArgumentParser(add_help=False, prog=f"prmsynth {argv[index]}")
    early.add_argument("--config")
    known, _ = early.parse_known_args(argv[index + 1 :])
    return argv[index], known.config


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``prmsynth`` console script."""

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    commands = command_parsers(parser)
    command, config_path = _command_and_config(argv, commands)
    stderr = sys.stderr
    sys.stderr = _RedactingStream(stderr)  # the application's stream, restored below
    try:
        if command is not None and config_path is not None:
            try:
                apply_config(commands[command], read_config(config_path), config_path)
            except InputError as error:
                print(f"prmsynth {command}: error: {error}", file=sys.stderr)
                return EXIT_INPUT
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit:  # a bad option (2, said by argparse) or --help (0)
            return exit.code if isinstance(exit.code, int) else EXIT_INPUT
        handler = getattr(args, "handler", None)
        if handler is None:
            parser.print_help()
            return EXIT_INPUT
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(
                    command_logging(
                        sys.stderr, verbose=args.verbose, quiet=args.quiet, log_file=args.log_file
                    )
                )
            except OSError as error:
                print(f"prmsynth {command}: error: --log-file: {error}", file=sys.stderr)
                return EXIT_INPUT
            # A request cut off when a command stops (Ctrl-C, a full disk) leaves
            # litellm's coroutine unawaited: no news to the user.
            stack.enter_context(warnings.catch_warnings())
            warnings.filterwarnings(
                "ignore", message="coroutine .* was never awaited", category=RuntimeWarning
            )
            try:
                return handler(args)
            except KeyboardInterrupt:
                # A command with more to say (run) says it and returns 130 itself.
                print(f"\nprmsynth {args.command}: interrupted", file=sys.stderr)
                return EXIT_INTERRUPTED
    finally:
        sys.stderr = stderr


if __name__ == "__main__":
    sys.exit(main())
