"""Config files: defaults for a command's options, and the effective config of a run.

``prmsynth COMMAND --config FILE`` reads FILE (YAML, JSON or TOML: a mapping
of option names to values) and makes its values the defaults of COMMAND's
options, so flags on the command line still win.  A key is an option's long
name without the dashes (``max-branches``, or ``max_branches``) or the name
of a positional argument (``seed-file``); a key the command does not know, or
a value of the wrong type, is bad input (exit 2) naming the file and the key.
Relative paths in a config are read from the current folder, as on the
command line.

``prmsynth run`` writes ``OUT/config.yaml``: every option of the command with
the value it ran with (paths made absolute, no credentials), which
``prmsynth run --config OUT/config.yaml`` reads back to resume or repeat it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prmsynth._errors import InputError, is_secret_name, not_utf8, redact_secrets

#: The formats ``--config`` reads, by file suffix.
CONFIG_SUFFIXES = (".yaml", ".yml", ".json", ".toml")
#: Options every command has that say how it reports and where its options came
#: from, not what it does: a written config or command line leaves them out (a
#: config may still set the first three).
REPORTING_OPTIONS = ("config", "verbose", "quiet", "log_file")
#: Options whose values are paths: a written config holds them absolute when they exist.
PATH_OPTIONS = ("seed_file", "out", "cache", "router_config", "input", "trees", "folders")


def read_config(path: str | Path) -> dict[str, Any]:
    """The mapping a config file holds (an empty file holds none).

    Raises [`InputError`][prmsynth.InputError] naming the file (and line) when
    it cannot be read or parsed, or holds something other than a mapping.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CONFIG_SUFFIXES:
        raise InputError(path, f"unknown config format; name it {', '.join(CONFIG_SUFFIXES)}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InputError(path, f"cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise not_utf8(path) from None
    if suffix == ".json":
        data = _read_json(path, text)
    elif suffix == ".toml":
        data = _read_toml(path, text)
    else:
        data = _read_yaml(path, text)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(path, "must hold a mapping of option names to values")
    return data


#: The most values a YAML config may expand to, aliases counted each time they
#: are used: a few lines of nested aliases ("billion laughs") expand past any memory.
MAX_YAML_VALUES = 10_000
# How much of a bad value a message quotes.
_SHOWN_CHARS = 60


def _shown(value: Any) -> str:
    """``repr(value)``, cut short: a message quotes a value, never a megabyte of it.

    >>> _shown("x" * 100)
    "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx... (102 characters)"
    """
    text = repr(value)
    if len(text) <= _SHOWN_CHARS:
        return text
    return f"{text[: _SHOWN_CHARS - 3]}... ({len(text)} characters)"


def _shown_key(key: Any) -> str:
    return key if isinstance(key, str) and len(key) <= _SHOWN_CHARS else _shown(key)


def _read_json(path: Path, text: str) -> Any:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for key, value in pairs:
            if key in data:
                raise InputError(path, "the key appears twice in one object", field=key)
            data[key] = value
        return data

    try:
        return json.loads(text, object_pairs_hook=no_duplicates) if text.strip() else None
    except json.JSONDecodeError as error:
        raise InputError(path, f"invalid JSON: {error.msg}", line=error.lineno) from None
    except RecursionError:
        raise InputError(path, "invalid JSON: nested too deeply") from None


def _read_yaml(path: Path, text: str) -> Any:
    """The YAML config, with a key given twice in one mapping refused, and
    aliases refused once they expand past ``MAX_YAML_VALUES`` values."""
    import yaml  # lazily: only a YAML config needs it

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, (str, int, float, bool)):
                    continue  # an odd key: refused later as no option
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {_shown(key)} appears twice", key_node.start_mark
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    try:
        node = yaml.compose(text, Loader=StrictLoader)
        if node is not None and _expanded_size(node) > MAX_YAML_VALUES:
            raise InputError(
                path,
                f"YAML aliases expand to more than {MAX_YAML_VALUES:,} values; "
                "write the values out",
            )
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = None if mark is None else mark.line + 1
        problem = getattr(error, "problem", None) or str(error)
        raise InputError(path, f"invalid YAML: {problem}", line=line) from None
    except RecursionError:
        raise InputError(path, "invalid YAML: nested too deeply") from None


def _expanded_size(root: Any) -> int:
    """How many values a composed YAML node stands for with every alias
    written out (each shared node counted once per use; a node that holds
    itself counts as too many)."""
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()

    def size(node: Any) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in in_progress:
            return MAX_YAML_VALUES + 1  # a structure that contains itself
        in_progress.add(key)
        total = 1
        children = node.value if isinstance(node.value, list) else []
        for child in children:
            for part in child if isinstance(child, tuple) else (child,):
                total += size(part)
                if total > MAX_YAML_VALUES:
                    break
        in_progress.discard(key)
        sizes[key] = total = min(total, MAX_YAML_VALUES + 1)
        return total

    return size(root)


