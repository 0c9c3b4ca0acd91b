"""A config's ``features`` for the dataset card, derived from its format's JSON Schema.

The Hub's viewer and ``datasets.load_dataset`` read ``dataset_info.features``
from the card and cast every split to it, so the features must describe
the records exactly.  They are derived, never written by hand: each schema
property becomes a column (a ``struct`` for an object, a ``list`` for an
array, a ``dtype`` for a scalar), in the YAML form ``datasets`` writes.
Where a schema allows several types (a label that is a boolean or, with
soft labels, a number), the records decide.  A schema no column type can
hold (a recursive tree, a free-form object), or records holding a field the
schema does not name, give no features: ``datasets`` then infers them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: The ``datasets`` dtype of each JSON Schema scalar type.
DTYPES = {
    "string": "string",
    "integer": "int64",
    "number": "float64",
    "boolean": "bool",
    "null": "null",
}
# An array's items, in a path of property names.
_ITEMS = "[]"


class Unrepresentable(Exception):
    """A schema, or records, that no ``datasets`` feature type describes."""


def _kind(value: Any) -> str:
    """The JSON Schema type of a parsed JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


class Observed:
    """What records hold at each path: the JSON types of the values, and
    the keys of the objects.

    >>> seen = Observed.of([{"labels": [True, 0.5]}, {"labels": []}])
    >>> sorted(seen.kinds[("labels", "[]")]), sorted(seen.keys[()])
    (['boolean', 'number'], ['labels'])
    """

    def __init__(self) -> None:
        self.kinds: dict[tuple[str, ...], set[str]] = {}
        self.keys: dict[tuple[str, ...], set[str]] = {}

    @classmethod
    def of(cls, records: Iterable[Any]) -> Observed:
        seen = cls()
        for record in records:
            seen.add(record)
        return seen

    def add(self, value: Any, path: tuple[str, ...] = ()) -> None:
        kind = _kind(value)
        self.kinds.setdefault(path, set()).add(kind)
        if kind == "array":
            for item in value:
                self.add(item, (*path, _ITEMS))
        elif kind == "object":
            self.keys.setdefault(path, set()).update(value)
            for key, item in value.items():
                self.add(item, (*path, key))


def _alternatives(node: Mapping[str, Any], root: Mapping[str, Any], refs: tuple[str, ...]):
    """``(kind, schema, refs)`` for each type ``node`` allows, references followed."""
    if "$ref" in node:
        ref = node["$ref"]
        if ref in refs:
            raise Unrepresentable(f"{ref} refers to itself (a recursive structure)")
        prefix = "#/$defs/"
        if not ref.startswith(prefix) or ref[len(prefix) :] not in root.get("$defs", {}):
            raise Unrepresentable(f"unresolved reference {ref}")
        yield from _alternatives(root["$defs"][ref[len(prefix) :]], root, (*refs, ref))
        return
    for key in ("anyOf", "oneOf"):
        for part in node.get(key, ()):
            yield from _alternatives(part, root, refs)
    if "const" in node:
        yield _kind(node["const"]), node, refs
    for value in node.get("enum", ()):
        yield _kind(value), node, refs
    types = node.get("type", ())
    for kind in [types] if isinstance(types, str) else types:
        yield kind, node, refs


def _choose(kinds: list[str], seen: set[str], path: tuple[str, ...]) -> str:
    """The one type of several a column can have: the records decide."""
    if set(kinds) <= {"integer", "number"}:
        return "number" if "number" in kinds else "integer"
    if "number" in kinds:  # an integer where numbers are allowed is a number
        seen = {"number" if kind == "integer" else kind for kind in seen}
    found = [kind for kind in kinds if kind in seen]
    if len(found) == 1:
        return found[0]
    if not found:  # never filled in: any of them holds nothing
        return kinds[0]
    where = ".".join(path) or "the record"
    raise Unrepresentable(f"{where} holds {' and '.join(found)}, which no one column holds")


def _spec(
    node: Mapping[str, Any],
    root: Mapping[str, Any],
    seen: Observed,
    path: tuple[str, ...],
    refs: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The YAML feature (``dtype``, ``list`` or ``struct``) of one schema node."""
    options: dict[str, tuple[Mapping[str, Any], tuple[str, ...]]] = {}
    for kind, schema, followed in _alternatives(node, root, refs):
        options.setdefault(kind, (schema, followed))
    kinds = [kind for kind in options if kind != "null"] or ["null"]
    kind = kinds[0] if len(kinds) == 1 else _choose(kinds, seen.kinds.get(path, set()), path)
    schema, followed = options[kind]
    if kind == "array":
        if not isinstance(schema.get("items"), Mapping):
            raise Unrepresentable(f"{'.'.join(path)}: an array without one item schema")
        inner = _spec(schema["items"], root, seen, (*path, _ITEMS), followed)
        # datasets' short forms: ``list: string``, ``list: [fields]``.
        if list(inner) == ["dtype"]:
            return {"list": inner["dtype"]}
        if list(inner) == ["struct"]:
            return {"list": inner["struct"]}
        return {"list": inner}
    if kind == "object":
        return {"struct": _fields(schema, root, seen, path, followed)}
    if kind not in DTYPES:
        raise Unrepresentable(f"{'.'.join(path)}: unknown type {kind!r}")
    return {"dtype": DTYPES[kind]}


def _fields(
    schema: Mapping[str, Any],
    root: Mapping[str, Any],
    seen: Observed,
    path: tuple[str, ...],
    refs: tuple[str, ...],
) -> list[dict[str, Any]]:
    properties = schema.get("properties")
    if not properties:
        raise Unrepresentable(f"{'.'.join(path) or 'the record'}: an object of any keys")
    unknown = seen.keys.get(path, set()) - set(properties)
    if unknown:
        raise Unrepresentable(
            f"{'.'.join(path) or 'the record'} holds {', '.join(sorted(unknown))}, "
            "which the schema does not name"
        )
    return [
        {"name": name, **_spec(node, root, seen, (*path, name), refs)}
        for name, node in properties.items()
    ]


def features_from_schema(
    schema: Mapping[str, Any], records: Iterable[Mapping[str, Any]] = ()
) -> list[dict[str, Any]]:
    """The card's ``features`` of records that ``schema`` (a JSON Schema of
    an object) describes: one entry per property, in the schema's order, in
    the YAML form ``datasets`` reads (``Features._from_yaml_list``).

    ``records`` decide where the schema allows several types, and must hold
    no field the schema does not name.  Raises ``Unrepresentable`` for what
    no feature type describes.

    >>> schema = {"type": "object", "properties": {
    ...     "prompt": {"type": "string"},
    ...     "labels": {"type": "array", "items": {"type": ["boolean", "number"]}},
    ...     "mc_values": {"type": "array", "items": {"type": ["number", "null"]}}}}
    >>> features_from_schema(schema, [{"prompt": "p", "labels": [True], "mc_values": [0.5]}])
    [{'name': 'prompt', 'dtype': 'string'}, {'name': 'labels', 'list': 'bool'}, \
{'name': 'mc_values', 'list': 'float64'}]
    >>> features_from_schema(schema, [{"prompt": "p", "labels": [0.25]}])[1]
    {'name': 'labels', 'list': 'float64'}
    """
    return _fields(schema, schema, Observed.of(records), (), ())
