"""The JSON Schemas (Draft 2020-12) of the formats, shipped in ``prmsynth/export/schemas/``,
and record validation: a quick check compiled from the schema says "surely valid"
for the common record, and jsonschema decides the rest and writes the messages."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from prmsynth._io import (
    numbered_lines,
)
from prmsynth.export._registry import export_format

if TYPE_CHECKING:
    import jsonschema

__all__ = ["load_schema", "schema_name", "validate_file", "validate_record"]


def schema_name(format: str) -> str:
    """The name of ``format``'s schema file (see `ExportFormat`)."""
    return export_format(format).schema


def _read_schema(name: str) -> dict[str, Any]:
    schemas = resources.files("prmsynth.export").joinpath("schemas")
    text = schemas.joinpath(f"{name}.schema.json").read_text("utf-8")
    return json.loads(text)


def load_schema(format: str) -> dict[str, Any]:
    """The JSON Schema (Draft 2020-12) of ``format``'s records, as a fresh dict.

    >>> schema = load_schema("trl")
    >>> schema["required"]
    ['prompt', 'completions', 'labels']
    >>> load_schema("dpo-step") == load_schema("dpo")  # same layout, same schema
    True
    """
    return _read_schema(schema_name(format))


@functools.cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    # Compiled once per schema: the schemas are read-only package data.
    from jsonschema import Draft202012Validator

    schema = _read_schema(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


# jsonschema walks a tree record at about 0.3 ms a node (12 ms for a typical
# tree), more than everything else an export does.  A schema made only of the
# keywords below compiles into plain type tests that say "surely valid" for
# the common case; anything else (a doubt, an error) goes to jsonschema, which
# decides and writes the messages.  So the quick check may only ever err
# towards "not sure": an instance of an inexact type (a dict subclass, a float
# where an integer is allowed, a NaN) is never surely valid.

_JSON_TYPES = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}
_EXACT_TYPES = frozenset(t for types in _JSON_TYPES.values() for t in types)
_ENUM_TYPES = frozenset({str, int, type(None)})
_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description"})
_Check = Callable[[Any], bool]


class _Unsupported(Exception):
    """A schema keyword (or value) the quick check does not know."""


def _compile(schema: Any, compiled: dict[str, _Check]) -> _Check:
    if not isinstance(schema, dict):
        raise _Unsupported(schema)
    keywords = {k: v for k, v in schema.items() if k not in _ANNOTATIONS}
    # The type test first: it admits exact types only, and rules out the most.
    order = sorted(keywords, key=lambda keyword: keyword != "type")
    checks = [_compile_keyword(keyword, keywords[keyword], compiled) for keyword in order]
    if "type" not in keywords:
        checks.insert(0, lambda instance: type(instance) in _EXACT_TYPES)
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda instance: first(instance) and second(instance)

    def check_all(instance: Any) -> bool:
        for check in checks:
            if not check(instance):
                return False
        return True

    return check_all


def _compile_keyword(keyword: str, value: Any, compiled: dict[str, _Check]) -> _Check:
    # Each keyword applies only to the instances of its type, as in JSON Schema.
    if keyword == "type":
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not all(name in _JSON_TYPES for name in names):
            raise _Unsupported(value)
        types = frozenset(t for name in names for t in _JSON_TYPES[name])
        return lambda instance: type(instance) in types
    if keyword in ("enum", "const"):
        values = value if keyword == "enum" else [value]
        # Strings, integers and null only: JSON equality of floats and booleans
        # (1.0 equals 1, True does not) is not Python's.
        if not isinstance(values, list) or not all(type(v) in _ENUM_TYPES for v in values):
            raise _Unsupported(value)
        allowed = frozenset(values)
        return lambda instance: type(instance) in _ENUM_TYPES and instance in allowed
    if keyword == "required":
        names = frozenset(value)
        return lambda instance: type(instance) is not dict or names <= instance.keys()
    if keyword == "properties":
        properties = {name: _compile(sub, compiled) for name, sub in value.items()}

        def check_properties(instance: Any) -> bool:
            if type(instance) is not dict:
                return True
            for name, item in instance.items():
                check = properties.get(name)
                if check is not None and not check(item):
                    return False
            return True

        return check_properties
    if keyword == "items":
        item = _compile(value, compiled)
        return lambda instance: type(instance) is not list or all(map(item, instance))
    if keyword in ("minItems", "maxItems"):
        bound = int(value)
        if keyword == "minItems":
            return lambda instance: type(instance) is not list or len(instance) >= bound
        return lambda instance: type(instance) is not list or len(instance) <= bound
    if keyword in ("minLength", "maxLength"):
        bound = int(value)  # JSON Schema counts code points, as len() does
        if keyword == "minLength":
            return lambda instance: type(instance) is not str or len(instance) >= bound
        return lambda instance: type(instance) is not str or len(instance) <= bound
    if keyword in ("minimum", "maximum"):
        if type(value) not in (int, float):
            raise _Unsupported(value)
        # a NaN compares false both ways: not surely valid
        if keyword == "minimum":
            return lambda instance: type(instance) not in (int, float) or instance >= value
        return lambda instance: type(instance) not in (int, float) or instance <= value
    if keyword == "anyOf":
        options = [_compile(sub, compiled) for sub in value]
        return lambda instance: any(option(instance) for option in options)
    if keyword == "$ref":
        prefix = "#/$defs/"
        if not isinstance(value, str) or not value.startswith(prefix):
            raise _Unsupported(value)
        name = value[len(prefix) :]
        if name not in compiled:
            raise _Unsupported(value)
        # looked up when called: a definition may refer to itself (a node's children)
        return lambda instance: compiled[name](instance)
    raise _Unsupported(keyword)