def _read_toml(path: Path, text: str) -> Any:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise InputError(
                path, "a TOML config needs Python 3.11 or later (or tomli); use YAML or JSON"
            ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InputError(path, f"invalid TOML: {error}") from None


def _option_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every name a config may give an option by: its long names and its dest,
    each with dashes and with underscores."""
    names: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if action.dest in (argparse.SUPPRESS, "help"):
            continue
        spellings = [action.dest, *(s[2:] for s in action.option_strings if s.startswith("--"))]
        for name in spellings:
            names[name] = names[name.replace("-", "_")] = names[name.replace("_", "-")] = action
    return names


def _key_name(action: argparse.Action) -> str:
    """The key a written config gives ``action``: its first long name, or its dest."""
    long_names = [s[2:] for s in action.option_strings if s.startswith("--")]
    return long_names[0] if long_names else action.dest.replace("_", "-")


def _is_flag(action: argparse.Action) -> bool:
    """An on/off option (``store_true``, ``store_false``, ``--x/--no-x``)."""
    return isinstance(action, argparse.BooleanOptionalAction) or (
        action.nargs == 0 and isinstance(action.const, bool)
    )


def _scalar(action: argparse.Action, value: Any, where: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"expected {where}, got {_shown(value)}")
    kind = action.type
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"expected a whole number, got {_shown(value)}")
        converted: Any = int(value)
    elif kind is float:
        converted = float(value)
    elif callable(kind):
        converted = kind(str(value))
    else:
        converted = str(value)
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ValueError(f"expected one of {choices}, got {_shown(value)}")
    return converted


def _value(action: argparse.Action, value: Any) -> Any:
    """``value`` as the command line would have made it for ``action``; raises ValueError."""
    if _is_flag(action):
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {_shown(value)}")
        return value
    if action.nargs == 0:  # a counter (-v)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"expected a whole number >= 0, got {_shown(value)}")
        return value
    if value is None:
        if action.default is not None:
            raise ValueError("expected a value, got null")
        return None
    if action.nargs in ("+", "*") or isinstance(action.nargs, int):
        items = value if isinstance(value, list) else [value]
        if action.nargs == "+" and not items:
            raise ValueError("expected at least one value")
        return [_scalar(action, item, "a value") for item in items]
    return _scalar(action, value, "a string or a number")


def apply_config(
    parser: argparse.ArgumentParser, config: Mapping[str, Any], path: str | Path
) -> None:
    """Make ``config``'s values the defaults of ``parser``'s options; flags still win.

    An option the config gives is no longer required on the command line.
    Raises [`InputError`][prmsynth.InputError] naming ``path`` and the key of
    an unknown option or a bad value; ``parser`` is unchanged then.

    >>> parser = argparse.ArgumentParser(prog="prmsynth run")
    >>> _ = parser.add_argument("seed_file")
    >>> _ = parser.add_argument("--max-branches", type=int, default=40)
    >>> apply_config(parser, {"seed-file": "seeds.jsonl", "max_branches": 8}, "c.yaml")
    >>> args = parser.parse_args([])
    >>> args.seed_file, args.max_branches, parser.parse_args(["--max-branches", "9"]).max_branches
    ('seeds.jsonl', 8, 9)
    >>> apply_config(parser, {"max-brunches": 8}, "c.yaml")
    Traceback (most recent call last):
    ...
    prmsynth._errors.InputError: c.yaml: field 'max-brunches': not an option of 'prmsynth run'
    """
    actions = _option_actions(parser)
    defaults: dict[str, Any] = {}
    given: dict[str, str] = {}
    for key, value in config.items():
        action = actions.get(str(key))
        if action is None or action.dest == "config":
            raise InputError(path, f"not an option of {parser.prog!r}", field=_shown_key(key))
        if action.dest in given:
            raise InputError(
                path, f"the same option as {given[action.dest]!r}", field=_shown_key(key)
            )
        given[action.dest] = str(key)
        try:
            defaults[action.dest] = _value(action, value)
        except (TypeError, ValueError) as error:
            raise InputError(path, str(error), field=_shown_key(key)) from None
    for dest in defaults:
        action = next(a for a in parser._actions if a.dest == dest)
        action.required = False
        if not action.option_strings:  # a positional argument becomes optional
            action.nargs = "*" if action.nargs in ("+", "*") else "?"
    parser.set_defaults(**defaults)


def effective_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """Every option of ``parser`` with its value in ``args``, under the names a
    config file reads: paths that exist made absolute, options that report
    (``-v``, ``--log-file``, ...) and any that could hold a credential left out,
    and credentials removed from every text."""
    config: dict[str, Any] = {}
    for action in parser._actions:
        dest = action.dest
        if dest in (argparse.SUPPRESS, "help", *REPORTING_OPTIONS) or is_secret_name(dest):
            continue
        value = getattr(args, dest, None)
        if dest in PATH_OPTIONS:
            value = _absolute(value)
        config[_key_name(action)] = _without_secrets(value)
    return config


def _absolute(value: Any) -> Any:
    if isinstance(value, list):
        return [_absolute(item) for item in value]
    if isinstance(value, str) and Path(value).exists():
        return str(Path(value).resolve())
    return value


def _without_secrets(value: Any) -> Any:
    if isinstance(value, str):
        return redact_secrets(value)
    if isinstance(value, list):
        return [_without_secrets(item) for item in value]
    return value


def dump_config(config: Mapping[str, Any], *, command: Sequence[str]) -> str:
    """``config`` as YAML, headed by a comment on how to use it."""
    import yaml

    name = " ".join(command)
    header = (
        f"# The options of this '{name}', as it ran.\n"
        f"# '{name} --config THIS_FILE' runs it again: on the same --out it resumes;\n"
        "# flags on the command line win over the values here.\n"
    )
    return header + yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True)
