"""The command-line reference page (``docs/cli.md``), rendered from the parsers.

The page is generated, never written by hand, so it cannot drift from the
commands: ``python -m prmsynth.cli._reference docs/cli.md`` writes it, and a
test fails when the committed page differs from what the parsers give.  It is
Markdown tables built from each option's names, default and help, not
argparse's help text, whose layout changes between Python versions.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable

from prmsynth.cli._common import EXIT_CODES
from prmsynth.cli._main import build_parser, command_parsers

GENERATED_NOTE = (
    "<!-- Generated from the parsers by `python -m prmsynth.cli._reference docs/cli.md`; "
    "do not edit by hand (tests/test_docs.py checks it). -->"
)
_GLOBAL_GROUP = "global options"


def _text(text: str) -> str:
    """Plain text for a Markdown table cell or paragraph."""
    text = " ".join(text.split())
    for plain, escaped in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|")):
        text = text.replace(plain, escaped)
    return text


def _help(action: argparse.Action, prog: str) -> str:
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    params = {key: value for key, value in vars(action).items() if value is not argparse.SUPPRESS}
    params["prog"] = prog
    if params.get("choices") is not None:
        params["choices"] = ", ".join(map(str, params["choices"]))
    # The table has a column for the default: the help need not say it again.
    text = action.help.replace(" (default: %(default)s)", "") % params
    if action.choices is not None and "%(choices)" not in action.help:
        text += f" (one of: {', '.join(map(str, action.choices))})"
    return _text(text)


def _metavar(action: argparse.Action) -> str:
    if action.metavar is not None:
        return str(action.metavar)
    return action.dest.upper()


def _names(action: argparse.Action) -> str:
    if not action.option_strings:
        name = _metavar(action)
        return f"`{name} ...`" if action.nargs in ("+", "*") else f"`{name}`"
    takes_value = action.nargs != 0
    names = ", ".join(
        f"`{option} {_metavar(action)}`" if takes_value else f"`{option}`"
        for option in action.option_strings
    )
    return names


def _default(action: argparse.Action) -> str:
    if action.required or (not action.option_strings and action.nargs not in ("?", "*")):
        return "required"
    if action.nargs == 0 and isinstance(action.default, bool):
        return "on" if action.default else "off"
    if action.default is None or action.default == argparse.SUPPRESS:
        return ""
    return f"`{action.default}`"


def _table(actions: Iterable[argparse.Action], prog: str) -> list[str]:
    lines = ["| argument | default | description |", "| --- | --- | --- |"]
    for action in actions:
        if action.dest == "help":
            continue
        description = _help(action, prog)
        if not action.option_strings:  # what a config file calls it
            description += f" (config key: `{action.dest.replace('_', '-')}`)"
        lines.append(f"| {_names(action)} | {_default(action)} | {description} |")
    return lines


def _synopsis(parser: argparse.ArgumentParser) -> str:
    words = [parser.prog]
    for action in parser._actions:
        if not action.option_strings:
            words.append(_metavar(action) + (" ..." if action.nargs in ("+", "*") else ""))
        elif action.required:
            words.append(f"{action.option_strings[0]} {_metavar(action)}")
    return " ".join([*words, "[options]"])


def _own_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The command's actions, less the global options (listed once, on their own)."""
    global_dests = {
        action.dest
        for group in parser._action_groups
        if group.title == _GLOBAL_GROUP
        for action in group._group_actions
    }
    return [action for action in parser._actions if action.dest not in global_dests]


def render_cli_reference(parser: argparse.ArgumentParser | None = None) -> str:
    """``docs/cli.md``: every command with its arguments, defaults and help."""
    parser = parser or build_parser()
    commands = command_parsers(parser)
    lines = [
        "# Command line reference",
        "",
        GENERATED_NOTE,
        "",
        _text(parser.description or ""),
        "",
        "| command | what it does |",
        "| --- | --- |",
    ]
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for choice in subparsers._choices_actions:
        lines.append(f"| [`{choice.dest}`](#prmsynth-{choice.dest}) | {_text(choice.help or '')} |")
    first = next(iter(commands.values()))
    global_actions = [a for a in first._actions if a not in _own_actions(first)]
    lines += [
        "",
        "## Global options",
        "",
        "Every command takes these, after the command's name. A config file (YAML, JSON or "
        "TOML) maps option names without the leading dashes (`max-branches: 40`, or "
        "`max_branches`; a positional argument by its name, `seed-file`) to values; flags on "
        "the command line win over it. `prmsynth run` writes every option it ran with to "
        "`OUT/config.yaml`, and `prmsynth run --config OUT/config.yaml` resumes that run.",
        "",
        *_table(global_actions, parser.prog),
        "",
        "## Exit status",
        "",
        "| status | meaning |",
        "| --- | --- |",
        *(f"| {code} | {_text(meaning)} |" for code, meaning in EXIT_CODES),
    ]
    for name, command in commands.items():
        lines += [
            "",
            f"## prmsynth {name}",
            "",
            _text(command.description or ""),
            "",
            f"`{_synopsis(command)}`",
            "",
            *_table(_own_actions(command), command.prog),
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """Write the page to ``argv[0]`` (stdout without one)."""
    if argv and argv[0].startswith("-"):  # --help, not a file to write
        print("usage: python -m prmsynth.cli._reference [PAGE.md]", file=sys.stderr)
        return 0 if argv[0] in ("-h", "--help") else 2
    text = render_cli_reference()
    if argv:
        from prmsynth._io import atomic_file

        with atomic_file(argv[0]) as page:
            page.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