@functools.cache
def _quick_check(name: str) -> _Check | None:
    """A check that says True only for instances schema ``name`` surely
    accepts, or None when the schema uses a keyword it does not know."""
    schema = _read_schema(name)
    definitions = schema.get("$defs", {})
    compiled: dict[str, _Check] = dict.fromkeys(definitions, lambda instance: False)
    try:
        for definition, sub in definitions.items():
            compiled[definition] = _compile(sub, compiled)
        check = _compile(schema, compiled)
    except _Unsupported:
        return None

    def quick(instance: Any) -> bool:
        try:
            return check(instance)
        except RecursionError:
            return False  # very deep nesting: let jsonschema say so

    return quick


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validate_record(record: Any, format: str) -> list[str]:
    """Every way ``record`` breaks ``format``'s schema, as ``"$.path: message"`` strings.

    An empty list means the record is valid.  Beyond the schema, a few
    checks JSON Schema cannot express (``trl``: as many labels as
    completions, all booleans or all numbers; ``math-shepherd``: ``label`` is
    ``input`` with each tag replaced, and ``value`` its marks or a number per
    tag; ``processbench``: ``label`` is a step index).

    >>> validate_record({"prompt": "Q", "completions": ["a"], "labels": [True]}, "trl")
    []
    >>> validate_record({"prompt": "Q", "completions": ["a"], "labels": [0.7]}, "trl")  # soft
    []
    >>> validate_record({"prompt": "Q", "completions": ["a"], "labels": [1.5]}, "trl")
    ['$.labels[0]: 1.5 is greater than the maximum of 1']
    """
    name = schema_name(format)
    quick = _quick_check(name)
    if quick is not None and quick(record):
        messages = []
    else:
        errors = sorted(_validator(name).iter_errors(record), key=lambda error: error.json_path)
        messages = [f"{error.json_path}: {_shorten(error.message)}" for error in errors]
    check = export_format(format).check
    if not messages and check is not None:
        messages.extend(check(record))
    return messages


def validate_file(path: str | os.PathLike, format: str) -> list[str]:
    """Every schema error of a JSONL file, as ``"line N: $.path: message"`` strings.

    A line that is not JSON is an error of its line; blank lines are skipped.
    A file that cannot be read raises [`InputError`][prmsynth.InputError].

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "ok.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"},'
    ...                                      ' {"role": "assistant", "content": "hello"}]}\\n')
    >>> validate_file(folder / "ok.jsonl", "sft")
    []
    >>> _ = (folder / "bad.jsonl").write_text('{"messages": []}\\nnot json\\n')
    >>> for error in validate_file(folder / "bad.jsonl", "sft"):
    ...     print(error)
    line 1: $.messages: [] is too short
    line 2: bad JSON: Expecting value (column 1)
    """
    export_format(format)  # an unknown format is an error even for an empty file
    errors = []
    for line_number, line in numbered_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            errors.append(f"line {line_number}: bad JSON: {error.msg} (column {error.colno})")
            continue
        errors.extend(
            f"line {line_number}: {message}" for message in validate_record(record, format)
        )
    return errors
